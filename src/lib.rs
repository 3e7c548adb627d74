//! webhook-ca-operator: keeps the webhook CA bundle of WhatsApp Business On-Premises API
//! installations in step with Secrets, ConfigMaps and inline PEM in the cluster.

/// The operator's name, defined once: the binary and the prefix of its messages, the reporting
/// controller of its Events, the field manager of its writes, its User-Agent.
pub const NAME: &str = "webhook-ca-operator";

pub mod bundle;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod http;
pub mod metrics;
pub mod onprem;
pub mod reason;
pub mod telemetry;
pub mod tls;
pub mod webhook;
