//! webhook-ca-operator: keeps the webhook CA bundle of WhatsApp Business On-Premises API
//! installations in step with Secrets, ConfigMaps and inline PEM in the cluster.

pub mod bundle;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod http;
pub mod metrics;
pub mod onprem;
pub mod telemetry;
pub mod tls;
