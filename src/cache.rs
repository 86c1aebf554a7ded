//! The pool's results by URL, in memory: at most `size` of them (the oldest stored goes
//! first), each for `ttl`, failures and half-decoded pictures for `failure_ttl`. Every
//! operation takes constant (amortised) time, so a full cache of a million entries costs the
//! main loop no more per result than an empty one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::analyze::Metadata;
use crate::error::Result;

/// Results by URL; see the module's documentation.
pub struct Cache {
    size: usize,
    ttl: Duration,
    failure_ttl: Duration,
    by_url: HashMap<Arc<str>, Cached>,
    /// URLs in the order they were stored, oldest first, with the sequence number they were
    /// stored under. An entry whose number is no longer its URL's (stored again, or removed)
    /// is stale: eviction skips it, and `compact` drops them all once they are half the queue.
    order: VecDeque<(u64, Arc<str>)>,
    stored: u64,
}

struct Cached {
    at: Instant,
    seq: u64,
    result: Result<Metadata>,
}

impl Cache {
    /// An empty cache; `size` 0 keeps nothing.
    pub fn new(size: usize, ttl: Duration, failure_ttl: Duration) -> Cache {
        Cache { size, ttl, failure_ttl, by_url: HashMap::new(), order: VecDeque::new(), stored: 0 }
    }

    /// The result stored for `url`, unless it has expired (then it is dropped).
    pub fn get(&mut self, url: &str) -> Option<Result<Metadata>> {
        let c = self.by_url.get(url)?;
        // A picture that could not be decoded (over its budget, say) may well decode next time.
        let whole = c.result.as_ref().is_ok_and(|m| m.error_kind.is_none());
        let ttl = if whole { self.ttl } else { self.failure_ttl };
        if c.at.elapsed() <= ttl {
            return Some(c.result.clone());
        }
        self.by_url.remove(url);
        None
    }

    /// Stores `result` for `url` from now, evicting the oldest entry when the cache is full.
    pub fn put(&mut self, url: &str, result: &Result<Metadata>) {
        if self.size == 0 {
            return;
        }
        self.stored += 1;
        let (seq, at, result) = (self.stored, Instant::now(), result.clone());
        let key = match self.by_url.get_key_value(url) {
            Some((key, _)) => key.clone(),
            None => {
                while self.by_url.len() >= self.size {
                    self.evict_oldest();
                }
                Arc::from(url)
            }
        };
        self.order.push_back((seq, key.clone()));
        self.by_url.insert(key, Cached { at, seq, result });
        self.compact();
    }

    /// How many results are stored (expired ones included until they are asked for).
    pub fn len(&self) -> usize {
        self.by_url.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.by_url.is_empty()
    }

    fn is_current(&self, (seq, url): &(u64, Arc<str>)) -> bool {
        self.by_url.get(url).is_some_and(|c| c.seq == *seq)
    }

    fn evict_oldest(&mut self) {
        while let Some(entry) = self.order.pop_front() {
            if self.is_current(&entry) {
                self.by_url.remove(&entry.1);
                return;
            }
        }
    }

    /// Drops the stale entries of `order` once they outnumber the live ones: each pass costs
    /// as many steps as there were stores since the last, so a store is O(1) amortised and
    /// the queue never holds more than about twice the cache.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.by_url.len() + 64 {
            let live = std::mem::take(&mut self.order);
            self.order = live.into_iter().filter(|e| self.is_current(e)).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(bytes: u64) -> Result<Metadata> {
        Ok(Metadata { bytes: Some(bytes), ..Metadata::default() })
    }

    fn bytes(c: &mut Cache, url: &str) -> Option<u64> {
        c.get(url).and_then(|r| r.ok()).and_then(|m| m.bytes)
    }

    #[test]
    fn the_oldest_stored_goes_first_and_storing_again_renews() {
        let mut c = Cache::new(2, Duration::from_secs(60), Duration::from_secs(60));
        c.put("a", &ok(1));
        c.put("b", &ok(2));
        c.put("a", &ok(3)); // a is now the newest
        c.put("c", &ok(4)); // evicts b
        assert_eq!((bytes(&mut c, "a"), bytes(&mut c, "b"), bytes(&mut c, "c")), (Some(3), None, Some(4)));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn stale_entries_do_not_grow_the_queue() {
        let mut c = Cache::new(4, Duration::from_secs(60), Duration::from_secs(60));
        for i in 0..10_000 {
            c.put(["a", "b"][i % 2], &ok(i as u64));
        }
        assert!(c.order.len() <= 2 * c.len() + 65, "queue of {} for {} entries", c.order.len(), c.len());
        assert_eq!((bytes(&mut c, "a"), bytes(&mut c, "b")), (Some(9998), Some(9999)));
    }

    #[test]
    fn expired_entries_are_dropped_when_asked_for() {
        let mut c = Cache::new(4, Duration::from_millis(1), Duration::from_millis(1));
        c.put("a", &ok(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(bytes(&mut c, "a"), None);
        assert!(c.is_empty());
        c.put("b", &ok(2));
        assert_eq!(bytes(&mut c, "b"), Some(2));
    }
}
