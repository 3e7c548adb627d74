//! Subcommands of the `webhook-ca-operator` binary. Each module owns its arguments and its
//! mapping of errors to exit codes; `main.rs` only dispatches.

pub mod api;
pub mod bundle;
pub mod crd;
pub mod files;
pub mod knobs;
pub mod run;
pub mod webhook_check;
