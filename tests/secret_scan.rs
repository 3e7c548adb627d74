//! The secret scan (issue 12): the controller runs a set of scenarios that handle every kind of
//! secret the operator meets, with its logs captured at debug level (every crate, JSON lines, as
//! `run --log-level debug` writes them); then its logs, every Event and every resource status
//! in the cluster, and its /metrics are searched for those secrets in every form that would give
//! them away (`test_support::secret_scan`). The scenarios:
//!
//! - a login Secret with a wrong password (refused login), then the right one (logins, uploads);
//! - a source Secret holding a private key next to the CA (refused), then restored;
//! - a `kubernetes.io/tls` Secret with its key named as a source without `key:` (refused);
//! - a token Secret (a static bearer token), used, then revoked on the API (refused);
//! - the bearer tokens the API issued to the operator's logins, one of them revoked (the operator
//!   logs in again), and the cleanup of `deletionPolicy: Delete` (a DELETE with the token).
//!
//! A planted value proves the scan can fail: after the real scan comes up clean, a password is
//! logged, a token written into an Event and a key line into a resource's status through the
//! same paths, and the same scan must find exactly those three.
//!
//! The other test binaries are covered by the scan after the tests (`hack/test.sh` runs
//! `scan-test-logs`, `test_support::test_logs`): each keeps its debug log, the logs of the
//! operator processes it ran and every test namespace's Events and statuses (dumped before the
//! namespace is deleted) in `target/test-logs`, with the passwords, tokens and keys it used.
//! This binary keeps out of that (`test_logs::keep_out`): its planted values would be findings
//! there, and it scans itself.
//!
//! One test in this binary: it installs the process-wide tracing subscriber.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use onprem_sim::{DEFAULT_ADMIN_PASSWORD, SimConfig, SimUser};
use serde_json::json;
use test_support::certs::{CertSpec, ca_pem, key_pem};
use test_support::controller::Operator;
use test_support::operator::{
    Setup, apply_named_wcc, apply_wcc, set_secret, setup_with, spec, wait_condition,
    wait_named_condition,
};
use test_support::secret_scan::{Finding, LogCapture, Secret, scan};
use test_support::{test_logs, wait_for};
use webhook_ca_operator::crd::WebhookCaCertificate;

/// The admin password of this test's API (JSON-special characters, so an escaped form counts).
const PASSWORD: &str = r#"Scan-"Passw0rd\-7"#;

/// The subscriber `webhook_ca_operator::telemetry::init(LogFormat::Json, "debug")` installs,
/// writing into `capture` instead of stderr. This process plants secrets in its log, an Event
/// and a status on purpose, so it keeps out of the scan after the tests (`test_logs::keep_out`):
/// none of its logs, namespaces or secrets goes to `target/test-logs`.
fn capture_logs() -> LogCapture {
    test_logs::keep_out("tests/secret_scan.rs plants secrets to prove its own scan fails");
    let capture = LogCapture::default();
    let subscriber = webhook_ca_operator::telemetry::json_subscriber(
        tracing_subscriber::EnvFilter::new("debug"),
        {
            let capture = capture.clone();
            move || capture.clone()
        },
    );
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    capture
}

/// Every Event and every resource status in the cluster (all namespaces), each with its place.
async fn cluster_texts(client: &kube::Client) -> Vec<(String, String)> {
    let mut texts = Vec::new();
    let events: Api<Event> = Api::all(client.clone());
    for e in events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
    {
        let place = format!(
            "Event {}/{}",
            e.namespace().unwrap_or_default(),
            e.name_any()
        );
        texts.push((place, serde_json::to_string(&e).expect("json")));
    }
    let resources: Api<WebhookCaCertificate> = Api::all(client.clone());
    for r in resources
        .list(&ListParams::default())
        .await
        .expect("wcc")
        .items
    {
        let place = format!(
            "status of {}/{}",
            r.namespace().unwrap_or_default(),
            r.name_any()
        );
        texts.push((place, serde_json::to_string(&r.status).expect("json")));
    }
    texts
}

/// A status as one of the texts to scan, named by the resource and its conditions' reasons.
fn status_of(wcc: WebhookCaCertificate) -> (String, String) {
    let reasons: Vec<String> = wcc
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| format!("{}={}", c.type_, c.reason))
        .collect();
    let place = format!("status of {} with {}", wcc.name_any(), reasons.join(","));
    (place, serde_json::to_string(&wcc.status).expect("json"))
}

fn places(found: &[Finding]) -> Vec<(String, String)> {
    let mut places: Vec<(String, String)> = found
        .iter()
        .map(|f| (f.secret.clone(), f.place.clone()))
        .collect();
    places.sort();
    places.dedup();
    places
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_events_status_or_metrics() {
    let logs = capture_logs();
    let config = SimConfig {
        users: vec![SimUser::admin("admin", PASSWORD)],
        ..SimConfig::default()
    };
    // setup_with writes the simulator's default password into wa-admin: wrong for this API.
    let Setup { ns, sim } = setup_with("scan", config).await;
    // Each status as it was when a scenario reached its condition: the end state alone would
    // not show the refusals' messages.
    let mut seen: Vec<(String, String)> = Vec::new();
    let ca = ca_pem("Scan Root");
    set_secret(&ns, "internal-ca", "ca.crt", &ca).await;
    let operator = Operator::start(&ns);

    // A wrong password, then the right one.
    apply_wcc(&ns, spec(&sim, json!({}))).await;
    seen.push(status_of(
        wait_condition(&ns, "Uploaded", "False", "Unauthorized").await,
    ));
    set_secret(&ns, "wa-admin", "password", PASSWORD).await;
    seen.push(status_of(
        wait_condition(&ns, "Ready", "True", "Synced").await,
    ));

    // A private key next to the CA in the source Secret.
    let key = key_pem();
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{ca}{key}")).await;
    seen.push(status_of(
        wait_condition(&ns, "BundleValid", "False", "PrivateKeyRefused").await,
    ));
    set_secret(&ns, "internal-ca", "ca.crt", &ca).await;
    seen.push(status_of(
        wait_condition(&ns, "Ready", "True", "Synced").await,
    ));

    // A TLS Secret named as a source without `key:`.
    let webapp = CertSpec::leaf("webapp.scan").self_signed();
    let tls_secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "webapp-cert"}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": webapp.pem, "tls.key": webapp.key_pem}
    }))
    .expect("secret");
    ns.api::<k8s_openapi::api::core::v1::Secret>()
        .create(&PostParams::default(), &tls_secret)
        .await
        .expect("create the TLS secret");
    let with_tls = json!({"sources": [
        {"secret": {"name": "internal-ca", "key": "ca.crt"}},
        {"secret": {"name": "webapp-cert"}},
    ]});
    apply_wcc(&ns, spec(&sim, with_tls)).await;
    seen.push(status_of(
        wait_condition(&ns, "BundleValid", "False", "SourceInvalid").await,
    ));
    apply_wcc(&ns, spec(&sim, json!({}))).await;
    seen.push(status_of(
        wait_condition(&ns, "Ready", "True", "Synced").await,
    ));

    // A static bearer token for a second API, used, then revoked there.
    let other = onprem_sim::start(SimConfig::default())
        .await
        .expect("simulator");
    let token = other.issue_token("admin").expect("token");
    set_secret(&ns, "wa-token", "token", &token).await;
    set_secret(
        &ns,
        "other-tls",
        "ca.crt",
        other.ca_pem().expect("TLS simulator"),
    )
    .await;
    let token_spec = |expiry: &str| {
        json!({
            "sources": [{"secret": {"name": "internal-ca", "key": "ca.crt"}}],
            "api": {
                "url": other.url(),
                "credentials": {"tokenSecret": {"name": "wa-token", "key": "token"}},
                "tls": {"caSecret": {"name": "other-tls"}}
            },
            "debounce": "0s",
            "expiryWarning": expiry,
            "restart": {"method": "None"}
        })
    };
    apply_named_wcc(&ns, "by-token", token_spec("720h")).await;
    seen.push(status_of(
        wait_named_condition(&ns, "by-token", "Ready", "True", "Synced").await,
    ));
    other.revoke_tokens();
    apply_named_wcc(&ns, "by-token", token_spec("700h")).await;
    seen.push(status_of(
        wait_named_condition(&ns, "by-token", "Uploaded", "False", "Unauthorized").await,
    ));

    // The login token revoked on the API: the operator logs in again (a pass made by a spec
    // change). Then deletionPolicy Delete and the resource deleted: the cleanup's DELETE.
    sim.revoke_tokens();
    let logins = sim.issued_tokens().len();
    apply_wcc(&ns, spec(&sim, json!({"expiryWarning": "700h"}))).await;
    wait_for("a second login after the revocation", || async {
        match sim.issued_tokens().len() {
            n if n > logins => Ok(()),
            n => Err(format!("{n} tokens issued")),
        }
    })
    .await;
    seen.push(status_of(
        wait_condition(&ns, "Ready", "True", "Synced").await,
    ));
    apply_wcc(&ns, spec(&sim, json!({"deletionPolicy": "Delete"}))).await;
    wait_for("the finalizer", || async {
        let wcc = ns.api::<WebhookCaCertificate>().get("prod").await;
        match wcc.map(|w| w.finalizers().to_vec()) {
            Ok(f) if !f.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    ns.api::<WebhookCaCertificate>()
        .delete("prod", &Default::default())
        .await
        .expect("delete prod");
    wait_for("the bundle deleted from the API", || async {
        match sim.stored_bundle() {
            None => Ok(()),
            Some(_) => Err("still stored".to_owned()),
        }
    })
    .await;

    let metrics = operator.scrape().await;
    operator.shutdown().await;

    let basic = |user: &str, password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    let mut secrets = vec![
        Secret::value("the admin password", PASSWORD)
            .with_form("Basic credentials", &basic("admin", PASSWORD)),
        Secret::value("the wrong admin password", DEFAULT_ADMIN_PASSWORD)
            .with_form("Basic credentials", &basic("admin", DEFAULT_ADMIN_PASSWORD)),
        Secret::value("the static token", &token),
        Secret::pem_key("the private key next to the CA", &key),
        Secret::pem_key("the TLS Secret's private key", &webapp.key_pem),
    ];
    let issued = sim.issued_tokens();
    assert!(!issued.is_empty(), "the operator logged in");
    for (i, t) in issued
        .iter()
        .chain(other.issued_tokens().iter())
        .enumerate()
    {
        if t != &token {
            secrets.push(Secret::value(&format!("API bearer token #{i}"), t));
        }
    }

    // The capture works at debug level: the API client's request lines are there, and the
    // controller's own debug lines.
    let logged = logs.text();
    assert!(
        logged.contains("On-Premises API call"),
        "no API call logged"
    );
    assert!(
        logged.contains(r#""level":"DEBUG""#),
        "no debug line captured"
    );
    let client = ns.client();
    let mut texts = cluster_texts(&client).await;
    texts.extend(seen);
    texts.push(("the operator's logs".to_owned(), logged));
    texts.push(("/metrics".to_owned(), metrics));
    let events_seen = texts
        .iter()
        .filter(|(p, _)| p.starts_with("Event "))
        .count();
    assert!(events_seen >= 5, "only {events_seen} Events to scan");
    let statuses = texts
        .iter()
        .filter(|(p, _)| p.starts_with("status "))
        .count();
    let log_text = &texts[texts.len() - 2].1;
    eprintln!(
        "secret scan: {} secrets in {} texts: {} bytes of debug logs ({} lines), \
         {events_seen} Events, {statuses} statuses, /metrics",
        secrets.len(),
        texts.len(),
        log_text.len(),
        log_text.lines().count(),
    );
    let found = scan(
        texts.iter().map(|(p, t)| (p.as_str(), t.as_str())),
        &secrets,
    );
    assert!(
        found.is_empty(),
        "secrets shown: {}",
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );

    // The planted values: the same paths, the same scan, and it must find exactly these.
    tracing::debug!(password = PASSWORD, "planted: a careless debug line");
    let planted_event: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "planted"},
        "involvedObject": {
            "apiVersion": "webhookca.io/v1alpha1", "kind": "WebhookCaCertificate",
            "name": "prod", "namespace": ns.name()
        },
        "reason": "Planted", "type": "Warning",
        "message": format!("login with token {token} failed"),
    }))
    .expect("event");
    ns.api::<CoreEvent>()
        .create(&PostParams::default(), &planted_event)
        .await
        .expect("plant an Event");
    let key_line = key.lines().nth(1).expect("a key line");
    let planted_status = json!({"status": {"conditions": [{
        "type": "Planted", "status": "False", "reason": "Planted",
        "message": format!("refused {key_line}"),
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }]}});
    ns.api::<WebhookCaCertificate>()
        .patch_status(
            "by-token",
            &PatchParams::default(),
            &Patch::Merge(&planted_status),
        )
        .await
        .expect("plant a status");

    let mut texts = cluster_texts(&client).await;
    texts.push(("the operator's logs".to_owned(), logs.text()));
    let found = scan(
        texts.iter().map(|(p, t)| (p.as_str(), t.as_str())),
        &secrets,
    );
    let want = vec![
        (
            "the admin password".to_owned(),
            "the operator's logs".to_owned(),
        ),
        (
            "the private key next to the CA".to_owned(),
            format!("status of {}/by-token", ns.name()),
        ),
        (
            "the static token".to_owned(),
            format!("Event {}/planted", ns.name()),
        ),
    ];
    assert_eq!(places(&found), want, "{found:?}");
}
