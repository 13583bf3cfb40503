//! The reply cache that makes redelivered requests idempotent.
//!
//! A QoS 1 redelivery carries the same correlation data as the original; replaying the cached
//! reply instead of running SET NX / VDEL / DEL twice is the SDK's RPC convention (spec §7,
//! "additional invariants"). Entries live for the request's Message Expiry and the cache is
//! bounded by count and bytes: past a bound the entry closest to its deadline is evicted.

use alloc::collections::BTreeMap;
use bytes::Bytes;

use crate::envelope::Message;
use crate::time::{Duration, Instant};

type CacheKey = (Bytes, Bytes);

#[derive(Debug, Clone)]
struct Cached {
    deadline: Instant,
    seq: u64,
    size: usize,
    reply: Message,
}

/// Bounded (source id, correlation data) → reply map with deadlines.
#[derive(Debug, Clone)]
pub(crate) struct ReplyCache {
    by_key: BTreeMap<CacheKey, Cached>,
    by_deadline: BTreeMap<(Instant, u64), CacheKey>,
    seq: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

/// Fixed per-entry overhead counted against the byte bound, on top of the variable fields.
const ENTRY_OVERHEAD: usize = 256;

fn size_of_reply(key: &CacheKey, reply: &Message) -> usize {
    ENTRY_OVERHEAD
        + key.0.len()
        + key.1.len()
        + reply.topic.len()
        + reply.payload.len()
        + reply
            .user_properties
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

impl ReplyCache {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> ReplyCache {
        ReplyCache {
            by_key: BTreeMap::new(),
            by_deadline: BTreeMap::new(),
            seq: 0,
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
        while let Some((&(deadline, seq), _)) = self.by_deadline.first_key_value() {
            if deadline > now {
                break;
            }
            self.evict((deadline, seq));
        }
    }

    fn evict(&mut self, at: (Instant, u64)) {
        if let Some(key) = self.by_deadline.remove(&at) {
            if let Some(c) = self.by_key.remove(&key) {
                self.bytes = self.bytes.saturating_sub(c.size);
            }
        }
    }

    /// The cached reply for a redelivered request, with Message Expiry set to what remains.
    pub(crate) fn replay(
        &self,
        source: &Bytes,
        correlation: &Bytes,
        now: Instant,
    ) -> Option<Message> {
        let c = self.by_key.get(&(source.clone(), correlation.clone()))?;
        if c.deadline <= now {
            return None;
        }
        let mut reply = c.reply.clone();
        reply.message_expiry_secs = Some(remaining_secs(c.deadline, now));
        Some(reply)
    }

    /// Remembers `reply` until `now + ttl`. A reply larger than the whole byte bound is not kept.
    pub(crate) fn insert(
        &mut self,
        source: Bytes,
        correlation: Bytes,
        reply: Message,
        now: Instant,
        ttl: Duration,
    ) {
        if self.max_entries == 0 || ttl.is_zero() {
            return;
        }
        let key = (source, correlation);
        let size = size_of_reply(&key, &reply);
        if size > self.max_bytes {
            return;
        }
        if let Some(old) = self.by_key.get(&key) {
            let at = (old.deadline, old.seq);
            self.evict(at);
        }
        while self.by_key.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            match self.by_deadline.first_key_value() {
                Some((&at, _)) => self.evict(at),
                None => break,
            }
        }
        let deadline = now + ttl;
        self.seq = self.seq.wrapping_add(1);
        self.by_deadline.insert((deadline, self.seq), key.clone());
        self.bytes += size;
        self.by_key.insert(
            key,
            Cached {
                deadline,
                seq: self.seq,
                size,
                reply,
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

    fn msg(payload: &'static [u8]) -> Message {
        Message {
            topic: Bytes::from_static(b"t"),
            payload: Bytes::from_static(payload),
            ..Message::default()
        }
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn replays_until_deadline_with_remaining_expiry() {
        let mut c = ReplyCache::new(10, 1 << 20);
        let t0 = Instant::from_millis(1000);
        c.insert(
            b("a"),
            b("c1"),
            msg(b"+OK\r\n"),
            t0,
            Duration::from_secs(10),
        );
        let r = c
            .replay(&b("a"), &b("c1"), t0 + Duration::from_millis(2500))
            .unwrap();
        assert_eq!(r.payload, b("+OK\r\n"));
        assert_eq!(r.message_expiry_secs, Some(8));
        assert!(c.replay(&b("b"), &b("c1"), t0).is_none());
        assert!(c
            .replay(&b("a"), &b("c1"), t0 + Duration::from_secs(10))
            .is_none());
        c.purge(t0 + Duration::from_secs(10));
        assert_eq!(c.len(), 0);
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let mut c = ReplyCache::new(3, 1 << 20);
        let t0 = Instant::ZERO;
        for (i, corr) in ["1", "2", "3", "4"].iter().enumerate() {
            c.insert(
                b("a"),
                b(corr),
                msg(b":1\r\n"),
                t0,
                Duration::from_secs(10 + i as u64),
            );
        }
        assert_eq!(c.len(), 3);
        assert!(c.replay(&b("a"), &b("1"), t0).is_none());
        assert!(c.replay(&b("a"), &b("4"), t0).is_some());

        let mut small = ReplyCache::new(100, 2 * ENTRY_OVERHEAD + 40);
        for corr in ["1", "2", "3"] {
            small.insert(b("a"), b(corr), msg(b":1\r\n"), t0, Duration::from_secs(5));
        }
        assert_eq!(small.len(), 2);
        assert!(small.bytes <= small.max_bytes);

        let mut off = ReplyCache::new(0, 1 << 20);
        off.insert(b("a"), b("1"), msg(b":1\r\n"), t0, Duration::from_secs(5));
        assert_eq!(off.len(), 0);
    }
}
