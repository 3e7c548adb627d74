//! Deleting test objects when a test ends, also when it panics.

use super::cluster::Cluster;
use super::process::run;
use super::test_logs;

/// Runs `kubectl delete <kind> <name>` when dropped. Drop cannot await and the test's runtime
/// may already be gone, so kubectl does it; `--wait=false` leaves finalization to the cluster.
pub struct DeleteOnDrop {
    cluster: &'static Cluster,
    kind: String,
    name: String,
    namespace: Option<String>,
}

impl DeleteOnDrop {
    /// For a cluster-scoped object (a namespace, a CRD, a ClusterRole...).
    pub fn cluster_scoped(cluster: &'static Cluster, kind: &str, name: &str) -> Self {
        Self {
            cluster,
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: None,
        }
    }

    /// For an object in `namespace` that must go before the namespace does.
    pub fn namespaced(cluster: &'static Cluster, kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            cluster,
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
        }
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        // What the operator wrote into a namespace (Events, statuses) goes with it: keep it for
        // the secret scan after the tests.
        if self.namespace.is_none() && matches!(self.kind.as_str(), "namespace" | "ns") {
            test_logs::dump_namespace(self.cluster, &self.name);
        }
        let mut kubectl = self.cluster.kubectl();
        kubectl.args([
            "delete",
            &self.kind,
            &self.name,
            "--wait=false",
            "--ignore-not-found",
        ]);
        if let Some(ns) = &self.namespace {
            kubectl.args(["--namespace", ns]);
        }
        if let Err(msg) = run(&mut kubectl) {
            eprintln!("leaving {} {} behind: {msg}", self.kind, self.name);
        }
    }
}
