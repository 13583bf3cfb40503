//! Raw bytes into the HLC parser.
//!
//! Checks: `parse` and `parse_slice` agree; a parsed value's canonical form parses back to the
//! same value, sorts consistently with the parsed fields, and stays within the length bound.
#![no_main]

use bytes::Bytes;
use leasedlock_core::hlc::{Hlc, MAX_TEXT_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let shared = Hlc::parse(&Bytes::copy_from_slice(data));
    assert_eq!(shared, Hlc::parse_slice(data));
    let Ok(hlc) = shared else { return };
    assert!(data.len() <= MAX_TEXT_LEN);
    let canonical = hlc.to_bytes();
    let again = Hlc::parse(&canonical).expect("canonical form must parse");
    assert_eq!(again, hlc);
    assert_eq!(canonical, Bytes::from(hlc.to_string()));
    assert_eq!(hlc.node_bytes().as_ref(), hlc.node().as_bytes());
    // Same fields through the constructor give the same value.
    assert_eq!(
        Hlc::new(hlc.millis, hlc.counter, hlc.node_bytes().clone()),
        Ok(hlc.clone())
    );
    if let Some(next) = hlc.counter.checked_add(1) {
        let bigger = Hlc::new(hlc.millis, next, hlc.node_bytes().clone()).expect("valid node");
        assert!(bigger > hlc);
    }
});
