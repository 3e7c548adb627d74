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
use kube::runtime::reflector::{Lookup, ObjectRef};
use kube::runtime::watcher::{self, Event};

/// `watches` merged into one stream that a single reflector store can apply; see the module.
pub fn merge<K>(
    watches: Vec<BoxStream<'static, watcher::Result<Event<K>>>>,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static
where
    K: Resource + Clone + Send + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send,
{
    let mut merger = Merger::new(watches.len());
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
    /// The objects as of the last completed list and the events since.
    objects: HashMap<ObjectRef<K>, K>,
    /// Whether a list has completed at least once.
    complete: bool,
    /// The list in progress, between `Init` and `InitDone`.
    relisting: Option<HashMap<ObjectRef<K>, K>>,
}

/// The state behind [`merge`]: what each watch has listed.
struct Merger<K: Resource>
where
    K::DynamicType: Eq + Hash,
{
    watches: Vec<Listed<K>>,
    /// Whether the store has had its one `Init`..`InitDone`.
    initialized: bool,
}

impl<K> Merger<K>
where
    K: Resource + Clone,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    fn new(watches: usize) -> Self {
        Self {
            watches: (0..watches)
                .map(|_| Listed {
                    objects: HashMap::new(),
                    complete: false,
                    relisting: None,
                })
                .collect(),
            initialized: false,
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
                let previous = std::mem::replace(&mut watch.objects, fresh);
                watch.complete = true;
                if self.initialized {
                    difference(previous, &self.watches[index].objects)
                } else {
                    self.initialize()
                }
            }
            Event::Apply(object) => {
                watch.objects.insert(key(&object), object.clone());
                self.pass(Event::Apply(object))
            }
            Event::Delete(object) => {
                watch.objects.remove(&key(&object));
                self.pass(Event::Delete(object))
            }
        }
    }

    /// Events are held back until the store's first list: it holds them by then.
    fn pass(&self, event: Event<K>) -> Vec<watcher::Result<Event<K>>> {
        if self.initialized {
            vec![Ok(event)]
        } else {
            Vec::new()
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
                .iter()
                .flat_map(|w| w.objects.values())
                .map(|object| Ok(Event::InitApply(object.clone()))),
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

/// What one watch's new list changed: `Delete` of what is gone, `Apply` of what is new or has
/// another resourceVersion (an unchanged object needs no event: the store holds it already).
fn difference<K>(
    previous: HashMap<ObjectRef<K>, K>,
    now: &HashMap<ObjectRef<K>, K>,
) -> Vec<watcher::Result<Event<K>>>
where
    K: Resource + Clone,
    K::DynamicType: Eq + Hash,
{
    let mut events = Vec::new();
    for (key, object) in now {
        let unchanged = previous
            .get(key)
            .is_some_and(|old| old.meta().resource_version == object.meta().resource_version);
        if !unchanged {
            events.push(Ok(Event::Apply(object.clone())));
        }
    }
    for (key, object) in previous {
        if !now.contains_key(&key) {
            events.push(Ok(Event::Delete(object)));
        }
    }
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
                merger: Merger::new(2),
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
        let mut merger = Merger::<ConfigMap>::new(2);
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
        let events: Vec<_> = kube::runtime::reflector::reflector(writer, merge(vec![a, b]))
            .collect()
            .await;
        assert_eq!(events.len(), 4, "Init, two InitApply, InitDone");
        assert_eq!(names(&reader), set(&["a/one", "b/two"]));
    }
}
