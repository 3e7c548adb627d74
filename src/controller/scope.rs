//! What one operator serves: every namespace or a list of them, and optionally only the
//! `WebhookCaCertificate`s whose labels match a selector. Several releases with disjoint scopes
//! (namespace lists, selectors such as `shard=eu` and `shard=us`) split a large fleet, each
//! with its own leader Lease.
//!
//! kube-runtime watches one namespace or all of them. A namespace list is served by one watch
//! per namespace and kind, so that the operator needs no cluster-wide access (a Role in each
//! namespace is enough); [`merge()`] joins the resource watches into the one stream a reflector
//! store and the `Controller` take.

pub mod merge;
pub mod query;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

pub use merge::merge;
pub use query::SelectorParseError;

use super::sources::selector::is_dns_subdomain;
use super::watch;

/// Longest namespace name (a DNS label).
const MAX_NAMESPACE: usize = 63;

/// Namespaces and label selector of the resources this operator reconciles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Empty: every namespace.
    namespaces: Vec<String>,
    /// The selector in the apiserver's `labelSelector` syntax, checked and in canonical form.
    selector: Option<String>,
}

/// A scope the operator cannot serve; reported at startup, before anything is watched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "namespace {0:?} is not a valid namespace name (at most 63 lower-case letters, digits \
         and '-', starting and ending with a letter or digit)"
    )]
    InvalidNamespace(String),
    #[error("label selector {input:?}: {error}")]
    InvalidSelector {
        input: String,
        #[source]
        error: SelectorParseError,
    },
}

impl Scope {
    /// Every resource in every namespace.
    pub fn all() -> Self {
        Self::default()
    }

    /// `namespaces` (none: every namespace; empty names are skipped, so `WATCH_NAMESPACE=""`
    /// means all, and repeated names count once) and a label selector on the resources in the
    /// `labelSelector` syntax (`shard=eu`, `tier in (a,b)`, `!legacy`; empty or absent: all).
    pub fn new<I, S>(namespaces: I, selector: Option<&str>) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<String> = Vec::new();
        for namespace in namespaces {
            let namespace = namespace.as_ref().trim();
            if namespace.is_empty() || list.iter().any(|n| n == namespace) {
                continue;
            }
            if !is_namespace_name(namespace) {
                return Err(ScopeError::InvalidNamespace(namespace.to_owned()));
            }
            list.push(namespace.to_owned());
        }
        let selector = match selector.map(str::trim) {
            None | Some("") => None,
            Some(input) => {
                Some(
                    query::canonical(input).map_err(|error| ScopeError::InvalidSelector {
                        input: input.to_owned(),
                        error,
                    })?,
                )
            }
        };
        Ok(Self {
            namespaces: list,
            selector,
        })
    }

    /// The namespaces watched; empty when every namespace is.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// The label selector on resources, in canonical `labelSelector` syntax.
    pub fn selector(&self) -> Option<&str> {
        self.selector.as_deref()
    }

    /// For logs: `a,b` or `*`.
    pub fn describe_namespaces(&self) -> String {
        if self.namespaces.is_empty() {
            "*".to_owned()
        } else {
            self.namespaces.join(",")
        }
    }

    /// The watch configuration of the resources themselves: the selector, if any. Secrets and
    /// ConfigMaps are watched without it: they are matched to resources in the cache.
    pub fn resource_config(&self) -> watcher::Config {
        match &self.selector {
            Some(selector) => watcher::Config::default().labels(selector),
            None => watcher::Config::default(),
        }
    }

    /// One watch of kind `K` per namespace of the scope (a single one over all namespaces when
    /// the scope has none), each with the controller's short backoff and immediate re-list on
    /// 410 ([`watch::resilient`]), so a failing namespace never delays another.
    pub fn watches<K>(
        &self,
        client: &Client,
        config: &watcher::Config,
    ) -> Vec<BoxStream<'static, watcher::Result<watcher::Event<K>>>>
    where
        K: Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
        K::DynamicType: Default,
    {
        let apis: Vec<Api<K>> = if self.namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        };
        apis.into_iter()
            .map(|api| watch::resilient(watcher(api, config.clone())).boxed())
            .collect()
    }
}

/// A DNS label, as namespace names are: one label of a DNS subdomain, at most 63 long.
fn is_namespace_name(name: &str) -> bool {
    name.len() <= MAX_NAMESPACE && !name.contains('.') && is_dns_subdomain(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_namespace_means_every_namespace() {
        let scope = Scope::new(Vec::<String>::new(), None).unwrap();
        assert_eq!(scope, Scope::all());
        assert!(scope.namespaces().is_empty());
        assert_eq!(scope.describe_namespaces(), "*");
        // WATCH_NAMESPACE="" (the all-namespaces convention of other operators) is the same.
        assert_eq!(Scope::new([""], Some("")).unwrap(), Scope::all());
    }

    #[test]
    fn namespaces_keep_their_order_and_count_once() {
        let scope = Scope::new(["team-b", " team-a", "team-b", ""], None).unwrap();
        assert_eq!(scope.namespaces(), ["team-b", "team-a"]);
        assert_eq!(scope.describe_namespaces(), "team-b,team-a");
    }

    #[test]
    fn invalid_namespace_names_are_refused() {
        for bad in ["Team", "team_a", "-a", "a-", "a.b", "a b", &"a".repeat(64)] {
            let err = Scope::new(["ok", bad], None).unwrap_err();
            assert_eq!(err, ScopeError::InvalidNamespace(bad.to_owned()), "{bad}");
            assert!(err.to_string().contains("not a valid namespace name"));
        }
        assert!(Scope::new([&"a".repeat(63)], None).is_ok());
    }

    #[test]
    fn the_selector_is_checked_and_canonical() {
        let scope = Scope::new(["a"], Some(" shard = eu ")).unwrap();
        assert_eq!(scope.selector(), Some("shard=eu"));
        let err = Scope::new(["a"], Some("shard in eu")).unwrap_err();
        assert!(
            matches!(&err, ScopeError::InvalidSelector { input, .. } if input == "shard in eu"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("label selector \"shard in eu\": ")
        );
    }
}
