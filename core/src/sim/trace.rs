//! The trace: a bounded ring of compact binary records of what happened, and a running hash of
//! all of them, which is the run's fingerprint for determinism checks.
//!
//! Recording is on the hot path (several records per event), so a record holds no heap data
//! in the common case: a message keeps only the first [`PAYLOAD_PREFIX`] bytes of its payload
//! inline (the hash covers all of it), and nothing is formatted until someone asks for lines.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
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
        /// The start of the payload (RESP3).
        payload: PayloadPrefix,
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
    /// A node reported something to the checkers (boxed: reports are rare and large). Its
    /// `safe_until`, if it has one, is in global time (converted through the node's clock),
    /// so it compares with the trace's times.
    Report(Box<Report>),
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

/// Payload bytes kept in a trace record.
pub const PAYLOAD_PREFIX: usize = 72;

/// The first [`PAYLOAD_PREFIX`] bytes of a message payload and its full length, stored inline
/// so that recording a message allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PayloadPrefix {
    bytes: [u8; PAYLOAD_PREFIX],
    kept: u8,
    len: u32,
}

impl PayloadPrefix {
    /// Keeps the start of `payload`.
    pub fn new(payload: &[u8]) -> PayloadPrefix {
        let kept = payload.len().min(PAYLOAD_PREFIX);
        let mut bytes = [0u8; PAYLOAD_PREFIX];
        if let (Some(dst), Some(src)) = (bytes.get_mut(..kept), payload.get(..kept)) {
            dst.copy_from_slice(src);
        }
        PayloadPrefix {
            bytes,
            kept: u8::try_from(kept).unwrap_or(u8::MAX),
            len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        }
    }

    /// The kept bytes (the whole payload when it is at most [`PAYLOAD_PREFIX`] long).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.kept)).unwrap_or(&[])
    }

    /// Length of the whole payload.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether bytes were cut off.
    pub fn is_truncated(&self) -> bool {
        self.len() > usize::from(self.kept)
    }
}

impl fmt::Debug for PayloadPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_payload(f, self)
    }
}

fn write_payload(f: &mut fmt::Formatter<'_>, p: &PayloadPrefix) -> fmt::Result {
    f.write_char('"')?;
    for &b in p.as_bytes() {
        match b {
            b'\r' => f.write_str("\\r")?,
            b'\n' => f.write_str("\\n")?,
            0x20..=0x7e => f.write_char(char::from(b))?,
            _ => write!(f, "\\x{b:02x}")?,
        }
    }
    f.write_char('"')?;
    if p.is_truncated() {
        write!(f, "..(+{})", p.len() - usize::from(p.kept))?;
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
            TraceKind::Delivered { dir, corr } => {
                let arrow = if *dir == Dir::ToStore {
                    "->store"
                } else {
                    "<-store"
                };
                write!(f, "deliver {arrow} corr={corr:08x}")
            }
            TraceKind::Report(r) => write_report(f, r),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A global instant as the trace prints times.
fn write_global(f: &mut fmt::Formatter<'_>, ns: u64) -> fmt::Result {
    write!(f, "{}.{:03}ms", ns / 1_000_000, (ns / 1_000) % 1_000)
}

/// A report, with its `safe_until` (global time) printed like the trace's times.
fn write_report(f: &mut fmt::Formatter<'_>, r: &Report) -> fmt::Result {
    match r {
        Report::Acquired {
            key,
            token,
            safe_until,
            renewing,
        } => {
            write!(f, "report Acquired key={key:?} token={token} safe_until=")?;
            write_global(f, safe_until.as_nanos())?;
            write!(f, " renewing={renewing}")
        }
        Report::Renewed {
            key,
            token,
            safe_until,
        } => {
            write!(f, "report Renewed key={key:?} token={token} safe_until=")?;
            write_global(f, safe_until.as_nanos())
        }
        Report::SafeUntilLowered { key, safe_until } => {
            write!(f, "report SafeUntilLowered key={key:?} safe_until=")?;
            write_global(f, safe_until.as_nanos())
        }
        other => write!(f, "report {other:?}"),
    }
}

const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const MIX: u64 = 0x517c_c1b7_2722_0a95;

/// A fingerprint hash fed field by field, a word at a time (FxHash's mixing step). Not for
/// adversarial input: it only has to tell runs apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint(u64);

impl Fingerprint {
    pub(crate) fn new() -> Self {
        Fingerprint(SEED)
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(MIX);
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.u64(u64::from_le_bytes(a));
        }
        let mut a = [0u8; 8];
        for (d, s) in a.iter_mut().zip(words.remainder()) {
            *d = *s;
        }
        self.u64(u64::from_le_bytes(a));
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// Hashes a record's kind; a `Sent` payload is hashed by the caller (whole, not the prefix).
fn hash_kind(h: &mut Fingerprint, kind: &TraceKind) {
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
            h.u64(payload.len() as u64);
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
    hash: Fingerprint,
    recorded: u64,
}

impl Trace {
    pub(crate) fn new(capacity: usize) -> Self {
        Trace {
            ring: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            hash: Fingerprint::new(),
            recorded: 0,
        }
    }

    /// Records a message handed to the network; the hash covers its whole `payload`, the
    /// record keeps its start.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_sent(
        &mut self,
        event: u64,
        time_ns: u64,
        node: usize,
        dir: Dir,
        payload: &[u8],
        corr: u32,
        delay_us: u64,
        duplicate: bool,
    ) {
        self.hash.bytes(payload);
        let kind = TraceKind::Sent {
            dir,
            payload: PayloadPrefix::new(payload),
            corr,
            delay_us,
            duplicate,
        };
        self.record(event, time_ns, Some(node), kind);
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
        t.record_sent(
            3,
            1_500_000,
            4,
            Dir::ToStore,
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
            0xdead_beef,
            250,
            true,
        );
        let lines = t.last_lines(10);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("c4"), "{}", lines[0]);
        assert!(lines[0].contains("1.500ms"), "{}", lines[0]);
        assert!(lines[0].contains("DUP"), "{}", lines[0]);
        assert!(lines[0].contains("GET\\r\\n"), "{}", lines[0]);
    }

    #[test]
    fn long_payloads_keep_a_prefix_and_hash_whole() {
        let long = [b'a'; 200];
        let mut other = long;
        other[150] = b'b';
        let p = PayloadPrefix::new(&long);
        assert_eq!((p.as_bytes().len(), p.len()), (PAYLOAD_PREFIX, 200));
        assert!(p.is_truncated() && !p.is_empty());
        let short = PayloadPrefix::new(b"+OK\r\n");
        assert_eq!(short.as_bytes(), b"+OK\r\n");
        assert!(!short.is_truncated());
        let record = |payload: &[u8]| {
            let mut t = Trace::new(4);
            t.record_sent(1, 2, 0, Dir::ToClient, payload, 9, 10, false);
            t
        };
        let (a, b) = (record(&long), record(&other));
        assert_ne!(a.hash(), b.hash(), "bytes past the prefix count");
        assert_eq!(a.last_lines(1), b.last_lines(1));
        assert!(
            a.last_lines(1)[0].contains("..(+128)"),
            "{:?}",
            a.last_lines(1)
        );
    }
}
