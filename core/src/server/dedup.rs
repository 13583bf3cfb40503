//! The reply cache that makes redelivered requests idempotent.
//!
//! A QoS 1 redelivery carries the same correlation data as the original; replaying the cached
//! reply instead of running SET NX / VDEL / DEL twice is the SDK's RPC convention (docs/protocol.md
//! §11.2). Entries live for the request's Message Expiry and the cache is
//! bounded by count and bytes: past a bound the entry closest to its deadline is evicted.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use bytes::Bytes;
use core::hash::Hasher;

use super::table::Version;
use crate::time::{Duration, Instant};

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
    /// `[u16 BE source length][source][correlation]`.
    key: Box<[u8]>,
    /// Insertion number: with the deadline, names the entry in `by_deadline`.
    seq: u64,
    deadline: Instant,
    payload: Bytes,
    version: Option<Version>,
}

impl Cached {
    fn is(&self, source: &[u8], correlation: &[u8]) -> bool {
        let Ok(len) = u16::try_from(source.len()) else {
            return false;
        };
        let (prefix, rest) = self.key.split_at(2.min(self.key.len()));
        let (src, corr) = rest.split_at(source.len().min(rest.len()));
        prefix == len.to_be_bytes() && src == source && corr == correlation
    }

    fn size(&self) -> usize {
        ENTRY_OVERHEAD + self.key.len() + self.payload.len()
    }
}

/// The entries whose keys hash alike (almost always one); the first is kept inline so a bucket
/// of one costs no allocation of its own.
#[derive(Debug, Clone)]
struct Bucket {
    first: Cached,
    more: Vec<Cached>,
}

impl Bucket {
    fn find(&self, mut hit: impl FnMut(&Cached) -> bool) -> Option<&Cached> {
        if hit(&self.first) {
            return Some(&self.first);
        }
        self.more.iter().find(|c| hit(c))
    }
}

/// Bounded (source id, correlation data) → reply map with deadlines.
///
/// Indexed by a keyed SipHash of the key (so lookups compare integers, and a client cannot
/// aim collisions without the store's seed); equal hashes share a bucket and are told apart by
/// the key bytes.
#[derive(Debug, Clone)]
pub(crate) struct ReplyCache {
    by_hash: BTreeMap<u64, Bucket>,
    /// `(deadline, seq, hash)` of every entry, earliest first.
    by_deadline: BTreeSet<(Instant, u64, u64)>,
    len: usize,
    next_seq: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    seed: (u64, u64),
    /// Tests put every key in one bucket to exercise collisions.
    #[cfg(test)]
    collide: bool,
}

/// Per-entry overhead counted against the byte bound, on top of key and payload: both index
/// slots, the key's box and the entry itself.
const ENTRY_OVERHEAD: usize = 128;

impl ReplyCache {
    pub(crate) fn new(max_entries: usize, max_bytes: usize, seed: u64) -> ReplyCache {
        ReplyCache {
            by_hash: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            len: 0,
            next_seq: 0,
            bytes: 0,
            max_entries,
            max_bytes,
            seed: (seed.rotate_left(17) ^ 0x2545_F491_4F6C_DD1D, seed),
            #[cfg(test)]
            collide: false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[allow(deprecated)] // SipHash-2-4 is the only keyed hash in `core`.
    fn hash(&self, source: &[u8], correlation: &[u8]) -> u64 {
        #[cfg(test)]
        if self.collide {
            return 0;
        }
        let mut h = core::hash::SipHasher::new_with_keys(self.seed.0, self.seed.1);
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        h.write_usize(source.len());
        h.write(source);
        h.write(correlation);
        h.finish()
    }

    /// Drops entries whose deadline has passed.
    pub(crate) fn purge(&mut self, now: Instant) {
        while self.by_deadline.first().is_some_and(|(d, _, _)| *d <= now) {
            self.evict_first();
        }
    }

    /// Drops the entry closest to its deadline.
    fn evict_first(&mut self) {
        if let Some((_, seq, hash)) = self.by_deadline.pop_first() {
            self.take(hash, |c| c.seq == seq);
        }
    }

    /// Removes the entry of bucket `hash` that `hit` names (not from `by_deadline`).
    fn take(&mut self, hash: u64, mut hit: impl FnMut(&Cached) -> bool) -> Option<Cached> {
        let bucket = self.by_hash.get_mut(&hash)?;
        let removed = if hit(&bucket.first) {
            match bucket.more.pop() {
                Some(last) => core::mem::replace(&mut bucket.first, last),
                None => self.by_hash.remove(&hash)?.first,
            }
        } else {
            let i = bucket.more.iter().position(hit)?;
            bucket.more.swap_remove(i)
        };
        self.len = self.len.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(removed.size());
        Some(removed)
    }

    /// The cached reply for a redelivered request.
    pub(crate) fn replay(
        &self,
        source: &[u8],
        correlation: &[u8],
        now: Instant,
    ) -> Option<CachedReply> {
        if self.len == 0 {
            return None;
        }
        let bucket = self.by_hash.get(&self.hash(source, correlation))?;
        let c = bucket.find(|c| c.is(source, correlation))?;
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
        let Ok(source_len) = u16::try_from(source.len()) else {
            return;
        };
        let mut key = Vec::with_capacity(2 + source.len() + correlation.len());
        key.extend_from_slice(&source_len.to_be_bytes());
        key.extend_from_slice(source);
        key.extend_from_slice(correlation);
        let entry = Cached {
            key: key.into_boxed_slice(),
            seq: self.next_seq,
            deadline: now + ttl,
            payload,
            version,
        };
        let size = entry.size();
        if size > self.max_bytes {
            return;
        }
        self.next_seq += 1;
        let hash = self.hash(source, correlation);
        if let Some(old) = self.take(hash, |c| c.is(source, correlation)) {
            self.by_deadline.remove(&(old.deadline, old.seq, hash));
        }
        while self.len > 0 && (self.len >= self.max_entries || self.bytes + size > self.max_bytes) {
            self.evict_first();
        }
        self.by_deadline.insert((entry.deadline, entry.seq, hash));
        self.bytes += size;
        self.len += 1;
        match self.by_hash.get_mut(&hash) {
            Some(bucket) => bucket.more.push(entry),
            None => {
                self.by_hash.insert(
                    hash,
                    Bucket {
                        first: entry,
                        more: Vec::new(),
                    },
                );
            }
        }
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
    use proptest::prelude::*;

    const OK: Bytes = Bytes::from_static(b"+OK\r\n");

    #[test]
    fn replays_until_deadline_with_remaining_expiry() {
        let mut c = ReplyCache::new(10, 1 << 20, 7);
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
        let mut c = ReplyCache::new(3, 1 << 20, 7);
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

        let mut small = ReplyCache::new(100, 2 * ENTRY_OVERHEAD + 40, 7);
        for corr in [b"1", b"2", b"3"] {
            small.insert(b"a", corr, OK, None, t0, Duration::from_secs(5));
        }
        assert_eq!(small.len(), 2);
        assert!(small.bytes <= small.max_bytes);

        let mut off = ReplyCache::new(0, 1 << 20, 7);
        off.insert(b"a", b"1", OK, None, t0, Duration::from_secs(5));
        assert_eq!(off.len(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert {
            source: u8,
            corr: u8,
            ttl_ms: u64,
            len: usize,
        },
        Replay {
            source: u8,
            corr: u8,
        },
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 0u8..4, 0u64..4_000, 0usize..40).prop_map(|(source, corr, ttl_ms, len)| {
                Op::Insert {
                    source,
                    corr,
                    ttl_ms,
                    len,
                }
            }),
            (0u8..3, 0u8..4).prop_map(|(source, corr)| Op::Replay { source, corr }),
            (0u64..2_000).prop_map(Op::Advance),
        ]
    }

    /// (source, correlation, deadline, insertion number, payload).
    type ModelEntry = (Vec<u8>, Vec<u8>, Instant, u64, Bytes);

    /// The obvious cache: a list, evicting the earliest (deadline, insertion) first.
    struct Model {
        entries: Vec<ModelEntry>,
        seq: u64,
        bytes: usize,
    }

    impl Model {
        fn evict_first(&mut self) {
            let first =
                (0..self.entries.len()).min_by_key(|&i| (self.entries[i].2, self.entries[i].3));
            if let Some(i) = first {
                let e = self.entries.remove(i);
                self.bytes -= ENTRY_OVERHEAD + 2 + e.0.len() + e.1.len() + e.4.len();
            }
        }
    }

    proptest! {
        /// Matches the model with and without every key hashing alike; sources of different
        /// lengths whose concatenations with the correlation are equal stay apart.
        #[test]
        fn behaves_like_a_list(ops in proptest::collection::vec(op(), 0..80), collide: bool) {
            const MAX_ENTRIES: usize = 5;
            const MAX_BYTES: usize = 4 * (ENTRY_OVERHEAD + 40);
            let sources: [&[u8]; 3] = [b"a", b"ab", b"b"];
            let corrs: [&[u8]; 4] = [b"bc", b"c", b"1", b"2"];
            let mut c = ReplyCache::new(MAX_ENTRIES, MAX_BYTES, 3);
            c.collide = collide;
            let mut m = Model { entries: Vec::new(), seq: 0, bytes: 0 };
            let mut now = Instant::ZERO;
            for op in ops {
                c.purge(now);
                while m.entries.iter().any(|e| e.2 <= now) {
                    m.evict_first();
                }
                match op {
                    Op::Insert { source, corr, ttl_ms, len } => {
                        let (s, k) = (sources[usize::from(source)], corrs[usize::from(corr)]);
                        let payload = Bytes::from(alloc::vec![b'x'; len]);
                        let ttl = Duration::from_millis(ttl_ms);
                        c.insert(s, k, payload.clone(), None, now, ttl);
                        if ttl_ms > 0 {
                            let size = ENTRY_OVERHEAD + 2 + s.len() + k.len() + len;
                            if let Some(i) = m.entries.iter().position(|e| e.0 == s && e.1 == k) {
                                let e = m.entries.remove(i);
                                m.bytes -= ENTRY_OVERHEAD + 2 + e.0.len() + e.1.len() + e.4.len();
                            }
                            while !m.entries.is_empty()
                                && (m.entries.len() >= MAX_ENTRIES || m.bytes + size > MAX_BYTES)
                            {
                                m.evict_first();
                            }
                            m.entries.push((s.to_vec(), k.to_vec(), now + ttl, m.seq, payload));
                            m.seq += 1;
                            m.bytes += size;
                        }
                    }
                    Op::Replay { source, corr } => {
                        let (s, k) = (sources[usize::from(source)], corrs[usize::from(corr)]);
                        let got = c.replay(s, k, now).map(|r| r.payload);
                        let want = m
                            .entries
                            .iter()
                            .find(|e| e.0 == s && e.1 == k && e.2 > now)
                            .map(|e| e.4.clone());
                        prop_assert_eq!(got, want);
                    }
                    Op::Advance(ms) => now = now + Duration::from_millis(ms),
                }
                prop_assert_eq!(c.len(), m.entries.len());
                prop_assert_eq!(c.bytes, m.bytes);
                prop_assert_eq!(c.by_deadline.len(), c.len());
            }
        }
    }
}
