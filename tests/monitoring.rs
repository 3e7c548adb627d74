//! What on-call sees, end to end: the `ExpiringSoon` condition with its Event and gauge, and the
//! metric families a Prometheus scrape of `/metrics` returns after a sync.

use jiff::{SignedDuration, Timestamp};
use onprem_sim::Fault;
use serde_json::json;
use test_support::TestNamespace;
use test_support::certs::{CertSpec, Ymd, ca_pem};
use test_support::controller::{Operator, synced};
use test_support::operator::{
    Setup, apply_wcc, expected_bundle, operator_events, set_secret, setup, spec, wait_condition,
    wait_stored_bundle,
};
use test_support::wait_for;

/// The date `days` from today (UTC), as the certificate fixture takes it.
fn in_days(days: i64) -> (Ymd, Timestamp) {
    let date = Timestamp::now()
        .checked_add(SignedDuration::from_hours(days * 24))
        .expect("in range")
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let midnight = date
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("midnight exists")
        .timestamp();
    let ymd = (
        i32::from(date.year()),
        u8::try_from(date.month()).expect("month"),
        u8::try_from(date.day()).expect("day"),
    );
    (ymd, midnight)
}

/// The value of the series `family{labels}` in a scrape, if present.
fn sample(text: &str, family: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{family}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn resource(ns: &TestNamespace) -> String {
    format!(r#"namespace="{}",name="prod""#, ns.name())
}

/// The resource's `webhookca_bundle_earliest_expiry_timestamp_seconds` as scraped now.
async fn expiry_gauge(operator: &Operator, ns: &TestNamespace) -> Option<f64> {
    let text = operator.scrape().await;
    sample(
        &text,
        "webhookca_bundle_earliest_expiry_timestamp_seconds",
        &resource(ns),
    )
}

async fn expiring_soon_warnings(ns: &TestNamespace) -> usize {
    operator_events(ns)
        .await
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ExpiringSoon"))
        .inspect(|e| assert_eq!(e.type_.as_deref(), Some("Warning")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_soon_follows_the_warning_window_and_clears_on_renewal() {
    let Setup { ns, sim } = setup("expiry").await;
    // 35 days ahead: outside the default window of 720h (30 days).
    let (until, not_after) = in_days(35);
    let soon = CertSpec::ca("Soon Root")
        .valid(((2020, 1, 1), until))
        .self_signed();
    set_secret(&ns, "internal-ca", "ca.crt", &soon.pem).await;
    let operator = Operator::start(&ns);
    apply_wcc(&ns, spec(&sim, json!({}))).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    wait_condition(&ns, "ExpiringSoon", "False", "NotExpiringSoon").await;
    assert_eq!(expiring_soon_warnings(&ns).await, 0);

    // A window of 1000h (41 days) holds it: True, one Warning Event, the gauge at its notAfter.
    apply_wcc(&ns, spec(&sim, json!({"expiryWarning": "1000h"}))).await;
    let wcc = wait_condition(&ns, "ExpiringSoon", "True", "ExpiringSoon").await;
    let status = wcc.status.as_ref().expect("status");
    let expiring = status
        .conditions
        .iter()
        .find(|c| c.type_ == "ExpiringSoon")
        .expect("condition");
    assert!(
        expiring.message.contains("CN=Soon Root"),
        "{}",
        expiring.message
    );
    assert_eq!(expiring.observed_generation, wcc.metadata.generation);
    assert_eq!(
        status
            .bundle
            .as_ref()
            .and_then(|b| b.earliest_expiry.clone())
            .map(|t| t.0),
        Some(not_after)
    );
    assert_eq!(
        expiry_gauge(&operator, &ns).await,
        Some(not_after.as_second() as f64)
    );
    wait_for("the ExpiringSoon Warning", || async {
        match expiring_soon_warnings(&ns).await {
            0 => Err("none yet".to_owned()),
            n => Ok(n),
        }
    })
    .await;

    // Renewed: a year ahead. False again, no second Warning, the gauge follows.
    let (renewed_until, renewed_not_after) = in_days(365);
    let renewed = CertSpec::ca("Soon Root")
        .valid(((2020, 1, 1), renewed_until))
        .self_signed();
    set_secret(&ns, "internal-ca", "ca.crt", &renewed.pem).await;
    wait_condition(&ns, "ExpiringSoon", "False", "NotExpiringSoon").await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(expiring_soon_warnings(&ns).await, 1, "one Warning in all");
    assert_eq!(
        expiry_gauge(&operator, &ns).await,
        Some(renewed_not_after.as_second() as f64)
    );
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_the_on_call_questions() {
    let before = Timestamp::now().as_second();
    let (Setup { ns, sim }, operator, first) = synced("metrics", "Metrics Root", json!({})).await;
    let ca = r#"endpoint="/v1/certificates/webhooks/ca""#;
    let text = operator.scrape().await;
    for family in [
        // OpenMetrics names a counter's family without `_total`.
        "webhookca_api_requests",
        "webhookca_api_request_duration_seconds",
        "webhookca_rollout_duration_seconds",
        "webhookca_last_sync_timestamp_seconds",
        "webhookca_restarts",
        "webhookca_rollout_failed",
        "webhookca_dry_run",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    let one = Some(1.0);
    assert_eq!(
        sample(
            &text,
            "webhookca_api_requests_total",
            &format!(r#"{ca},method="POST",code="200""#)
        ),
        one,
        "{text}"
    );
    // The first GET found nothing stored (404); the read-back after the upload found it (200).
    for code in ["404", "200"] {
        assert!(
            sample(
                &text,
                "webhookca_api_requests_total",
                &format!(r#"{ca},method="GET",code="{code}""#)
            )
            .is_some_and(|n| n >= 1.0),
            "GET {code}:\n{text}"
        );
    }
    assert!(
        sample(
            &text,
            "webhookca_api_requests_total",
            r#"endpoint="/v1/users/login",method="POST",code="200""#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "webhookca_api_request_duration_seconds_count",
            &format!(r#"{ca},method="POST""#)
        ),
        one
    );
    assert_eq!(
        sample(
            &text,
            "webhookca_rollout_duration_seconds_count",
            r#"kind="Deployment""#
        ),
        one,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "webhookca_restarts_total",
            &format!(
                r#"namespace="{}",kind="Deployment",method="RolloutRestart",result="success""#,
                ns.name()
            )
        ),
        one
    );
    let synced_at = sample(
        &text,
        "webhookca_last_sync_timestamp_seconds",
        &resource(&ns),
    )
    .expect("last sync");
    assert!(
        synced_at >= before as f64 && synced_at <= Timestamp::now().as_second() as f64,
        "{synced_at} not during this test"
    );
    assert_eq!(sample(&text, "webhookca_ready", &resource(&ns)), one);
    assert_eq!(
        sample(&text, "webhookca_rollout_failed", &resource(&ns)),
        Some(0.0)
    );
    assert!(text.lines().any(|l| l == "webhookca_dry_run 0"), "{text}");

    let second = ca_pem("Metrics Root 2");
    // A rotation whose first POST the API refuses with 503: the status code is counted, the
    // retry succeeds.
    sim.inject(
        Fault::error(503, 1016)
            .on_path("/v1/certificates/webhooks/ca")
            .on_method("POST"),
    );
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{first}{second}")).await;
    wait_stored_bundle(&sim, &expected_bundle(&[&first, &second])).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let text = operator.scrape().await;
    assert_eq!(
        sample(
            &text,
            "webhookca_api_requests_total",
            &format!(r#"{ca},method="POST",code="503""#)
        ),
        one,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "webhookca_api_requests_total",
            &format!(r#"{ca},method="POST",code="200""#)
        ),
        Some(2.0)
    );
    operator.shutdown().await;
}
