//! Raw bytes as a notification payload (`command::NotifyPayload::parse`).
//!
//! Checks: no panic; a parsed payload re-encodes to exactly the input (both accepted shapes are
//! canonical apart from non-canonical length digits) or at least parses back to itself.
#![no_main]

use bytes::Bytes;
use leasedlock_core::command::NotifyPayload;
use leasedlock_core::resp3::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    let limits = Limits::default();
    let Ok(parsed) = NotifyPayload::parse(&payload, &limits) else {
        return;
    };
    let mut wire = Vec::new();
    parsed.encode(&mut wire);
    assert_eq!(
        NotifyPayload::parse(&Bytes::from(wire), &limits).as_ref(),
        Ok(&parsed)
    );
    if let NotifyPayload::Set { value } = &parsed {
        assert!(value.len() < data.len());
    }
});
