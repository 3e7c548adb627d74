//! The simulated API endpoints: login/logout, the webhook CA certificate endpoints and health.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::envelope::{self, api_error};
use crate::layer::LOGIN_PATH;
use crate::model::{DeleteMissing, HealthReport, SuccessBody, Variant};
use crate::server::ConnMeta;
use crate::state::{Caller, Inner, LoginOutcome, Shared};

pub(crate) const CA_PATH: &str = "/v1/certificates/webhooks/ca";

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(LOGIN_PATH, post(login))
        .route("/v1/users/logout", post(logout))
        .route(CA_PATH, get(get_ca).post(post_ca).delete(delete_ca))
        .route("/v1/health", get(health))
        .route(
            crate::settings::SETTINGS_PATH,
            get(crate::settings::get_settings).patch(crate::settings::patch_settings),
        )
        .fallback(unknown_path)
}

#[derive(Deserialize)]
struct LoginBody {
    new_password: Option<String>,
}

async fn login(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnMeta>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((username, password)) = basic_credentials(&headers) else {
        return basic_challenge();
    };
    let new_password = if body.trim_ascii().is_empty() {
        None
    } else {
        match serde_json::from_slice::<LoginBody>(&body) {
            Ok(b) => b.new_password,
            Err(_) => {
                return envelope::error(
                    StatusCode::BAD_REQUEST,
                    1025,
                    "the body must be a JSON object with an optional new_password string",
                    &shared.version,
                );
            }
        }
    };
    let outcome = shared.lock().login(
        conn.peer.ip(),
        &username,
        &password,
        new_password.as_deref(),
        Instant::now(),
        Timestamp::now(),
    );
    let version = &shared.version;
    match outcome {
        LoginOutcome::Issued(issued) => {
            let mut payload = Map::new();
            payload.insert(
                "users".into(),
                json!([{"token": issued.token, "expires_after": issued.expires_after}]),
            );
            envelope::ok(StatusCode::OK, payload, version)
        }
        LoginOutcome::BadCredentials => basic_challenge(),
        LoginOutcome::RateLimited { retry_after_secs } => envelope::with_retry_after(
            envelope::error(
                StatusCode::TOO_MANY_REQUESTS,
                1015,
                "too many failed logins",
                version,
            ),
            retry_after_secs,
        ),
        LoginOutcome::PasswordChangeRequired => envelope::error(
            StatusCode::UNAUTHORIZED,
            1024,
            "log in again with a new_password",
            version,
        ),
        LoginOutcome::PasswordPolicy => envelope::error(
            StatusCode::BAD_REQUEST,
            1009,
            "new_password needs 8-64 characters with upper case, lower case, digit and special character",
            version,
        ),
    }
}

async fn logout(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut inner = shared.lock();
    let token = bearer_token(&headers);
    match token.and_then(|t| inner.bearer(t, Timestamp::now()).map(|_| t)) {
        Some(t) => {
            inner.revoke(t);
            envelope::ok(StatusCode::OK, Map::new(), &shared.version)
        }
        None => access_denied_401(&shared.version),
    }
}

async fn get_ca(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut inner = shared.lock();
    if let Some(denied) = admin_denial(&shared, &mut inner, &headers) {
        return denied;
    }
    if inner.core_unreachable {
        return core_unreachable(&shared.version);
    }
    let variant = inner.responses.variant;
    let Some(bundle) = inner.bundle.clone() else {
        return not_found(variant, &shared.version);
    };
    let mut response = Response::new(Body::from(bundle));
    let headers = response.headers_mut();
    match variant {
        Variant::Docs => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        Variant::Code => {
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=webhookCaCerts.pem"),
            );
        }
    }
    response
}

async fn post_ca(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let version = &shared.version;
    let mut inner = shared.lock();
    if let Some(denied) = admin_denial(&shared, &mut inner, &headers) {
        return denied;
    }
    // The webapp compares the header as a string: parameters such as a charset are refused.
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    if content_type != Some(b"text/plain".as_slice()) {
        return envelope::error(
            StatusCode::BAD_REQUEST,
            1009,
            "Content-Type must be text/plain",
            version,
        );
    }
    if body.is_empty() {
        return envelope::error(StatusCode::BAD_REQUEST, 1008, "No cert data found", version);
    }
    if inner.core_unreachable {
        return core_unreachable(version);
    }
    inner.bundle = Some(body.to_vec());
    success(inner.responses.success_body(), version)
}

async fn delete_ca(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let version = &shared.version;
    let mut inner = shared.lock();
    if let Some(denied) = admin_denial(&shared, &mut inner, &headers) {
        return denied;
    }
    if inner.core_unreachable {
        return core_unreachable(version);
    }
    let responses = inner.responses;
    if inner.bundle.take().is_none() && responses.delete_missing == DeleteMissing::NotFound {
        return not_found(responses.variant, version);
    }
    success(responses.success_body(), version)
}

async fn health(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let version = &shared.version;
    let mut inner = shared.lock();
    if caller(&shared, &mut inner, &headers, true).is_none() {
        return access_denied_401(version);
    }
    if let Err(retry_after_secs) = inner.health_call(Instant::now()) {
        return envelope::with_retry_after(
            envelope::error(
                StatusCode::TOO_MANY_REQUESTS,
                1015,
                "health is limited to 10 calls per minute",
                version,
            ),
            retry_after_secs,
        );
    }
    let health = match &inner.health {
        HealthReport::Single { gateway_status } => json!({"gateway_status": gateway_status}),
        HealthReport::Multi { nodes } => {
            let entries = nodes.iter().map(|node| {
                let entry = if node.unreachable {
                    json!({"errors": [api_error(1014, "node unreachable")]})
                } else {
                    json!({"gateway_status": node.gateway_status, "role": node.role})
                };
                (node.name.clone(), entry)
            });
            Value::Object(entries.collect())
        }
    };
    let mut payload = Map::new();
    payload.insert("health".into(), health);
    envelope::ok(StatusCode::OK, payload, version)
}

async fn unknown_path(State(shared): State<Arc<Shared>>) -> Response {
    envelope::error(StatusCode::NOT_FOUND, 1006, "unknown path", &shared.version)
}

/// The caller behind the Authorization header, if its credential is usable here.
fn caller(
    shared: &Shared,
    inner: &mut Inner,
    headers: &HeaderMap,
    allow_api_key: bool,
) -> Option<Caller> {
    let (scheme, credential) = authorization(headers)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        inner.bearer(credential, Timestamp::now())
    } else if allow_api_key
        && scheme.eq_ignore_ascii_case("apikey")
        && shared.api_key_matches(credential)
    {
        Some(Caller::ApiKey)
    } else {
        None
    }
}

/// The refusal for a caller who is not an admin: the certificate endpoints are admin-only.
pub(crate) fn admin_denial(
    shared: &Shared,
    inner: &mut Inner,
    headers: &HeaderMap,
) -> Option<Response> {
    match caller(shared, inner, headers, false) {
        Some(Caller::User { admin: true, .. }) => None,
        Some(_) => Some(envelope::error(
            StatusCode::FORBIDDEN,
            1005,
            "admin users only",
            &shared.version,
        )),
        None => Some(access_denied_401(&shared.version)),
    }
}

fn authorization(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    Some((scheme, credential.trim()))
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    authorization(headers)
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let (scheme, encoded) = authorization(headers)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The HTTP Basic layer's refusal: a challenge and no body at all.
fn basic_challenge() -> Response {
    let mut response = envelope::empty(StatusCode::UNAUTHORIZED);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Secured\""),
    );
    response
}

fn access_denied_401(version: &str) -> Response {
    envelope::error(
        StatusCode::UNAUTHORIZED,
        1005,
        "a valid token is required",
        version,
    )
}

fn core_unreachable(version: &str) -> Response {
    envelope::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        1014,
        "core unreachable",
        version,
    )
}

fn not_found(variant: Variant, version: &str) -> Response {
    match variant {
        Variant::Docs => envelope::empty(StatusCode::NOT_FOUND),
        Variant::Code => envelope::error(
            StatusCode::NOT_FOUND,
            1006,
            "no webhook CA certificates stored",
            version,
        ),
    }
}

fn success(body: SuccessBody, version: &str) -> Response {
    match body {
        SuccessBody::Null => envelope::json(StatusCode::OK, &Value::Null),
        SuccessBody::Empty => envelope::json(StatusCode::OK, &Map::new()),
        SuccessBody::Meta => envelope::ok(StatusCode::OK, Map::new(), version),
    }
}
