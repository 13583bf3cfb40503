//! A structure-aware MQTT message into `envelope::parse_response`, plus the builder round trip.
//!
//! Checks: no panic; an accepted response reports exactly the message's correlation data,
//! first `__stat`, first `__ts` and payload; 16-byte correlation data is required; and what
//! `build_response` produces is accepted with status 200 and the same payload and version.
#![no_main]

use bytes::Bytes;
use leasedlock_core::envelope::{build_response, parse_response, prop, EnvelopeError};
use leasedlock_core::hlc::Hlc;
use leasedlock_fuzz::message::{ArbHlc, ArbPayload, FuzzMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (
    FuzzMessage,
    [u8; 16],
    ArbPayload,
    Option<ArbHlc>,
    Option<u32>
)| {
    let (fuzz, correlation, payload, version, expiry) = input;
    let msg = fuzz.to_message();
    match parse_response(&msg) {
        Ok(env) => {
            assert_eq!(
                msg.correlation_data.as_deref(),
                Some(env.correlation.as_slice())
            );
            let status = msg
                .user_property(prop::STATUS)
                .expect("status was required");
            // Leading zeros are fine; the digits must denote the reported status.
            assert!(status.iter().all(u8::is_ascii_digit));
            let value = status.iter().fold(0u64, |acc, &d| {
                acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
            });
            assert_eq!(value, u64::from(env.status));
            assert_eq!(
                env.timestamp,
                msg.user_property(prop::TIMESTAMP)
                    .map(|t| Hlc::parse(t).expect("an accepted __ts parses"))
            );
            assert_eq!(
                env.status_message.as_ref(),
                msg.user_property(prop::STATUS_MESSAGE)
            );
            assert_eq!(env.payload, msg.payload);
        }
        Err(EnvelopeError::BadCorrelationData) => {
            assert_ne!(msg.correlation_data.as_ref().map(Bytes::len), Some(16));
        }
        // Other errors may be checked before or after the correlation data.
        Err(_) => {}
    }

    let version = version.and_then(|v| Hlc::parse(&v.bytes()).ok());
    let payload = payload.bytes();
    let built = build_response(
        Bytes::from_static(b"clients/x/response"),
        Bytes::copy_from_slice(&correlation),
        expiry,
        payload.clone(),
        version.as_ref(),
    );
    let env = parse_response(&built).expect("our own response must parse");
    assert_eq!(
        (env.correlation, env.status, env.payload, env.timestamp),
        (correlation, 200, payload, version)
    );
});
