//! A fresh namespace per test, deleted when the test ends (also when it panics).

use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, Resource};

use super::cleanup::DeleteOnDrop;
use super::cluster::{Cluster, cluster};

/// Label on every test namespace, so leftovers of an attached cluster are easy to find.
const TEST_LABEL: &str = "webhook-ca-operator.test/namespace";

/// A namespace named `wco-<prefix>-<random>` in the test cluster.
pub struct TestNamespace {
    cluster: &'static Cluster,
    name: String,
    client: Client,
    _delete: DeleteOnDrop,
}

impl TestNamespace {
    /// Creates the namespace (starting the cluster first if this is the binary's first use).
    pub async fn new(prefix: &str) -> Self {
        crate::test_logs::init();
        let cluster = cluster().await;
        let client = cluster.client();
        let name = namespace_name(prefix, rand::random::<u32>());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(TEST_LABEL.to_owned(), "true".to_owned())])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self {
            cluster,
            _delete: DeleteOnDrop::cluster_scoped(cluster, "namespace", &name),
            name,
            client,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cluster(&self) -> &'static Cluster {
        self.cluster
    }

    /// An admin client bound to the calling test's runtime.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// An API for namespaced resources of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

/// `wco-<prefix>-<6 hex digits>`, with the prefix reduced to what a DNS label allows.
fn namespace_name(prefix: &str, random: u32) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    clean = clean.trim_matches('-').to_owned();
    if clean.is_empty() {
        clean.push_str("test");
    }
    format!("wco-{clean}-{:06x}", random & 0xff_ffff)
}
