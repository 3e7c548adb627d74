//! The webhook trust check end to end: a real apiserver, the simulator with application settings
//! naming a webhook URL, a TLS server on loopback as that webhook (its certificate swapped by
//! the tests), and the controller in-process. Each test checks what the API holds and the
//! `WebhookTrusted` condition, as a user would.

use std::time::Duration;

use serde_json::json;
use test_support::TestNamespace;
use test_support::certs::{Cert, CertSpec, openssl_req_x509};
use test_support::controller::Operator;
use test_support::operator::{
    Setup, apply_wcc, condition, expected_bundle, operator_events, replica_sets, set_secret, setup,
    spec, uploads, wait_condition, wait_stored_bundle,
};
use test_support::wait_for;
use test_support::webhook::WebhookServer;
use webhook_ca_operator::crd::WebhookCaCertificate;

/// A server certificate for `localhost`, signed by `ca`.
fn server_cert(ca: &Cert) -> Cert {
    CertSpec::leaf("webhook.test")
        .dns("localhost")
        .signed_by(ca)
}

fn message(wcc: &WebhookCaCertificate, type_: &str) -> String {
    wcc.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The subject of the bundle certificate that status says anchors the webhook server's chain.
fn anchor(wcc: &WebhookCaCertificate) -> Option<String> {
    wcc.status
        .as_ref()?
        .webhook_trust
        .as_ref()?
        .anchor
        .as_ref()
        .map(|a| a.subject.clone())
}

/// Waits for `WebhookTrusted` = `status`/`reason` with status naming `anchor`.
async fn wait_anchor(ns: &TestNamespace, subject: &str) -> WebhookCaCertificate {
    let api: kube::Api<WebhookCaCertificate> = ns.api();
    wait_for(&format!("the webhook anchored by {subject}"), || async {
        let wcc = api.get("prod").await.map_err(|e| e.to_string())?;
        let trusted = condition(&wcc, "WebhookTrusted");
        if trusted == Some(("True".into(), "Trusted".into()))
            && anchor(&wcc).as_deref() == Some(subject)
        {
            Ok(wcc)
        } else {
            Err(format!("{trusted:?}, anchor {:?}", anchor(&wcc)))
        }
    })
    .await
}

/// A namespace and the simulator whose settings name a webhook server presenting `served`,
/// `bundle` in the Secret `internal-ca`, the operator running and `prod` applied with `extra`.
async fn started(
    prefix: &str,
    served: &Cert,
    bundle: &str,
    extra: serde_json::Value,
) -> (Setup, WebhookServer, Operator) {
    let setup = setup(prefix).await;
    let webhook = WebhookServer::start(&served.pem, &served.key_pem).await;
    setup.sim.set_webhook_url(Some(webhook.url("localhost")));
    set_secret(&setup.ns, "internal-ca", "ca.crt", bundle).await;
    let operator = Operator::start(&setup.ns);
    apply_wcc(&setup.ns, spec(&setup.sim, extra)).await;
    (setup, webhook, operator)
}

async fn warning_reasons(ns: &TestNamespace) -> Vec<String> {
    operator_events(ns)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.reason)
        .collect()
}

/// Scenarios 1, 2 (Refuse) and 3: a CA rotation the webhook survives, and one it would not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_bundle_that_drops_the_webhook_ca_and_follows_a_rotation_through_both() {
    let (a, b) = (
        CertSpec::ca("Webhook CA A").self_signed(),
        CertSpec::ca("Webhook CA B").self_signed(),
    );
    let served = server_cert(&a);
    let (Setup { ns, sim }, webhook, operator) = started(
        "wt-refuse",
        &served,
        &a.pem,
        json!({"driftCheckInterval": "2s"}),
    )
    .await;

    // 1. Served by A, bundle {A}: uploaded and trusted.
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let wcc = wait_anchor(&ns, "CN=Webhook CA A").await;
    assert_eq!(sim.stored_bundle(), Some(expected_bundle(&[&a.pem])));
    let seen = wcc
        .status
        .as_ref()
        .and_then(|s| s.webhook_trust.clone())
        .expect("webhook status");
    let server = seen
        .server_certificate
        .expect("server certificate in status");
    assert_eq!(server.subject, "CN=webhook.test");
    assert_eq!(server.issuer, "CN=Webhook CA A");
    assert_eq!(server.sha256, served.sha256);
    assert_eq!(seen.endpoint, Some(format!("localhost:{}", webhook.port())));
    assert!(webhook.handshakes() > 0);
    let sets = replica_sets(&ns).await;

    // 2. The Secret loses A: the bundle {B} would not trust the webhook server. Not uploaded.
    set_secret(&ns, "internal-ca", "ca.crt", &b.pem).await;
    let wcc = wait_condition(&ns, "Uploaded", "False", "WebhookUntrusted").await;
    assert_eq!(
        condition(&wcc, "WebhookTrusted"),
        Some(("False".into(), "UntrustedChain".into()))
    );
    let why = message(&wcc, "WebhookTrusted");
    assert!(
        why.contains("its issuer CN=Webhook CA A is not in the bundle"),
        "{why}"
    );
    assert_eq!(
        condition(&wcc, "Ready").map(|c| c.0).as_deref(),
        Some("False")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sim.stored_bundle(),
        Some(expected_bundle(&[&a.pem])),
        "the API keeps {{A}}"
    );
    assert_eq!(
        replica_sets(&ns).await,
        sets,
        "no restart for a refused bundle"
    );
    let warnings = warning_reasons(&ns).await;
    assert!(
        warnings.iter().any(|r| r == "UntrustedChain"),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|r| r == "WebhookUntrusted"),
        "{warnings:?}"
    );

    // 3. {A, B} is uploaded; the webhook server moves to a B-signed certificate and stays
    // trusted; then {B} alone is uploaded.
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{}{}", a.pem, b.pem)).await;
    wait_stored_bundle(&sim, &expected_bundle(&[&a.pem, &b.pem])).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let rotated = server_cert(&b);
    webhook.serve(&rotated.pem, &rotated.key_pem);
    // Seen at a drift check, without any change in the cluster.
    wait_anchor(&ns, "CN=Webhook CA B").await;
    set_secret(&ns, "internal-ca", "ca.crt", &b.pem).await;
    wait_stored_bundle(&sim, &expected_bundle(&[&b.pem])).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    wait_anchor(&ns, "CN=Webhook CA B").await;
    assert_eq!(webhook.requests(), 0, "the check sends no HTTP request");
    operator.shutdown().await;
}

/// Scenario 2 under `Warn`: the same bundle is uploaded, with a Warning; then `Ignore`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_uploads_a_bundle_that_would_not_trust_the_webhook_and_says_so() {
    let (a, b) = (
        CertSpec::ca("Warn CA A").self_signed(),
        CertSpec::ca("Warn CA B").self_signed(),
    );
    let warn = json!({"webhookTrust": {"policy": "Warn"}});
    let (Setup { ns, sim }, _webhook, operator) =
        started("wt-warn", &server_cert(&a), &b.pem, warn).await;

    let wcc = wait_condition(&ns, "WebhookTrusted", "False", "UntrustedChain").await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(sim.stored_bundle(), Some(expected_bundle(&[&b.pem])));
    assert!(message(&wcc, "WebhookTrusted").contains("CN=Warn CA A"));
    let warnings = warning_reasons(&ns).await;
    assert!(
        warnings.iter().any(|r| r == "UntrustedChain"),
        "{warnings:?}"
    );
    let uploaded_anyway = operator_events(&ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("WebhookUntrusted"))
        .filter_map(|e| e.note)
        .collect::<Vec<_>>();
    assert!(
        uploaded_anyway
            .iter()
            .any(|n| n.starts_with("uploaded although")),
        "{uploaded_anyway:?}"
    );

    // Ignore: no check at all, and nothing left in status from the last one.
    apply_wcc(
        &ns,
        spec(&sim, json!({"webhookTrust": {"policy": "Ignore"}})),
    )
    .await;
    let wcc = wait_condition(&ns, "WebhookTrusted", "Unknown", "CheckDisabled").await;
    assert_eq!(wcc.status.and_then(|s| s.webhook_trust), None);
    operator.shutdown().await;
}

/// Scenario 4: a certificate for another host name, then an expired one. Neither blocks the
/// upload (no bundle would make the coreapps accept them); the expired one joins the expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_name_and_an_expired_server_certificate_have_their_reasons() {
    let a = CertSpec::ca("Names CA").self_signed();
    let elsewhere = CertSpec::leaf("webhook.test")
        .dns("hooks.example")
        .signed_by(&a);
    let (Setup { ns, sim }, webhook, operator) = started(
        "wt-names",
        &elsewhere,
        &a.pem,
        json!({"driftCheckInterval": "2s"}),
    )
    .await;

    let wcc = wait_condition(&ns, "WebhookTrusted", "False", "HostnameMismatch").await;
    let why = message(&wcc, "WebhookTrusted");
    assert!(
        why.contains("not valid for the host name localhost") && why.contains("hooks.example"),
        "{why}"
    );
    wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(sim.stored_bundle(), Some(expected_bundle(&[&a.pem])));

    let expired = CertSpec::leaf("webhook.test")
        .dns("localhost")
        .valid(((2020, 1, 1), (2021, 1, 1)))
        .signed_by(&a);
    webhook.serve(&expired.pem, &expired.key_pem);
    let wcc = wait_condition(&ns, "WebhookTrusted", "False", "ServerCertificateExpired").await;
    assert!(
        message(&wcc, "WebhookTrusted").contains("2021-01-01"),
        "{}",
        message(&wcc, "WebhookTrusted")
    );
    // Its expiry is the first one now: the condition and the gauge say so.
    let wcc = wait_condition(&ns, "ExpiringSoon", "True", "ExpiringSoon").await;
    assert!(
        message(&wcc, "ExpiringSoon").contains("webhook server"),
        "{}",
        message(&wcc, "ExpiringSoon")
    );
    let series = format!(
        "webhookca_bundle_earliest_expiry_timestamp_seconds{{namespace=\"{}\",name=\"prod\"}} 1609459200",
        ns.name()
    );
    let scraped = operator.scrape().await;
    assert!(scraped.contains(&series), "{scraped}");
    operator.shutdown().await;
}

/// Scenario 5, and no webhook URL at all: Unknown, and the upload goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_is_unknown_and_never_blocks_an_upload() {
    let Setup { ns, sim } = setup("wt-unknown").await;
    let a = CertSpec::ca("Unknown CA A").self_signed();
    set_secret(&ns, "internal-ca", "ca.crt", &a.pem).await;
    let operator = Operator::start(&ns);
    apply_wcc(&ns, spec(&sim, json!({}))).await;
    wait_condition(&ns, "WebhookTrusted", "Unknown", "NoWebhookUrl").await;
    wait_condition(&ns, "Ready", "True", "Synced").await;

    // A closed port: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let url = format!("https://127.0.0.1:{}/hook", closed.port());
    apply_wcc(&ns, spec(&sim, json!({"webhookTrust": {"url": url}}))).await;
    wait_condition(&ns, "WebhookTrusted", "Unknown", "Unreachable").await;
    let b = CertSpec::ca("Unknown CA B").self_signed();
    set_secret(&ns, "internal-ca", "ca.crt", &b.pem).await;
    wait_stored_bundle(&sim, &expected_bundle(&[&b.pem])).await;
    let wcc = wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(
        condition(&wcc, "WebhookTrusted"),
        Some(("Unknown".into(), "Unreachable".into()))
    );
    assert!(
        !warning_reasons(&ns)
            .await
            .iter()
            .any(|r| r == "Unreachable" || r == "NoWebhookUrl"),
        "an Unknown answer is no Warning"
    );
    assert_eq!(uploads(&sim), 2);
    operator.shutdown().await;
}

/// Scenario 6: the seed's `openssl req -x509` certificate served by the webhook and given as the
/// bundle; the API answers its settings unwrapped, as older versions do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_openssl_webhook_certificate_given_as_the_bundle_is_trusted() {
    let Setup { ns, sim } = setup("wt-openssl").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let made = openssl_req_x509(dir.path(), "localhost");
    let webhook = WebhookServer::start(&made.cert_pem, &made.key_pem).await;
    sim.set_application_settings(onprem_sim::ApplicationSettings {
        webhook_url: Some(webhook.url("localhost")),
        wrapped: false,
    });
    set_secret(&ns, "internal-ca", "ca.crt", &made.cert_pem).await;
    let operator = Operator::start(&ns);
    apply_wcc(&ns, spec(&sim, json!({}))).await;
    let wcc = wait_anchor(&ns, "CN=localhost").await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(
        sim.stored_bundle(),
        Some(expected_bundle(&[&made.cert_pem]))
    );
    let seen = wcc
        .status
        .as_ref()
        .and_then(|s| s.webhook_trust.clone())
        .expect("webhook status");
    assert_eq!(
        seen.anchor.map(|a| a.sha256),
        seen.server_certificate.map(|s| s.sha256),
        "the certificate is its own anchor"
    );

    // The steady state stays cheap: the passes that followed the rollout, and one brought by
    // an unrelated change of the Secret, checked nothing again (default driftCheckInterval).
    let settings_reads = || {
        sim.requests()
            .iter()
            .filter(|r| r.path == "/v1/settings/application")
            .count()
    };
    assert_eq!((webhook.handshakes(), settings_reads()), (1, 1));
    let api: kube::Api<WebhookCaCertificate> = ns.api();
    let drift_checked = || async {
        let wcc = api.get("prod").await.expect("get prod");
        wcc.status.and_then(|s| s.last_drift_check_time)
    };
    let before = drift_checked().await;
    // Each touch of the Secret brings a pass; status times have whole seconds, so touch it
    // until a pass lands in another second.
    let touches = std::sync::atomic::AtomicUsize::new(0);
    wait_for("another pass", || async {
        let n = touches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let note = format!("not PEM, not read {n}");
        set_secret(&ns, "internal-ca", "unrelated", &note).await;
        let seen = drift_checked().await;
        if seen != before {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    assert_eq!((webhook.handshakes(), settings_reads()), (1, 1));
    operator.shutdown().await;
}

/// The probe on its own: a server that accepts the connection but never answers the handshake
/// is a `Timeout`, one that answers with something other than TLS is `HandshakeFailed`; both
/// Unknown, neither blocks.
#[tokio::test]
async fn a_silent_or_non_tls_server_is_unknown() {
    use webhook_ca_operator::webhook::{Trust, check_url};
    let bundle =
        test_support::operator::canonical_bundle(&[&CertSpec::ca("Probe CA").self_signed().pem]);
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!(
        "https://localhost:{}/",
        silent.local_addr().expect("addr").port()
    );
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn); // held open, never answered
        }
    });
    let check = check_url(
        &silent_url,
        &bundle,
        Duration::from_millis(500),
        jiff::Timestamp::now(),
    )
    .await;
    assert_eq!(
        (check.trust, check.reason),
        (Trust::Unknown, "Timeout"),
        "{}",
        check.message
    );
    assert!(!check.blocks_upload());

    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let plain_url = format!(
        "https://127.0.0.1:{}/",
        plain.local_addr().expect("addr").port()
    );
    let answered = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        while let Ok((mut conn, _)) = plain.accept().await {
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let check = check_url(
        &plain_url,
        &bundle,
        Duration::from_secs(5),
        jiff::Timestamp::now(),
    )
    .await;
    assert_eq!(
        (check.trust, check.reason),
        (Trust::Unknown, "HandshakeFailed"),
        "{}",
        check.message
    );
    held.abort();
    answered.abort();
}
