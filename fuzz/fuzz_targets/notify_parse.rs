//! Raw bytes as a notification payload (`command::NotifyPayload::parse`), with a differential
//! check of its two paths.
//!
//! Checks: no panic; the allocation-free path for the store's exact form and the general decoder
//! agree under the default limits and under tight limits around the ones the fast path tests
//! (anything the fast path accepts, the decoder accepts as the same payload, and `parse` equals
//! the decoder's result, error included); the fast path takes every input that is exactly the
//! store's encoding of what the decoder returned; a parsed payload re-encodes to something that
//! parses back to itself.
#![no_main]

use bytes::Bytes;
use leasedlock_core::command::NotifyPayload;
use leasedlock_core::resp3::Limits;
use libfuzzer_sys::fuzz_target;

/// Limits at and next to each bound the fast path checks by hand (one level of array, two or
/// four elements, blobs at least as long as `NOTIFY`).
const TIGHT: [Limits; 5] = [
    Limits {
        max_array_len: 3,
        max_blob_len: 64,
        max_depth: 1,
    },
    Limits {
        max_array_len: 1,
        max_blob_len: 64,
        max_depth: 1,
    },
    Limits {
        max_array_len: 4,
        max_blob_len: 5,
        max_depth: 1,
    },
    Limits {
        max_array_len: 4,
        max_blob_len: 6,
        max_depth: 0,
    },
    Limits {
        max_array_len: 4,
        max_blob_len: 6,
        max_depth: 1,
    },
];

/// The two paths on one input under one set of limits; returns the decoder's result.
fn differential(payload: &Bytes, limits: &Limits) -> Option<NotifyPayload> {
    let (fast, general) = NotifyPayload::parse_paths_for_fuzzing(payload, limits);
    if let Some(fast) = &fast {
        assert_eq!(
            general.as_ref(),
            Ok(fast),
            "fast path accepted what the decoder judges otherwise under {limits:?}"
        );
    }
    assert_eq!(
        NotifyPayload::parse(payload, limits),
        general,
        "parse differs from the decoder under {limits:?}"
    );
    let parsed = general.ok()?;
    let mut canonical = Vec::new();
    parsed.encode(&mut canonical);
    if canonical.as_slice() == payload.as_ref() {
        assert!(
            fast.is_some(),
            "the store's exact form fell back to the decoder under {limits:?}"
        );
    }
    Some(parsed)
}

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    for limits in &TIGHT {
        differential(&payload, limits);
    }
    let limits = Limits::default();
    let Some(parsed) = differential(&payload, &limits) else {
        return;
    };
    if let NotifyPayload::Set { value } = &parsed {
        assert!(value.len() < data.len());
        // The value-length bound of the fast path, at the value's own length and one below.
        for max_blob_len in [value.len().max(6), value.len().saturating_sub(1).max(6)] {
            differential(
                &payload,
                &Limits {
                    max_blob_len,
                    ..limits
                },
            );
        }
    }
    let mut wire = Vec::new();
    parsed.encode(&mut wire);
    assert_eq!(
        NotifyPayload::parse(&Bytes::from(wire), &limits).as_ref(),
        Ok(&parsed)
    );
});
