//! Hybrid logical clock (docs/protocol.md §6): the `{ms:15}:{counter:5}:{node}` timestamps carried
//! in `__ts` and `__ft`, their total order, and the tick/update rules with the 60 s drift limit.

use alloc::vec::Vec;
use bytes::Bytes;
use core::cmp::Ordering;
use core::fmt;

/// Longest node id we accept, in bytes. Real node ids are UUIDs or short service names.
pub const MAX_NODE_LEN: usize = 256;

/// Longest HLC text we accept: two 20-digit numbers, two colons and the node id.
pub const MAX_TEXT_LEN: usize = 20 + 1 + 20 + 1 + MAX_NODE_LEN;

/// The default maximum distance an HLC may run ahead of the local wall clock (one minute).
pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

/// Why an HLC string or update was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HlcError {
    /// Not exactly three `:`-separated segments.
    WrongSegmentCount,
    /// The milliseconds segment is empty, not decimal, or overflows `u64`.
    BadMillis,
    /// The counter segment is empty, not decimal, or overflows `u64`.
    BadCounter,
    /// The node id is not UTF-8 or longer than [`MAX_NODE_LEN`].
    BadNode,
    /// The text is longer than [`MAX_TEXT_LEN`].
    TooLong,
    /// Applying the update would put the clock more than the maximum drift ahead of the wall clock.
    DriftExceeded,
    /// The counter cannot grow any further.
    CounterOverflow,
}

impl fmt::Display for HlcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HlcError::WrongSegmentCount => "HLC must have exactly three ':'-separated segments",
            HlcError::BadMillis => "HLC milliseconds segment is not a decimal u64",
            HlcError::BadCounter => "HLC counter segment is not a decimal u64",
            HlcError::BadNode => "HLC node id is not valid UTF-8 or is too long",
            HlcError::TooLong => "HLC text is too long",
            HlcError::DriftExceeded => "HLC is too far ahead of the wall clock",
            HlcError::CounterOverflow => "HLC counter overflow",
        })
    }
}

impl core::error::Error for HlcError {}

/// A hybrid logical clock value. Ordered by milliseconds, then counter, then node id compared
/// byte-wise (the Go and .NET order); "equal" means all three fields match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch.
    pub millis: u64,
    /// Logical counter within the millisecond.
    pub counter: u64,
    /// Node id: UTF-8, never containing `:`.
    node: Bytes,
}

impl Ord for Hlc {
    fn cmp(&self, other: &Self) -> Ordering {
        self.millis
            .cmp(&other.millis)
            .then(self.counter.cmp(&other.counter))
            .then_with(|| self.node.as_ref().cmp(other.node.as_ref()))
    }
}

impl PartialOrd for Hlc {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

fn valid_node(node: &[u8]) -> bool {
    node.len() <= MAX_NODE_LEN && !node.contains(&b':') && core::str::from_utf8(node).is_ok()
}

impl Hlc {
    /// An HLC from its parts. Fails with [`HlcError::BadNode`] if the node id contains `:`, is not
    /// UTF-8 or is longer than [`MAX_NODE_LEN`].
    pub fn new(millis: u64, counter: u64, node: impl Into<Bytes>) -> Result<Hlc, HlcError> {
        let node = node.into();
        if !valid_node(&node) {
            return Err(HlcError::BadNode);
        }
        Ok(Hlc {
            millis,
            counter,
            node,
        })
    }

    /// The node id.
    pub fn node(&self) -> &str {
        // Validated as UTF-8 on construction.
        core::str::from_utf8(&self.node).unwrap_or("")
    }

    /// The node id as shared bytes.
    pub fn node_bytes(&self) -> &Bytes {
        &self.node
    }

    /// Parses `ms:counter:node`, padded or not. The node id is sliced out of `text` without
    /// copying.
    pub fn parse(text: &Bytes) -> Result<Hlc, HlcError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(HlcError::TooLong);
        }
        let first = text
            .iter()
            .position(|&c| c == b':')
            .ok_or(HlcError::WrongSegmentCount)?;
        let rest = &text[first + 1..];
        let second = first
            + 1
            + rest
                .iter()
                .position(|&c| c == b':')
                .ok_or(HlcError::WrongSegmentCount)?;
        let millis = parse_decimal(&text[..first]).ok_or(HlcError::BadMillis)?;
        let counter = parse_decimal(&text[first + 1..second]).ok_or(HlcError::BadCounter)?;
        let node = text.slice(second + 1..);
        if node.contains(&b':') {
            return Err(HlcError::WrongSegmentCount);
        }
        if !valid_node(&node) {
            return Err(HlcError::BadNode);
        }
        Ok(Hlc {
            millis,
            counter,
            node,
        })
    }

    /// Parses from a byte slice, copying the node id.
    pub fn parse_slice(text: &[u8]) -> Result<Hlc, HlcError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(HlcError::TooLong);
        }
        Hlc::parse(&Bytes::copy_from_slice(text))
    }

    /// Appends the canonical form (`{ms:015}:{counter:05}:{node}`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        write_padded(out, self.millis, 15);
        out.push(b':');
        write_padded(out, self.counter, 5);
        out.push(b':');
        out.extend_from_slice(&self.node);
    }

    /// The canonical form as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(15 + 1 + 5 + 1 + self.node.len());
        self.write_to(&mut v);
        Bytes::from(v)
    }
}

fn write_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    const ZEROS: [u8; 20] = [b'0'; 20];
    let mut buf = [0u8; 20];
    let digits = crate::resp3::format_u64(value, &mut buf);
    let pad = width.saturating_sub(digits.len()).min(ZEROS.len());
    out.extend_from_slice(ZEROS.get(..pad).unwrap_or_default());
    out.extend_from_slice(digits);
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:015}:{:05}:{}", self.millis, self.counter, self.node())
    }
}

/// A running hybrid logical clock owned by one participant (a client or the store).
#[derive(Debug, Clone)]
pub struct HybridClock {
    current: Hlc,
    max_drift_ms: u64,
}

impl HybridClock {
    /// A clock at time zero with the given node id and drift limit (docs/protocol.md §6.3; default:
    /// [`DEFAULT_MAX_DRIFT_MS`]).
    pub fn new(node: impl Into<Bytes>, max_drift_ms: u64) -> Result<HybridClock, HlcError> {
        Ok(HybridClock {
            current: Hlc::new(0, 0, node)?,
            max_drift_ms,
        })
    }

    /// The current value.
    pub fn current(&self) -> &Hlc {
        &self.current
    }

    /// The maximum drift ahead of the wall clock.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// Whether `value` is more than the drift limit ahead of `wall_ms`.
    pub fn too_far_ahead(&self, value: &Hlc, wall_ms: u64) -> bool {
        value.millis.saturating_sub(wall_ms) > self.max_drift_ms
    }

    /// Advances to "now" and returns the new value (docs/protocol.md §6.2 "tick").
    pub fn tick(&mut self, wall_ms: u64) -> Result<Hlc, HlcError> {
        let (millis, counter) = if wall_ms > self.current.millis {
            (wall_ms, 0)
        } else {
            (
                self.current.millis,
                self.current
                    .counter
                    .checked_add(1)
                    .ok_or(HlcError::CounterOverflow)?,
            )
        };
        self.commit(millis, counter, wall_ms)?;
        Ok(self.current.clone())
    }

    /// Folds a received timestamp into the clock (docs/protocol.md §6.2 update rule). On error the
    /// clock is left unchanged.
    pub fn update(&mut self, other: &Hlc, wall_ms: u64) -> Result<(), HlcError> {
        if other.node == self.current.node {
            return Ok(());
        }
        let cur = &self.current;
        let (millis, counter) = if wall_ms > cur.millis && wall_ms > other.millis {
            (wall_ms, 0)
        } else if cur.millis == other.millis {
            (
                cur.millis,
                cur.counter
                    .max(other.counter)
                    .checked_add(1)
                    .ok_or(HlcError::CounterOverflow)?,
            )
        } else if cur.millis > other.millis {
            (
                cur.millis,
                cur.counter
                    .checked_add(1)
                    .ok_or(HlcError::CounterOverflow)?,
            )
        } else {
            (
                other.millis,
                other
                    .counter
                    .checked_add(1)
                    .ok_or(HlcError::CounterOverflow)?,
            )
        };
        self.commit(millis, counter, wall_ms)
    }

    fn commit(&mut self, millis: u64, counter: u64, wall_ms: u64) -> Result<(), HlcError> {
        if millis.saturating_sub(wall_ms) > self.max_drift_ms {
            return Err(HlcError::DriftExceeded);
        }
        self.current.millis = millis;
        self.current.counter = counter;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use proptest::prelude::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn parses_padded_and_unpadded() {
        let h = Hlc::parse(&b(
            "001696374425000:00000:0190f2c4-7f3a-7c1e-9b2d-3c4d5e6f7a8b",
        ))
        .unwrap();
        assert_eq!(h.millis, 1_696_374_425_000);
        assert_eq!(h.counter, 0);
        assert_eq!(h.node(), "0190f2c4-7f3a-7c1e-9b2d-3c4d5e6f7a8b");
        let u = Hlc::parse(&b("1696374425000:1:StateStore")).unwrap();
        assert_eq!(
            (u.millis, u.counter, u.node()),
            (1_696_374_425_000, 1, "StateStore")
        );
        assert_eq!(u.to_string(), "001696374425000:00001:StateStore");
        // A counter wider than five digits simply uses more digits.
        let wide = Hlc::new(5, 1_234_567, "n").unwrap();
        assert_eq!(wide.to_string(), "000000000000005:1234567:n");
        assert_eq!(Hlc::parse(&wide.to_bytes()).unwrap(), wide);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Hlc::parse(&b("abc")), Err(HlcError::WrongSegmentCount));
        assert_eq!(Hlc::parse(&b("1:2")), Err(HlcError::WrongSegmentCount));
        assert_eq!(Hlc::parse(&b("1:2:a:b")), Err(HlcError::WrongSegmentCount));
        assert_eq!(Hlc::parse(&b(":2:a")), Err(HlcError::BadMillis));
        assert_eq!(Hlc::parse(&b("-1:2:a")), Err(HlcError::BadMillis));
        assert_eq!(Hlc::parse(&b("1.5E12:2:a")), Err(HlcError::BadMillis));
        assert_eq!(Hlc::parse(&b("1::a")), Err(HlcError::BadCounter));
        assert_eq!(
            Hlc::parse(&b("99999999999999999999:0:a")),
            Err(HlcError::BadMillis)
        );
        assert_eq!(
            Hlc::parse(&Bytes::from_static(b"1:2:\xff")),
            Err(HlcError::BadNode)
        );
        assert!(Hlc::new(1, 1, "a:b").is_err());
    }

    #[test]
    fn order_is_millis_counter_node() {
        let a = Hlc::new(1, 5, "z").unwrap();
        let c = Hlc::new(2, 0, "a").unwrap();
        let d = Hlc::new(2, 1, "a").unwrap();
        let e = Hlc::new(2, 1, "b").unwrap();
        assert!(a < c && c < d && d < e);
        assert_eq!(d.cmp(&d.clone()), Ordering::Equal);
    }

    #[test]
    fn update_rules() {
        let mut clk = HybridClock::new("me", DEFAULT_MAX_DRIFT_MS).unwrap();
        // Rule 2: wall ahead of both.
        clk.update(&Hlc::new(50, 3, "x").unwrap(), 100).unwrap();
        assert_eq!((clk.current().millis, clk.current().counter), (100, 0));
        // Rule 3: equal millis.
        clk.update(&Hlc::new(100, 7, "x").unwrap(), 90).unwrap();
        assert_eq!((clk.current().millis, clk.current().counter), (100, 8));
        // Rule 4: self ahead.
        clk.update(&Hlc::new(99, 70, "x").unwrap(), 90).unwrap();
        assert_eq!((clk.current().millis, clk.current().counter), (100, 9));
        // Rule 5: other ahead.
        clk.update(&Hlc::new(200, 4, "x").unwrap(), 190).unwrap();
        assert_eq!((clk.current().millis, clk.current().counter), (200, 5));
        // Rule 1: same node is ignored.
        clk.update(&Hlc::new(10_000, 4, "me").unwrap(), 190)
            .unwrap();
        assert_eq!(clk.current().millis, 200);
        // Rule 6: drift.
        let before = clk.current().clone();
        assert_eq!(
            clk.update(&Hlc::new(200 + 60_001 + 1, 0, "x").unwrap(), 200),
            Err(HlcError::DriftExceeded)
        );
        assert_eq!(clk.current(), &before);
        clk.update(&Hlc::new(200 + 60_000, 0, "x").unwrap(), 200)
            .unwrap();
    }

    #[test]
    fn tick_is_monotonic_and_counter_overflow_is_an_error() {
        let mut clk = HybridClock::new("n", DEFAULT_MAX_DRIFT_MS).unwrap();
        let t1 = clk.tick(10).unwrap();
        let t2 = clk.tick(10).unwrap();
        let t3 = clk.tick(5).unwrap();
        assert!(t1 < t2 && t2 < t3);
        clk.update(&Hlc::new(20, u64::MAX, "x").unwrap(), 20)
            .unwrap_err();
        clk.update(&Hlc::new(20, u64::MAX - 1, "x").unwrap(), 20)
            .unwrap();
        assert_eq!(clk.tick(20), Err(HlcError::CounterOverflow));
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(ms in any::<u64>(), c in any::<u64>(), node in "[^:]{0,40}") {
            let h = Hlc::new(ms, c, Bytes::copy_from_slice(node.as_bytes())).unwrap();
            prop_assert_eq!(Hlc::parse(&h.to_bytes()).unwrap(), h.clone());
            prop_assert_eq!(h.to_bytes(), Bytes::from(h.to_string()));
        }

        #[test]
        fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Hlc::parse(&Bytes::from(bytes));
        }

        #[test]
        fn parse_survives_mutations(ms in any::<u64>(), c in any::<u32>(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut v = Hlc::new(ms, u64::from(c), "node-1").unwrap().to_bytes().to_vec();
            let i = pos % v.len();
            v[i] = byte;
            let _ = Hlc::parse(&Bytes::from(v));
        }

        #[test]
        fn updates_never_go_backwards(steps in proptest::collection::vec((0u64..1000, 0u64..1000, 0u64..5, any::<bool>()), 1..50)) {
            let mut clk = HybridClock::new("me", 100).unwrap();
            let mut last = clk.current().clone();
            for (wall, other_ms, other_c, tick) in steps {
                let r = if tick { clk.tick(wall).map(|_| ()) } else {
                    clk.update(&Hlc::new(other_ms, other_c, "peer").unwrap(), wall)
                };
                if r.is_ok() {
                    prop_assert!(clk.current() > &last || (!tick && clk.current() == &last));
                    prop_assert!(clk.current().millis.saturating_sub(wall) <= 100);
                } else {
                    prop_assert_eq!(clk.current(), &last);
                }
                last = clk.current().clone();
            }
        }
    }
}
