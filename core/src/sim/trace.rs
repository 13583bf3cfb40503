//! The trace: a bounded ring of readable records of what happened, and a running hash of all
//! of them (FNV-1a), which is the run's fingerprint for determinism checks.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt::{self, Write as _};

use super::agent::Report;

/// Which way a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dir {
    /// Client to store (a request).
    ToStore,
    /// Store to client (a reply or a notification).
    ToClient,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Loss {
    /// Random loss.
    Dropped,
    /// Notification loss.
    NotificationLost,
    /// Sent into a partition.
    Partitioned,
    /// The receiving client is disconnected and has no session.
    NoSession,
    /// The receiving client crashed.
    Crashed,
    /// The sender was not connected.
    NotConnected,
    /// The request's Message Expiry passed before the broker could deliver it.
    Expired,
    /// The topic names no known client.
    UnknownTopic,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceKind {
    /// A node started (or restarted after a crash).
    Start,
    /// A node connected to the broker.
    Connected {
        /// Whether the broker kept its session.
        session_present: bool,
    },
    /// A node's connection dropped.
    Disconnected {
        /// Whether the session is lost too.
        session_lost: bool,
    },
    /// The broker granted a subscription.
    Subscribed,
    /// A message was handed to the network.
    Sent {
        /// Direction.
        dir: Dir,
        /// Payload (RESP3).
        payload: Bytes,
        /// First bytes of the correlation data (requests and replies).
        corr: u32,
        /// Delivery delay in microseconds; a second copy is marked by `duplicate`.
        delay_us: u64,
        /// A duplicate copy.
        duplicate: bool,
    },
    /// A message arrived.
    Delivered {
        /// Direction.
        dir: Dir,
        /// First bytes of the correlation data.
        corr: u32,
    },
    /// A message was lost.
    Lost {
        /// Direction.
        dir: Dir,
        /// Why.
        why: Loss,
    },
    /// A node's timer fired.
    Timer,
    /// The store's expiry timer fired.
    StoreTimer,
    /// A request completed.
    Completion {
        /// Request id.
        id: u64,
        /// Whether it produced a reply.
        ok: bool,
    },
    /// A node reported something to the checkers.
    Report(Report),
    /// A partition began (`to_store`, `to_client`: which directions are cut).
    PartitionStart {
        /// Requests are lost.
        to_store: bool,
        /// Replies and notifications are lost.
        to_client: bool,
    },
    /// A partition healed.
    PartitionEnd,
    /// A node paused.
    Paused {
        /// Pause length in milliseconds.
        ms: u64,
    },
    /// A node resumed.
    Resumed,
    /// A node crashed.
    Crashed,
    /// Faults stop from here on.
    Healed,
    /// The workload was asked to stop.
    Stopping,
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Index of the event that produced it.
    pub event: u64,
    /// Global time in nanoseconds.
    pub time_ns: u64,
    /// The node (client index), or `None` for the store and the world.
    pub node: Option<usize>,
    /// What happened.
    pub kind: TraceKind,
}

fn write_payload(f: &mut fmt::Formatter<'_>, p: &[u8]) -> fmt::Result {
    const MAX: usize = 72;
    f.write_char('"')?;
    for &b in p.iter().take(MAX) {
        match b {
            b'\r' => f.write_str("\\r")?,
            b'\n' => f.write_str("\\n")?,
            0x20..=0x7e => f.write_char(char::from(b))?,
            _ => write!(f, "\\x{b:02x}")?,
        }
    }
    f.write_char('"')?;
    if p.len() > MAX {
        write!(f, "..(+{})", p.len() - MAX)?;
    }
    Ok(())
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.time_ns / 1_000_000;
        let us = (self.time_ns / 1_000) % 1_000;
        write!(f, "#{:<7} {:>7}.{:03}ms ", self.event, ms, us)?;
        match self.node {
            Some(n) => write!(f, "c{n:<3} ")?,
            None => f.write_str("---- ")?,
        }
        match &self.kind {
            TraceKind::Sent {
                dir,
                payload,
                corr,
                delay_us,
                duplicate,
            } => {
                let arrow = if *dir == Dir::ToStore {
                    "->store"
                } else {
                    "<-store"
                };
                write!(f, "send {arrow} corr={corr:08x} +{delay_us}us ")?;
                if *duplicate {
                    f.write_str("DUP ")?;
                }
                write_payload(f, payload)
            }
            other => write!(f, "{other:?}"),
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, fed field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(FNV_OFFSET)
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

fn hash_kind(h: &mut Fnv, kind: &TraceKind) {
    match kind {
        TraceKind::Start => h.u64(1),
        TraceKind::Connected { session_present } => {
            h.u64(2);
            h.u64(u64::from(*session_present));
        }
        TraceKind::Disconnected { session_lost } => {
            h.u64(3);
            h.u64(u64::from(*session_lost));
        }
        TraceKind::Subscribed => h.u64(4),
        TraceKind::Sent {
            dir,
            payload,
            corr,
            delay_us,
            duplicate,
        } => {
            h.u64(5);
            h.u64(*dir as u64);
            h.bytes(payload);
            h.u64(u64::from(*corr));
            h.u64(*delay_us);
            h.u64(u64::from(*duplicate));
        }
        TraceKind::Delivered { dir, corr } => {
            h.u64(6);
            h.u64(*dir as u64);
            h.u64(u64::from(*corr));
        }
        TraceKind::Lost { dir, why } => {
            h.u64(7);
            h.u64(*dir as u64);
            h.u64(*why as u64);
        }
        TraceKind::Timer => h.u64(8),
        TraceKind::StoreTimer => h.u64(9),
        TraceKind::Completion { id, ok } => {
            h.u64(10);
            h.u64(*id);
            h.u64(u64::from(*ok));
        }
        TraceKind::Report(r) => {
            h.u64(11);
            r.hash_into(h);
        }
        TraceKind::PartitionStart {
            to_store,
            to_client,
        } => {
            h.u64(12);
            h.u64(u64::from(*to_store) | u64::from(*to_client) << 1);
        }
        TraceKind::PartitionEnd => h.u64(13),
        TraceKind::Paused { ms } => {
            h.u64(14);
            h.u64(*ms);
        }
        TraceKind::Resumed => h.u64(15),
        TraceKind::Crashed => h.u64(16),
        TraceKind::Healed => h.u64(17),
        TraceKind::Stopping => h.u64(18),
    }
}

/// The bounded ring plus the running hash.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    ring: VecDeque<TraceEntry>,
    capacity: usize,
    hash: Fnv,
    recorded: u64,
}

impl Trace {
    pub(crate) fn new(capacity: usize) -> Self {
        Trace {
            ring: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            hash: Fnv::new(),
            recorded: 0,
        }
    }

    pub(crate) fn record(
        &mut self,
        event: u64,
        time_ns: u64,
        node: Option<usize>,
        kind: TraceKind,
    ) {
        self.hash.u64(event);
        self.hash.u64(time_ns);
        self.hash.u64(node.map_or(u64::MAX, |n| n as u64));
        hash_kind(&mut self.hash, &kind);
        self.recorded += 1;
        if self.capacity == 0 {
            return;
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(TraceEntry {
            event,
            time_ns,
            node,
            kind,
        });
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// The last `n` records, oldest first, as lines.
    pub(crate) fn last_lines(&self, n: usize) -> Vec<String> {
        let skip = self.ring.len().saturating_sub(n);
        self.ring
            .iter()
            .skip(skip)
            .map(|e| alloc::format!("{e}"))
            .collect()
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &TraceEntry> {
        self.ring.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_hash_covers_everything() {
        let mut a = Trace::new(2);
        let mut b = Trace::new(0);
        for i in 0..5 {
            a.record(i, i * 10, Some(1), TraceKind::Timer);
            b.record(i, i * 10, Some(1), TraceKind::Timer);
        }
        assert_eq!(a.entries().count(), 2);
        assert_eq!(b.entries().count(), 0);
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.recorded, 5);
        let mut c = Trace::new(2);
        for i in 0..5 {
            c.record(i, i * 10, Some(2), TraceKind::Timer);
        }
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn lines_are_readable() {
        let mut t = Trace::new(8);
        t.record(
            3,
            1_500_000,
            Some(4),
            TraceKind::Sent {
                dir: Dir::ToStore,
                payload: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
                corr: 0xdead_beef,
                delay_us: 250,
                duplicate: true,
            },
        );
        let lines = t.last_lines(10);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("c4"), "{}", lines[0]);
        assert!(lines[0].contains("1.500ms"), "{}", lines[0]);
        assert!(lines[0].contains("DUP"), "{}", lines[0]);
        assert!(lines[0].contains("GET\\r\\n"), "{}", lines[0]);
    }
}
