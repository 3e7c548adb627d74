//! What a step of the reconcile returns when the pass cannot go on: the condition it decides,
//! and when to look again. Every error reaches status through [`StepFailure::of`], so the
//! mapping from errors to conditions lives here.

use std::time::Duration;

use jiff::Timestamp;

use super::Context;
use crate::crd::WebhookCaCertificate;
use crate::metrics::ResourceLabels;
use crate::reason::ConditionReason;

/// What every step of one pass reads: the resource, the shared context, and the pass's clock.
pub struct Pass<'a> {
    pub wcc: &'a WebhookCaCertificate,
    pub ctx: &'a Context,
    pub namespace: &'a str,
    pub resource: &'a ResourceLabels,
    /// `namespace/name`, the key of the context's per-resource state.
    pub key: String,
    pub now: Timestamp,
}

/// When the next pass should come after a step stopped the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// After the controller's retry interval: the cause may pass by itself.
    Retry,
    /// After this long: a wait the step computed (debounce, restart throttle).
    After(Duration),
    /// Only when a watched object changes (or at the next drift check).
    OnChange,
}

/// Why the pipeline stopped at a step: a failure, or a wait (debounce, throttle, suspend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepFailure {
    /// The condition type this step decides, set to False.
    pub condition: &'static str,
    pub reason: String,
    pub message: String,
    pub requeue: Requeue,
}

impl StepFailure {
    /// `error` as the False state of `condition`.
    pub fn of<E: ConditionReason + ?Sized>(condition: &'static str, error: &E) -> Self {
        Self {
            condition,
            reason: error.reason().to_owned(),
            message: error.to_string(),
            requeue: if error.awaits_change() {
                Requeue::OnChange
            } else {
                Requeue::Retry
            },
        }
    }

    /// A stop that is not an error: the step decided to wait, or not to act.
    pub fn halt(
        condition: &'static str,
        reason: &str,
        message: impl Into<String>,
        requeue: Requeue,
    ) -> Self {
        Self {
            condition,
            reason: reason.to_owned(),
            message: message.into(),
            requeue,
        }
    }

    /// Like [`Self::of`], mapping the error first.
    pub fn mapper<E: ConditionReason>(condition: &'static str) -> impl Fn(E) -> Self {
        move |e| Self::of(condition, &e)
    }
}
