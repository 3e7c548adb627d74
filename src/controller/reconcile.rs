//! One reconcile of a `WebhookCaCertificate`: sources -> bundle -> compare and upload ->
//! restart -> follow the rollout -> status. Level-based: every step looks at what is, not at
//! what happened, so a crash anywhere is repaired by the next pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::cleanup::{FINALIZER, align_finalizer, remove_finalizer};
use super::context::{CONTROLLER_NAME, Context};
use super::credentials::{SecretCredentials, tls_trust};
use super::restart::{
    EvictStep, RestartError, Workload, evict_step, kind_name, resolve_targets, rollout_restart,
};
use super::rollout::Progress;
use super::sources::resolve_sources;
use super::status::{
    BUNDLE_VALID, EXPIRING_SOON, INSECURE_TLS, READY, ROLLOUT_COMPLETE, UPLOADED, Verdict,
    bundle_status, changed, expiry_verdict, merge_conditions, ready_verdict,
};
use crate::bundle::{self, Bundle, SourceInput};
use crate::crd::{
    ApiTarget, BundleStatus, RestartMethod, RolloutState, RolloutStatus, TargetRollout,
    WebhookCaCertificate, WebhookCaCertificateStatus, parse_duration,
};
use crate::metrics::{ResourceLabels, RestartLabels, ResultLabels};
use crate::onprem::{ClientConfig, OnPremClient, TlsTrust};

const DEFAULT_DRIFT_CHECK: Duration = Duration::from_secs(600);
const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(5);
const DEFAULT_ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_MIN_RESTART_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(30);

/// Failures of the reconcile itself (not of what it manages: those go to status).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the resource has no namespace")]
    NoNamespace,
    #[error("writing the status of {key}: {source}")]
    Status { key: String, source: kube::Error },
    #[error("updating the finalizers of {key}: {source}")]
    Finalizer { key: String, source: kube::Error },
}

impl ReconcileError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::NoNamespace => "NoNamespace",
            ReconcileError::Status { .. } => "StatusWriteFailed",
            ReconcileError::Finalizer { .. } => "FinalizerUpdateFailed",
        }
    }
}

/// What one pass decided, before it is written.
#[derive(Default)]
struct Outcome {
    verdicts: Vec<Verdict>,
    /// `None` keeps what status holds.
    bundle: Option<BundleStatus>,
    uploaded_sha256: Option<String>,
    last_upload_time: Option<Time>,
    last_drift_check_time: Option<Time>,
    rollout: Option<RolloutStatus>,
    /// Events that are not condition changes: an upload, a restart started.
    notes: Vec<(EventType, &'static str, String)>,
    requeue: Option<Duration>,
}

impl Outcome {
    fn verdict(&mut self, type_: &'static str, ok: bool, reason: &str, message: impl Into<String>) {
        self.verdicts.push(Verdict::new(type_, ok, reason, message));
    }

    fn requeue_within(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }
}

/// The resource's spec knobs, parsed; a malformed duration falls back to the default (the CRD's
/// pattern already refuses them, so only objects written around the schema get here).
struct Knobs {
    drift_check: Duration,
    debounce: Duration,
    rollout_timeout: Duration,
    min_restart_interval: Duration,
}

impl Knobs {
    fn of(wcc: &WebhookCaCertificate) -> Self {
        let parse = |value: &Option<String>, default| {
            value
                .as_deref()
                .and_then(|v| parse_duration(v).ok())
                .unwrap_or(default)
        };
        Self {
            drift_check: parse(&wcc.spec.drift_check_interval, DEFAULT_DRIFT_CHECK),
            debounce: parse(&wcc.spec.debounce, DEFAULT_DEBOUNCE),
            rollout_timeout: parse(&wcc.spec.restart.rollout_timeout, DEFAULT_ROLLOUT_TIMEOUT),
            min_restart_interval: parse(
                &wcc.spec.restart.min_interval,
                DEFAULT_MIN_RESTART_INTERVAL,
            ),
        }
    }
}

pub async fn reconcile(
    wcc: Arc<WebhookCaCertificate>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let namespace = wcc.namespace().ok_or(ReconcileError::NoNamespace)?;
    let name = wcc.name_any();
    let key = format!("{namespace}/{name}");
    let labels = ResourceLabels {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let api: Api<WebhookCaCertificate> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = run(&wcc, &ctx, &api, &namespace, &key).await;
    let label = match &result {
        Ok(_) => "success",
        Err(e) => e.metric_label(),
    };
    ctx.metrics
        .observe_reconcile(&labels, label, started.elapsed());
    if wcc.metadata.deletion_timestamp.is_some() {
        ctx.metrics.forget(&labels);
    }
    result
}

pub fn error_policy(
    wcc: Arc<WebhookCaCertificate>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(
        namespace = wcc.namespace().unwrap_or_default(),
        name = wcc.name_any(),
        error = %error,
        "reconcile failed; retrying"
    );
    Action::requeue(ctx.settings.retry_interval.min(Duration::from_secs(15)))
}

async fn run(
    wcc: &WebhookCaCertificate,
    ctx: &Context,
    api: &Api<WebhookCaCertificate>,
    namespace: &str,
    key: &str,
) -> Result<Action, ReconcileError> {
    let finalizer_error = |source| ReconcileError::Finalizer {
        key: key.to_owned(),
        source,
    };
    if wcc.metadata.deletion_timestamp.is_some() {
        if wcc.finalizers().iter().any(|f| f == FINALIZER) {
            cleanup(wcc, ctx, namespace, key).await;
            remove_finalizer(api, wcc).await.map_err(finalizer_error)?;
        }
        ctx.forget(key);
        return Ok(Action::await_change());
    }
    if align_finalizer(api, wcc).await.map_err(finalizer_error)? {
        // The patch bumps resourceVersion; the next pass starts from the new object.
        return Ok(Action::requeue(Duration::ZERO));
    }

    let knobs = Knobs::of(wcc);
    let now = Timestamp::now();
    let mut outcome = Outcome::default();
    evaluate(wcc, ctx, namespace, key, &knobs, now, &mut outcome).await;

    // A step that decided Ready itself (suspend) keeps its verdict.
    if !outcome.verdicts.iter().any(|v| v.type_ == READY) {
        let ready = ready_verdict(&outcome.verdicts, wcc.spec.restart.wait_for_rollout);
        outcome.verdicts.insert(0, ready);
    }
    let is_ready = outcome
        .verdicts
        .iter()
        .any(|v| v.type_ == READY && v.status);
    ctx.metrics
        .ready
        .get_or_create(&ResourceLabels {
            namespace: namespace.to_owned(),
            name: wcc.name_any(),
        })
        .set(i64::from(is_ready));

    publish_events(wcc, ctx, &outcome).await;
    write_status(wcc, api, key, &outcome, now).await?;
    Ok(Action::requeue(
        outcome
            .requeue
            .unwrap_or(knobs.drift_check)
            .min(knobs.drift_check),
    ))
}

/// Everything between reading the spec and writing the status. Each step that fails records
/// its verdict and returns: nothing later runs on a bundle that is not good.
async fn evaluate(
    wcc: &WebhookCaCertificate,
    ctx: &Context,
    namespace: &str,
    key: &str,
    knobs: &Knobs,
    now: Timestamp,
    out: &mut Outcome,
) {
    let retry = ctx.settings.retry_interval;
    let spec = &wcc.spec;

    let sources = match resolve_sources(&ctx.client, namespace, &spec.sources).await {
        Ok(sources) => sources,
        Err(e) => {
            out.verdict(BUNDLE_VALID, false, e.reason(), e.to_string());
            out.requeue_within(retry);
            return;
        }
    };
    let inputs: Vec<SourceInput<'_>> = sources
        .iter()
        .map(|s| SourceInput {
            source: &s.name,
            pem: &s.pem,
        })
        .collect();
    let bundle = match bundle::build(&inputs, &spec.policy.at(now)) {
        Ok(bundle) => bundle,
        Err(e) => {
            out.verdict(BUNDLE_VALID, false, e.reason(), e.to_string());
            out.requeue_within(retry);
            return;
        }
    };
    let mut valid = format!(
        "{} certificate(s) from {} source(s), sha256 {}",
        bundle.certificates.len(),
        inputs.len(),
        short(&bundle.sha256)
    );
    out.notes
        .extend(super::dropped::note(wcc, &bundle, &mut valid));
    out.verdict(BUNDLE_VALID, true, "Valid", valid);
    out.verdicts.push(expiry_verdict(&bundle, now));
    record_bundle_metrics(ctx, namespace, &wcc.name_any(), &bundle);
    out.bundle = Some(bundle_status(&bundle));

    if spec.suspend {
        out.verdict(
            READY,
            false,
            "Suspended",
            "spec.suspend is true: no uploads, deletions or restarts",
        );
        return;
    }

    let Some(client) = api_client(wcc, ctx, namespace, key, out).await else {
        out.requeue_within(retry);
        return;
    };
    if !upload(&client, &bundle, ctx, wcc, key, knobs, now, out).await {
        return;
    }
    restart(wcc, ctx, namespace, &bundle.sha256, knobs, now, out).await;
}

async fn api_client(
    wcc: &WebhookCaCertificate,
    ctx: &Context,
    namespace: &str,
    key: &str,
    out: &mut Outcome,
) -> Option<OnPremClient> {
    let target = &wcc.spec.api;
    let trust = match tls_trust(&ctx.client, namespace, &target.tls).await {
        Ok(trust) => trust,
        Err(e) => {
            out.verdict(UPLOADED, false, e.reason(), e.to_string());
            return None;
        }
    };
    if matches!(trust, TlsTrust::InsecureSkipVerify) {
        out.verdict(
            INSECURE_TLS,
            true,
            "InsecureSkipVerify",
            "TLS verification of the API is disabled: anyone on the path can read the credentials",
        );
    } else {
        out.verdict(
            INSECURE_TLS,
            false,
            "Verified",
            "the API's certificate is verified",
        );
    }
    let settings_key = client_settings_key(target, &trust);
    let built = ctx.api_client(key, &settings_key, || {
        let mut config = ClientConfig::new(target.url.clone(), trust.clone());
        config.allow_plain_http = target.allow_plain_http;
        config.request_timeout = target
            .timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
            .unwrap_or(DEFAULT_API_TIMEOUT);
        config.retry = ctx.settings.api_retry.clone();
        let credentials = SecretCredentials::new(
            ctx.client.clone(),
            namespace.to_owned(),
            target.credentials.clone(),
        );
        OnPremClient::new(config, Arc::new(credentials))
    });
    match built {
        Ok(client) => Some(client),
        Err(e) => {
            out.verdict(UPLOADED, false, e.reason().as_str(), e.to_string());
            None
        }
    }
}

/// Everything that, when changed, needs a new client (and a new login).
fn client_settings_key(target: &ApiTarget, trust: &TlsTrust) -> String {
    let trust = match trust {
        TlsTrust::SystemRoots => "system".to_owned(),
        TlsTrust::InsecureSkipVerify => "insecure".to_owned(),
        TlsTrust::CaPem(pem) => crate::bundle::canonicalize(pem)
            .map(|c| c.sha256)
            .unwrap_or_else(|_| format!("raw:{}", pem.len())),
    };
    let credentials = serde_json::to_string(&target.credentials).unwrap_or_default();
    format!(
        "{}|{}|{:?}|{trust}|{credentials}",
        target.url, target.allow_plain_http, target.timeout
    )
}

/// Compares with what the API holds and uploads when it differs. Returns whether the API now
/// holds the bundle (so that restarts may follow).
#[allow(
    clippy::too_many_arguments,
    reason = "one step of the pipeline, all of it read-only"
)]
async fn upload(
    client: &OnPremClient,
    bundle: &Bundle,
    ctx: &Context,
    wcc: &WebhookCaCertificate,
    key: &str,
    knobs: &Knobs,
    now: Timestamp,
    out: &mut Outcome,
) -> bool {
    let retry = ctx.settings.retry_interval;
    let remote = match client.get_webhook_ca().await {
        Ok(remote) => remote,
        Err(e) => {
            out.verdict(UPLOADED, false, e.reason().as_str(), e.to_string());
            out.requeue_within(retry);
            return false;
        }
    };
    out.last_drift_check_time = Some(Time(now));
    if remote.as_deref().is_some_and(|r| bundle.matches(r)) {
        ctx.settle(key);
        out.uploaded_sha256 = Some(bundle.sha256.clone());
        out.verdict(
            UPLOADED,
            true,
            "UpToDate",
            format!("the API holds the bundle, sha256 {}", short(&bundle.sha256)),
        );
        return true;
    }

    let wait = ctx.debounce(key, &bundle.sha256, knobs.debounce);
    if !wait.is_zero() {
        out.verdict(
            UPLOADED,
            false,
            "Pending",
            format!(
                "waiting {}s for further source changes before uploading",
                wait.as_secs_f64().ceil()
            ),
        );
        out.requeue_within(wait);
        return false;
    }

    let labels = |result: &str| ResultLabels {
        namespace: wcc.namespace().unwrap_or_default(),
        name: wcc.name_any(),
        result: result.to_owned(),
    };
    if let Err(e) = client.upload_webhook_ca(&bundle.pem).await {
        ctx.metrics
            .uploads
            .get_or_create(&labels(e.reason().as_str()))
            .inc();
        out.verdict(UPLOADED, false, e.reason().as_str(), e.to_string());
        out.requeue_within(retry);
        return false;
    }
    // Read back: the webapp stores what it is given, but a proxy or a failover may not.
    match client.get_webhook_ca().await {
        Ok(Some(stored)) if bundle.matches(&stored) => {}
        Ok(_) => {
            ctx.metrics
                .uploads
                .get_or_create(&labels("ReadBackMismatch"))
                .inc();
            out.verdict(
                UPLOADED,
                false,
                "ReadBackMismatch",
                "the API accepted the upload but holds a different bundle when read back",
            );
            out.requeue_within(retry);
            return false;
        }
        Err(e) => {
            out.verdict(UPLOADED, false, e.reason().as_str(), e.to_string());
            out.requeue_within(retry);
            return false;
        }
    }
    ctx.settle(key);
    ctx.metrics.uploads.get_or_create(&labels("success")).inc();
    let replaced = if remote.is_some() {
        "replacing a different bundle"
    } else {
        "none was stored"
    };
    let message = format!(
        "uploaded {} certificate(s), sha256 {} ({replaced})",
        bundle.certificates.len(),
        short(&bundle.sha256)
    );
    out.notes
        .push((EventType::Normal, "Uploaded", message.clone()));
    out.verdict(UPLOADED, true, "Uploaded", message);
    out.uploaded_sha256 = Some(bundle.sha256.clone());
    out.last_upload_time = Some(Time(now));
    true
}

/// Restarts what does not run the uploaded bundle yet, then follows the rollout.
async fn restart(
    wcc: &WebhookCaCertificate,
    ctx: &Context,
    namespace: &str,
    sha: &str,
    knobs: &Knobs,
    now: Timestamp,
    out: &mut Outcome,
) {
    let spec = &wcc.spec.restart;
    if spec.method == RestartMethod::None {
        out.verdict(
            ROLLOUT_COMPLETE,
            true,
            "RestartDisabled",
            "restart.method is None: the bundle takes effect when the coreapp nodes next restart",
        );
        return;
    }
    let targets = match resolve_targets(&ctx.client, namespace, spec).await {
        Ok(targets) => targets,
        Err(e) => {
            out.verdict(ROLLOUT_COMPLETE, false, e.reason(), e.to_string());
            out.requeue_within(ctx.settings.retry_interval);
            return;
        }
    };
    let previous = wcc.status.as_ref().and_then(|s| s.rollout.as_ref());
    let same_bundle = previous.filter(|r| r.bundle_sha256 == sha);

    // A restart for this bundle is owed when a target does not carry its hash (RolloutRestart)
    // or when no rollout for it has been recorded yet (Evict, which leaves no mark on the spec).
    let owed: Vec<&Workload> = match spec.method {
        RestartMethod::RolloutRestart => targets
            .iter()
            .filter(|w| w.template_hash.as_deref() != Some(sha))
            .collect(),
        _ if same_bundle.is_none() => targets.iter().collect(),
        _ => Vec::new(),
    };
    let started_at = if owed.is_empty() {
        same_bundle
            .and_then(|r| r.started_at.clone())
            .unwrap_or(Time(now))
    } else {
        if let Some(wait) = throttled(previous, knobs.min_restart_interval, now) {
            out.verdict(
                ROLLOUT_COMPLETE,
                false,
                "RestartThrottled",
                format!(
                    "the last restart began less than restart.minInterval ago; next one in {}s",
                    wait.as_secs()
                ),
            );
            out.requeue_within(wait);
            return;
        }
        if spec.method == RestartMethod::RolloutRestart
            && let Err(e) = stamp(ctx, namespace, &owed, sha, now).await
        {
            out.verdict(ROLLOUT_COMPLETE, false, e.reason(), e.to_string());
            out.requeue_within(ctx.settings.retry_interval);
            return;
        }
        let names: Vec<String> = owed
            .iter()
            .map(|w| format!("{}/{}", kind_name(w.kind), w.name))
            .collect();
        out.notes.push((
            EventType::Normal,
            "RolloutStarted",
            format!(
                "restarting {} for bundle sha256 {}",
                names.join(", "),
                short(sha)
            ),
        ));
        Time(now)
    };

    let mut rollout = RolloutStatus {
        bundle_sha256: sha.to_owned(),
        started_at: Some(started_at.clone()),
        completed_at: None,
        targets: Vec::new(),
    };
    let mut waiting_on_evictions = false;
    for w in &targets {
        let mut progress = if owed.iter().any(|o| o.name == w.name && o.kind == w.kind)
            && spec.method == RestartMethod::RolloutRestart
        {
            // Just patched: the workload's status has not seen the new template yet.
            in_progress("restart requested".to_owned())
        } else {
            w.progress.clone()
        };
        if spec.method == RestartMethod::Evict {
            match evict_step(&ctx.client, namespace, w, started_at.0).await {
                Ok(EvictStep::Done) => {}
                Ok(EvictStep::Evicted { pod }) => {
                    waiting_on_evictions = true;
                    progress = in_progress(format!("evicted pod {pod}"));
                }
                Ok(EvictStep::Waiting { reason }) => {
                    waiting_on_evictions = true;
                    progress = in_progress(reason);
                }
                Err(e) => {
                    out.verdict(ROLLOUT_COMPLETE, false, e.reason(), e.to_string());
                    out.requeue_within(ctx.settings.retry_interval);
                    return;
                }
            }
        }
        rollout.targets.push(target_rollout(w, &progress));
    }

    let failed = rollout
        .targets
        .iter()
        .find(|t| t.state == RolloutState::Failed);
    let complete = !waiting_on_evictions
        && rollout
            .targets
            .iter()
            .all(|t| t.state == RolloutState::Complete);
    let elapsed = Duration::try_from(now.duration_since(started_at.0)).unwrap_or(Duration::ZERO);
    let overdue = elapsed > knobs.rollout_timeout;
    if let Some(f) = failed {
        let message = format!(
            "{}/{}: {}",
            kind_name(f.kind),
            f.name,
            f.message.clone().unwrap_or_default()
        );
        out.verdict(ROLLOUT_COMPLETE, false, "RolloutFailed", message);
        out.requeue_within(ctx.settings.retry_interval);
    } else if complete {
        rollout.completed_at = same_bundle
            .and_then(|r| r.completed_at.clone())
            .or(Some(Time(now)));
        out.verdict(
            ROLLOUT_COMPLETE,
            true,
            "RolloutComplete",
            format!(
                "{} workload(s) run with bundle sha256 {}",
                rollout.targets.len(),
                short(sha)
            ),
        );
    } else if overdue {
        out.verdict(
            ROLLOUT_COMPLETE,
            false,
            "RolloutTimeout",
            "the restart did not finish within restart.rolloutTimeout",
        );
        out.requeue_within(ctx.settings.retry_interval);
    } else {
        let pending: Vec<String> = rollout
            .targets
            .iter()
            .filter(|t| t.state != RolloutState::Complete)
            .map(|t| {
                format!(
                    "{}/{} {}/{}",
                    kind_name(t.kind),
                    t.name,
                    t.updated_replicas,
                    t.replicas
                )
            })
            .collect();
        out.verdict(
            ROLLOUT_COMPLETE,
            false,
            "RolloutInProgress",
            format!("rolling: {}", pending.join(", ")),
        );
        out.requeue_within(ctx.settings.progress_interval);
    }
    out.rollout = Some(rollout);
}

/// Remaining wait when a restart for another bundle began less than `min_interval` ago.
fn throttled(
    previous: Option<&RolloutStatus>,
    min_interval: Duration,
    now: Timestamp,
) -> Option<Duration> {
    let began = previous?.started_at.as_ref()?.0;
    // A start in the future (clock skew between replicas) counts as just now.
    let since = Duration::try_from(now.duration_since(began)).unwrap_or(Duration::ZERO);
    let wait = min_interval.saturating_sub(since);
    (!wait.is_zero()).then_some(wait)
}

async fn stamp(
    ctx: &Context,
    namespace: &str,
    owed: &[&Workload],
    sha: &str,
    now: Timestamp,
) -> Result<(), RestartError> {
    for w in owed {
        let result = rollout_restart(&ctx.client, namespace, w, sha, now).await;
        let labels = RestartLabels {
            namespace: namespace.to_owned(),
            kind: kind_name(w.kind).to_owned(),
            method: "RolloutRestart".to_owned(),
            result: match &result {
                Ok(()) => "success".to_owned(),
                Err(e) => e.reason().to_owned(),
            },
        };
        ctx.metrics.restarts.get_or_create(&labels).inc();
        result?;
    }
    Ok(())
}

fn in_progress(message: String) -> Progress {
    Progress::InProgress {
        updated: 0,
        replicas: 0,
        message,
    }
}

fn target_rollout(w: &Workload, progress: &Progress) -> TargetRollout {
    let (state, updated, replicas) = match progress {
        Progress::Complete { .. } => (RolloutState::Complete, 0, 0),
        Progress::InProgress {
            updated, replicas, ..
        } => (RolloutState::InProgress, *updated, *replicas),
        Progress::Failed { .. } => (RolloutState::Failed, 0, 0),
    };
    TargetRollout {
        kind: w.kind,
        name: w.name.clone(),
        state,
        updated_replicas: updated,
        replicas,
        message: Some(progress.message().to_owned()).filter(|m| !m.is_empty()),
    }
}

/// `deletionPolicy: Delete`: remove the bundle from the API and restart the targets. Best
/// effort by design: a missing credential Secret or an unreachable API must not hold the
/// resource forever, so failures become a Warning Event and deletion goes on.
async fn cleanup(wcc: &WebhookCaCertificate, ctx: &Context, namespace: &str, key: &str) {
    let mut outcome = Outcome::default();
    let deleted = match api_client(wcc, ctx, namespace, key, &mut outcome).await {
        Some(client) => client.delete_webhook_ca().await.map_err(|e| e.to_string()),
        None => Err(outcome
            .verdicts
            .iter()
            .find(|v| !v.status)
            .map(|v| v.message.clone())
            .unwrap_or_else(|| "no API client".to_owned())),
    };
    let (type_, reason, note) = match deleted {
        Ok(_) => (
            EventType::Normal,
            "Deleted",
            "deleted the webhook CA bundle from the API (deletionPolicy: Delete)".to_owned(),
        ),
        Err(e) => (
            EventType::Warning,
            "CleanupFailed",
            format!("could not delete the bundle from the API; it stays there: {e}"),
        ),
    };
    publish(ctx, wcc, type_, reason, note).await;
    if type_ == EventType::Normal && wcc.spec.restart.method == RestartMethod::RolloutRestart {
        // Without a bundle the coreapps need a restart too; the marker names the empty state.
        if let Ok(targets) = resolve_targets(&ctx.client, namespace, &wcc.spec.restart).await {
            let refs: Vec<&Workload> = targets.iter().collect();
            if let Err(e) = stamp(ctx, namespace, &refs, "none", Timestamp::now()).await {
                publish(ctx, wcc, EventType::Warning, e.reason(), e.to_string()).await;
            }
        }
    }
}

fn record_bundle_metrics(ctx: &Context, namespace: &str, name: &str, bundle: &Bundle) {
    let labels = ResourceLabels {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    ctx.metrics
        .certificates
        .get_or_create(&labels)
        .set(i64::try_from(bundle.certificates.len()).unwrap_or(i64::MAX));
    if let Some(first) = bundle.earliest_expiry() {
        ctx.metrics
            .earliest_expiry
            .get_or_create(&labels)
            .set(first.not_after.as_second());
    }
}

/// Condition changes become Events (reason = condition reason); so do the notes.
async fn publish_events(wcc: &WebhookCaCertificate, ctx: &Context, outcome: &Outcome) {
    let old = wcc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    for v in changed(old, &outcome.verdicts) {
        let bad = match v.type_ {
            EXPIRING_SOON | INSECURE_TLS => v.status,
            _ => !v.status && !matches!(v.reason.as_str(), "Pending" | "RolloutInProgress"),
        };
        let good_news = v.status && matches!(v.type_, READY | ROLLOUT_COMPLETE);
        if bad {
            publish(ctx, wcc, EventType::Warning, &v.reason, v.message.clone()).await;
        } else if good_news {
            publish(ctx, wcc, EventType::Normal, &v.reason, v.message.clone()).await;
        }
    }
    for (type_, reason, note) in &outcome.notes {
        publish(ctx, wcc, *type_, reason, note.clone()).await;
    }
}

async fn publish(
    ctx: &Context,
    wcc: &WebhookCaCertificate,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    // An Event that cannot be written is not worth failing the reconcile for.
    if let Err(e) = ctx.recorder().publish(&event, &wcc.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "could not publish an Event");
    }
}

async fn write_status(
    wcc: &WebhookCaCertificate,
    api: &Api<WebhookCaCertificate>,
    key: &str,
    outcome: &Outcome,
    now: Timestamp,
) -> Result<(), ReconcileError> {
    let old = wcc.status.clone().unwrap_or_default();
    let status = WebhookCaCertificateStatus {
        observed_generation: wcc.metadata.generation,
        conditions: merge_conditions(
            &old.conditions,
            &outcome.verdicts,
            wcc.metadata.generation,
            now,
        ),
        bundle: outcome.bundle.clone().or(old.bundle),
        uploaded_sha256: outcome.uploaded_sha256.clone().or(old.uploaded_sha256),
        last_upload_time: outcome.last_upload_time.clone().or(old.last_upload_time),
        last_drift_check_time: outcome
            .last_drift_check_time
            .clone()
            .or(old.last_drift_check_time),
        rollout: outcome.rollout.clone().or(old.rollout),
    };
    let patch = json!({
        "apiVersion": WebhookCaCertificate::api_version(&()),
        "kind": WebhookCaCertificate::kind(&()),
        "status": status,
    });
    api.patch_status(
        &wcc.name_any(),
        &PatchParams::apply(CONTROLLER_NAME).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| ReconcileError::Status {
        key: key.to_owned(),
        source,
    })
}

fn short(sha: &str) -> &str {
    sha.get(..16).unwrap_or(sha)
}
