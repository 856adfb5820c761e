//! Callback decisions remembered for as long as their reply allows (`Cache-Control:
//! max-age=N`; docs/hooks.md, "Cached decisions"), so a reconnect storm asks the auth service
//! once instead of once per connection.
//!
//! One cache per callback set, shared by every shard: SO_REUSEPORT spreads a client's
//! reconnects over all shards, and a per-shard cache would ask once per shard. Its lock is
//! held for one map lookup or insert, never across an await, and only when a session asks a
//! callback (connect, publish, play), never on the media path.
//!
//! Bounded in entries (`[notify] cache_entries`): clients choose what the keys hold (stream
//! names, query arguments). When full, expired entries go first, then the oldest inserted.
//! Time is a parameter, so the rules are tested without a clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Remembered values of type `V` (a decision), each until its own expiry.
pub struct DecisionCache<V> {
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    entries: HashMap<String, Entry<V>>,
    /// Keys in insertion order with the insertion's number: the eviction order. A key
    /// inserted again leaves its old number behind, which eviction skips.
    order: VecDeque<(String, u64)>,
    inserted: u64,
}

struct Entry<V> {
    value: V,
    expires: Instant,
    /// Which insertion this is, to tell a live entry from an older one in `order`.
    number: u64,
}

impl<V: Clone> DecisionCache<V> {
    /// A cache of at most `capacity` entries; 0 keeps nothing.
    pub fn new(capacity: usize) -> DecisionCache<V> {
        DecisionCache {
            capacity,
            inner: Mutex::new(Inner { entries: HashMap::new(), order: VecDeque::new(), inserted: 0 }),
        }
    }

    /// Whether anything can be remembered at all.
    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The value remembered for `key`, if it has not expired by `now`.
    pub fn get(&self, key: &str, now: Instant) -> Option<V> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.entries.get(key) {
            Some(entry) if entry.expires > now => Some(entry.value.clone()),
            Some(_) => {
                inner.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers `value` for `key` until `now + ttl`, making room if the cache is full.
    pub fn insert(&self, key: String, value: V, ttl: Duration, now: Instant) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.inserted += 1;
        let number = inner.inserted;
        if !inner.entries.contains_key(&key) && inner.entries.len() >= self.capacity {
            inner.entries.retain(|_, entry| entry.expires > now);
            while inner.entries.len() >= self.capacity {
                let Some((oldest, oldest_number)) = inner.order.pop_front() else { break };
                if inner.entries.get(&oldest).is_some_and(|entry| entry.number == oldest_number) {
                    inner.entries.remove(&oldest);
                }
            }
        }
        // Numbers of replaced or expired entries would pile up in `order` under steady
        // re-insertion of the same keys: drop them once they outnumber the live entries.
        if inner.order.len() > 2 * self.capacity.max(inner.entries.len()) {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|(key, number)| entries.get(key).is_some_and(|entry| entry.number == *number));
        }
        inner.order.push_back((key.clone(), number));
        inner.entries.insert(key, Entry { value, expires: now + ttl, number });
    }

    /// Entries held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn remembers_until_expiry() {
        let cache = DecisionCache::new(10);
        let t0 = Instant::now();
        cache.insert("a".into(), 1, 30 * SECOND, t0);
        assert_eq!(cache.get("a", t0 + 29 * SECOND), Some(1));
        assert_eq!(cache.get("a", t0 + 30 * SECOND), None);
        assert!(cache.is_empty(), "an expired entry is dropped when found");
        assert_eq!(cache.get("b", t0), None);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_the_oldest() {
        let cache = DecisionCache::new(2);
        let t0 = Instant::now();
        cache.insert("short".into(), 1, SECOND, t0);
        cache.insert("long".into(), 2, 60 * SECOND, t0);
        cache.insert("new".into(), 3, 60 * SECOND, t0 + 2 * SECOND);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("long", t0 + 2 * SECOND), Some(2), "the expired one went, not the oldest live");
        cache.insert("newest".into(), 4, 60 * SECOND, t0 + 3 * SECOND);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("long", t0 + 3 * SECOND), None, "then the oldest inserted");
        assert_eq!(cache.get("new", t0 + 3 * SECOND), Some(3));
        assert_eq!(cache.get("newest", t0 + 3 * SECOND), Some(4));
    }

    #[test]
    fn reinserting_a_key_replaces_it_and_order_stays_bounded() {
        let cache = DecisionCache::new(2);
        let t0 = Instant::now();
        for i in 0..1000 {
            cache.insert("same".into(), i, 60 * SECOND, t0);
        }
        assert_eq!(cache.get("same", t0), Some(999));
        assert!(cache.inner.lock().unwrap().order.len() <= 5, "stale order entries are pruned");
        cache.insert("other".into(), 1, 60 * SECOND, t0);
        cache.insert("third".into(), 2, 60 * SECOND, t0);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn zero_capacity_or_ttl_keeps_nothing() {
        let t0 = Instant::now();
        let off = DecisionCache::new(0);
        off.insert("a".into(), 1, SECOND, t0);
        assert!(!off.is_enabled() && off.is_empty());
        let cache = DecisionCache::new(4);
        cache.insert("a".into(), 1, Duration::ZERO, t0);
        assert!(cache.is_empty());
    }
}
