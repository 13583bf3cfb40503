//! A structure-aware MQTT message into `envelope::parse_request` (the store side), plus the
//! `build_request` round trip and the error-response builder.
//!
//! Checks: no panic; an accepted request carries exactly the message's correlation data,
//! response topic, first `__srcId`/`__ts`/`__ft` and payload; a rejection that names a reply
//! target echoes the message's topic and correlation data, and its error response (if any) goes
//! there with a non-200 status; a request built by `build_request` is accepted unchanged.
#![no_main]

use bytes::Bytes;
use core::time::Duration;
use leasedlock_core::envelope::{
    build_error_response, build_request, parse_request, prop, response_topic, RequestEnvelope,
};
use leasedlock_core::hlc::Hlc;
use leasedlock_fuzz::message::{ArbPayload, FuzzMessage, CLIENT_ID};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (
    FuzzMessage,
    [u8; 16],
    ArbPayload,
    u64,
    Option<u64>,
    bool,
    u32
)| {
    let (fuzz, correlation, payload, ts_ms, ft_ms, persist, timeout_ms) = input;
    let msg = fuzz.to_message();
    match parse_request(&msg) {
        Ok(req) => {
            assert_eq!(Some(&req.correlation), msg.correlation_data.as_ref());
            assert_eq!(Some(&req.response_topic), msg.response_topic.as_ref());
            assert_eq!(Some(&req.source_id), msg.user_property(prop::SOURCE_ID));
            assert_eq!(req.timestamp.as_ref(), msg.user_property(prop::TIMESTAMP));
            assert_eq!(
                req.fencing_token.as_ref(),
                msg.user_property(prop::FENCING_TOKEN)
            );
            assert_eq!(req.payload, msg.payload);
            assert_eq!(Some(req.expiry_secs), msg.message_expiry_secs);
        }
        Err(rejected) => {
            let response = build_error_response(&rejected);
            match &rejected.reply_to {
                Some(to) => {
                    assert_eq!(Some(&to.topic), msg.response_topic.as_ref());
                    assert_eq!(Some(&to.correlation), msg.correlation_data.as_ref());
                    if let Some(r) = response {
                        assert_eq!(r.topic, to.topic);
                        assert_eq!(r.correlation_data.as_ref(), Some(&to.correlation));
                        let status = r.user_property(prop::STATUS).expect("status");
                        assert_ne!(status.as_ref(), b"200");
                    }
                }
                None => assert!(response.is_none()),
            }
        }
    }

    let timestamp = Hlc::new(ts_ms, 0, "node").expect("valid node");
    let token = ft_ms.map(|ms| Hlc::new(ms, 1, "StateStore").expect("valid node"));
    let topic = response_topic(CLIENT_ID);
    let payload = payload.bytes();
    let built = build_request(&RequestEnvelope {
        client_id: CLIENT_ID,
        response_topic: &topic,
        correlation,
        timestamp: &timestamp,
        fencing_token: token.as_ref(),
        persist,
        timeout: Duration::from_millis(u64::from(timeout_ms)),
        payload: payload.clone(),
    });
    let req = parse_request(&built).expect("our own request must be accepted");
    assert_eq!(req.correlation.as_ref(), correlation.as_slice());
    assert_eq!(req.response_topic, Bytes::from(topic));
    assert_eq!(req.source_id.as_ref(), CLIENT_ID.as_bytes());
    assert_eq!(req.timestamp, Some(timestamp.to_bytes()));
    assert_eq!(req.fencing_token, token.map(|t| t.to_bytes()));
    assert_eq!(req.persist, persist);
    assert_eq!(req.payload, payload);
    assert!(req.expiry_secs >= 1);
});
