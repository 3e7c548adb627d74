//! The On-Premises API simulator, driven over real HTTPS the way the operator's client uses it
//! (but with a plain HTTP client, not the operator's): every documented variant, the login
//! flows, faults, the request log and the `onprem-sim` binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use onprem_sim::{
    DEFAULT_ADMIN_PASSWORD, DeleteMissing, Fault, HealthNode, HealthReport, RateLimit, SimConfig,
    SimError, SimUser, Simulator, SuccessBody, Variant,
};
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CA: &str = "/v1/certificates/webhooks/ca";
const BUNDLE: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMIIBsecond\n-----END CERTIFICATE-----\n";

async fn start(cfg: SimConfig) -> Simulator {
    onprem_sim::start(cfg).await.expect("simulator starts")
}

async fn start_default() -> Simulator {
    start(SimConfig::default()).await
}

/// A simulator, a client trusting it, and an admin token issued directly.
async fn admin_session(cfg: SimConfig) -> (Simulator, Client, String) {
    let sim = start(cfg).await;
    let c = client(&sim);
    let token = sim.issue_token("admin").expect("admin exists");
    (sim, c, token)
}

/// A simulator whose only user is the factory `admin`/`secret`, and a client trusting it.
async fn factory_session() -> (Simulator, Client) {
    let sim = start(SimConfig {
        users: vec![SimUser::factory_admin()],
        ..SimConfig::default()
    })
    .await;
    let c = client(&sim);
    (sim, c)
}

/// The token of a successful login answer.
async fn token_of(r: Response) -> String {
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("login JSON");
    v["users"][0]["token"]
        .as_str()
        .expect("token string")
        .to_owned()
}

/// A client that trusts only the simulator's CA.
fn client_for(ca_pem: &str) -> Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
    Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .build()
        .expect("client")
}

fn client(sim: &Simulator) -> Client {
    match sim.ca_pem() {
        Some(pem) => client_for(pem),
        None => Client::builder().no_proxy().build().expect("client"),
    }
}

async fn login_response(
    c: &Client,
    sim: &Simulator,
    user: &str,
    password: &str,
    body: Option<Value>,
) -> Response {
    let mut req = c
        .post(format!("{}/v1/users/login", sim.url()))
        .basic_auth(user, Some(password));
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("login request")
}

async fn login(c: &Client, sim: &Simulator, user: &str, password: &str) -> String {
    token_of(login_response(c, sim, user, password, None).await).await
}

async fn upload(
    c: &Client,
    sim: &Simulator,
    token: &str,
    content_type: Option<&str>,
    body: &str,
) -> Response {
    let mut req = c
        .post(format!("{}{CA}", sim.url()))
        .bearer_auth(token)
        .body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    req.send().await.expect("upload request")
}

async fn call(
    c: &Client,
    sim: &Simulator,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> Response {
    c.request(method, format!("{}{path}", sim.url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

/// The single error of an error envelope, after checking the envelope's shape.
async fn api_error(r: Response) -> (u16, i64) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("error envelope is JSON");
    assert_eq!(v["meta"]["api_status"], "stable", "{v}");
    assert!(v["meta"]["version"].is_string(), "{v}");
    let errors = v["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{v}");
    assert!(errors[0]["title"].is_string(), "{v}");
    (status, errors[0]["code"].as_i64().expect("numeric code"))
}

#[tokio::test]
async fn docs_variant_round_trip_over_https() {
    let sim = start_default().await;
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let c = client(&sim);
    let login = login_response(&c, &sim, "admin", DEFAULT_ADMIN_PASSWORD, None).await;
    assert_eq!(login.status(), StatusCode::OK);
    let v: Value = login.json().await.expect("JSON");
    let expires = v["users"][0]["expires_after"].as_str().expect("expiry");
    // PHP `Y-m-d H:i:sP`: a space between date and time and a +00:00 offset.
    let parsed = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S+00:00", expires)
        .expect("expires_after in PHP format");
    let in_a_week = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * 7))
        .expect("in range")
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime();
    assert!((in_a_week - parsed).get_seconds().abs() < 60, "{expires}");
    assert_eq!(v["meta"]["api_status"], "stable");
    let token = v["users"][0]["token"].as_str().expect("token").to_owned();

    let r = upload(&c, &sim, &token, Some("text/plain"), BUNDLE).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.expect("body"), "null");
    assert_eq!(sim.stored_bundle().as_deref(), Some(BUNDLE));

    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/plain");
    assert!(r.headers().get(CONTENT_DISPOSITION).is_none());
    assert_eq!(r.text().await.expect("body"), BUNDLE);

    let r = call(&c, &sim, reqwest::Method::DELETE, CA, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.expect("body"), "null");
    assert_eq!(sim.stored_bundle(), None);

    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.headers().get(CONTENT_TYPE).is_none());
    assert!(
        r.bytes().await.expect("body").is_empty(),
        "docs: 404 without body"
    );
}

#[tokio::test]
async fn code_variant_headers_bodies_and_json_404() {
    let (sim, c, token) = admin_session(SimConfig {
        variant: Variant::Code,
        ..SimConfig::default()
    })
    .await;

    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(api_error(r).await, (404, 1006));

    let r = upload(&c, &sim, &token, Some("text/plain"), BUNDLE).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("JSON success body");
    assert_eq!(v["meta"]["api_status"], "stable");
    assert!(v.get("errors").is_none());

    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().get(CONTENT_TYPE).is_none(),
        "code sets no Content-Type"
    );
    assert_eq!(
        r.headers()[CONTENT_DISPOSITION],
        "attachment; filename=webhookCaCerts.pem"
    );
    assert_eq!(r.text().await.expect("body"), BUNDLE);
}

#[tokio::test]
async fn success_body_and_delete_of_nothing_are_selectable() {
    let (sim, c, token) = admin_session(SimConfig::default()).await;

    sim.set_success_body(Some(SuccessBody::Empty));
    let r = upload(&c, &sim, &token, Some("text/plain"), BUNDLE).await;
    assert_eq!(r.text().await.expect("body"), "{}");

    sim.set_success_body(Some(SuccessBody::Meta));
    let r = call(&c, &sim, reqwest::Method::DELETE, CA, &token).await;
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["meta"]["api_status"], "stable");

    // Nothing stored now.
    let r = call(&c, &sim, reqwest::Method::DELETE, CA, &token).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "default: deleting nothing succeeds"
    );

    sim.set_delete_missing(DeleteMissing::NotFound);
    let r = call(&c, &sim, reqwest::Method::DELETE, CA, &token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.bytes().await.expect("body").is_empty(), "docs-shaped 404");

    sim.set_variant(Variant::Code);
    let r = call(&c, &sim, reqwest::Method::DELETE, CA, &token).await;
    assert_eq!(api_error(r).await, (404, 1006));
}

#[tokio::test]
async fn upload_requires_exactly_text_plain_and_a_body() {
    let (sim, c, token) = admin_session(SimConfig::default()).await;
    for ct in [
        Some("text/plain; charset=utf-8"),
        Some("application/x-pem-file"),
        None,
    ] {
        let r = upload(&c, &sim, &token, ct, BUNDLE).await;
        assert_eq!(api_error(r).await, (400, 1009), "Content-Type {ct:?}");
    }
    let r = upload(&c, &sim, &token, Some("text/plain"), "").await;
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["errors"][0]["code"], 1008);
    assert_eq!(v["errors"][0]["details"], "No cert data found");
    assert_eq!(
        sim.stored_bundle(),
        None,
        "nothing stored by refused uploads"
    );

    // Not PEM at all: the webapp stores it anyway, and a second upload overwrites.
    let r = upload(&c, &sim, &token, Some("text/plain"), "not a certificate").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = upload(&c, &sim, &token, Some("text/plain"), BUNDLE).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sim.stored_bundle().as_deref(), Some(BUNDLE));
}

#[tokio::test]
async fn wrong_password_is_an_empty_basic_challenge() {
    let sim = start_default().await;
    let c = client(&sim);
    for (user, password) in [("admin", "wrong"), ("nobody", DEFAULT_ADMIN_PASSWORD)] {
        let r = login_response(&c, &sim, user, password, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Basic realm=\"Secured\"");
        assert!(r.bytes().await.expect("body").is_empty());
    }
    let r = c
        .post(format!("{}/v1/users/login", sim.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "no credentials at all"
    );
    assert_eq!(r.headers()[WWW_AUTHENTICATE], "Basic realm=\"Secured\"");
}

#[tokio::test]
async fn factory_password_must_be_changed_at_first_login() {
    let (sim, c) = factory_session().await;
    let r = login_response(&c, &sim, "admin", "secret", None).await;
    assert_eq!(api_error(r).await, (401, 1024));

    let weak = json!({"new_password": "password"});
    let r = login_response(&c, &sim, "admin", "secret", Some(weak)).await;
    assert_eq!(api_error(r).await, (400, 1009));

    let strong = json!({"new_password": "Chang3d-Passw0rd!"});
    let token = token_of(login_response(&c, &sim, "admin", "secret", Some(strong)).await).await;
    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the token is an admin's");

    let r = login_response(&c, &sim, "admin", "secret", None).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "factory password is gone"
    );
    login(&c, &sim, "admin", "Chang3d-Passw0rd!").await;
}

#[tokio::test]
async fn token_is_accepted_through_the_grace_period_then_refused() {
    let sim = start(SimConfig {
        token_lifetime: Duration::from_secs(1),
        token_grace: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    let c = client(&sim);
    let token = login(&c, &sim, "admin", DEFAULT_ADMIN_PASSWORD).await;
    let get = || call(&c, &sim, reqwest::Method::GET, CA, &token);
    assert_eq!(get().await.status(), StatusCode::NOT_FOUND, "valid token");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        get().await.status(),
        StatusCode::NOT_FOUND,
        "expired, in grace"
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(api_error(get().await).await, (401, 1005));
}

#[tokio::test]
async fn missing_or_unknown_tokens_and_non_admins_are_refused() {
    let sim = start(SimConfig {
        users: vec![
            SimUser::admin("admin", DEFAULT_ADMIN_PASSWORD),
            SimUser::regular("viewer", "View-Passw0rd!"),
        ],
        ..SimConfig::default()
    })
    .await;
    let c = client(&sim);
    let r = c
        .get(format!("{}{CA}", sim.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(api_error(r).await, (401, 1005));
    let r = call(&c, &sim, reqwest::Method::GET, CA, "not-a-token").await;
    assert_eq!(api_error(r).await, (401, 1005));

    let viewer = login(&c, &sim, "viewer", "View-Passw0rd!").await;
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = call(&c, &sim, method, CA, &viewer).await;
        assert_eq!(api_error(r).await, (403, 1005));
    }
    let r = upload(&c, &sim, &viewer, Some("text/plain"), BUNDLE).await;
    assert_eq!(api_error(r).await, (403, 1005));
    assert_eq!(sim.stored_bundle(), None);
    let r = call(&c, &sim, reqwest::Method::GET, "/v1/health", &viewer).await;
    assert_eq!(r.status(), StatusCode::OK, "health is not admin-only");
}

#[tokio::test]
async fn logout_revokes_only_the_presented_token() {
    let sim = start_default().await;
    let c = client(&sim);
    let first = login(&c, &sim, "admin", DEFAULT_ADMIN_PASSWORD).await;
    let second = login(&c, &sim, "admin", DEFAULT_ADMIN_PASSWORD).await;
    let r = call(&c, &sim, reqwest::Method::POST, "/v1/users/logout", &first).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = call(&c, &sim, reqwest::Method::GET, CA, &first).await;
    assert_eq!(api_error(r).await, (401, 1005));
    let r = call(&c, &sim, reqwest::Method::GET, CA, &second).await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "the other token still works"
    );
}

#[tokio::test]
async fn more_than_thirty_bad_logins_an_hour_are_rate_limited() {
    let sim = start_default().await;
    let c = client(&sim);
    for _ in 0..30 {
        let r = login_response(&c, &sim, "admin", "wrong", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login_response(&c, &sim, "admin", DEFAULT_ADMIN_PASSWORD, None).await;
    assert!(r.headers().contains_key(RETRY_AFTER));
    assert_eq!(api_error(r).await, (429, 1015));
}

#[tokio::test]
async fn faults_fire_n_times_on_their_path_then_stop() {
    let (sim, c, token) = admin_session(SimConfig::default()).await;
    sim.inject(Fault::error(503, 1016).times(2).on_path(CA).retry_after(7));

    let r = call(&c, &sim, reqwest::Method::GET, "/v1/health", &token).await;
    assert_eq!(r.status(), StatusCode::OK, "other paths are not affected");
    for _ in 0..2 {
        let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
        assert_eq!(r.headers()[RETRY_AFTER], "7");
        assert_eq!(api_error(r).await, (503, 1016));
    }
    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the fault is used up");
    assert!(sim.pending_faults().is_empty());

    sim.inject(Fault::error(500, 1014).on_method("POST"));
    sim.inject(Fault::bare_status(502));
    let r = upload(&c, &sim, &token, Some("text/plain"), BUNDLE).await;
    assert_eq!(api_error(r).await, (500, 1014));
    assert_eq!(sim.stored_bundle(), None, "a faulted upload stores nothing");
    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.bytes().await.expect("body").is_empty());

    let log = sim.requests();
    let faulted: Vec<_> = log.iter().filter(|r| r.fault).map(|r| r.status).collect();
    assert_eq!(faulted, [Some(503), Some(503), Some(500), Some(502)]);
}

#[tokio::test]
async fn disconnect_fault_drops_the_connection_once() {
    let (sim, c, token) = admin_session(SimConfig::default()).await;
    sim.inject(Fault::disconnect().on_path(CA));
    let err = c
        .get(format!("{}{CA}", sim.url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect_err("no answer on a dropped connection");
    assert!(!err.is_status(), "{err}");
    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let statuses: Vec<_> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [None, Some(404)]);
}

#[tokio::test]
async fn a_closed_port_refuses_connections_until_it_is_reopened() {
    let (sim, c, token) = admin_session(SimConfig::default()).await;
    // A pooled keep-alive connection exists now; closing the port must drop it too.
    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    sim.set_stored_bundle(Some("kept".to_owned()));
    sim.close_port().await;
    // The client notices the dropped keep-alive connection when its FIN arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..2 {
        let err = c
            .get(format!("{}{CA}", sim.url()))
            .bearer_auth(&token)
            .send()
            .await
            .expect_err("nothing listens");
        assert!(err.is_connect(), "refused, not answered: {err:?}");
    }
    sim.reopen_port().await.expect("the same port again");
    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(r.status(), StatusCode::OK, "state and tokens survive");
    assert_eq!(r.text().await.expect("body"), "kept");
}

#[tokio::test]
async fn lose_bundle_fault_loses_it_after_the_skipped_reads() {
    let (sim, c, token) = admin_session(SimConfig::default()).await;
    sim.set_stored_bundle(Some("-----BEGIN CERTIFICATE-----\n".to_owned()));
    sim.inject(Fault::lose_bundle().on_path(CA).on_method("GET").after(1));
    let first = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(
        first.status(),
        StatusCode::OK,
        "the first read is let through"
    );
    let second = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(
        second.status(),
        StatusCode::NOT_FOUND,
        "lost, then answered"
    );
    assert_eq!(sim.stored_bundle(), None);
    let faults: Vec<bool> = sim.requests().iter().map(|r| r.fault).collect();
    assert_eq!(faults, [false, true]);
    assert!(sim.pending_faults().is_empty());
}

#[tokio::test]
async fn core_unreachable_fails_certificate_endpoints_with_1014() {
    let (sim, c, token) = admin_session(SimConfig::default()).await;
    sim.set_core_unreachable(true);
    let r = upload(&c, &sim, &token, Some("text/plain"), BUNDLE).await;
    assert_eq!(api_error(r).await, (500, 1014));
    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(api_error(r).await, (500, 1014));
    sim.set_core_unreachable(false);
    let r = upload(&c, &sim, &token, Some("text/plain"), BUNDLE).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn health_single_multi_api_key_and_rate_limit() {
    let (sim, c, token) = admin_session(SimConfig {
        api_key: Some("the-api-key".to_owned()),
        health_rate_limit: Some(RateLimit {
            calls: 10,
            per: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await;
    let url = format!("{}/v1/health", sim.url());

    let v: Value = c
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("JSON");
    assert_eq!(v["health"], json!({"gateway_status": "connected"}));
    assert_eq!(v["meta"]["api_status"], "stable");

    sim.set_health(HealthReport::Multi {
        nodes: vec![
            HealthNode::new("master1:master1", "primary_master", "connected"),
            HealthNode::new("wacore1:wacore1", "coreapp", "connected"),
            HealthNode::unreachable("wacore2:wacore2", "coreapp"),
        ],
    });
    let r = c
        .get(&url)
        .header("Authorization", "Apikey the-api-key")
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(
        v["health"]["master1:master1"],
        json!({"gateway_status": "connected", "role": "primary_master"})
    );
    assert_eq!(v["health"]["wacore1:wacore1"]["role"], "coreapp");
    assert_eq!(v["health"]["wacore2:wacore2"]["errors"][0]["code"], 1014);

    let r = c
        .get(&url)
        .header("Authorization", "Apikey wrong-key")
        .send()
        .await
        .expect("health");
    assert_eq!(api_error(r).await, (401, 1005));

    // Two successful calls so far; eight more fit into the minute.
    for _ in 0..8 {
        let r = c
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("health");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = c
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("health");
    let retry: u64 = r.headers()[RETRY_AFTER]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(api_error(r).await, (429, 1015));
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let (sim, c, token) = admin_session(SimConfig::default()).await;
    let r = c
        .get(format!("{}/v1/health", sim.url()))
        .bearer_auth(&token)
        .header("X-Request-ID", "wco-test-42")
        .send()
        .await
        .expect("health");
    assert_eq!(r.headers()["x-request-id"], "wco-test-42");

    let mut generated = Vec::new();
    for _ in 0..2 {
        let r = login_response(&c, &sim, "admin", "wrong", None).await;
        generated.push(
            r.headers()["x-request-id"]
                .to_str()
                .expect("ASCII")
                .to_owned(),
        );
    }
    assert!(generated.iter().all(|id| !id.is_empty()));
    assert_ne!(generated[0], generated[1]);

    let log = sim.requests();
    assert_eq!(log[0].request_id, "wco-test-42");
    assert!(log[0].request_id_from_client);
    assert_eq!(log[1].request_id, generated[0]);
    assert!(!log[1].request_id_from_client);
}

#[tokio::test]
async fn request_log_describes_requests_but_holds_no_credential() {
    let (sim, c) = factory_session().await;
    let new_password = "Chang3d-Passw0rd!";
    let r = login_response(
        &c,
        &sim,
        "admin",
        "secret",
        Some(json!({"new_password": new_password})),
    )
    .await;
    let token = token_of(r).await;
    upload(&c, &sim, &token, Some("text/plain"), BUNDLE).await;
    c.get(format!("{}/v1/health", sim.url()))
        .header("Authorization", &token) // no scheme: must still not be logged
        .send()
        .await
        .expect("health");

    let log = sim.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].path, "/v1/users/login");
    assert_eq!(log[0].auth_scheme.as_deref(), Some("basic"));
    assert_eq!(log[0].body_sha256, None, "login bodies may hold a password");
    assert_eq!(log[1].method, "POST");
    assert_eq!(log[1].path, CA);
    assert_eq!(log[1].content_type.as_deref(), Some("text/plain"));
    assert_eq!(log[1].body_len, BUNDLE.len());
    assert_eq!(
        log[1].body_sha256,
        Some(hex::encode(Sha256::digest(BUNDLE)))
    );
    assert_eq!(log[1].auth_scheme.as_deref(), Some("bearer"));
    assert_eq!(log[1].status, Some(200));
    assert!(log[2].authorization_present);
    assert_eq!(log[2].auth_scheme.as_deref(), Some("other"));

    let dump = serde_json::to_string(&log).expect("log serializes");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("admin:secret");
    for secret in [token.as_str(), "secret", new_password, basic.as_str()] {
        assert!(!dump.contains(secret), "log holds {secret:?}");
    }
}

#[tokio::test]
async fn two_simulators_run_at_once_with_their_own_ca_and_state() {
    let a = start_default().await;
    let b = start_default().await;
    assert_ne!(a.url(), b.url());
    assert_ne!(a.ca_pem(), b.ca_pem());
    let (ca, cb) = (client(&a), client(&b));
    let ta = a.issue_token("admin").expect("admin exists");
    let tb = b.issue_token("admin").expect("admin exists");
    upload(&ca, &a, &ta, Some("text/plain"), BUNDLE).await;
    assert_eq!(a.stored_bundle().as_deref(), Some(BUNDLE));
    assert_eq!(b.stored_bundle(), None);
    let r = call(&cb, &b, reqwest::Method::GET, CA, &ta).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "tokens are per simulator"
    );
    let r = call(&cb, &b, reqwest::Method::GET, CA, &tb).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let err = ca
        .get(format!("{}/v1/health", b.url()))
        .send()
        .await
        .expect_err("a's CA does not vouch for b");
    assert!(err.is_connect(), "{err}");
    assert_eq!(
        b.requests().len(),
        2,
        "the refused handshake never reached b"
    );
}

#[tokio::test]
async fn certificate_is_valid_for_localhost_too_and_plain_http_works() {
    let (sim, c, token) = admin_session(SimConfig::default()).await;
    let url = format!("https://localhost:{}/v1/health", sim.addr().port());
    let r = c
        .get(url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("TLS for localhost");
    assert_eq!(r.status(), StatusCode::OK);

    let plain = start(SimConfig {
        tls: false,
        ..SimConfig::default()
    })
    .await;
    assert!(plain.url().starts_with("http://127.0.0.1:"));
    assert_eq!(plain.ca_pem(), None);
    let c = client(&plain);
    let token = login(&c, &plain, "admin", DEFAULT_ADMIN_PASSWORD).await;
    let r = call(&c, &plain, reqwest::Method::GET, "/v1/health", &token).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn non_loopback_bind_is_refused() {
    let err = onprem_sim::start(SimConfig {
        bind: "0.0.0.0:0".parse().expect("addr"),
        ..SimConfig::default()
    })
    .await
    .expect_err("refused");
    assert!(matches!(err, SimError::NotLoopback(_)), "{err}");
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let (sim, c, token) = admin_session(SimConfig::default()).await;
    let url = format!("{}/v1/health", sim.url());
    assert_eq!(
        c.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("up")
            .status(),
        StatusCode::OK
    );
    sim.shutdown().await;
    let fresh = Client::builder().no_proxy().build().expect("client");
    let err = fresh.get(&url).send().await.expect_err("nothing listens");
    assert!(err.is_connect(), "{err}");
}

#[tokio::test]
async fn control_api_drives_the_simulator_over_http() {
    let sim = start(SimConfig {
        control_token: Some("ctl-token".to_owned()),
        ..SimConfig::default()
    })
    .await;
    let c = client(&sim);
    let u = |p: &str| format!("{}/_sim/{p}", sim.url());

    let r = c.get(u("requests")).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(u("requests"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = c
        .put(u("bundle"))
        .bearer_auth("ctl-token")
        .body(BUNDLE)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.stored_bundle().as_deref(), Some(BUNDLE));

    let r = c
        .post(u("token"))
        .bearer_auth("ctl-token")
        .json(&json!({"username": "admin"}))
        .send()
        .await
        .expect("token");
    let token = r.json::<Value>().await.expect("JSON")["token"]
        .as_str()
        .expect("token")
        .to_owned();

    let r = c
        .put(u("variant"))
        .bearer_auth("ctl-token")
        .json(&json!({"variant": "code", "delete_missing": "not_found"}))
        .send()
        .await
        .expect("variant");
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["variant"], "code");
    assert_eq!(sim.responses().delete_missing, DeleteMissing::NotFound);

    let fault =
        json!({"kind": "error", "status": 429, "code": 1015, "times": 1, "retry_after_secs": 3});
    let r = c
        .post(u("faults"))
        .bearer_auth("ctl-token")
        .json(&fault)
        .send()
        .await
        .expect("fault");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(r.headers()[RETRY_AFTER], "3");
    assert_eq!(api_error(r).await, (429, 1015));
    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(
        r.headers()[CONTENT_DISPOSITION],
        "attachment; filename=webhookCaCerts.pem"
    );

    let log: Value = c
        .get(u("requests"))
        .bearer_auth("ctl-token")
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("JSON");
    let paths: Vec<_> = log
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["path"].clone())
        .collect();
    assert_eq!(
        paths,
        [json!(CA), json!(CA)],
        "control calls are not logged"
    );

    let disabled = start_default().await;
    let r = client(&disabled)
        .get(format!("{}/_sim/requests", disabled.url()))
        .bearer_auth("ctl-token")
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "no control token, no control API"
    );
}

#[tokio::test]
async fn control_api_sets_core_health_latency_and_revokes_tokens() {
    let (sim, c, token) = admin_session(SimConfig {
        control_token: Some("ctl-token".to_owned()),
        ..SimConfig::default()
    })
    .await;
    let control = |method: reqwest::Method, path: &str| {
        c.request(method, format!("{}/_sim/{path}", sim.url()))
            .bearer_auth("ctl-token")
    };
    let put = |path: &str, body: Value| control(reqwest::Method::PUT, path).json(&body).send();

    put("core", json!({"unreachable": true}))
        .await
        .expect("core");
    let r = call(&c, &sim, reqwest::Method::GET, CA, &token).await;
    assert_eq!(api_error(r).await, (500, 1014));
    put("core", json!({"unreachable": false}))
        .await
        .expect("core");

    let report = json!({"mode": "multi", "nodes": [
        {"name": "wacore1:wacore1", "role": "coreapp", "gateway_status": "connected"},
        {"name": "wacore2:wacore2", "role": "coreapp", "unreachable": true},
    ]});
    let r = put("health", report).await.expect("health");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v: Value = call(&c, &sim, reqwest::Method::GET, "/v1/health", &token)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        v["health"]["wacore1:wacore1"]["gateway_status"],
        "connected"
    );
    assert!(v["health"]["wacore2:wacore2"]["errors"].is_array());

    let fault = json!({"kind": "disconnect", "times": 3, "path": "/v1/users/logout"});
    control(reqwest::Method::POST, "faults")
        .json(&fault)
        .send()
        .await
        .expect("arm");
    let armed: Value = control(reqwest::Method::GET, "faults")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    assert_eq!(armed[0]["kind"], "disconnect");
    assert_eq!(armed[0]["times"], 3);
    control(reqwest::Method::DELETE, "faults")
        .send()
        .await
        .expect("clear");
    assert!(sim.pending_faults().is_empty());
    let bad = json!({"kind": "error", "status": 1016, "code": 1016});
    let r = control(reqwest::Method::POST, "faults")
        .json(&bad)
        .send()
        .await
        .expect("arm");
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "1016 is not an HTTP status"
    );

    // Latency shows as a client timeout, then goes away again.
    put("latency", json!({"millis": 3000}))
        .await
        .expect("latency");
    let err = c
        .get(format!("{}/v1/health", sim.url()))
        .bearer_auth(&token)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("slower than the client waits");
    assert!(err.is_timeout(), "{err}");
    put("latency", json!({"millis": 0})).await.expect("latency");

    let r = control(reqwest::Method::DELETE, "tokens")
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = call(&c, &sim, reqwest::Method::GET, "/v1/health", &token).await;
    assert_eq!(api_error(r).await, (401, 1005), "tokens revoked");

    assert!(!sim.requests().is_empty());
    control(reqwest::Method::DELETE, "requests")
        .send()
        .await
        .expect("clear log");
    assert!(sim.requests().is_empty());
}

/// Stops the spawned simulator (by its own handle) even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Err: it already exited, which is what we want.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_its_url_and_serves_until_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_onprem-sim"))
            .args([
                "--variant",
                "code",
                "--webhook-url",
                "https://hooks.example/wa",
                "--write-ca",
            ])
            .arg(&ca_file)
            .env("WCO_SIM_ADMIN_PASSWORD", "Cli-Passw0rd!")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn simulator"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader task")
    .expect("first line");
    let started: Value = serde_json::from_str(&line).expect("JSON start line");
    let url = started["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let pem = std::fs::read_to_string(&ca_file).expect("CA written");
    let c = client_for(&pem);
    let r = c
        .post(format!("{url}/v1/users/login"))
        .basic_auth("admin", Some("Cli-Passw0rd!"))
        .send()
        .await
        .expect("login");
    let token = token_of(r).await;
    let r = c
        .get(format!("{url}/v1/health"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!("{url}{CA}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(api_error(r).await, (404, 1006), "--variant code applies");
    let r = c
        .get(format!("{url}/v1/settings/application"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("settings");
    let settings: Value = r.json().await.expect("settings JSON");
    assert_eq!(
        settings["settings"]["application"]["webhooks"]["url"], "https://hooks.example/wa",
        "--webhook-url applies"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .expect("wait task")
        .expect("exit status");
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
}

#[tokio::test]
async fn binary_refuses_to_start_without_users() {
    let out = Command::new(env!("CARGO_BIN_EXE_onprem-sim"))
        .env_remove("WCO_SIM_ADMIN_PASSWORD")
        .output()
        .expect("run simulator");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no URL line when not started");
    assert!(String::from_utf8_lossy(&out.stderr).contains("WCO_SIM_ADMIN_PASSWORD"));
}

/// Application settings: the webhook URL in both documented shapes, set by PATCH or by the
/// test, absent when none is configured; admin only.
#[tokio::test]
async fn application_settings_carry_the_webhook_url() {
    const SETTINGS: &str = "/v1/settings/application";
    let (sim, c, token) = admin_session(SimConfig::default()).await;
    let get = |c: Client, url: String, token: String| async move {
        let r = c.get(url).bearer_auth(token).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.expect("JSON")
    };
    let url = format!("{}{SETTINGS}", sim.url());
    let none = get(c.clone(), url.clone(), token.clone()).await;
    assert!(
        none["settings"]["application"]["webhooks"].is_object(),
        "{none}"
    );
    assert!(
        none["settings"]["application"]["webhooks"]
            .get("url")
            .is_none(),
        "{none}"
    );
    assert_eq!(none["meta"]["api_status"], "stable");

    let patched = c
        .patch(&url)
        .bearer_auth(&token)
        .json(&json!({"webhooks": {"url": "https://hooks.example/wa"}}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patched.status(), StatusCode::OK);
    let set = get(c.clone(), url.clone(), token.clone()).await;
    assert_eq!(
        set["settings"]["application"]["webhooks"]["url"],
        "https://hooks.example/wa"
    );
    assert_eq!(
        sim.application_settings().webhook_url.as_deref(),
        Some("https://hooks.example/wa")
    );

    sim.set_application_settings(onprem_sim::ApplicationSettings {
        webhook_url: Some("https://old.example/".into()),
        wrapped: false,
    });
    let bare = get(c.clone(), url.clone(), token.clone()).await;
    assert_eq!(bare["webhooks"]["url"], "https://old.example/", "{bare}");
    assert!(bare.get("settings").is_none());

    let regular = start(SimConfig {
        users: vec![SimUser::regular("viewer", "Viewer-Passw0rd!")],
        ..SimConfig::default()
    })
    .await;
    let viewer = regular.issue_token("viewer").expect("viewer exists");
    let denied = client(&regular)
        .get(format!("{}{SETTINGS}", regular.url()))
        .bearer_auth(viewer)
        .send()
        .await
        .expect("GET");
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
}
