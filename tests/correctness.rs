//! Where a real installation goes wrong (issue 8), end to end: the controller (in-process, or the
//! operator as a process) against the real control plane and the simulator over TLS.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use onprem_sim::{self as sim, DEFAULT_ADMIN_PASSWORD, SimConfig, Simulator, TlsIdentity};
use serde_json::json;
use test_support::certs::{ca_pem, expired_ca_pem};
use test_support::controller::Operator;
use test_support::operator::{
    Setup, apply_wcc, condition, expected_bundle, message, operator_events, replica_sets,
    set_secret, setup, setup_with, spec, uploads, wait_condition, wait_stored_bundle,
};
use test_support::{TestNamespace, wait_for};
use webhook_ca_operator::bundle::{self, Policy, SourceInput};
use webhook_ca_operator::onprem::{
    ClientConfig, Credentials, OnPremClient, Reason, TlsTrust, from_fn,
};

/// Warning Events the operator wrote with `reason`.
async fn warnings(ns: &TestNamespace, reason: &str) -> Vec<Event> {
    operator_events(ns)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
        .collect()
}

/// Item 10: two sources each naming `key: ca.crt`; one key is overwritten with prose, as in a
/// botched rotation. The bundle is refused (never a one-certificate upload, never a restart)
/// until the source is marked optional.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_named_key_is_an_invalid_source_unless_optional() {
    let two_sources = json!([
        {"secret": {"name": "internal-ca", "key": "ca.crt"}},
        {"secret": {"name": "second-ca", "key": "ca.crt"}},
    ]);
    let Setup { ns, sim } = setup("fix-emptied").await;
    let (first, second) = (ca_pem("First Root"), ca_pem("Second Root"));
    set_secret(&ns, "internal-ca", "ca.crt", &first).await;
    set_secret(&ns, "second-ca", "ca.crt", &second).await;
    let operator = Operator::start(&ns);
    apply_wcc(&ns, spec(&sim, json!({"sources": two_sources}))).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let good = expected_bundle(&[&first, &second]);
    wait_stored_bundle(&sim, &good).await;
    let sets = replica_sets(&ns).await;
    sim.clear_requests();

    set_secret(
        &ns,
        "second-ca",
        "ca.crt",
        "rotated on 2024-05-01, see ticket 4711\n",
    )
    .await;
    let wcc = wait_condition(&ns, "BundleValid", "False", "SourceInvalid").await;
    let refused = message(&wcc, "BundleValid");
    assert!(
        refused.contains(r#"Secret "second-ca" key "ca.crt" holds no certificate"#),
        "{refused}"
    );
    assert_eq!(
        condition(&wcc, "Ready").map(|c| c.0).as_deref(),
        Some("False")
    );
    wait_for("a Warning Event naming the key", || async {
        let found = warnings(&ns, "SourceInvalid").await;
        match found
            .iter()
            .find(|e| e.note.as_deref().is_some_and(|n| n.contains("second-ca")))
        {
            Some(_) => Ok(()),
            None => Err(format!("{found:?}")),
        }
    })
    .await;
    // A few retry intervals (1 s in these settings) later, still nothing went out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(uploads(&sim), 0, "no partial bundle is uploaded");
    assert_eq!(sim.stored_bundle().as_deref(), Some(good.as_str()));
    assert_eq!(
        replica_sets(&ns).await,
        sets,
        "no restart for a refused bundle"
    );

    // Marked optional, the empty key is passed over and the one remaining CA is uploaded.
    let optional = json!([
        {"secret": {"name": "internal-ca", "key": "ca.crt"}},
        {"secret": {"name": "second-ca", "key": "ca.crt", "optional": true}},
    ]);
    apply_wcc(&ns, spec(&sim, json!({"sources": optional}))).await;
    wait_stored_bundle(&sim, &expected_bundle(&[&first])).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    operator.shutdown().await;
}

/// A self-signed certificate and key made by the command the webapp's documentation gives
/// (`openssl req -newkey rsa:2048 -nodes -keyout key.pem -x509 -days 365 -out certificate.pem`),
/// with `-subj` added so that it does not prompt. OpenSSL marks it CA:TRUE.
fn openssl_self_signed(dir: &Path) -> TlsIdentity {
    let made = test_support::certs::openssl_req_x509(dir, "127.0.0.1");
    let identity = TlsIdentity {
        cert_pem: made.cert_pem,
        key_pem: made.key_pem,
    };
    let info = bundle::build(
        &[SourceInput {
            source: "certificate.pem",
            pem: &identity.cert_pem,
        }],
        &Policy::defaults_at(jiff::Timestamp::now()),
    )
    .expect("a valid certificate");
    assert!(
        info.certificates[0].is_ca,
        "openssl req -x509 makes a CA:TRUE certificate"
    );
    identity
}

/// Runs `webhook-ca-operator api get --url <sim> --ca-file <ca_file>` as the admin.
async fn cli_get(sim: &Simulator, ca_file: &Path) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-ca-operator"));
    command
        .args(["api", "get", "--url", &sim.url(), "--ca-file"])
        .arg(ca_file)
        .env_remove("WA_API_TOKEN")
        .env_remove("WA_API_URL")
        .env("WA_API_USERNAME", "admin")
        .env("WA_API_PASSWORD", DEFAULT_ADMIN_PASSWORD);
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .expect("join")
}

/// Item 6, the CLI: a webapp serving an `openssl req -x509` certificate is reached with that same
/// certificate as `--ca-file` (pinned), and still refused with any other certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_trusts_a_self_signed_webapp_certificate_given_as_its_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = openssl_self_signed(dir.path());
    let sim = sim::start(SimConfig {
        tls_identity: Some(identity.clone()),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let stored = ca_pem("Stored Root");
    sim.set_stored_bundle(Some(stored.clone()));

    let out = cli_get(&sim, &dir.path().join("certificate.pem")).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "api get failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), stored);
    let requests = sim.requests().len();

    // Another certificate made the same way is not the one served: refused, as before.
    let other = tempfile::tempdir().expect("tempdir");
    openssl_self_signed(other.path());
    let out = cli_get(&sim, &other.path().join("certificate.pem")).await;
    assert!(
        !out.status.success(),
        "a different certificate must not be trusted"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("tls"), "{stderr}");
    assert_eq!(
        sim.requests().len(),
        requests,
        "the second run never got past the handshake"
    );
}

/// Item 6, the controller: `tls.caSecret` holding the webapp's own self-signed certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_trusts_a_self_signed_webapp_certificate_in_its_ca_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SimConfig {
        tls_identity: Some(openssl_self_signed(dir.path())),
        ..SimConfig::default()
    };
    let Setup { ns, sim } = setup_with("fix-selfsigned", config).await;
    // setup() put the simulator's ca_pem(), here the served certificate itself, in webapp-tls.
    let ca = ca_pem("Self-signed Webapp Bundle");
    set_secret(&ns, "internal-ca", "ca.crt", &ca).await;
    let operator = Operator::start(&ns);
    apply_wcc(&ns, spec(&sim, json!({}))).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    wait_stored_bundle(&sim, &expected_bundle(&[&ca])).await;
    operator.shutdown().await;
}

/// Logins the simulator answered (`POST /v1/users/login`).
fn logins(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/users/login")
        .count()
}

/// Item 5: a wrong password in the login Secret costs one login, not one per retry interval
/// (1 s here; the backoff keeps its real default of 1 minute); the condition says where to fix
/// it and when the next attempt is; the fixed Secret is used at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_backs_off_until_the_secret_changes() {
    let Setup { ns, sim } = setup("fix-login").await;
    set_secret(&ns, "wa-admin", "password", "Wrong-Passw0rd!").await;
    let ca = ca_pem("Login Root");
    set_secret(&ns, "internal-ca", "ca.crt", &ca).await;
    let operator = Operator::start(&ns);
    apply_wcc(&ns, spec(&sim, json!({}))).await;

    let wcc = wait_condition(&ns, "Uploaded", "False", "Unauthorized").await;
    let said = message(&wcc, "Uploaded");
    let place = format!("Secret {}/wa-admin", ns.name());
    assert!(said.contains(&place), "{said}");
    assert!(said.contains("next login attempt at"), "{said}");
    assert!(!said.contains("Wrong-Passw0rd!"), "{said}");
    // Five retry intervals: without the backoff, five more logins.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        logins(&sim),
        1,
        "one refused login, then none until the backoff ends"
    );
    assert_eq!(sim.stored_bundle(), None);

    let fixed = std::time::Instant::now();
    set_secret(&ns, "wa-admin", "password", DEFAULT_ADMIN_PASSWORD).await;
    wait_stored_bundle(&sim, &expected_bundle(&[&ca])).await;
    let delay = fixed.elapsed();
    eprintln!("the fixed password was used {delay:?} after the Secret changed");
    assert!(
        delay < Duration::from_secs(45),
        "the fixed Secret must not wait for the 1-minute backoff: {delay:?}"
    );
    assert_eq!(logins(&sim), 2, "the refused login and the good one");
    wait_condition(&ns, "Ready", "True", "Synced").await;
    operator.shutdown().await;
}

/// Item 5, the client alone: the same refused credentials are not sent again before the backoff
/// ends; changed credentials are sent at once.
#[tokio::test]
async fn the_client_holds_back_refused_credentials_only() {
    let sim = sim::start(SimConfig::default()).await.expect("simulator");
    let current = Arc::new(Mutex::new(Credentials::login("admin", "Wrong-Passw0rd!")));
    let source = {
        let current = Arc::clone(&current);
        from_fn(move || {
            let creds = current.lock().expect("lock").clone();
            async move { Ok(creds) }
        })
    };
    let config = ClientConfig::new(
        sim.url(),
        TlsTrust::CaPem(sim.ca_pem().expect("TLS").to_owned()),
    );
    let client = OnPremClient::new(config, Arc::new(source)).expect("client");
    for _ in 0..3 {
        let Err(err) = client.get_webhook_ca().await else {
            panic!("a wrong password must fail");
        };
        assert_eq!(err.reason(), Reason::Unauthorized, "{err}");
        assert!(err.to_string().contains("next login attempt at"), "{err}");
    }
    assert_eq!(logins(&sim), 1);
    *current.lock().expect("lock") = Credentials::login("admin", DEFAULT_ADMIN_PASSWORD);
    assert_eq!(client.get_webhook_ca().await.expect("get"), None);
    assert_eq!(logins(&sim), 2);
}

/// Item 9: with `expired: Drop`, an old expired CA left in the Secret is left out (condition
/// message and one Warning Event name it) and the rest is uploaded, rotations included; an
/// all-expired Secret is still refused as empty and the API keeps the last good bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_drop_leaves_the_expired_certificate_out() {
    let Setup { ns, sim } = setup("fix-drop").await;
    let (old, current) = (expired_ca_pem("Old Expired Root"), ca_pem("Current Root"));
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{old}{current}")).await;
    let operator = Operator::start(&ns);
    apply_wcc(&ns, spec(&sim, json!({"policy": {"expired": "Drop"}}))).await;

    let wcc = wait_condition(&ns, "Ready", "True", "Synced").await;
    wait_stored_bundle(&sim, &expected_bundle(&[&current])).await;
    let valid = message(&wcc, "BundleValid");
    assert!(valid.contains("Old Expired Root"), "{valid}");
    assert!(valid.contains("left out of the bundle"), "{valid}");
    wait_for("one CertificateDropped Warning", || async {
        match warnings(&ns, "CertificateDropped").await.as_slice() {
            [one]
                if one
                    .note
                    .as_deref()
                    .is_some_and(|n| n.contains("Old Expired Root")) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // A rotation next to the expired CA reaches the API.
    let next = ca_pem("Next Root");
    set_secret(
        &ns,
        "internal-ca",
        "ca.crt",
        &format!("{old}{current}{next}"),
    )
    .await;
    let rotated = expected_bundle(&[&current, &next]);
    wait_stored_bundle(&sim, &rotated).await;

    // Nothing but expired certificates: refused as empty; the last good bundle stays.
    set_secret(&ns, "internal-ca", "ca.crt", &old).await;
    let wcc = wait_condition(&ns, "BundleValid", "False", "BundleEmpty").await;
    let empty = message(&wcc, "BundleValid");
    assert!(empty.contains("Old Expired Root"), "{empty}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sim.stored_bundle().as_deref(), Some(rotated.as_str()));
    operator.shutdown().await;
}
