//! Structure-aware inputs and shared oracles for the codec targets (RESP3, HLC, commands).

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use leasedlock_core::command::RequestKind;
use leasedlock_core::resp3::{decode, Limits, Value};

/// Every request kind, so a reply target can try a payload against all of them.
pub const ALL_KINDS: [RequestKind; 6] = [
    RequestKind::Set,
    RequestKind::Get,
    RequestKind::Del,
    RequestKind::Vdel,
    RequestKind::KeyNotify,
    RequestKind::KeyNotifyStop,
];

/// Small decoder limits chosen by the fuzzer, so the limit checks themselves get exercised
/// (the default limits are far above what a 4 KiB input can reach for blobs).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct SmallLimits {
    max_array_len: u8,
    max_blob_len: u16,
    max_depth: u8,
}

impl SmallLimits {
    /// As decoder limits (depth capped at 64 so a test input stays cheap).
    pub fn limits(self) -> Limits {
        Limits {
            max_array_len: usize::from(self.max_array_len),
            max_blob_len: usize::from(self.max_blob_len),
            max_depth: usize::from(self.max_depth % 64),
        }
    }
}

/// The wire form of `value`.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

/// Nesting depth as the decoder counts it (a scalar is 0, a flat array 1).
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether `value` respects `limits` (what a successful decode under `limits` must guarantee).
pub fn within(value: &Value, limits: &Limits) -> bool {
    fn walk(value: &Value, limits: &Limits) -> bool {
        match value {
            Value::Simple(t) | Value::Error(t) | Value::Blob(t) => t.len() <= limits.max_blob_len,
            Value::Array(items) => {
                items.len() <= limits.max_array_len && items.iter().all(|v| walk(v, limits))
            }
            _ => true,
        }
    }
    depth(value) <= limits.max_depth && walk(value, limits)
}

/// The oracle shared by every RESP3-consuming target: a decoded value respects the limits, and
/// its canonical encoding decodes to the same value under the same limits (the decoder accepts
/// some non-canonical numbers such as `:007`, so the bytes themselves need not round-trip).
pub fn check_resp3_round_trip(value: &Value, limits: &Limits) {
    assert!(within(value, limits), "decoded value exceeds the limits");
    let again = decode(&Bytes::from(encode(value)), limits);
    assert_eq!(
        again.as_ref(),
        Ok(value),
        "canonical re-encoding changed the value"
    );
}

/// A RESP3 value tree built by the fuzzer; texts of `+`/`-` lines are kept free of CR and LF,
/// which [`Value::encode`] documents as the caller's duty.
#[derive(Debug, Clone)]
pub struct ArbValue(pub Value);

impl<'a> Arbitrary<'a> for ArbValue {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        arb_value(u, 0).map(ArbValue)
    }
}

fn line(u: &mut Unstructured<'_>) -> arbitrary::Result<Bytes> {
    let raw: Vec<u8> = u.arbitrary()?;
    Ok(raw
        .into_iter()
        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect())
}

fn arb_value(u: &mut Unstructured<'_>, level: usize) -> arbitrary::Result<Value> {
    let choice = if level >= 4 {
        u.int_in_range(0..=4u8)?
    } else {
        u.int_in_range(0..=5u8)?
    };
    Ok(match choice {
        0 => Value::Simple(line(u)?),
        1 => Value::Error(line(u)?),
        2 => Value::Integer(u.arbitrary()?),
        3 => Value::Blob(Bytes::from(u.arbitrary::<Vec<u8>>()?)),
        4 => Value::NullBlob,
        _ => {
            let n = u.int_in_range(0..=8usize)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(arb_value(u, level + 1)?);
            }
            Value::Array(items)
        }
    })
}
