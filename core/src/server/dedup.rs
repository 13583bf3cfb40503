//! The reply cache that makes redelivered requests idempotent.
//!
//! A QoS 1 redelivery carries the same correlation data as the original; replaying the cached
//! reply instead of running SET NX / VDEL / DEL twice is the SDK's RPC convention (spec §7,
//! "additional invariants"). Entries live for the request's Message Expiry and the cache is
//! bounded by count and bytes: past a bound the entry closest to its deadline is evicted.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec::Vec;
use bytes::Bytes;

use super::table::Version;
use crate::time::{Duration, Instant};

/// `[u16 BE source length][source][correlation]`, shared by both indexes.
type CacheKey = Arc<[u8]>;

fn cache_key(source: &[u8], correlation: &[u8]) -> Option<CacheKey> {
    let len = u16::try_from(source.len()).ok()?;
    let mut k = Vec::with_capacity(2 + source.len() + correlation.len());
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(source);
    k.extend_from_slice(correlation);
    Some(Arc::from(k))
}

/// What is needed to answer a redelivery again: the reply payload and its `__ts`. (The topic
/// and correlation data come from the redelivered request itself.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedReply {
    pub(crate) payload: Bytes,
    pub(crate) version: Option<Version>,
    /// Whole seconds of the original request's expiry that remain (at least 1).
    pub(crate) remaining_secs: u32,
}

#[derive(Debug, Clone)]
struct Cached {
    deadline: Instant,
    payload: Bytes,
    version: Option<Version>,
}

fn size_of(key: &[u8], payload: &[u8]) -> usize {
    ENTRY_OVERHEAD + key.len() + payload.len()
}

/// Bounded (source id, correlation data) → reply map with deadlines.
#[derive(Debug, Clone)]
pub(crate) struct ReplyCache {
    by_key: BTreeMap<CacheKey, Cached>,
    by_deadline: BTreeSet<(Instant, CacheKey)>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

/// Per-entry overhead counted against the byte bound, on top of key and payload: both index
/// slots, the shared key's header and the entry itself.
const ENTRY_OVERHEAD: usize = 128;

impl ReplyCache {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> ReplyCache {
        ReplyCache {
            by_key: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Drops entries whose deadline has passed.
    pub(crate) fn purge(&mut self, now: Instant) {
        while self.by_deadline.first().is_some_and(|(d, _)| *d <= now) {
            self.evict_first();
        }
    }

    /// Drops the entry closest to its deadline.
    fn evict_first(&mut self) {
        if let Some((_, key)) = self.by_deadline.pop_first() {
            if let Some(c) = self.by_key.remove(&key) {
                self.bytes = self.bytes.saturating_sub(size_of(&key, &c.payload));
            }
        }
    }

    /// The cached reply for a redelivered request.
    pub(crate) fn replay(
        &self,
        source: &[u8],
        correlation: &[u8],
        now: Instant,
    ) -> Option<CachedReply> {
        if self.by_key.is_empty() {
            return None;
        }
        let key = cache_key(source, correlation)?;
        let c = self.by_key.get(&key)?;
        if c.deadline <= now {
            return None;
        }
        Some(CachedReply {
            payload: c.payload.clone(),
            version: c.version,
            remaining_secs: remaining_secs(c.deadline, now),
        })
    }

    /// Remembers a reply until `now + ttl`. A reply larger than the whole byte bound is not kept.
    pub(crate) fn insert(
        &mut self,
        source: &[u8],
        correlation: &[u8],
        payload: Bytes,
        version: Option<Version>,
        now: Instant,
        ttl: Duration,
    ) {
        if self.max_entries == 0 || ttl.is_zero() {
            return;
        }
        let Some(key) = cache_key(source, correlation) else {
            return;
        };
        let size = size_of(&key, &payload);
        if size > self.max_bytes {
            return;
        }
        if let Some(old) = self.by_key.remove(&key) {
            self.by_deadline.remove(&(old.deadline, key.clone()));
            self.bytes = self.bytes.saturating_sub(size_of(&key, &old.payload));
        }
        while !self.by_key.is_empty()
            && (self.by_key.len() >= self.max_entries || self.bytes + size > self.max_bytes)
        {
            self.evict_first();
        }
        let deadline = now + ttl;
        self.by_deadline.insert((deadline, key.clone()));
        self.bytes += size;
        self.by_key.insert(
            key,
            Cached {
                deadline,
                payload,
                version,
            },
        );
    }
}

/// Whole seconds from `now` to `deadline`, rounded up (at least 1 while any time remains).
fn remaining_secs(deadline: Instant, now: Instant) -> u32 {
    let nanos = (deadline - now).as_nanos();
    let secs = nanos.div_ceil(1_000_000_000);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Bytes = Bytes::from_static(b"+OK\r\n");

    #[test]
    fn replays_until_deadline_with_remaining_expiry() {
        let mut c = ReplyCache::new(10, 1 << 20);
        let t0 = Instant::from_millis(1000);
        let v = Some(Version {
            millis: 5,
            counter: 1,
        });
        c.insert(b"a", b"c1", OK, v, t0, Duration::from_secs(10));
        let r = c
            .replay(b"a", b"c1", t0 + Duration::from_millis(2500))
            .unwrap();
        assert_eq!((r.payload, r.version, r.remaining_secs), (OK, v, 8));
        assert!(c.replay(b"b", b"c1", t0).is_none());
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        assert!(c.replay(b"a", b"c", t0).is_none());
        assert!(c
            .replay(b"a", b"c1", t0 + Duration::from_secs(10))
            .is_none());
        c.purge(t0 + Duration::from_secs(10));
        assert_eq!(c.len(), 0);
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let mut c = ReplyCache::new(3, 1 << 20);
        let t0 = Instant::ZERO;
        for (i, corr) in [b"1", b"2", b"3", b"4"].iter().enumerate() {
            c.insert(
                b"a",
                *corr,
                OK,
                None,
                t0,
                Duration::from_secs(10 + i as u64),
            );
        }
        assert_eq!(c.len(), 3);
        assert!(c.replay(b"a", b"1", t0).is_none());
        assert!(c.replay(b"a", b"4", t0).is_some());

        let mut small = ReplyCache::new(100, 2 * ENTRY_OVERHEAD + 40);
        for corr in [b"1", b"2", b"3"] {
            small.insert(b"a", corr, OK, None, t0, Duration::from_secs(5));
        }
        assert_eq!(small.len(), 2);
        assert!(small.bytes <= small.max_bytes);

        let mut off = ReplyCache::new(0, 1 << 20);
        off.insert(b"a", b"1", OK, None, t0, Duration::from_secs(5));
        assert_eq!(off.len(), 0);
    }
}
