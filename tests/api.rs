//! The On-Premises API client and the `api` CLI against the in-process simulator, over real
//! HTTPS on loopback.

use std::io::Write as _;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use onprem_sim::{
    self as sim, DEFAULT_ADMIN_PASSWORD, DeleteMissing, Fault, HealthNode, HealthReport, SimConfig,
    SimUser, Simulator, SuccessBody, Variant,
};
use test_support::certs::{CertSpec, ca_pem};
use test_support::operator::canonical_bundle;
use test_support::secret_scan::LogCapture;
use webhook_ca_operator::onprem::{
    ApiError, ClientConfig, CredentialSource, Credentials, DeleteOutcome, GatewayStatus, Health,
    NodeRole, OnPremClient, Reason, RetryPolicy, TlsTrust, WEBHOOK_CA_PATH, from_fn,
};

const LOGIN: &str = "/v1/users/login";

// ---------------------------------------------------------------------------------------------
// helpers

async fn start(cfg: SimConfig) -> Simulator {
    webhook_ca_operator::tls::install_crypto_provider();
    sim::start(cfg).await.expect("simulator starts")
}

async fn start_default() -> Simulator {
    start(SimConfig::default()).await
}

fn admin() -> Credentials {
    Credentials::login("admin", DEFAULT_ADMIN_PASSWORD)
}

/// Short backoff so tests do not wait for the production delays; the attempt count is the
/// production default.
fn config_for(sim: &Simulator) -> ClientConfig {
    let mut config = ClientConfig::new(
        sim.url(),
        TlsTrust::CaPem(sim.ca_pem().expect("simulator serves TLS").to_owned()),
    );
    config.retry = RetryPolicy {
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        ..RetryPolicy::default()
    };
    config
}

fn client_with(sim: &Simulator, source: impl CredentialSource + 'static) -> OnPremClient {
    OnPremClient::new(config_for(sim), Arc::new(source)).expect("client builds")
}

fn client(sim: &Simulator) -> OnPremClient {
    client_with(sim, admin())
}

/// How many requests with this method and path the simulator saw.
fn seen(sim: &Simulator, method: &str, path: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .count()
}

/// The statuses answered on `path`, oldest first; `None` where the connection was dropped.
fn statuses(sim: &Simulator, path: &str) -> Vec<Option<u16>> {
    sim.requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.status)
        .collect()
}

fn expect_err<T>(result: Result<T, ApiError>) -> ApiError {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(err) => err,
    }
}

// ---------------------------------------------------------------------------------------------
// response variants

#[tokio::test]
async fn every_documented_response_variant_round_trips() {
    let sim = start_default().await;
    let client = client(&sim);
    let bundle = canonical_bundle(&[&ca_pem("Variant Root A"), &ca_pem("Variant Root B")]);
    for variant in [Variant::Docs, Variant::Code] {
        for body in [SuccessBody::Null, SuccessBody::Empty, SuccessBody::Meta] {
            for delete_missing in [DeleteMissing::Ok, DeleteMissing::NotFound] {
                let case = format!("{variant:?} {body:?} {delete_missing:?}");
                sim.set_variant(variant);
                sim.set_success_body(Some(body));
                sim.set_delete_missing(delete_missing);

                assert_eq!(client.get_webhook_ca().await.expect(&case), None, "{case}");
                client.upload_webhook_ca(&bundle.pem).await.expect(&case);
                let stored = client.get_webhook_ca().await.expect(&case);
                assert_eq!(stored.as_deref(), Some(bundle.pem.as_str()), "{case}");
                assert_eq!(
                    client.delete_webhook_ca().await.expect(&case),
                    DeleteOutcome::Deleted,
                    "{case}"
                );
                let again = client.delete_webhook_ca().await.expect(&case);
                let want = match delete_missing {
                    DeleteMissing::Ok => DeleteOutcome::Deleted,
                    DeleteMissing::NotFound => DeleteOutcome::NothingStored,
                };
                assert_eq!(again, want, "{case}");
                assert_eq!(client.get_webhook_ca().await.expect(&case), None, "{case}");
            }
        }
    }
    // Logged in once for all of it, every request carried the client's request id, and every
    // upload said exactly `text/plain`.
    assert_eq!(seen(&sim, "POST", LOGIN), 1);
    let requests = sim.requests();
    assert!(requests.iter().all(|r| r.request_id_from_client));
    let posts: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == WEBHOOK_CA_PATH)
        .collect();
    assert_eq!(posts.len(), 12);
    for post in posts {
        assert_eq!(post.content_type.as_deref(), Some("text/plain"));
        assert_eq!(post.auth_scheme.as_deref(), Some("bearer"));
        assert_eq!(post.status, Some(200));
    }
}

#[tokio::test]
async fn request_ids_are_unique_uuids() {
    let sim = start_default().await;
    let client = client(&sim);
    client.get_webhook_ca().await.expect("get");
    client.get_webhook_ca().await.expect("get");
    let ids: Vec<String> = sim.requests().into_iter().map(|r| r.request_id).collect();
    assert_eq!(ids.len(), 3, "login and two GETs");
    for id in &ids {
        let parsed = uuid::Uuid::parse_str(id).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 4);
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len());
}

// ---------------------------------------------------------------------------------------------
// authentication

#[tokio::test]
async fn a_refused_token_costs_one_relogin() {
    let sim = start_default().await;
    let client = client(&sim);
    client.get_webhook_ca().await.expect("first get");
    sim.revoke_tokens();
    client.get_webhook_ca().await.expect("get after revocation");
    assert_eq!(seen(&sim, "POST", LOGIN), 2);
    let statuses = statuses(&sim, WEBHOOK_CA_PATH);
    assert_eq!(statuses, [Some(404), Some(401), Some(404)]);
}

#[tokio::test]
async fn concurrent_calls_share_one_login() {
    let sim = start_default().await;
    let client = client(&sim);
    let calls = (0..5).map(|_| {
        let client = client.clone();
        async move { client.get_webhook_ca().await }
    });
    for result in futures::future::join_all(calls).await {
        assert_eq!(result.expect("get"), None);
    }
    assert_eq!(seen(&sim, "POST", LOGIN), 1);
    assert_eq!(seen(&sim, "GET", WEBHOOK_CA_PATH), 5);
}

#[tokio::test]
async fn a_persistent_401_gives_up_after_one_relogin() {
    let sim = start_default().await;
    let client = client(&sim);
    sim.inject(Fault::error(401, 1005).times(5).on_path(WEBHOOK_CA_PATH));
    let err = expect_err(client.get_webhook_ca().await);
    assert_eq!(err.reason(), Reason::Unauthorized, "{err}");
    assert!(!err.is_transient());
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.code(), Some(1005));
    assert_eq!(seen(&sim, "POST", LOGIN), 2);
    assert_eq!(seen(&sim, "GET", WEBHOOK_CA_PATH), 2);
    let request_id = err.request_id().expect("request id");
    assert!(err.to_string().contains(request_id));
}

#[tokio::test]
async fn wrong_password_is_unauthorized_without_retries() {
    let sim = start_default().await;
    let client = client_with(&sim, Credentials::login("admin", "Wrong-Passw0rd!"));
    let err = expect_err(client.get_webhook_ca().await);
    assert_eq!(err.reason(), Reason::Unauthorized, "{err}");
    assert!(
        err.to_string().contains("check the username and password"),
        "{err}"
    );
    assert_eq!(seen(&sim, "POST", LOGIN), 1);
    assert_eq!(seen(&sim, "GET", WEBHOOK_CA_PATH), 0);
}

#[tokio::test]
async fn password_change_required_says_what_to_do() {
    let sim = start(SimConfig {
        users: vec![SimUser::factory_admin()],
        ..SimConfig::default()
    })
    .await;
    let client = client_with(&sim, Credentials::login("admin", sim::FACTORY_PASSWORD));
    let err = expect_err(client.get_webhook_ca().await);
    assert_eq!(err.reason(), Reason::PasswordChangeRequired, "{err}");
    assert_eq!(err.metric_label(), "PasswordChangeRequired");
    assert_eq!(err.code(), Some(1024));
    let text = err.to_string();
    assert!(text.contains("new_password") && text.contains("store the new password"));
    assert_eq!(seen(&sim, "POST", LOGIN), 1);
}

#[tokio::test]
async fn a_non_admin_is_forbidden() {
    let sim = start(SimConfig {
        users: vec![SimUser::regular("viewer", "View-Passw0rd!")],
        ..SimConfig::default()
    })
    .await;
    let client = client_with(&sim, Credentials::login("viewer", "View-Passw0rd!"));
    let err = expect_err(client.upload_webhook_ca(&ca_pem("Forbidden Root")).await);
    assert_eq!(err.reason(), Reason::Forbidden, "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("admin"), "{err}");
    assert_eq!(seen(&sim, "POST", WEBHOOK_CA_PATH), 1);
    assert_eq!(sim.stored_bundle(), None);
}

#[tokio::test]
async fn an_expiring_token_is_renewed_before_it_is_refused() {
    let sim = start(SimConfig {
        token_lifetime: Duration::from_secs(2),
        token_grace: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim);
    client.get_webhook_ca().await.expect("first get");
    client
        .get_webhook_ca()
        .await
        .expect("second get, cached token");
    assert_eq!(seen(&sim, "POST", LOGIN), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client.get_webhook_ca().await.expect("get after expiry");
    assert_eq!(seen(&sim, "POST", LOGIN), 2);
    // Renewed ahead of time: the server never had to refuse the old token.
    assert!(sim.requests().iter().all(|r| r.status != Some(401)));
}

#[tokio::test]
async fn a_rotated_password_is_used_by_the_next_login() {
    let sim = start_default().await;
    let current = Arc::new(Mutex::new(admin()));
    let source = {
        let current = Arc::clone(&current);
        from_fn(move || {
            let creds = current.lock().expect("lock").clone();
            async move { Ok(creds) }
        })
    };
    let client = client_with(&sim, source);
    client
        .get_webhook_ca()
        .await
        .expect("get with the first password");

    // Rotate the password on the server as an administrator would, then in the source.
    let new_password = "Rotated-Passw0rd!";
    change_password(&sim, DEFAULT_ADMIN_PASSWORD, new_password).await;
    *current.lock().expect("lock") = Credentials::login("admin", new_password);

    client
        .get_webhook_ca()
        .await
        .expect("get with the new password");
    let client_logins = sim
        .requests()
        .iter()
        .filter(|r| r.path == LOGIN && r.request_id_from_client)
        .map(|r| r.status)
        .collect::<Vec<_>>();
    // The cached token was still valid; only the changed credentials made the client log in.
    assert_eq!(client_logins, [Some(200), Some(200)]);

    // And a source that now hands out a wrong password fails the next login.
    *current.lock().expect("lock") = Credentials::login("admin", "Stale-Passw0rd!");
    let err = expect_err(client.get_webhook_ca().await);
    assert_eq!(err.reason(), Reason::Unauthorized, "{err}");
}

/// Changes the admin password with a plain login carrying `new_password`, outside the client.
async fn change_password(sim: &Simulator, old: &str, new: &str) {
    let ca = reqwest::Certificate::from_pem(sim.ca_pem().expect("TLS").as_bytes()).expect("CA");
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("http client");
    let response = http
        .post(format!("{}{LOGIN}", sim.url()))
        .basic_auth("admin", Some(old))
        .json(&serde_json::json!({ "new_password": new }))
        .send()
        .await
        .expect("login request");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn a_static_token_is_used_as_is() {
    let sim = start_default().await;
    let token = sim.issue_token("admin").expect("token");
    let client = client_with(&sim, Credentials::token(token));
    client
        .upload_webhook_ca(&ca_pem("Token Root"))
        .await
        .expect("upload");
    assert_eq!(seen(&sim, "POST", LOGIN), 0);
    sim.revoke_tokens();
    let err = expect_err(client.get_webhook_ca().await);
    assert_eq!(err.reason(), Reason::Unauthorized, "{err}");
    assert!(err.to_string().contains("token was refused"), "{err}");
    assert_eq!(seen(&sim, "POST", LOGIN), 0);
}

#[tokio::test]
async fn a_failing_credential_source_is_reported_without_a_request() {
    let sim = start_default().await;
    let source = from_fn(|| async {
        Err(webhook_ca_operator::onprem::CredentialError::new(
            "Secret whatsapp/wa-admin not found",
        ))
    });
    let client = client_with(&sim, source);
    let err = expect_err(client.get_webhook_ca().await);
    assert_eq!(err.reason(), Reason::Credentials);
    assert!(err.to_string().contains("wa-admin"), "{err}");
    assert!(sim.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// errors and retries

#[tokio::test]
async fn an_empty_400_is_not_retried() {
    let sim = start_default().await;
    let client = client(&sim);
    sim.inject(
        Fault::bare_status(400)
            .on_path(WEBHOOK_CA_PATH)
            .on_method("POST"),
    );
    let err = expect_err(client.upload_webhook_ca(&ca_pem("Bad Request Root")).await);
    assert_eq!(err.reason(), Reason::BadRequest, "{err}");
    assert_eq!(err.code(), None);
    assert_eq!(seen(&sim, "POST", WEBHOOK_CA_PATH), 1);
}

#[tokio::test]
async fn a_content_type_the_webapp_refuses_is_a_bad_request() {
    // What the client would get if it added a charset: checks the 400/1009 path end to end.
    let sim = start_default().await;
    sim.inject(
        Fault::error(400, 1009)
            .on_path(WEBHOOK_CA_PATH)
            .on_method("POST"),
    );
    let err = expect_err(client(&sim).upload_webhook_ca(&ca_pem("Root")).await);
    assert_eq!(err.reason(), Reason::BadRequest);
    assert_eq!(err.code(), Some(1009));
    assert!(err.to_string().contains("code 1009"), "{err}");
}

#[tokio::test]
async fn a_503_is_retried_until_success() {
    let sim = start_default().await;
    let client = client(&sim);
    let pem = ca_pem("Retry Root");
    sim.inject(Fault::error(503, 1016).times(2).on_path(WEBHOOK_CA_PATH));
    client.upload_webhook_ca(&pem).await.expect("upload");
    let attempts: Vec<(Option<u16>, bool)> = sim
        .requests()
        .iter()
        .filter(|r| r.path == WEBHOOK_CA_PATH)
        .map(|r| (r.status, r.fault))
        .collect();
    assert_eq!(
        attempts,
        [(Some(503), true), (Some(503), true), (Some(200), false)]
    );
    assert_eq!(sim.stored_bundle().as_deref(), Some(pem.as_str()));
}

#[tokio::test]
async fn core_unreachable_is_retried_then_reported_as_unavailable() {
    let sim = start_default().await;
    let client = client(&sim);
    sim.set_core_unreachable(true);
    let err = expect_err(client.get_webhook_ca().await);
    assert_eq!(err.reason(), Reason::Unavailable, "{err}");
    assert_eq!(err.code(), Some(1014));
    assert!(err.is_transient());
    assert_eq!(
        seen(&sim, "GET", WEBHOOK_CA_PATH),
        RetryPolicy::default().max_attempts as usize
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let sim = start_default().await;
    let client = client(&sim);
    client.get_webhook_ca().await.expect("log in first");
    sim.inject(
        Fault::error(429, 1015)
            .retry_after(1)
            .on_path(WEBHOOK_CA_PATH),
    );
    let started = Instant::now();
    client.get_webhook_ca().await.expect("get after 429");
    // The backoff without the header is at most 50 ms here; only the header explains a second.
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(seen(&sim, "GET", WEBHOOK_CA_PATH), 3);
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let sim = start_default().await;
    let client = client(&sim);
    sim.inject(Fault::disconnect().on_path(WEBHOOK_CA_PATH));
    assert_eq!(client.get_webhook_ca().await.expect("get"), None);
    let statuses = statuses(&sim, WEBHOOK_CA_PATH);
    assert_eq!(statuses, [None, Some(404)]);
}

#[tokio::test]
async fn a_slow_api_times_out() {
    let sim = start_default().await;
    let mut config = config_for(&sim);
    config.request_timeout = Duration::from_millis(300);
    config.retry = RetryPolicy::none();
    let client = OnPremClient::new(config, Arc::new(admin())).expect("client");
    sim.set_latency(Duration::from_secs(2));
    let err = expect_err(client.get_webhook_ca().await);
    assert_eq!(err.reason(), Reason::Timeout, "{err}");
    assert!(err.is_transient());
}

// ---------------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn another_ca_is_refused() {
    let sim = start_default().await;
    let other = start_default().await;
    let config = ClientConfig {
        tls: TlsTrust::CaPem(other.ca_pem().expect("TLS").to_owned()),
        ..config_for(&sim)
    };
    let client = OnPremClient::new(config, Arc::new(admin())).expect("client");
    assert!(!client.tls_verification_disabled());
    let err = expect_err(client.get_webhook_ca().await);
    assert_eq!(err.reason(), Reason::Tls, "{err}");
    assert!(!err.is_transient());
    assert!(
        sim.requests().is_empty(),
        "no request may pass the handshake"
    );
}

#[tokio::test]
async fn system_roots_do_not_trust_the_simulator() {
    let sim = start_default().await;
    let config = ClientConfig {
        tls: TlsTrust::SystemRoots,
        ..config_for(&sim)
    };
    let client = OnPremClient::new(config, Arc::new(admin())).expect("client");
    let err = expect_err(client.get_webhook_ca().await);
    assert_eq!(err.reason(), Reason::Tls, "{err}");
}

#[tokio::test]
async fn insecure_works_and_says_so() {
    let sim = start_default().await;
    let config = ClientConfig {
        tls: TlsTrust::InsecureSkipVerify,
        ..config_for(&sim)
    };
    let client = OnPremClient::new(config, Arc::new(admin())).expect("client");
    assert!(client.tls_verification_disabled());
    assert_eq!(client.get_webhook_ca().await.expect("get"), None);
}

// ---------------------------------------------------------------------------------------------
// health

#[tokio::test]
async fn health_single_and_multi_node() {
    let sim = start_default().await;
    let client = client(&sim);
    let single = client.health().await.expect("health");
    assert_eq!(
        single,
        Health::Single {
            gateway_status: GatewayStatus::Connected
        }
    );
    sim.set_health(HealthReport::Multi {
        nodes: vec![
            HealthNode::new("master1:master1", "primary_master", "connected"),
            HealthNode::new("wacore1:wacore1", "coreapp", "connected"),
            HealthNode::new("wacore2:wacore2", "coreapp", "disconnected"),
            HealthNode::unreachable("master2:master2", "secondary_master"),
        ],
    });
    let Health::Nodes(nodes) = client.health().await.expect("health") else {
        panic!("expected a multi-node answer");
    };
    let summary: Vec<(&str, Option<&GatewayStatus>)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.gateway_status.as_ref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("master1:master1", Some(&GatewayStatus::Connected)),
            ("master2:master2", None),
            ("wacore1:wacore1", Some(&GatewayStatus::Connected)),
            ("wacore2:wacore2", Some(&GatewayStatus::Disconnected)),
        ]
    );
    assert_eq!(nodes[0].role, Some(NodeRole::PrimaryMaster));
    assert!(!nodes[1].errors.is_empty());
}

#[tokio::test]
async fn health_rate_limit_is_waited_out() {
    let sim = start(SimConfig {
        health_rate_limit: Some(sim::RateLimit {
            calls: 1,
            per: Duration::from_secs(1),
        }),
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim);
    client.health().await.expect("first health");
    client
        .health()
        .await
        .expect("second health, after Retry-After");
    let statuses = statuses(&sim, "/v1/health");
    assert_eq!(statuses.first(), Some(&Some(200)));
    assert_eq!(statuses.last(), Some(&Some(200)));
    assert!(statuses.contains(&Some(429)), "{statuses:?}");
}

/// The operator asks health once per rollout and per drift check: a 429 (or a 503) must come
/// back to it at once, not be retried into more of the API's 10 calls a minute.
#[tokio::test]
async fn health_once_does_not_retry_a_rate_limit() {
    let sim = start(SimConfig {
        health_rate_limit: Some(sim::RateLimit {
            calls: 1,
            per: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim);
    let first = client.health_once().await.expect("first health");
    assert!(first.is_connected());
    let err = expect_err(client.health_once().await);
    assert_eq!(err.reason(), Reason::RateLimited);
    sim.inject(Fault::error(503, 1016).on_path("/v1/health"));
    let err = expect_err(client.health_once().await);
    assert_eq!(err.reason(), Reason::Unavailable);
    assert_eq!(
        statuses(&sim, "/v1/health"),
        [Some(200), Some(429), Some(503)],
        "one request per question"
    );
}

// ---------------------------------------------------------------------------------------------
// secrets

#[tokio::test]
async fn no_secret_reaches_logs_or_errors() {
    let capture = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let capture = capture.clone();
            move || capture.clone()
        })
        .finish();
    // This test runs on tokio's current-thread runtime, so the client's and the simulator's
    // tasks all log through this thread-local subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = start_default().await;
    let client = client(&sim);
    let cert = ca_pem("Secret Test Root");
    let mut errors: Vec<ApiError> = Vec::new();

    client.upload_webhook_ca(&cert).await.expect("upload");
    client.get_webhook_ca().await.expect("get");
    sim.revoke_tokens();
    client.get_webhook_ca().await.expect("get after re-login");
    sim.inject(Fault::error(400, 1009).on_path(WEBHOOK_CA_PATH));
    errors.push(expect_err(client.upload_webhook_ca(&cert).await));

    let wrong = "Wrong-Passw0rd!";
    let bad_login = client_with(&sim, Credentials::login("admin", wrong));
    errors.push(expect_err(bad_login.get_webhook_ca().await));

    let token = sim.issue_token("admin").expect("token");
    let token_client = client_with(&sim, Credentials::token(token.clone()));
    token_client.get_webhook_ca().await.expect("get with token");
    sim.revoke_tokens();
    errors.push(expect_err(token_client.get_webhook_ca().await));

    let insecure = OnPremClient::new(
        ClientConfig {
            tls: TlsTrust::InsecureSkipVerify,
            ..config_for(&sim)
        },
        Arc::new(admin()),
    )
    .expect("client");
    insecure.get_webhook_ca().await.expect("insecure get");

    let logs = capture.text();
    // The capture works: request lines and the insecure warning are there.
    assert!(logs.contains("On-Premises API call"), "{logs}");
    assert!(logs.contains(WEBHOOK_CA_PATH));
    assert!(logs.contains("DISABLED"));

    let basic = |user: &str, password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    // A line of the certificate's base64 body.
    let cert_line = cert
        .lines()
        .nth(2)
        .expect("a certificate body line")
        .to_owned();
    let secrets = [
        DEFAULT_ADMIN_PASSWORD.to_owned(),
        wrong.to_owned(),
        token.clone(),
        basic("admin", DEFAULT_ADMIN_PASSWORD),
        basic("admin", wrong),
        cert_line,
    ];
    let error_texts: Vec<String> = errors
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}")])
        .chain([format!("{:?}", admin()), format!("{client:?}")])
        .collect();
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
        for text in &error_texts {
            assert!(!text.contains(secret.as_str()), "a secret is in {text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the CLI

const BIN: &str = env!("CARGO_BIN_EXE_webhook-ca-operator");

struct CliSetup {
    dir: tempfile::TempDir,
    sim: Simulator,
}

impl CliSetup {
    async fn new() -> Self {
        let sim = start_default().await;
        let dir = tempfile::tempdir().expect("temp dir");
        write_file(&dir.path().join("sim-ca.pem"), sim.ca_pem().expect("TLS"));
        CliSetup { dir, sim }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn file(&self, name: &str, content: &str) -> String {
        write_file(&self.dir.path().join(name), content);
        self.path(name)
    }

    /// Runs `webhook-ca-operator api ARGS` with the admin's credentials in the environment.
    async fn api(&self, args: &[&str]) -> Output {
        self.api_with_env(
            args,
            &[
                ("WA_API_USERNAME", "admin"),
                ("WA_API_PASSWORD", DEFAULT_ADMIN_PASSWORD),
            ],
        )
        .await
    }

    async fn api_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = std::process::Command::new(BIN);
        command
            .arg("api")
            .args([
                "--url",
                &self.sim.url(),
                "--ca-file",
                &self.path("sim-ca.pem"),
            ])
            .args(args);
        for var in [
            "WA_API_URL",
            "WA_API_USERNAME",
            "WA_API_PASSWORD",
            "WA_API_TOKEN",
            "RUST_LOG",
        ] {
            command.env_remove(var);
        }
        command.envs(env.iter().copied());
        // The simulator runs on this test's runtime: wait for the process off that thread.
        tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
            .await
            .expect("join")
    }
}

fn write_file(path: &Path, content: &str) {
    let mut file = std::fs::File::create(path).expect("create file");
    file.write_all(content.as_bytes()).expect("write file");
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn cli_push_get_delete_with_env_credentials() {
    let setup = CliSetup::new().await;
    let (a, b) = (ca_pem("CLI Root A"), ca_pem("CLI Root B"));
    let file_a = setup.file("a.pem", &a);
    let file_b = setup.file("b.pem", &format!("some prose\n{b}\n{a}"));
    let expected = canonical_bundle(&[&a, &b]);

    let push = setup.api(&["push", &file_a, &file_b]).await;
    assert!(push.status.success(), "{}", stderr(&push));
    assert!(
        stdout(&push).contains(&expected.sha256),
        "{}",
        stdout(&push)
    );
    assert_eq!(
        setup.sim.stored_bundle().as_deref(),
        Some(expected.pem.as_str())
    );
    let upload = setup
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == WEBHOOK_CA_PATH)
        .expect("an upload");
    assert_eq!(upload.content_type.as_deref(), Some("text/plain"));

    let get = setup.api(&["get"]).await;
    assert_eq!(get.status.code(), Some(0), "{}", stderr(&get));
    assert_eq!(stdout(&get), expected.pem);

    let delete = setup.api(&["delete"]).await;
    assert_eq!(delete.status.code(), Some(0), "{}", stderr(&delete));
    assert_eq!(setup.sim.stored_bundle(), None);

    let get = setup.api(&["get"]).await;
    assert_eq!(get.status.code(), Some(3), "{}", stderr(&get));
    assert_eq!(stdout(&get), "");
    assert!(stderr(&get).contains("no webhook CA bundle is stored"));
}

#[tokio::test]
async fn cli_token_from_file() {
    let setup = CliSetup::new().await;
    let token = setup.sim.issue_token("admin").expect("token");
    let token_file = setup.file("token", &format!("{token}\n"));
    let health = setup
        .api_with_env(&["health", "--token-file", &token_file], &[])
        .await;
    assert_eq!(health.status.code(), Some(0), "{}", stderr(&health));
    assert_eq!(stdout(&health), "gateway_status: connected\n");
    assert_eq!(seen(&setup.sim, "POST", LOGIN), 0);
}

#[tokio::test]
async fn cli_dry_run_sends_no_post() {
    let setup = CliSetup::new().await;
    let pem = ca_pem("Dry Run Root");
    let file = setup.file("root.pem", &pem);

    let dry = setup.api(&["push", "--dry-run", &file]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let text = stdout(&dry);
    assert!(text.contains("would upload 1 certificate(s)"), "{text}");
    assert!(text.contains("CN=Dry Run Root"), "{text}");
    assert!(text.contains("stored: none"), "{text}");

    // Stored with other whitespace: the same content, so nothing to do.
    setup.sim.set_stored_bundle(Some(pem.replace('\n', "\r\n")));
    let same = setup.api(&["push", "--dry-run", &file]).await;
    assert!(
        stdout(&same).contains("stored: same certificates"),
        "{}",
        stdout(&same)
    );

    setup.sim.set_stored_bundle(Some(ca_pem("Other Root")));
    let differs = setup.api(&["push", "--dry-run", &file]).await;
    assert!(
        stdout(&differs).contains("stored: differs"),
        "{}",
        stdout(&differs)
    );

    assert_eq!(seen(&setup.sim, "POST", WEBHOOK_CA_PATH), 0);
    assert_eq!(seen(&setup.sim, "GET", WEBHOOK_CA_PATH), 3);
}

#[tokio::test]
async fn cli_refuses_a_key_before_any_request() {
    let setup = CliSetup::new().await;
    let keyed = CertSpec::ca("Keyed Root").self_signed();
    let file = setup.file("tls.pem", &format!("{}{}", keyed.pem, keyed.key_pem));
    let push = setup.api(&["push", &file]).await;
    assert_eq!(push.status.code(), Some(1));
    assert!(stderr(&push).contains("private key"), "{}", stderr(&push));
    assert!(setup.sim.requests().is_empty());
}

#[tokio::test]
async fn cli_errors_are_one_line_with_reason_and_request_id() {
    let setup = CliSetup::new().await;
    let wrong = "Wrong-Passw0rd!";
    let get = setup
        .api_with_env(
            &["get"],
            &[("WA_API_USERNAME", "admin"), ("WA_API_PASSWORD", wrong)],
        )
        .await;
    assert_eq!(get.status.code(), Some(1));
    let err = stderr(&get);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("Unauthorized"), "{err}");
    let login = setup
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path == LOGIN)
        .expect("a login");
    assert!(err.contains(&login.request_id), "{err}");
    assert!(!err.contains(wrong));
}

#[tokio::test]
async fn cli_takes_no_secrets_from_arguments() {
    let setup = CliSetup::new().await;
    let get = setup.api(&["get", "--password", "Passw0rd!"]).await;
    assert_eq!(get.status.code(), Some(2), "{}", stderr(&get));
    let no_creds = setup.api_with_env(&["get"], &[]).await;
    assert_eq!(no_creds.status.code(), Some(2));
    assert!(
        stderr(&no_creds).contains("WA_API_PASSWORD"),
        "{}",
        stderr(&no_creds)
    );
    assert!(setup.sim.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// plain http, only when explicitly allowed

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    let sim = start(SimConfig {
        tls: false,
        ..SimConfig::default()
    })
    .await;
    assert!(sim.url().starts_with("http://"), "{}", sim.url());

    let refused = OnPremClient::new(
        ClientConfig::new(sim.url(), TlsTrust::SystemRoots),
        Arc::new(admin()),
    )
    .expect_err("an http URL must be refused by default");
    assert_eq!(refused.reason(), Reason::Config, "{refused}");

    let mut config = ClientConfig::new(sim.url(), TlsTrust::SystemRoots);
    config.allow_plain_http = true;
    let client = OnPremClient::new(config, Arc::new(admin())).expect("allowed explicitly");
    client
        .upload_webhook_ca(&ca_pem("plain http CA"))
        .await
        .expect("upload over plain http");
    assert!(sim.stored_bundle().is_some());
    assert_eq!(seen(&sim, "POST", WEBHOOK_CA_PATH), 1);
}

// ---------------------------------------------------------------------------------------------
// application settings and the webhook trust check

#[tokio::test]
async fn the_webhook_url_is_read_from_either_settings_shape() {
    let sim = start_default().await;
    let client = client(&sim);
    assert_eq!(client.webhook_url().await.expect("settings"), None);
    sim.set_webhook_url(Some("https://hooks.example:8443/wa".into()));
    assert_eq!(
        client.webhook_url().await.expect("settings").as_deref(),
        Some("https://hooks.example:8443/wa")
    );
    sim.set_application_settings(onprem_sim::ApplicationSettings {
        webhook_url: Some("https://old.example/".into()),
        wrapped: false,
    });
    assert_eq!(
        client
            .webhook_url()
            .await
            .expect("unwrapped settings")
            .as_deref(),
        Some("https://old.example/")
    );
}

#[tokio::test]
async fn a_non_admin_cannot_read_the_settings() {
    let sim = start(SimConfig {
        users: vec![SimUser::regular("viewer", "Viewer-Passw0rd!")],
        ..SimConfig::default()
    })
    .await;
    let client = client_with(&sim, Credentials::login("viewer", "Viewer-Passw0rd!"));
    let err = expect_err(client.webhook_url().await);
    assert_eq!(err.status(), Some(403), "{err}");
}

/// A webhook server on loopback presenting a `localhost` certificate signed by `ca`.
async fn webhook_signed_by(ca: &test_support::certs::Cert) -> test_support::webhook::WebhookServer {
    let leaf = CertSpec::leaf("webhook.test")
        .dns("localhost")
        .signed_by(ca);
    test_support::webhook::WebhookServer::start(&leaf.pem, &leaf.key_pem).await
}

#[tokio::test]
async fn cli_push_refuses_a_bundle_the_webhook_server_would_not_be_trusted_by() {
    let setup = CliSetup::new().await;
    let (a, b) = (
        CertSpec::ca("CLI Hook A").self_signed(),
        CertSpec::ca("CLI Hook B").self_signed(),
    );
    let webhook = webhook_signed_by(&a).await;
    setup.sim.set_webhook_url(Some(webhook.url("localhost")));
    let (file_a, file_b) = (setup.file("a.pem", &a.pem), setup.file("b.pem", &b.pem));

    let refused = setup.api(&["push", &file_b]).await;
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(
        err.contains("UntrustedChain") && err.contains("CN=CLI Hook A"),
        "{err}"
    );
    assert_eq!(
        seen(&setup.sim, "POST", WEBHOOK_CA_PATH),
        0,
        "nothing uploaded"
    );

    let dry = setup.api(&["push", "--dry-run", &file_b]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("push would refuse"),
        "{}",
        stdout(&dry)
    );

    let trusted = setup.api(&["push", &file_a]).await;
    assert_eq!(trusted.status.code(), Some(0), "{}", stderr(&trusted));
    assert!(stderr(&trusted).contains("Trusted"), "{}", stderr(&trusted));
    assert_eq!(
        setup.sim.stored_bundle(),
        Some(canonical_bundle(&[&a.pem]).pem)
    );

    let skipped = setup.api(&["push", "--skip-webhook-check", &file_b]).await;
    assert_eq!(skipped.status.code(), Some(0), "{}", stderr(&skipped));
    assert_eq!(
        setup.sim.stored_bundle(),
        Some(canonical_bundle(&[&b.pem]).pem)
    );
    assert_eq!(webhook.requests(), 0, "only handshakes, no request");
}

#[tokio::test]
async fn cli_webhook_check_prints_the_verdict_and_exits_by_it() {
    let setup = CliSetup::new().await;
    let (a, b) = (
        CertSpec::ca("Check A").self_signed(),
        CertSpec::ca("Check B").self_signed(),
    );
    let webhook = webhook_signed_by(&a).await;
    let (file_a, file_b) = (setup.file("a.pem", &a.pem), setup.file("b.pem", &b.pem));
    let url = webhook.url("localhost");

    // With --webhook-url: no API, no credentials.
    let trusted = setup
        .api_with_env(&["webhook-check", "--webhook-url", &url, &file_a], &[])
        .await;
    assert_eq!(trusted.status.code(), Some(0), "{}", stderr(&trusted));
    let text = stdout(&trusted);
    assert!(text.contains("webhook trust: trusted (Trusted)"), "{text}");
    assert!(text.contains("anchored by: CN=Check A"), "{text}");
    assert!(text.contains("issuer CN=Check A"), "{text}");
    assert!(setup.sim.requests().is_empty(), "the API was not asked");

    let untrusted = setup
        .api_with_env(&["webhook-check", "--webhook-url", &url, &file_b], &[])
        .await;
    assert_eq!(untrusted.status.code(), Some(4), "{}", stdout(&untrusted));
    assert!(
        stdout(&untrusted).contains("UntrustedChain"),
        "{}",
        stdout(&untrusted)
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let nowhere = format!("https://127.0.0.1:{}/", closed.port());
    let unknown = setup
        .api_with_env(&["webhook-check", "--webhook-url", &nowhere, &file_a], &[])
        .await;
    assert_eq!(unknown.status.code(), Some(5), "{}", stdout(&unknown));
    assert!(
        stdout(&unknown).contains("Unreachable"),
        "{}",
        stdout(&unknown)
    );

    // Without: the URL comes from the API's settings.
    setup.sim.set_webhook_url(Some(url));
    let from_settings = setup.api(&["webhook-check", &file_a]).await;
    assert_eq!(
        from_settings.status.code(),
        Some(0),
        "{}",
        stderr(&from_settings)
    );
    assert_eq!(webhook.requests(), 0);
}
