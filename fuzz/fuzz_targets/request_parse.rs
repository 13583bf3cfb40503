//! Raw bytes as a request payload (`command::Request::parse`, the store side).
//!
//! Checks: no panic; a parsed request has a non-empty key and a positive PX; its canonical
//! encoding parses back to the same request; only a RESP3 array can parse.
#![no_main]

use bytes::Bytes;
use leasedlock_core::command::Request;
use leasedlock_core::resp3::{decode, Limits, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    let limits = Limits::default();
    let Ok(request) = Request::parse(&payload, &limits) else {
        return;
    };
    assert!(matches!(decode(&payload, &limits), Ok(Value::Array(_))));
    assert!(!request.key().is_empty());
    if let Request::Set {
        px_ms: Some(ms), ..
    } = &request
    {
        assert!(*ms > 0);
    }
    let mut wire = Vec::new();
    request.encode(&mut wire);
    let again = Request::parse(&Bytes::from(wire), &limits);
    assert_eq!(again.as_ref(), Ok(&request));
    assert_eq!(again.map(|r| r.kind()), Ok(request.kind()));
});
