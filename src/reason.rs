//! The one way every error type names itself in status: a stable CamelCase reason that
//! conditions, Events and metric labels share.

/// An error that can stand as a condition's reason.
pub trait ConditionReason: std::error::Error {
    /// The CamelCase reason, stable across releases: alerts and scripts match on it.
    fn reason(&self) -> &'static str;

    /// Whether only a change the operator watches (the resource itself, or a Secret or
    /// ConfigMap it reads) can cure this. Such a failure needs no retry timer: the watch brings
    /// the next pass. Everything else is retried after the controller's retry interval.
    fn awaits_change(&self) -> bool {
        false
    }
}
