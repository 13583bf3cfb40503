//! A fuzzer-built RESP3 value, encoded, decoded under fuzzer-chosen limits.
//!
//! Checks: the decoder returns exactly the value when it fits the limits and an error when it
//! does not; every strict prefix of the encoding and the encoding plus one byte are rejected.
#![no_main]

use bytes::Bytes;
use leasedlock_core::resp3::{decode, Resp3Error};
use leasedlock_fuzz::codec::{encode, within, ArbValue, SmallLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (ArbValue, SmallLimits, u16, u8)| {
    let (ArbValue(value), limits, cut, extra) = input;
    let limits = limits.limits();
    let wire = encode(&value);
    let decoded = decode(&Bytes::from(wire.clone()), &limits);
    if within(&value, &limits) {
        assert_eq!(decoded, Ok(value.clone()));
    } else {
        assert!(
            decoded.is_err(),
            "a value over the limits was accepted: {value:?}"
        );
        return;
    }
    let cut = usize::from(cut) % wire.len();
    assert!(
        decode(&Bytes::copy_from_slice(&wire[..cut]), &limits).is_err(),
        "a strict prefix decoded"
    );
    let mut longer = wire;
    longer.push(extra);
    assert_eq!(
        decode(&Bytes::from(longer), &limits),
        Err(Resp3Error::TrailingBytes)
    );
});
