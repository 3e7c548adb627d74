//! The controller of `WebhookCaCertificate` resources: watches, leader election, and the
//! reconcile pipeline (see [`reconcile`]).

mod api;
pub mod conflict;
pub mod context;
pub mod credentials;
mod deletion;
mod dropped;
pub mod effects;
pub mod error;
pub mod finalizer;
mod health;
pub mod reconcile;
mod report;
pub mod restart;
pub mod scope;
pub mod sources;
pub mod status;
pub mod step;
mod upload;
pub mod watch;
mod webhook_trust;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, Predicate, WatchStreamExt, controller, predicates, watcher};

pub use context::{CONTROLLER_NAME, Context, Settings};
pub use scope::{Scope, ScopeError};

use crate::crd::WebhookCaCertificate;
use crate::http::Health;
use crate::metrics::ResourceLabels;
use sources::{ObjectKind, read_last_time, refers_to};

/// Asks for a pass of every resource that stepped back for an owner: the owner may have
/// changed its API or targets, or gone.
fn nudge_conflicted(
    ctx: &Context,
    nudge: &futures::channel::mpsc::UnboundedSender<ObjectRef<WebhookCaCertificate>>,
) {
    for w in ctx.resources() {
        if status::in_conflict(&w) {
            // The receiver lives as long as the controller; a send after it stopped is moot.
            let _ = nudge.unbounded_send(ObjectRef::from_obj(w.as_ref()));
        }
    }
}

/// Resources in the Secret's or ConfigMap's namespace that refer to it, or that read it last
/// time (a Secret that lost the label a selector matched must still trigger them).
fn referrers(
    store: &Store<WebhookCaCertificate>,
    kind: ObjectKind,
    namespace: Option<String>,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Vec<ObjectRef<WebhookCaCertificate>> {
    store
        .state()
        .iter()
        .filter(|w| {
            w.namespace() == namespace
                && (refers_to(w, kind, name, labels) || read_last_time(w, kind, name))
        })
        .map(|w| ObjectRef::from_obj(w.as_ref()))
        .collect()
}

/// Runs the controller until `shutdown` resolves, over the resources of the settings' [`Scope`]
/// (one watch per namespace of a namespace list). Secrets and ConfigMaps are watched by
/// metadata only: a cluster may hold tens of thousands of Secrets, and their data is read only
/// when a resource refers to them.
pub async fn run(
    ctx: Arc<Context>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let scope = ctx.settings.scope.clone();
    let client = ctx.client.clone();

    let (reader, writer) = reflector::store();
    ctx.set_store(reader.clone());
    // Passes that no change of their own would start: the resources in conflict with one that
    // changed or went away (the next oldest takes over), see [`conflict`].
    let (nudge, nudged) = futures::channel::mpsc::unbounded::<ObjectRef<WebhookCaCertificate>>();
    let on_event = {
        let ctx = Arc::clone(&ctx);
        let nudge = nudge.clone();
        move |event: &watcher::Event<WebhookCaCertificate>| match event {
            watcher::Event::Delete(gone) => {
                ctx.forget(&ResourceLabels::of(gone));
                nudge_conflicted(&ctx, &nudge);
            }
            watcher::Event::InitDone => ctx.sweep(),
            _ => {}
        }
    };
    let on_change = {
        let ctx = Arc::clone(&ctx);
        move |_: &WebhookCaCertificate| nudge_conflicted(&ctx, &nudge)
    };
    // Every watch goes through `watch::resilient`: a 410 re-lists at once and the backoff stays
    // short, so the operator sees changes within seconds of an apiserver restart. The
    // namespaces' watches of resources share one store through `scope::merge`, so that one
    // namespace's re-list never drops another's resources from it; the store sees one
    // `InitDone`, and a resource deleted while its namespace's watch was down comes as a Delete.
    // Without managedFields: nothing here reads them, and with a status of a dozen conditions
    // they are the larger part of each cached object.
    let resources = scope
        .watches::<WebhookCaCertificate>(&client, &scope.resource_config())
        .into_iter()
        .map(|watch| watch.modify(|wcc| wcc.managed_fields_mut().clear()).boxed())
        .collect();
    // Status writes and finalizer edits change neither generation nor anything the reconcile
    // reads from the spec; filtering them out keeps a status write from triggering a reconcile.
    let stream = reflector::reflector(writer, scope::merge(resources, reader.clone()))
        .inspect_ok(on_event)
        .touched_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        )
        .inspect_ok(on_change);

    // These feed no store, only triggers: their namespaces' watches are merged as they are.
    let secrets = futures::stream::select_all(
        scope.watches::<PartialObjectMeta<Secret>>(&client, &watcher::Config::default()),
    )
    .touched_objects();
    let config_maps = futures::stream::select_all(
        scope.watches::<PartialObjectMeta<ConfigMap>>(&client, &watcher::Config::default()),
    )
    .touched_objects();

    let for_secrets = reader.clone();
    let for_config_maps = reader.clone();
    let ready_reader = reader.clone();
    let ready_health = Arc::clone(&health);
    tokio::spawn(async move {
        // Ready once the first list of resources is in the cache. The store's readiness is a
        // oneshot that wakes only its latest waiter, and the controller waits on it too: poll
        // again each second instead of trusting one wake-up.
        loop {
            let wait = ready_reader.wait_until_ready();
            match tokio::time::timeout(std::time::Duration::from_secs(1), wait).await {
                Ok(Ok(())) => {
                    ready_health.ready.store(true, Ordering::Relaxed);
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => {}
            }
        }
    });

    let config = controller::Config::default().concurrency(ctx.settings.max_concurrent_reconciles);
    Controller::for_stream(stream, reader)
        .with_config(config)
        // The controller backs off errors of its merged trigger streams once more, with
        // client-go's default (up to 30 s); the same short backoff as the watches themselves.
        .trigger_backoff(watch::WatchBackoff::default())
        .watches_stream(secrets, move |s| {
            referrers(
                &for_secrets,
                ObjectKind::Secret,
                s.namespace(),
                &s.name_any(),
                s.labels(),
            )
        })
        .watches_stream(config_maps, move |c| {
            referrers(
                &for_config_maps,
                ObjectKind::ConfigMap,
                c.namespace(),
                &c.name_any(),
                c.labels(),
            )
        })
        .reconcile_on(nudged)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(resource = %object, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile did not complete"),
            }
        })
        .await;
}
