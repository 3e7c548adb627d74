//! Reporting certificates the policy left out of the bundle (`expired: Drop` and the like): in
//! the `BundleValid` message on every pass, and as one Warning Event when that message changes,
//! not once per pass.

use kube::runtime::events::EventType;

use super::status::BUNDLE_VALID;
use crate::bundle::Bundle;
use crate::crd::WebhookCaCertificate;

/// The Event reason for a bundle built without some of its certificates.
pub const REASON: &str = "CertificateDropped";

/// Appends what was left out to `message` (the `BundleValid` message) and returns the Warning
/// Event to write, when the message differs from the one the resource's status holds.
pub fn note(
    wcc: &WebhookCaCertificate,
    bundle: &Bundle,
    message: &mut String,
) -> Option<(EventType, &'static str, String)> {
    let dropped = bundle.dropped_note()?;
    message.push_str("; ");
    message.push_str(&dropped);
    let previous = wcc
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == BUNDLE_VALID)
        .map(|c| c.message.as_str());
    (previous != Some(message.as_str())).then_some((EventType::Warning, REASON, dropped))
}
