//! Response bodies in the API's envelope: payload fields, then `meta`, then `errors`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value};

/// The title the API gives each documented error code.
pub(crate) fn title(code: u32) -> &'static str {
    match code {
        1000 => "Generic error",
        1004 => "Resource already exists",
        1005 => "Access denied",
        1006 => "Resource not found",
        1008 => "Required parameter is missing",
        1009 => "Parameter value is not valid",
        1011 => "Service not ready",
        1014 => "Internal error",
        1015 => "Too many requests",
        1016 => "System overloaded",
        1017 => "Not a primary master",
        1024 => "Password change required",
        1025 => "Request not valid",
        _ => "Error",
    }
}

#[derive(Serialize)]
struct Meta<'a> {
    version: &'a str,
    api_status: &'static str,
}

#[derive(Serialize)]
pub(crate) struct ApiError<'a> {
    code: u32,
    title: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(flatten)]
    payload: Map<String, Value>,
    meta: Meta<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [ApiError<'a>],
}

/// The envelope's `errors` entry for `code` (also used inside health node entries).
pub(crate) fn api_error(code: u32, details: &str) -> ApiError<'_> {
    ApiError {
        code,
        title: title(code),
        details,
    }
}

/// A JSON envelope answer: `payload` fields plus `meta`.
pub(crate) fn ok(status: StatusCode, payload: Map<String, Value>, version: &str) -> Response {
    json(
        status,
        &Envelope {
            payload,
            meta: meta(version),
            errors: &[],
        },
    )
}

/// A JSON envelope answer carrying one error.
pub(crate) fn error(status: StatusCode, code: u32, details: &str, version: &str) -> Response {
    json(
        status,
        &Envelope {
            payload: Map::new(),
            meta: meta(version),
            errors: &[api_error(code, details)],
        },
    )
}

/// An answer with no body and no Content-Type.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "simulator could not serialize a response body");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// Adds `Retry-After: <seconds>`.
pub(crate) fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

fn meta(version: &str) -> Meta<'_> {
    Meta {
        version,
        api_status: "stable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn error_envelope_has_meta_and_one_error() {
        let r = error(StatusCode::FORBIDDEN, 1005, "admin only", "v2.0");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_json(r).await,
            serde_json::json!({
                "meta": {"version": "v2.0", "api_status": "stable"},
                "errors": [{"code": 1005, "title": "Access denied", "details": "admin only"}]
            })
        );
    }

    #[tokio::test]
    async fn ok_envelope_puts_payload_next_to_meta_without_errors() {
        let mut payload = Map::new();
        payload.insert(
            "health".into(),
            serde_json::json!({"gateway_status": "connected"}),
        );
        let v = body_json(ok(StatusCode::OK, payload, "v1")).await;
        assert_eq!(v["health"]["gateway_status"], "connected");
        assert_eq!(v["meta"]["api_status"], "stable");
        assert!(v.get("errors").is_none());
    }
}
