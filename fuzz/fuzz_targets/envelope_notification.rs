//! A structure-aware MQTT message into `envelope::parse_notification`, plus the builder round
//! trip.
//!
//! Checks: no panic; an accepted notification came on exactly our topic for its key, with its
//! first `__ts` as version and a payload `NotifyPayload::parse` accepts; and what
//! `build_notification` produces for us is accepted with the same key, version and payload;
//! one `NotificationFanout` addressed to us and to a fuzzer-chosen other client id gives copies
//! that differ only in their topic, each accepted by its addressee alone, and ours equals
//! `build_notification`'s.
#![no_main]

use bytes::Bytes;
use leasedlock_core::command::NotifyPayload;
use leasedlock_core::envelope::{
    build_notification, notification_topic, parse_notification, prop, NotificationFanout,
};
use leasedlock_core::hlc::Hlc;
use leasedlock_fuzz::message::{FuzzMessage, CLIENT_ID};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    |input: (FuzzMessage, Vec<u8>, u64, u64, Option<Vec<u8>>, String)| {
        let (fuzz, key, millis, counter, value, other) = input;
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
        let parsed =
            parse_notification(&built, CLIENT_ID).expect("our own notification must parse");
        assert_eq!(
            (parsed.key.as_ref(), &parsed.version, &parsed.payload),
            (key.as_slice(), &version, &payload)
        );
        assert!(parse_notification(&built, "someone-else").is_err());

        // The store's fan-out: encoded once, one copy per watcher.
        let fanout = NotificationFanout::new(&key, &version, &payload);
        let ours = fanout.message_for(CLIENT_ID.as_bytes());
        assert_eq!(ours, built);
        // A client id the notification topic can carry: non-empty printable ASCII without topic
        // separators or wildcards, and not ours.
        let topic_safe = |b: u8| b.is_ascii_graphic() && !matches!(b, b'/' | b'+' | b'#');
        if other.is_empty() || other == CLIENT_ID || !other.bytes().all(topic_safe) {
            return;
        }
        let theirs = fanout.message_for(other.as_bytes());
        assert_eq!(theirs.topic, Bytes::from(notification_topic(&other, &key)));
        let mut retopped = theirs.clone();
        retopped.topic = ours.topic.clone();
        assert_eq!(retopped, ours, "fan-out copies differ beyond their topic");
        let parsed = parse_notification(&theirs, &other).expect("a fan-out copy must parse");
        assert_eq!(
            (parsed.key.as_ref(), parsed.version, parsed.payload),
            (key.as_slice(), version, payload)
        );
        assert!(parse_notification(&theirs, CLIENT_ID).is_err());
        assert!(parse_notification(&ours, &other).is_err());
    }
);
