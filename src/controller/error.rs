//! Failures of a reconcile pass itself, as opposed to failures of what it manages (those are
//! conditions in status).

use crate::reason::ConditionReason;

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

impl ConditionReason for ReconcileError {
    fn reason(&self) -> &'static str {
        match self {
            ReconcileError::NoNamespace => "NoNamespace",
            ReconcileError::Status { .. } => "StatusWriteFailed",
            ReconcileError::Finalizer { .. } => "FinalizerUpdateFailed",
        }
    }
}
