//! Raw bytes into the RESP3 decoder under three nested limit sets.
//!
//! Checks: no panic; a decoded value respects its limits and survives canonical re-encoding; and
//! limits are monotonic (what decodes under tighter limits decodes identically under looser ones).
#![no_main]

use bytes::Bytes;
use leasedlock_core::resp3::{decode, Limits};
use leasedlock_fuzz::codec::check_resp3_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    // Ordered from tightest to loosest in every dimension.
    let nested = [
        Limits {
            max_array_len: 2,
            max_blob_len: 8,
            max_depth: 1,
        },
        Limits::default(),
        Limits {
            max_array_len: 256,
            max_blob_len: usize::MAX,
            max_depth: 16,
        },
    ];
    let results: Vec<_> = nested.iter().map(|l| decode(&input, l)).collect();
    for (result, limits) in results.iter().zip(&nested) {
        if let Ok(value) = result {
            check_resp3_round_trip(value, limits);
        }
    }
    for pair in results.windows(2) {
        if let Ok(tight) = &pair[0] {
            assert_eq!(
                pair[1].as_ref(),
                Ok(tight),
                "looser limits changed the result"
            );
        }
    }
});
