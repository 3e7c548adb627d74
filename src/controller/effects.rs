//! Dry-run in one place. Everything a pass may change outside the resource's own status and
//! Events (the finalizer, the POST and DELETE on the API, pod-template patches, evictions) is
//! reached only through a function that takes a [`Live`], and only [`Context::live`] makes one:
//! in dry-run mode it makes none, so such a change cannot happen by accident. A step that gets
//! no `Live` says what it would have done instead (the [`DRY_RUN`] reason).

use super::Context;
use crate::onprem::{ApiError, DeleteOutcome, OnPremClient};

/// The condition and Event reason of a pass that stopped short of a change in dry-run mode.
pub const DRY_RUN: &str = "DryRun";

/// Proof that this operator may change the world: not in dry-run mode. Zero-sized; its private
/// field keeps anyone but [`Context::live`] from making one.
#[derive(Clone, Copy, Debug)]
pub struct Live {
    _private: (),
}

impl Context {
    /// A [`Live`] unless the operator runs with `--dry-run`.
    pub fn live(&self) -> Option<Live> {
        (!self.settings.dry_run).then_some(Live { _private: () })
    }
}

impl Live {
    /// `POST` the bundle: the controller's one way to upload.
    pub async fn upload(self, client: &OnPremClient, pem: &str) -> Result<(), ApiError> {
        client.upload_webhook_ca(pem).await
    }

    /// `DELETE` the bundle: the controller's one way to remove it from the API.
    pub async fn delete(self, client: &OnPremClient) -> Result<DeleteOutcome, ApiError> {
        client.delete_webhook_ca().await
    }
}
