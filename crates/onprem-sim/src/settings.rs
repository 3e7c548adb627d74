//! `GET|PATCH /v1/settings/application`: the application settings, as far as the webhook URL
//! goes. The simulator plays both documented shapes of the answer: inside
//! `{"settings": {"application": ...}}`, and the application object unwrapped (older versions).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::envelope;
use crate::handlers::admin_denial;
use crate::state::Shared;

pub(crate) const SETTINGS_PATH: &str = "/v1/settings/application";

/// The application settings the simulator holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationSettings {
    /// `webhooks.url`; `None` leaves the key out, as an installation without a webhook does.
    pub webhook_url: Option<String>,
    /// Answer inside `settings.application` (current versions) or unwrapped (older ones).
    pub wrapped: bool,
}

impl Default for ApplicationSettings {
    fn default() -> Self {
        Self {
            webhook_url: None,
            wrapped: true,
        }
    }
}

impl ApplicationSettings {
    fn application(&self) -> Value {
        let mut webhooks = Map::new();
        if let Some(url) = &self.webhook_url {
            webhooks.insert("url".into(), json!(url));
        }
        webhooks.insert("max_concurrent_requests".into(), json!(12));
        json!({
            "webhooks": webhooks,
            "callback_persist": true,
            "media": {"auto_download": ["document", "image"]}
        })
    }
}

pub(crate) async fn get_settings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let mut inner = shared.lock();
    if let Some(denied) = admin_denial(&shared, &mut inner, &headers) {
        return denied;
    }
    let settings = &inner.settings;
    let payload = if settings.wrapped {
        let mut payload = Map::new();
        payload.insert(
            "settings".into(),
            json!({"application": settings.application()}),
        );
        payload
    } else {
        match settings.application() {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    };
    envelope::ok(StatusCode::OK, payload, &shared.version)
}

/// `{"webhooks": {"url": "..."}}` sets the URL (an empty string removes it).
pub(crate) async fn patch_settings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = shared.lock();
    if let Some(denied) = admin_denial(&shared, &mut inner, &headers) {
        return denied;
    }
    let url = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("webhooks")?.get("url")?.as_str().map(str::to_owned));
    let Some(url) = url else {
        return envelope::error(
            StatusCode::BAD_REQUEST,
            1025,
            "expected {\"webhooks\": {\"url\": \"...\"}}",
            &shared.version,
        );
    };
    inner.settings.webhook_url = (!url.is_empty()).then_some(url);
    envelope::ok(StatusCode::OK, Map::new(), &shared.version)
}
