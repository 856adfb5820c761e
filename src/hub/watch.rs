//! Watches on the registry: a task awaits "stream `key` is published" or "its viewers came or
//! went" instead of polling the registry.
//!
//! [`Hub`] wakes a key's watchers when a publisher claims the key (a publish, held or live,
//! or the adoption of a parked stream: what [`Watch::is_published`] reports), and when the
//! key's viewers, counted over every shard, go from none to some or from some to none. The
//! wake-ups are `tokio::sync::Notify`s: they wake a task on whichever shard's thread awaits.
//!
//! A watcher makes its `Notified` and enables it before it looks at the registry, and the
//! registry wakes after it changed: a change between the look and the await is never lost.
//!
//! Bounded: a key has state here only while a [`Watch`] of it lives (a player waiting for its
//! stream, an on-demand source's task); dropping the last one removes it. A key nobody
//! watches costs a publish, and a viewer count's edge, one lookup in this map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::{Hub, ShardHub};

/// The keys being watched, and by how many.
#[derive(Debug, Default)]
pub(super) struct Watches {
    keys: Mutex<HashMap<Arc<str>, Watched>>,
}

#[derive(Debug)]
struct Watched {
    signals: Arc<Signals>,
    /// Live [`Watch`]es of the key: the entry goes with the last.
    holders: usize,
}

/// What a key's watchers are woken by.
#[derive(Debug, Default)]
struct Signals {
    published: Notify,
    demand: Notify,
}

impl Watches {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Watched>> {
        // Every update is one insert, removal or count: a panic cannot leave one half-done.
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hold(&self, key: &str) -> (Arc<str>, Arc<Signals>) {
        let key: Arc<str> = Arc::from(key);
        let mut keys = self.lock();
        let watched =
            keys.entry(key.clone()).or_insert_with(|| Watched { signals: Arc::new(Signals::default()), holders: 0 });
        watched.holders += 1;
        (key, watched.signals.clone())
    }

    fn release(&self, key: &str) {
        let mut keys = self.lock();
        let Some(watched) = keys.get_mut(key) else { return };
        watched.holders -= 1;
        if watched.holders == 0 {
            keys.remove(key);
        }
    }

    fn signals(&self, key: &str) -> Option<Arc<Signals>> {
        self.lock().get(key).map(|watched| watched.signals.clone())
    }

    /// A publisher claimed `key`: wakes its watchers (called with the registry unlocked).
    pub(super) fn published(&self, key: &str) {
        if let Some(signals) = self.signals(key) {
            signals.published.notify_waiters();
        }
    }

    /// `key`'s viewers went from none to some or from some to none.
    pub(super) fn demand_changed(&self, key: &str) {
        if let Some(signals) = self.signals(key) {
            signals.demand.notify_waiters();
        }
    }

    /// Keys with state here.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// One task's watch on one stream key, from any shard.
#[derive(Debug)]
pub struct Watch {
    hub: Arc<Hub>,
    key: Arc<str>,
    signals: Arc<Signals>,
}

impl ShardHub {
    /// Watches `key` until the returned [`Watch`] is dropped.
    pub fn watch(&self, key: &str) -> Watch {
        let (key, signals) = self.hub.watches.hold(key);
        Watch { hub: self.hub.clone(), key, signals }
    }
}

impl Watch {
    /// Whether anyone, on any shard, publishes the key now (one registry lock).
    pub fn is_published(&self) -> bool {
        self.hub.lock().get(&*self.key).is_some_and(|entry| entry.publisher.is_some())
    }

    /// The key's viewers on every shard now (one registry lock).
    pub fn players(&self) -> usize {
        self.hub.lock().get(&*self.key).map_or(0, |entry| entry.players)
    }

    /// Resolves once someone publishes the key: at once if someone does.
    pub async fn published(&self) {
        let notified = self.signals.published.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_published() {
            return;
        }
        // Only a claim of this key wakes it: no second look at the registry (a burst of
        // waiters would each take its lock again). The publish may end later, as it may any
        // time after this returns.
        notified.await;
    }

    /// Resolves once the key has viewers (`wanted`) or has none (`!wanted`): at once if so.
    pub async fn demand(&self, wanted: bool) {
        loop {
            let notified = self.signals.demand.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if (self.players() > 0) == wanted {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once the key had no viewer for `linger` in a row: a viewer that comes (and
    /// even goes again) meanwhile starts it over. Nothing runs while viewers watch.
    pub async fn idle_for(&self, linger: std::time::Duration) {
        loop {
            let notified = self.signals.demand.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.players() > 0 {
                notified.await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(linger) => return,
                _ = notified => {}
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.watches.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::hub::HubSettings;

    fn hub() -> (Arc<Hub>, Rc<ShardHub>, Rc<ShardHub>) {
        let (hub, _receivers) = Hub::new(2, HubSettings::default());
        (hub.clone(), ShardHub::new(0, hub.clone()), ShardHub::new(1, hub))
    }

    /// Polls `future` once: whether it is done.
    fn ready(future: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
        future.poll(&mut Context::from_waker(Waker::noop())) == Poll::Ready(())
    }

    #[test]
    fn a_waiter_is_woken_by_a_publish_on_another_shard_and_leaves_no_state() {
        let (hub, shard0, shard1) = hub();
        let watch = shard0.watch("live/a");
        assert_eq!(hub.watches.len(), 1);
        let handle = {
            let mut published = pin!(watch.published());
            assert!(!ready(published.as_mut()), "nobody publishes yet");
            // Another key's publish is not this waiter's.
            let (_other, _) = shard1.publish("live/b").unwrap();
            assert!(!ready(published.as_mut()));
            // Held for on_media counts as published, as the registry says.
            let (handle, _) = shard1.publish_held("live/a").unwrap();
            assert!(ready(published.as_mut()), "woken by the publish");
            handle
        };
        drop(watch);
        assert_eq!(hub.watches.len(), 0, "the last watch took the key's state with it");
        // A watch made after the publish sees it at once.
        let late = shard0.watch("live/a");
        assert!(ready(pin!(late.published())));
        drop((late, handle));
        assert_eq!(hub.watches.len(), 0);
    }

    #[test]
    fn an_abandoned_waiter_leaves_no_state_and_the_others_still_wake() {
        let (hub, shard0, shard1) = hub();
        let staying = shard0.watch("live/a");
        let mut waiting = Box::pin(async move { staying.published().await });
        {
            let leaving = shard1.watch("live/a");
            let mut abandoned = pin!(leaving.published());
            assert!(!ready(abandoned.as_mut()));
            assert!(!ready(waiting.as_mut()));
            assert_eq!(hub.watches.len(), 1, "one entry for both watchers of the key");
        }
        let (_handle, _) = shard1.publish("live/a").unwrap();
        assert!(ready(waiting.as_mut()), "the waiter that stayed is woken");
        drop(waiting);
        assert_eq!(hub.watches.len(), 0);
        assert!(hub.watches.signals("live/a").is_none());
    }

    #[test]
    fn demand_wakes_on_the_first_viewer_and_after_the_last_one_left() {
        let (hub, shard0, shard1) = hub();
        let watch = shard0.watch("live/cam");
        let (first, second) = {
            let mut wanted = pin!(watch.demand(true));
            assert!(!ready(wanted.as_mut()));
            // A relay forwarding the stream is no viewer.
            let _push = shard1.forward("live/cam", 9);
            assert!(!ready(wanted.as_mut()));
            let (first, _) = shard1.play("live/cam", 1);
            assert!(ready(wanted.as_mut()), "the first viewer is demand");
            (first, shard0.play("live/cam", 2).0)
        };
        {
            let mut unwanted = pin!(watch.demand(false));
            assert!(!ready(unwanted.as_mut()));
            drop(first);
            assert!(!ready(unwanted.as_mut()), "one viewer is left");
            drop(second);
            assert!(ready(unwanted.as_mut()), "the last viewer left");
        }
        drop(watch);
        assert_eq!(hub.watches.len(), 0);
    }
}
