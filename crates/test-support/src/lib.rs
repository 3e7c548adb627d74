//! Support for webhook-ca-operator's tests: generated certificates ([`certs`]), and for the
//! integration tests that run against a real Kubernetes control plane, the cluster, a namespace
//! per test, and the operator's end-to-end setup ([`operator`]). A dev-dependency of the
//! operator crate; per test:
//!
//! ```ignore
//! use test_support::TestNamespace;
//!
//! #[tokio::test]
//! async fn something() {
//!     let ns = TestNamespace::new("something").await; // fresh namespace, deleted on drop
//!     let pods: kube::Api<Pod> = ns.api();
//!     test_support::run_ok(ns.cluster().kubectl().args(["get", "pods", "-n", ns.name()]));
//! }
//! ```
//!
//! The first test of a binary to ask for the cluster starts one with `hack/cluster/up.sh` in
//! `target/test-cluster/<test binary>` (building the binaries with `hack/cluster/build.sh` first,
//! a no-op when warm), owned by this process: the script's watchdog stops it when the test binary
//! exits, so no teardown hook is needed. `WCO_TEST_KUBECONFIG=/path/to/kubeconfig` attaches to a
//! running cluster instead (start one by hand with up.sh to debug; see docs/test-cluster.md).
//! If the cluster cannot start, every test that needs it fails with the failing component's log
//! tail; nothing is skipped.
//!
//! Helpers that run kubectl or helm block the calling thread; that is fine in `#[tokio::test]`
//! unless the same runtime also drives background tasks, in which case use
//! `#[tokio::test(flavor = "multi_thread")]`.

pub mod certs;
mod cleanup;
mod cluster;
pub mod controller;
mod namespace;
pub mod operator;
pub mod operator_process;
mod process;
mod rollout;
pub mod secret_scan;
pub mod test_logs;
mod token;
mod wait;
pub mod webhook;

pub use cleanup::DeleteOnDrop;
pub use cluster::{Cluster, bin, cluster, dedicated_cluster};
pub use namespace::TestNamespace;
pub use process::{run, run_ok, run_with_input};
pub use rollout::rollout_status;
pub use token::token_for;
pub use wait::wait_for;
