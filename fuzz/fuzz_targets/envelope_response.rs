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
            assert_eq!(status.as_ref(), env.status.to_string().as_bytes());
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
        Err(_) => assert_eq!(msg.correlation_data.as_ref().map(Bytes::len), Some(16)),
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
