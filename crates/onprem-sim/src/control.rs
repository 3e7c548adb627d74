//! The control API under `/_sim/`, for tests and demos that run the simulator as a separate
//! process. Every call needs `Authorization: Bearer <control token>`; without a configured
//! control token the whole prefix answers 404.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::envelope;
use crate::model::{Fault, FaultAction, HealthReport, RequestRecord, Responses, ResponsesUpdate};
use crate::state::Shared;

pub(crate) fn routes(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route(
            "/_sim/faults",
            get(faults).post(add_fault).delete(clear_faults),
        )
        .route("/_sim/variant", get(variant).put(set_variant))
        .route(
            "/_sim/bundle",
            get(bundle).put(set_bundle).delete(clear_bundle),
        )
        .route("/_sim/token", post(token))
        .route("/_sim/tokens", delete(revoke_tokens))
        .route("/_sim/latency", put(set_latency))
        .route("/_sim/core", put(set_core))
        .route("/_sim/health", put(set_health))
        .route_layer(middleware::from_fn_with_state(shared, guard))
}

async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match shared.control_token_matches(presented) {
        None => envelope::empty(StatusCode::NOT_FOUND),
        Some(false) => envelope::empty(StatusCode::UNAUTHORIZED),
        Some(true) => next.run(request).await,
    }
}

async fn requests(State(shared): State<Arc<Shared>>) -> Json<Vec<RequestRecord>> {
    Json(shared.lock().requests())
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().clear_requests();
    StatusCode::NO_CONTENT
}

async fn faults(State(shared): State<Arc<Shared>>) -> Json<Vec<Fault>> {
    Json(shared.lock().faults())
}

async fn add_fault(State(shared): State<Arc<Shared>>, Json(fault): Json<Fault>) -> Response {
    if let FaultAction::Error { status, .. } = fault.action
        && StatusCode::from_u16(status).is_err()
    {
        return (StatusCode::BAD_REQUEST, "status is not an HTTP status code").into_response();
    }
    shared.lock().add_fault(fault);
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().clear_faults();
    StatusCode::NO_CONTENT
}

async fn variant(State(shared): State<Arc<Shared>>) -> Json<Responses> {
    Json(shared.lock().responses)
}

async fn set_variant(
    State(shared): State<Arc<Shared>>,
    Json(update): Json<ResponsesUpdate>,
) -> Json<Responses> {
    let mut inner = shared.lock();
    update.apply(&mut inner.responses);
    Json(inner.responses)
}

async fn bundle(State(shared): State<Arc<Shared>>) -> Response {
    match shared.lock().bundle.clone() {
        Some(b) => {
            let mut response = b.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        None => envelope::empty(StatusCode::NOT_FOUND),
    }
}

async fn set_bundle(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    shared.lock().bundle = Some(body.to_vec());
    StatusCode::NO_CONTENT
}

async fn clear_bundle(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().bundle = None;
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct TokenRequest {
    username: String,
}

#[derive(Serialize)]
struct TokenAnswer {
    token: String,
    expires_after: String,
}

async fn token(State(shared): State<Arc<Shared>>, Json(req): Json<TokenRequest>) -> Response {
    match shared
        .lock()
        .issue_token(&req.username, jiff::Timestamp::now())
    {
        Some(issued) => Json(TokenAnswer {
            token: issued.token,
            expires_after: issued.expires_after,
        })
        .into_response(),
        None => (StatusCode::NOT_FOUND, "no such user").into_response(),
    }
}

async fn revoke_tokens(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().revoke_all();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct LatencyRequest {
    millis: u64,
}

async fn set_latency(
    State(shared): State<Arc<Shared>>,
    Json(req): Json<LatencyRequest>,
) -> StatusCode {
    shared.lock().latency = Duration::from_millis(req.millis);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct CoreRequest {
    unreachable: bool,
}

async fn set_core(State(shared): State<Arc<Shared>>, Json(req): Json<CoreRequest>) -> StatusCode {
    shared.lock().core_unreachable = req.unreachable;
    StatusCode::NO_CONTENT
}

async fn set_health(
    State(shared): State<Arc<Shared>>,
    Json(report): Json<HealthReport>,
) -> StatusCode {
    shared.lock().health = report;
    StatusCode::NO_CONTENT
}
