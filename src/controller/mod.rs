//! The controller of `WebhookCaCertificate` resources.

pub mod status;
