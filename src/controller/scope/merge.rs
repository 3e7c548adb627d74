//! Several watches (one per namespace) as one stream of watcher events for one reflector store.
//!
//! A kube-runtime store is made for one watcher: `Init` starts a new buffer and `InitDone`
//! swaps it in for the whole store. Fed by several watchers at once, the re-list of one
//! namespace (after a 410, a dropped connection) would replace every other namespace's objects
//! with its own, and the controller would believe them deleted. So the watches are not merged
//! as they are: each namespace's list is kept here, and the store sees
//!
//! - one `Init`, `InitApply` of every object, `InitDone` once every namespace has listed (so the
//!   store, and with it the controller and `/readyz`, becomes ready only when the whole scope
//!   is in the cache);
//! - after that, the `Apply` and `Delete` events as they come, and for a namespace that lists
//!   again, the difference with what it held: `Apply` of the new and changed objects, `Delete`
//!   of those gone while its watch was down. Other namespaces are never touched by it.
//!
//! Errors pass through unchanged, for the controller's backoff and logs.

use std::collections::HashMap;
use std::hash::Hash;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};

/// `watches` merged into one stream for the reflector store that `store` reads; see the module.
/// The store is where an object that vanished during a re-list is found for its `Delete`:
/// keeping a copy of every object here as well would double the cache.
pub fn merge<K>(
    watches: Vec<BoxStream<'static, watcher::Result<Event<K>>>>,
    store: Store<K>,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let mut merger = Merger::new(watches.len(), store);
    let tagged = watches
        .into_iter()
        .enumerate()
        .map(|(index, watch)| watch.map(move |item| (index, item)).boxed());
    stream::select_all(tagged).flat_map(move |(index, item)| stream::iter(merger.step(index, item)))
}

/// What one watch has listed.
struct Listed<K: Resource>
where
    K::DynamicType: Eq + Hash,
{
    /// The resourceVersion of each object as of the last completed list and the events since:
    /// enough to tell, at a re-list, what changed and what is gone.
    versions: HashMap<ObjectRef<K>, Option<String>>,
    /// The objects themselves, only until the store's first list (they are not in it yet).
    held: HashMap<ObjectRef<K>, K>,
    /// Whether a list has completed at least once.
    complete: bool,
    /// The list in progress, between `Init` and `InitDone`.
    relisting: Option<HashMap<ObjectRef<K>, K>>,
}

/// The state behind [`merge`]: what each watch has listed.
struct Merger<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash,
{
    watches: Vec<Listed<K>>,
    /// Whether the store has had its one `Init`..`InitDone`.
    initialized: bool,
    store: Store<K>,
}

impl<K> Merger<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    fn new(watches: usize, store: Store<K>) -> Self {
        Self {
            watches: (0..watches)
                .map(|_| Listed {
                    versions: HashMap::new(),
                    held: HashMap::new(),
                    complete: false,
                    relisting: None,
                })
                .collect(),
            initialized: false,
            store,
        }
    }

    /// The events for the store after watch `index` yielded `item`.
    fn step(
        &mut self,
        index: usize,
        item: watcher::Result<Event<K>>,
    ) -> Vec<watcher::Result<Event<K>>> {
        let event = match item {
            Ok(event) => event,
            Err(error) => return vec![Err(error)],
        };
        let initialized = self.initialized;
        let Some(watch) = self.watches.get_mut(index) else {
            return Vec::new();
        };
        match event {
            Event::Init => {
                watch.relisting = Some(HashMap::new());
                Vec::new()
            }
            Event::InitApply(object) => {
                watch
                    .relisting
                    .get_or_insert_with(HashMap::new)
                    .insert(key(&object), object);
                Vec::new()
            }
            Event::InitDone => {
                let fresh = watch.relisting.take().unwrap_or_default();
                let previous = std::mem::replace(&mut watch.versions, versions(&fresh));
                watch.complete = true;
                if initialized {
                    difference(&previous, fresh, &self.store)
                } else {
                    watch.held = fresh;
                    self.initialize()
                }
            }
            Event::Apply(object) => {
                let key = key(&object);
                watch
                    .versions
                    .insert(key.clone(), object.meta().resource_version.clone());
                if initialized {
                    vec![Ok(Event::Apply(object))]
                } else {
                    // Held back until the store's first list, which then holds it.
                    watch.held.insert(key, object);
                    Vec::new()
                }
            }
            Event::Delete(object) => {
                let key = key(&object);
                watch.versions.remove(&key);
                watch.held.remove(&key);
                if initialized {
                    vec![Ok(Event::Delete(object))]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// The store's one full list, once every watch has listed.
    fn initialize(&mut self) -> Vec<watcher::Result<Event<K>>> {
        if !self.watches.iter().all(|w| w.complete) {
            return Vec::new();
        }
        self.initialized = true;
        let mut events = vec![Ok(Event::Init)];
        events.extend(
            self.watches
                .iter_mut()
                .flat_map(|w| std::mem::take(&mut w.held).into_values())
                .map(|object| Ok(Event::InitApply(object))),
        );
        events.push(Ok(Event::InitDone));
        events
    }
}

fn key<K>(object: &K) -> ObjectRef<K>
where
    K: Resource,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    object.to_object_ref(Default::default())
}

fn versions<K>(objects: &HashMap<ObjectRef<K>, K>) -> HashMap<ObjectRef<K>, Option<String>>
where
    K: Resource,
    K::DynamicType: Eq + Hash + Clone,
{
    objects
        .iter()
        .map(|(key, object)| (key.clone(), object.meta().resource_version.clone()))
        .collect()
}

/// What one watch's new list changed: `Delete` of what is gone (the object as the store holds
/// it), `Apply` of what is new or has another resourceVersion (an unchanged object needs no
/// event: the store holds it already).
fn difference<K>(
    previous: &HashMap<ObjectRef<K>, Option<String>>,
    now: HashMap<ObjectRef<K>, K>,
    store: &Store<K>,
) -> Vec<watcher::Result<Event<K>>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let gone: Vec<_> = previous
        .keys()
        .filter(|key| !now.contains_key(key))
        // Not in the store means the store has nothing to forget.
        .filter_map(|key| store.get(key))
        .map(|object| Ok(Event::Delete(K::clone(&object))))
        .collect();
    let mut events: Vec<_> = now
        .into_iter()
        .filter(|(key, object)| previous.get(key) != Some(&object.meta().resource_version))
        .map(|(_, object)| Ok(Event::Apply(object)))
        .collect();
    events.extend(gone);
    events
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::ResourceExt;
    use kube::runtime::reflector::{Store, store};

    use super::*;

    fn object(namespace: &str, name: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(namespace.to_owned()),
                name: Some(name.to_owned()),
                resource_version: Some(version.to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn names(store: &Store<ConfigMap>) -> BTreeSet<String> {
        store.state().iter().map(|o| describe_object(o)).collect()
    }

    fn describe_object(o: &ConfigMap) -> String {
        let namespace = o.metadata.namespace.as_deref().unwrap_or_default();
        format!("{namespace}/{}", o.name_any())
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Watch 0 serves namespace a, watch 1 namespace b; every merged event goes into a real
    /// kube-runtime store, as the reflector does.
    struct Harness {
        merger: Merger<ConfigMap>,
        writer: kube::runtime::reflector::store::Writer<ConfigMap>,
        reader: Store<ConfigMap>,
        seen: Vec<String>,
    }

    impl Harness {
        fn new() -> Self {
            let (reader, writer) = store();
            Self {
                merger: Merger::new(2, reader.clone()),
                writer,
                reader,
                seen: Vec::new(),
            }
        }

        fn feed(&mut self, watch: usize, events: Vec<Event<ConfigMap>>) {
            for event in events {
                for out in self.merger.step(watch, Ok(event)) {
                    let out = out.expect("no errors fed");
                    self.seen.push(describe(&out));
                    self.writer.apply_watcher_event(&out);
                }
            }
        }

        fn list(&mut self, watch: usize, objects: Vec<ConfigMap>) {
            let mut events = vec![Event::Init];
            events.extend(objects.into_iter().map(Event::InitApply));
            events.push(Event::InitDone);
            self.feed(watch, events);
        }

        fn ready(&self) -> bool {
            futures::executor::block_on(async {
                futures::poll!(std::pin::pin!(self.reader.wait_until_ready())).is_ready()
            })
        }

        fn take_seen(&mut self) -> Vec<String> {
            std::mem::take(&mut self.seen)
        }
    }

    fn describe(event: &Event<ConfigMap>) -> String {
        let name = describe_object;
        match event {
            Event::Init => "Init".to_owned(),
            Event::InitApply(o) => format!("InitApply {}", name(o)),
            Event::InitDone => "InitDone".to_owned(),
            Event::Apply(o) => format!("Apply {}", name(o)),
            Event::Delete(o) => format!("Delete {}", name(o)),
        }
    }

    #[test]
    fn the_store_is_ready_only_when_every_namespace_has_listed() {
        let mut h = Harness::new();
        h.list(0, vec![object("a", "one", "1")]);
        // A change in a listed namespace before the others have listed is held, not lost.
        h.feed(0, vec![Event::Apply(object("a", "two", "2"))]);
        assert!(!h.ready(), "ready before namespace b listed");
        assert!(h.reader.state().is_empty());
        assert!(h.take_seen().is_empty());

        h.list(1, vec![object("b", "three", "3")]);
        assert!(h.ready());
        assert_eq!(names(&h.reader), set(&["a/one", "a/two", "b/three"]));
        let seen = h.take_seen();
        assert_eq!(seen.first().map(String::as_str), Some("Init"));
        assert_eq!(seen.last().map(String::as_str), Some("InitDone"));
        assert_eq!(seen.len(), 5, "{seen:?}");
    }

    #[test]
    fn a_relist_of_one_namespace_keeps_the_others() {
        let mut h = Harness::new();
        h.list(0, vec![object("a", "one", "1"), object("a", "two", "1")]);
        h.list(1, vec![object("b", "three", "1")]);
        h.take_seen();

        // Namespace b's watch breaks and lists again, interleaved with a change in a.
        h.feed(
            1,
            vec![Event::Init, Event::InitApply(object("b", "three", "1"))],
        );
        h.feed(0, vec![Event::Apply(object("a", "one", "2"))]);
        h.feed(
            1,
            vec![Event::InitApply(object("b", "four", "5")), Event::InitDone],
        );
        assert_eq!(
            names(&h.reader),
            set(&["a/one", "a/two", "b/three", "b/four"]),
            "namespace a's objects survive b's re-list"
        );
        assert_eq!(
            h.reader
                .get(&ObjectRef::new("one").within("a"))
                .and_then(|o| o.metadata.resource_version.clone()),
            Some("2".to_owned())
        );
        // Only the change is reported: the unchanged b/three is not.
        assert_eq!(h.take_seen(), ["Apply a/one", "Apply b/four"]);
    }

    #[test]
    fn an_object_gone_during_a_relist_is_deleted_from_its_namespace_only() {
        let mut h = Harness::new();
        h.list(0, vec![object("a", "same", "1")]);
        h.list(1, vec![object("b", "same", "1"), object("b", "gone", "1")]);
        h.take_seen();

        h.list(1, vec![object("b", "same", "1")]);
        assert_eq!(names(&h.reader), set(&["a/same", "b/same"]));
        assert_eq!(h.take_seen(), ["Delete b/gone"]);

        // A re-list that comes back empty empties that namespace alone.
        h.list(0, vec![]);
        assert_eq!(names(&h.reader), set(&["b/same"]));
        assert_eq!(h.take_seen(), ["Delete a/same"]);
    }

    #[test]
    fn a_list_restarted_midway_starts_over() {
        let mut h = Harness::new();
        h.list(1, vec![object("b", "kept", "1")]);
        h.feed(
            0,
            vec![
                Event::Init,
                Event::InitApply(object("a", "half", "1")),
                // The list failed on its second page; the watcher begins again.
                Event::Init,
                Event::InitApply(object("a", "whole", "1")),
                Event::InitDone,
            ],
        );
        assert_eq!(names(&h.reader), set(&["a/whole", "b/kept"]));
    }

    #[test]
    fn watch_events_after_the_first_list_pass_through() {
        let mut h = Harness::new();
        h.list(0, vec![]);
        h.list(1, vec![]);
        h.take_seen();
        h.feed(0, vec![Event::Apply(object("a", "x", "1"))]);
        h.feed(1, vec![Event::Apply(object("b", "y", "1"))]);
        h.feed(0, vec![Event::Delete(object("a", "x", "1"))]);
        assert_eq!(h.take_seen(), ["Apply a/x", "Apply b/y", "Delete a/x"]);
        assert_eq!(names(&h.reader), set(&["b/y"]));
    }

    #[test]
    fn errors_pass_through_at_any_time() {
        let (reader, _writer) = store();
        let mut merger = Merger::<ConfigMap>::new(2, reader);
        let out = merger.step(1, Err(watcher::Error::NoResourceVersion));
        assert!(matches!(
            out.as_slice(),
            [Err(watcher::Error::NoResourceVersion)]
        ));
    }

    #[tokio::test]
    async fn merge_joins_the_streams() {
        let a: BoxStream<'static, watcher::Result<Event<ConfigMap>>> = stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(object("a", "one", "1"))),
            Ok(Event::InitDone),
        ])
        .boxed();
        let b: BoxStream<'static, watcher::Result<Event<ConfigMap>>> = stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(object("b", "two", "1"))),
            Ok(Event::InitDone),
        ])
        .boxed();
        let (reader, writer) = store();
        let events: Vec<_> =
            kube::runtime::reflector::reflector(writer, merge(vec![a, b], reader.clone()))
                .collect()
                .await;
        assert_eq!(events.len(), 4, "Init, two InitApply, InitDone");
        assert_eq!(names(&reader), set(&["a/one", "b/two"]));
    }
}
