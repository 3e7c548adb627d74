//! What happens around every API request: the request ID, added latency, injected faults and
//! the request log. Control requests (`/_sim/...`) only get the request ID.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use crate::envelope;
use crate::model::{Fault, FaultAction, RequestRecord};
use crate::server::ConnMeta;
use crate::state::Shared;

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const CONTROL_PREFIX: &str = "/_sim/";
pub(crate) const LOGIN_PATH: &str = "/v1/users/login";
/// Far above any PEM bundle; a bigger body is refused before it is buffered.
const MAX_BODY: usize = 4 << 20;
/// Client request IDs longer than this are replaced rather than echoed.
const MAX_REQUEST_ID_LEN: usize = 200;

pub(crate) async fn around(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let client_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN)
        .cloned();
    let request_id_from_client = client_id.is_some();
    let request_id = client_id.unwrap_or_else(|| {
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            // A hyphenated UUID is always a valid header value.
            .unwrap_or_else(|_| HeaderValue::from_static("simulator"))
    });

    if request.uri().path().starts_with(CONTROL_PREFIX) {
        return with_request_id(next.run(request).await, request_id);
    }

    let latency = shared.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return with_request_id(envelope::empty(StatusCode::PAYLOAD_TOO_LARGE), request_id);
        }
    };
    let mut record = RequestRecord {
        at: jiff::Timestamp::now(),
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        body_len: body.len(),
        body_sha256: (parts.uri.path() != LOGIN_PATH).then(|| hex::encode(Sha256::digest(&body))),
        request_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
        request_id_from_client,
        authorization_present: parts.headers.contains_key(header::AUTHORIZATION),
        auth_scheme: auth_scheme(&parts.headers),
        status: None,
        fault: false,
    };

    let fault = shared.lock().take_fault(&record.method, &record.path);
    let response = match fault {
        Some(fault) if fault.action == FaultAction::LoseBundle => {
            record.fault = true;
            shared.lock().bundle = None;
            Some(next.run(Request::from_parts(parts, Body::from(body))).await)
        }
        Some(fault) => {
            record.fault = true;
            let answer = fault_response(&fault, &shared.version);
            if answer.is_none()
                && let Some(ConnectInfo(conn)) = parts.extensions.get::<ConnectInfo<ConnMeta>>()
            {
                conn.kill();
            }
            answer
        }
        None => Some(next.run(Request::from_parts(parts, Body::from(body))).await),
    };

    record.status = response.as_ref().map(|r| r.status().as_u16());
    tracing::debug!(
        method = %record.method,
        path = %record.path,
        status = ?record.status,
        request_id = %record.request_id,
        fault = record.fault,
        "simulator request"
    );
    shared.lock().record(record);
    match response {
        Some(r) => with_request_id(r, request_id),
        // The connection is already killed: this answer never reaches the client.
        None => envelope::empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn with_request_id(mut response: Response, id: HeaderValue) -> Response {
    response.headers_mut().insert(X_REQUEST_ID, id);
    response
}

/// The answer a fault gives instead of the endpoint; `None` for a dropped connection.
fn fault_response(fault: &Fault, version: &str) -> Option<Response> {
    let FaultAction::Error { status, code } = fault.action else {
        return None;
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let response = match code {
        Some(code) => envelope::error(status, code, "injected by the simulator", version),
        None => envelope::empty(status),
    };
    Some(match fault.retry_after_secs {
        Some(secs) => envelope::with_retry_after(response, secs),
        None => response,
    })
}

/// The Authorization scheme, normalised to a fixed set so a malformed header can never put a
/// credential into the log.
fn auth_scheme(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.split(|b| *b == b' ').next().unwrap_or_default();
    let known = ["basic", "bearer", "apikey"]
        .into_iter()
        .find(|k| scheme.eq_ignore_ascii_case(k.as_bytes()));
    Some(known.unwrap_or("other").to_owned())
}
