//! One API, one owner; one workload, one restarter. Two resources that name the same API would
//! each upload their own bundle and roll the coreapps at every drift check, forever. The oldest
//! resource (creationTimestamp, then namespace/name) owns what both name; the others step back
//! until it goes away.

use std::sync::Arc;

use kube::ResourceExt;

use super::status::{CONFLICT, READY};
use super::step::{Requeue, StepFailure};
use crate::crd::{WebhookCaCertificate, WorkloadKind};

/// The step: stop unless `wcc` owns its API. Nothing is read from or written to the API of a
/// resource that does not.
pub fn own_api(
    wcc: &WebhookCaCertificate,
    all: &[Arc<WebhookCaCertificate>],
) -> Result<(), StepFailure> {
    match api_owner(wcc, all) {
        None => Ok(()),
        Some(owner) => Err(StepFailure::halt(
            READY,
            CONFLICT,
            format!(
                "the API {} is managed by the older WebhookCaCertificate {}; this resource \
                 uploads, deletes and restarts nothing while that one exists",
                wcc.spec.api.url,
                display(owner)
            ),
            Requeue::OnChange,
        )),
    }
}

/// The step: stop unless no older resource restarts one of `targets`.
pub fn own_workloads(
    wcc: &WebhookCaCertificate,
    all: &[Arc<WebhookCaCertificate>],
    targets: &[(WorkloadKind, &str)],
) -> Result<(), StepFailure> {
    match workload_owner(wcc, all, targets) {
        None => Ok(()),
        Some((owner, kind, name)) => Err(StepFailure::halt(
            READY,
            CONFLICT,
            format!(
                "{kind:?}/{name} is restarted by the older WebhookCaCertificate {}; this \
                 resource restarts nothing while that one exists",
                display(owner)
            ),
            Requeue::OnChange,
        )),
    }
}

fn display(w: &WebhookCaCertificate) -> String {
    format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any())
}

/// The API a URL names, as equality should see it: scheme, lower-cased host, the port with
/// its default filled in, and the path without a trailing slash.
pub fn api_identity(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(u) => format!(
            "{}://{}:{}{}",
            u.scheme(),
            u.host_str().unwrap_or_default().to_ascii_lowercase(),
            u.port_or_known_default().unwrap_or_default(),
            u.path().trim_end_matches('/')
        ),
        // Unparsable URLs fail at the client anyway; compare them as written.
        Err(_) => url.trim().to_ascii_lowercase(),
    }
}

/// Whether `w` may own anything: resources on their way out or suspended hand over.
fn contends(w: &WebhookCaCertificate) -> bool {
    w.metadata.deletion_timestamp.is_none() && !w.spec.suspend
}

fn precedence(w: &WebhookCaCertificate) -> (Option<jiff::Timestamp>, String, String) {
    (
        w.metadata.creation_timestamp.as_ref().map(|t| t.0),
        w.namespace().unwrap_or_default(),
        w.name_any(),
    )
}

fn is_same(a: &WebhookCaCertificate, b: &WebhookCaCertificate) -> bool {
    a.namespace() == b.namespace() && a.name_any() == b.name_any()
}

/// The older resource that owns `me`'s API, if one other than `me` does.
pub fn api_owner<'a>(
    me: &WebhookCaCertificate,
    all: &'a [Arc<WebhookCaCertificate>],
) -> Option<&'a WebhookCaCertificate> {
    let id = api_identity(&me.spec.api.url);
    all.iter()
        .map(Arc::as_ref)
        .filter(|w| contends(w) && api_identity(&w.spec.api.url) == id)
        .min_by_key(|w| precedence(w))
        .filter(|owner| !is_same(owner, me) && precedence(owner) < precedence(me))
}

/// The workloads a resource restarts: named in its spec, or recorded in its last rollout.
fn claims(w: &WebhookCaCertificate, kind: WorkloadKind, name: &str) -> bool {
    let named = w
        .spec
        .restart
        .targets
        .iter()
        .any(|t| t.kind == kind && t.name.as_deref() == Some(name));
    let rolled = w
        .status
        .as_ref()
        .and_then(|s| s.rollout.as_ref())
        .is_some_and(|r| r.targets.iter().any(|t| t.kind == kind && t.name == name));
    named || rolled
}

/// The oldest resource in `me`'s namespace, older than `me`, that restarts one of `targets`,
/// with that target.
pub fn workload_owner<'a, 't>(
    me: &WebhookCaCertificate,
    all: &'a [Arc<WebhookCaCertificate>],
    targets: &[(WorkloadKind, &'t str)],
) -> Option<(&'a WebhookCaCertificate, WorkloadKind, &'t str)> {
    let mut older: Vec<&WebhookCaCertificate> = all
        .iter()
        .map(Arc::as_ref)
        .filter(|w| {
            contends(w)
                && w.namespace() == me.namespace()
                && !is_same(w, me)
                && precedence(w) < precedence(me)
        })
        .collect();
    older.sort_by_key(|w| precedence(w));
    older.into_iter().find_map(|w| {
        targets
            .iter()
            .find(|(kind, name)| claims(w, *kind, name))
            .map(|&(kind, name)| (w, kind, name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wcc(
        ns: &str,
        name: &str,
        created: &str,
        url: &str,
        targets: serde_json::Value,
    ) -> Arc<WebhookCaCertificate> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "webhookca.io/v1alpha1",
                "kind": "WebhookCaCertificate",
                "metadata": { "namespace": ns, "name": name, "creationTimestamp": created },
                "spec": {
                    "sources": [{ "inline": "x" }],
                    "api": { "url": url, "credentials": { "tokenSecret": { "name": "t" } } },
                    "restart": { "targets": targets }
                }
            }))
            .expect("a literal resource"),
        )
    }

    #[test]
    fn api_identity_normalises_what_names_the_same_api() {
        let same = [
            "https://WebApp.wa.svc",
            "https://webapp.wa.svc:443",
            "https://webapp.wa.svc:443/",
            " https://webapp.wa.svc/ ",
        ];
        for url in same {
            assert_eq!(api_identity(url), "https://webapp.wa.svc:443", "{url}");
        }
        let different = [
            "http://webapp.wa.svc",
            "https://webapp.wa.svc:8443",
            "https://webapp.other.svc",
            "https://webapp.wa.svc/prefix",
        ];
        for url in different {
            assert_ne!(api_identity(url), "https://webapp.wa.svc:443", "{url}");
        }
    }

    #[test]
    fn the_oldest_resource_owns_the_api_then_namespace_and_name_decide() {
        let url = "https://webapp.wa.svc";
        let first = wcc("b", "prod", "2026-01-01T00:00:00Z", url, json!([]));
        let later = wcc(
            "a",
            "prod",
            "2026-02-01T00:00:00Z",
            "https://WEBAPP.wa.svc:443/",
            json!([]),
        );
        let twin = wcc("a", "twin", "2026-01-01T00:00:00Z", url, json!([]));
        let elsewhere = wcc(
            "c",
            "prod",
            "2025-01-01T00:00:00Z",
            "https://other",
            json!([]),
        );
        let all = vec![
            later.clone(),
            first.clone(),
            twin.clone(),
            elsewhere.clone(),
        ];
        // Same second: namespace "a" sorts before "b".
        assert_eq!(
            api_owner(&first, &all).map(|o| o.name_any()),
            Some("twin".into())
        );
        assert_eq!(
            api_owner(&later, &all).map(|o| o.name_any()),
            Some("twin".into())
        );
        assert!(api_owner(&twin, &all).is_none(), "the owner owns");
        assert!(api_owner(&elsewhere, &all).is_none(), "another API");
        // The owner gone (not in the store): the next oldest takes over.
        let without_twin = vec![later.clone(), first.clone()];
        assert!(api_owner(&first, &without_twin).is_none());
        assert_eq!(
            api_owner(&later, &without_twin).map(|o| o.namespace()),
            Some(Some("b".into()))
        );
    }

    #[test]
    fn suspended_or_deleting_resources_hand_the_api_over() {
        let url = "https://webapp.wa.svc";
        let mut old = (*wcc("a", "old", "2026-01-01T00:00:00Z", url, json!([]))).clone();
        let new = wcc("a", "new", "2026-02-01T00:00:00Z", url, json!([]));
        old.spec.suspend = true;
        assert!(api_owner(&new, &[Arc::new(old.clone()), new.clone()]).is_none());
        old.spec.suspend = false;
        old.metadata.deletion_timestamp = old.metadata.creation_timestamp.clone();
        assert!(api_owner(&new, &[Arc::new(old), new.clone()]).is_none());
    }

    #[test]
    fn a_workload_named_by_an_older_resource_in_the_namespace_is_its_own() {
        let named = json!([{ "kind": "Deployment", "name": "coreapp" }]);
        let old = wcc(
            "wa",
            "old",
            "2026-01-01T00:00:00Z",
            "https://a",
            named.clone(),
        );
        let new = wcc("wa", "new", "2026-02-01T00:00:00Z", "https://b", named);
        let other_ns = wcc(
            "xx",
            "new",
            "2025-01-01T00:00:00Z",
            "https://c",
            json!([{ "kind": "Deployment", "name": "coreapp" }]),
        );
        let all = vec![old.clone(), new.clone(), other_ns];
        let targets = [(WorkloadKind::Deployment, "coreapp")];
        let owner = workload_owner(&new, &all, &targets).map(|(w, _, name)| (w.name_any(), name));
        assert_eq!(owner, Some(("old".into(), "coreapp")));
        assert!(workload_owner(&old, &all, &targets).is_none());
        assert!(workload_owner(&new, &all, &[(WorkloadKind::StatefulSet, "coreapp")]).is_none());
    }
}
