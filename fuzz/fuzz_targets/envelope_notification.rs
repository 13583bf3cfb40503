//! A structure-aware MQTT message into `envelope::parse_notification`, plus the builder round
//! trip.
//!
//! Checks: no panic; an accepted notification came on exactly our topic for its key, with its
//! first `__ts` as version and a payload `NotifyPayload::parse` accepts; and what
//! `build_notification` produces for us is accepted with the same key, version and payload.
#![no_main]

use bytes::Bytes;
use leasedlock_core::command::NotifyPayload;
use leasedlock_core::envelope::{build_notification, notification_topic, parse_notification, prop};
use leasedlock_core::hlc::Hlc;
use leasedlock_fuzz::message::{FuzzMessage, CLIENT_ID};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (FuzzMessage, Vec<u8>, u64, u64, Option<Vec<u8>>)| {
    let (fuzz, key, millis, counter, value) = input;
    let msg = fuzz.to_message();
    if let Ok(n) = parse_notification(&msg, CLIENT_ID) {
        assert_eq!(
            msg.topic,
            Bytes::from(notification_topic(CLIENT_ID, &n.key))
        );
        let ts = msg
            .user_property(prop::TIMESTAMP)
            .expect("__ts was required");
        assert_eq!(Hlc::parse(ts).as_ref(), Ok(&n.version));
        match &n.payload {
            NotifyPayload::Set { value } => assert!(msg.payload.len() > value.len()),
            NotifyPayload::Delete => assert!(!msg.payload.is_empty()),
            _ => {}
        }
    }

    // Keys the store can hold are non-empty; keep them short enough for any sane key limit.
    if key.is_empty() || key.len() > 1024 {
        return;
    }
    let version = Hlc::new(millis, counter, "StateStore").expect("valid node");
    let payload = match value {
        Some(v) => NotifyPayload::Set {
            value: Bytes::from(v),
        },
        None => NotifyPayload::Delete,
    };
    let built = build_notification(CLIENT_ID.as_bytes(), &key, &version, &payload);
    let parsed = parse_notification(&built, CLIENT_ID).expect("our own notification must parse");
    assert_eq!(
        (parsed.key.as_ref(), parsed.version, parsed.payload),
        (key.as_slice(), version, payload)
    );
    assert!(parse_notification(&built, "someone-else").is_err());
});
