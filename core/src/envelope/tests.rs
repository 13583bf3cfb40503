use super::topics::notification_key_segment;
use super::*;
use crate::command::NotifyPayload;
use crate::command::NotifyPayloadError;
use crate::hex;
use crate::hex::HexError;
use crate::hlc::Hlc;
use crate::hlc::HlcError;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;
use proptest::prelude::*;

const SPEC_NOTIFY_TOPIC: &str = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559";
const SPEC_SET_PAYLOAD: &[u8] = b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n";
const SPEC_DELETE_PAYLOAD: &[u8] = b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n";
const CORR: [u8; 16] = [7; 16];

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn hlc(ms: u64, c: u64, node: &str) -> Hlc {
    Hlc::new(ms, c, b(node)).unwrap()
}

fn props(list: &[(&str, &str)]) -> Vec<(Bytes, Bytes)> {
    list.iter().map(|(k, v)| (b(k), b(v))).collect()
}

fn set_prop(msg: &mut Message, name: &str, value: Option<&str>) {
    msg.user_properties
        .retain(|(k, _)| k.as_ref() != name.as_bytes());
    if let Some(v) = value {
        msg.user_properties.push((b(name), b(v)));
    }
}

fn sample_request(ft: Option<&Hlc>, persist: bool) -> Message {
    let ts = hlc(1_696_374_425_000, 3, "node-a");
    build_request(&RequestEnvelope {
        client_id: "client-id1",
        response_topic: &response_topic("client-id1"),
        correlation: CORR,
        timestamp: &ts,
        fencing_token: ft,
        persist,
        timeout: Duration::from_millis(1500),
        payload: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n"),
    })
}

fn valid_response() -> Message {
    build_response(
        b(&response_topic("client-id1")),
        Bytes::copy_from_slice(&CORR),
        Some(10),
        Bytes::from_static(b"+OK\r\n"),
        Some(&hlc(1_696_374_425_000, 1, "StateStore")),
    )
}

/// A notification for `client-id1` / `SOMEKEY` (docs/protocol.md §13 row 34) with literal
/// payload bytes.
fn valid_notification() -> Message {
    Message {
        topic: b(SPEC_NOTIFY_TOPIC),
        payload: Bytes::from_static(SPEC_SET_PAYLOAD),
        qos: QoS::AtLeastOnce,
        content_type: Some(b(CONTENT_TYPE)),
        payload_format_indicator: Some(0),
        user_properties: props(&[("__ts", "1696374425000:1:StateStore"), ("__protVer", "1.0")]),
        ..Message::default()
    }
}

fn with_topic(topic: &str) -> Message {
    Message {
        topic: b(topic),
        ..valid_notification()
    }
}

// ---- topics ----

#[test]
fn topics_match_spec_examples() {
    assert_eq!(
        response_topic("client-id1"),
        "clients/client-id1/services/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke/response"
    );
    assert_eq!(
        notification_topic("client-id1", b"SOMEKEY"),
        SPEC_NOTIFY_TOPIC
    );
    assert_eq!(
        notification_filter("client-id1"),
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/+"
    );
    assert!(REQUEST_TOPIC.starts_with(SERVICE_PATH));
    assert!(NOTIFY_TOPIC_PREFIX.ends_with(SERVICE_PATH));
}

#[test]
fn notification_topic_uses_upper_case_for_binary_keys() {
    assert_eq!(
        notification_topic("c", &[0x00, 0xab, 0xff]),
        alloc::format!("{NOTIFY_TOPIC_PREFIX}/63/command/notify/00ABFF")
    );
}

// ---- expiry ----

#[test]
fn expiry_rounds_up_with_floor_and_ceiling() {
    assert_eq!(expiry_secs(Duration::from_millis(1500)), 2);
    assert_eq!(expiry_secs(Duration::ZERO), 1);
    assert_eq!(expiry_secs(Duration::from_nanos(1)), 1);
    assert_eq!(expiry_secs(Duration::from_secs(1)), 1);
    assert_eq!(expiry_secs(Duration::from_secs(10)), 10);
    assert_eq!(expiry_secs(Duration::new(10, 1)), 11);
    assert_eq!(
        expiry_secs(Duration::from_secs(u64::from(u32::MAX))),
        u32::MAX
    );
    assert_eq!(
        expiry_secs(Duration::new(u64::from(u32::MAX) - 1, 1)),
        u32::MAX
    );
    assert_eq!(expiry_secs(Duration::new(u64::from(u32::MAX), 1)), u32::MAX);
    assert_eq!(expiry_secs(Duration::MAX), u32::MAX);
}

// ---- build_request ----

#[test]
fn request_has_exact_properties_in_official_order() {
    let ft = hlc(1_795_998_708_162, 0, "stub-responder");
    let msg = sample_request(Some(&ft), true);
    assert_eq!(msg.topic, b(REQUEST_TOPIC));
    assert_eq!(msg.qos, QoS::AtLeastOnce);
    assert!(!msg.retain);
    assert_eq!(msg.message_expiry_secs, Some(2));
    assert_eq!(msg.response_topic, Some(b(&response_topic("client-id1"))));
    assert_eq!(msg.correlation_data.as_deref(), Some(&CORR[..]));
    assert_eq!(msg.content_type, Some(b("application/octet-stream")));
    assert_eq!(msg.payload_format_indicator, Some(0));
    assert_eq!(msg.payload.as_ref(), b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n");
    assert_eq!(
        msg.user_properties,
        props(&[
            ("__ft", "001795998708162:00000:stub-responder"),
            ("aio-persistence", "true"),
            ("__srcId", "client-id1"),
            ("__ts", "001696374425000:00003:node-a"),
            ("__protVer", "1.0"),
            ("$partition", "client-id1"),
        ])
    );
}

#[test]
fn request_omits_optional_properties() {
    let msg = sample_request(None, false);
    assert_eq!(
        msg.user_properties,
        props(&[
            ("__srcId", "client-id1"),
            ("__ts", "001696374425000:00003:node-a"),
            ("__protVer", "1.0"),
            ("$partition", "client-id1"),
        ])
    );
    assert!(msg.user_property("$high_priority").is_none());
}

// ---- parse_response ----

#[test]
fn response_parses() {
    let mut msg = valid_response();
    msg.user_properties.push((b("__stMsg"), b("fine")));
    let r = parse_response(&msg).unwrap();
    assert_eq!(r.correlation, CORR);
    assert_eq!(r.status, 200);
    assert_eq!(r.status_message, Some(b("fine")));
    assert_eq!(r.timestamp, Some(hlc(1_696_374_425_000, 1, "StateStore")));
    assert_eq!(r.payload.as_ref(), b"+OK\r\n");
}

#[test]
fn response_accepts_minimal_form() {
    // No content type, no version, no timestamp: all optional.
    let msg = Message {
        correlation_data: Some(Bytes::copy_from_slice(&CORR)),
        user_properties: props(&[("__stat", "400")]),
        ..Message::default()
    };
    let r = parse_response(&msg).unwrap();
    assert_eq!((r.status, r.timestamp, r.status_message), (400, None, None));
}

#[test]
fn response_without_correlation_is_rejected() {
    let mut msg = valid_response();
    msg.correlation_data = None;
    assert_eq!(parse_response(&msg), Err(EnvelopeError::BadCorrelationData));
    assert_eq!(response_correlation(&msg), None);
}

#[test]
fn response_with_short_correlation_is_rejected() {
    let mut msg = valid_response();
    msg.correlation_data = Some(Bytes::from_static(&[1; 15]));
    assert_eq!(parse_response(&msg), Err(EnvelopeError::BadCorrelationData));
}

#[test]
fn response_with_long_correlation_is_rejected() {
    let mut msg = valid_response();
    msg.correlation_data = Some(Bytes::from_static(&[1; 17]));
    assert_eq!(parse_response(&msg), Err(EnvelopeError::BadCorrelationData));
}

#[test]
fn response_without_status_is_rejected() {
    let mut msg = valid_response();
    set_prop(&mut msg, "__stat", None);
    assert_eq!(
        parse_response(&msg),
        Err(EnvelopeError::MissingProperty("__stat"))
    );
    // The correlation is still available so the caller can fail the request at once.
    assert_eq!(response_correlation(&msg), Some(CORR));
}

#[test]
fn response_with_non_decimal_status_is_rejected() {
    for bad in ["", "abc", "+200", " 200", "200 ", "70000", "2000000", "-1"] {
        let mut msg = valid_response();
        set_prop(&mut msg, "__stat", Some(bad));
        assert_eq!(
            parse_response(&msg),
            Err(EnvelopeError::InvalidProperty("__stat")),
            "{bad:?}"
        );
    }
    let mut msg = valid_response();
    set_prop(&mut msg, "__stat", Some("65535"));
    assert_eq!(parse_response(&msg).unwrap().status, 65535);
}

#[test]
fn response_with_bad_timestamp_is_rejected() {
    let mut msg = valid_response();
    set_prop(&mut msg, "__ts", Some("abc"));
    assert_eq!(
        parse_response(&msg),
        Err(EnvelopeError::BadTimestamp(HlcError::WrongSegmentCount))
    );
}

#[test]
fn response_with_text_plain_is_rejected() {
    let mut msg = valid_response();
    msg.content_type = Some(b("text/plain"));
    assert_eq!(parse_response(&msg), Err(EnvelopeError::BadContentType));
}

#[test]
fn response_with_empty_content_type_is_rejected() {
    let mut msg = valid_response();
    msg.content_type = Some(Bytes::new());
    assert_eq!(parse_response(&msg), Err(EnvelopeError::BadContentType));
}

#[test]
fn response_with_version_2_is_rejected() {
    let mut msg = valid_response();
    set_prop(&mut msg, "__protVer", Some("2.0"));
    assert_eq!(parse_response(&msg), Err(EnvelopeError::UnsupportedVersion));
}

#[test]
fn response_with_non_numeric_minor_is_rejected() {
    for bad in ["1.x", "1", "1.", ".0", "1.0.0", "", "one.zero"] {
        let mut msg = valid_response();
        set_prop(&mut msg, "__protVer", Some(bad));
        assert_eq!(
            parse_response(&msg),
            Err(EnvelopeError::UnsupportedVersion),
            "{bad:?}"
        );
    }
}

#[test]
fn response_accepts_any_1_minor() {
    let mut msg = valid_response();
    set_prop(&mut msg, "__protVer", Some("1.7"));
    assert!(parse_response(&msg).is_ok());
}

// ---- parse_notification: errors detected before the payload is looked at ----

#[test]
fn notification_on_other_client_is_wrong_topic() {
    let msg = valid_notification();
    assert_eq!(
        parse_notification(&msg, "client-id2"),
        Err(EnvelopeError::WrongTopic)
    );
    assert_eq!(
        parse_notification(&msg, "client-id"),
        Err(EnvelopeError::WrongTopic)
    );
}

#[test]
fn notification_with_lower_case_client_segment_is_wrong_topic() {
    let msg = with_topic(
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636c69656e742d696431/command/notify/534F4D454B4559",
    );
    assert_eq!(
        parse_notification(&msg, "client-id1"),
        Err(EnvelopeError::WrongTopic)
    );
}

#[test]
fn notification_with_extra_level_is_wrong_topic() {
    let msg = with_topic(&alloc::format!("{SPEC_NOTIFY_TOPIC}/00"));
    assert_eq!(
        parse_notification(&msg, "client-id1"),
        Err(EnvelopeError::WrongTopic)
    );
}

#[test]
fn notification_with_wrong_prefix_is_wrong_topic() {
    for topic in [
        "clients/statestore/v2/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559",
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify",
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notifyX534F",
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8636C69656E742D696431/command/notify/534F",
        "",
    ] {
        assert_eq!(
            parse_notification(&with_topic(topic), "client-id1"),
            Err(EnvelopeError::WrongTopic),
            "{topic}"
        );
    }
}

#[test]
fn notification_with_empty_key_is_wrong_topic() {
    let msg = with_topic(&notification_topic("client-id1", b""));
    assert_eq!(
        parse_notification(&msg, "client-id1"),
        Err(EnvelopeError::WrongTopic)
    );
}

#[test]
fn notification_with_lower_case_key_hex_is_a_typed_error() {
    let msg = with_topic(&alloc::format!(
        "{NOTIFY_TOPIC_PREFIX}/636C69656E742D696431/command/notify/7a7a"
    ));
    assert_eq!(
        parse_notification(&msg, "client-id1"),
        Err(EnvelopeError::BadKeyHex(HexError::InvalidDigit {
            index: 1
        }))
    );
}

#[test]
fn notification_with_odd_key_hex_is_a_typed_error() {
    let msg = with_topic(&alloc::format!(
        "{NOTIFY_TOPIC_PREFIX}/636C69656E742D696431/command/notify/ABC"
    ));
    assert_eq!(
        parse_notification(&msg, "client-id1"),
        Err(EnvelopeError::BadKeyHex(HexError::OddLength))
    );
}

#[test]
fn notification_with_oversized_key_is_a_typed_error() {
    let key = vec![0x41; MAX_NOTIFY_KEY_LEN + 1];
    let msg = with_topic(&notification_topic("client-id1", &key));
    assert_eq!(
        parse_notification(&msg, "client-id1"),
        Err(EnvelopeError::BadKeyHex(HexError::TooLong))
    );
}

#[test]
fn notification_without_timestamp_is_rejected() {
    let mut msg = valid_notification();
    set_prop(&mut msg, "__ts", None);
    assert_eq!(
        parse_notification(&msg, "client-id1"),
        Err(EnvelopeError::MissingProperty("__ts"))
    );
}

#[test]
fn notification_with_bad_timestamp_is_rejected() {
    let mut msg = valid_notification();
    set_prop(&mut msg, "__ts", Some("1:2"));
    assert_eq!(
        parse_notification(&msg, "client-id1"),
        Err(EnvelopeError::BadTimestamp(HlcError::WrongSegmentCount))
    );
}

#[test]
fn notification_with_text_plain_is_rejected() {
    let mut msg = valid_notification();
    msg.content_type = Some(b("text/plain"));
    assert_eq!(
        parse_notification(&msg, "client-id1"),
        Err(EnvelopeError::BadContentType)
    );
}

#[test]
fn notification_with_version_2_is_rejected() {
    let mut msg = valid_notification();
    set_prop(&mut msg, "__protVer", Some("2.0"));
    assert_eq!(
        parse_notification(&msg, "client-id1"),
        Err(EnvelopeError::UnsupportedVersion)
    );
}

// ---- parse_notification / build_notification with the payload codec ----

#[test]
fn notification_parses_spec_row_34() {
    let n = parse_notification(&valid_notification(), "client-id1").unwrap();
    assert_eq!(n.key.as_ref(), b"SOMEKEY");
    assert_eq!(n.version, hlc(1_696_374_425_000, 1, "StateStore"));
    assert_eq!(n.payload, NotifyPayload::Set { value: b("abc") });
}

#[test]
fn notification_delete_at_qos0_without_content_type_parses() {
    let msg = Message {
        qos: QoS::AtMostOnce,
        content_type: None,
        payload: Bytes::from_static(SPEC_DELETE_PAYLOAD),
        ..valid_notification()
    };
    let n = parse_notification(&msg, "client-id1").unwrap();
    assert_eq!(n.payload, NotifyPayload::Delete);
}

#[test]
fn notification_with_other_payload_is_rejected() {
    for payload in [
        &b"+OK\r\n"[..],
        b"*3\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n",
        b"*2\r\n$6\r\nNOTIFY\r\n$6\r\ndelete\r\n",
        b"",
    ] {
        let msg = Message {
            payload: Bytes::from_static(payload),
            ..valid_notification()
        };
        assert!(
            matches!(
                parse_notification(&msg, "client-id1"),
                Err(EnvelopeError::BadNotifyPayload(_))
            ),
            "{payload:?}"
        );
    }
}

#[test]
fn build_notification_matches_spec_row_34() {
    let version = hlc(1_696_374_425_000, 1, "StateStore");
    let msg = build_notification(
        b"client-id1",
        b"SOMEKEY",
        &version,
        &NotifyPayload::Set { value: b("abc") },
    );
    assert_eq!(msg.topic, b(SPEC_NOTIFY_TOPIC));
    assert_eq!(msg.payload.as_ref(), SPEC_SET_PAYLOAD);
    assert_eq!(msg.qos, QoS::AtLeastOnce);
    assert!(!msg.retain);
    assert_eq!(msg.content_type, Some(b(CONTENT_TYPE)));
    assert_eq!(msg.payload_format_indicator, Some(0));
    assert_eq!(
        msg.user_properties,
        props(&[
            ("__ts", "001696374425000:00001:StateStore"),
            ("__protVer", "1.0")
        ])
    );
    let del = build_notification(b"client-id1", b"SOMEKEY", &version, &NotifyPayload::Delete);
    assert_eq!(del.payload.as_ref(), SPEC_DELETE_PAYLOAD);
}

// ---- parse_request ----

fn rejected(msg: &Message) -> RejectedRequest {
    parse_request(msg).unwrap_err()
}

fn reply_to_sample() -> Option<ReplyTo> {
    Some(ReplyTo {
        topic: b(&response_topic("client-id1")),
        correlation: Bytes::copy_from_slice(&CORR),
    })
}

#[test]
fn request_round_trips_through_parse_request() {
    let ft = hlc(5, 6, "holder");
    let r = parse_request(&sample_request(Some(&ft), true)).unwrap();
    assert_eq!(
        r,
        IncomingRequest {
            source_id: b("client-id1"),
            correlation: Bytes::copy_from_slice(&CORR),
            response_topic: b(&response_topic("client-id1")),
            expiry_secs: 2,
            timestamp: Some(b("001696374425000:00003:node-a")),
            fencing_token: Some(b("000000000000005:00006:holder")),
            persist: true,
            payload: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n"),
        }
    );
    let plain = parse_request(&sample_request(None, false)).unwrap();
    assert_eq!((plain.fencing_token, plain.persist), (None, false));
}

#[test]
fn request_without_response_topic_is_unanswerable() {
    let mut msg = sample_request(None, false);
    msg.response_topic = None;
    let r = rejected(&msg);
    assert_eq!(
        (r.reply_to, r.error),
        (None, IncomingRequestError::Unanswerable)
    );
}

#[test]
fn request_without_correlation_is_unanswerable() {
    let mut msg = sample_request(None, false);
    msg.correlation_data = None;
    assert_eq!(
        rejected(&msg),
        RejectedRequest {
            reply_to: None,
            error: IncomingRequestError::Unanswerable
        }
    );
}

#[test]
fn request_with_empty_correlation_is_unanswerable() {
    let mut msg = sample_request(None, false);
    msg.correlation_data = Some(Bytes::new());
    assert_eq!(rejected(&msg).error, IncomingRequestError::Unanswerable);
}

#[test]
fn request_with_unpublishable_response_topic_is_unanswerable() {
    for topic in [&b""[..], b"a/+/b", b"a/#", b"a\0b", b"\xff\xfe"] {
        let mut msg = sample_request(None, false);
        msg.response_topic = Some(Bytes::copy_from_slice(topic));
        assert_eq!(
            rejected(&msg),
            RejectedRequest {
                reply_to: None,
                error: IncomingRequestError::Unanswerable
            },
            "{topic:?}"
        );
    }
}

#[test]
fn request_replying_to_request_topic_is_forbidden() {
    let mut msg = sample_request(None, false);
    msg.response_topic = Some(b(REQUEST_TOPIC));
    assert_eq!(
        rejected(&msg),
        RejectedRequest {
            reply_to: None,
            error: IncomingRequestError::ForbiddenResponseTopic
        }
    );
}

#[test]
fn request_replying_under_notify_prefix_is_forbidden() {
    let mut msg = sample_request(None, false);
    msg.response_topic = Some(b(&notification_topic("client-id1", b"k")));
    assert_eq!(
        rejected(&msg),
        RejectedRequest {
            reply_to: None,
            error: IncomingRequestError::ForbiddenResponseTopic
        }
    );
}

#[test]
fn request_without_message_expiry_is_400() {
    let mut msg = sample_request(None, false);
    msg.message_expiry_secs = None;
    assert_eq!(
        rejected(&msg),
        RejectedRequest {
            reply_to: reply_to_sample(),
            error: IncomingRequestError::BadHeader {
                name: "Message Expiry",
                value: None
            }
        }
    );
}

#[test]
fn request_without_source_id_is_400() {
    let mut msg = sample_request(None, false);
    set_prop(&mut msg, "__srcId", None);
    assert_eq!(
        rejected(&msg),
        RejectedRequest {
            reply_to: reply_to_sample(),
            error: IncomingRequestError::BadHeader {
                name: "__srcId",
                value: None
            }
        }
    );
}

#[test]
fn request_with_empty_source_id_is_400() {
    let mut msg = sample_request(None, false);
    set_prop(&mut msg, "__srcId", Some(""));
    assert_eq!(
        rejected(&msg).error,
        IncomingRequestError::BadHeader {
            name: "__srcId",
            value: Some(Bytes::new())
        }
    );
}

#[test]
fn request_with_version_2_is_505() {
    let mut msg = sample_request(None, false);
    set_prop(&mut msg, "__protVer", Some("2.0"));
    assert_eq!(
        rejected(&msg),
        RejectedRequest {
            reply_to: reply_to_sample(),
            error: IncomingRequestError::UnsupportedVersion(b("2.0"))
        }
    );
}

#[test]
fn request_with_unparsable_version_is_400() {
    for bad in ["1.x", "abc", "1", "", "1.0.0", "99999999999.0"] {
        let mut msg = sample_request(None, false);
        set_prop(&mut msg, "__protVer", Some(bad));
        assert_eq!(
            rejected(&msg).error,
            IncomingRequestError::BadHeader {
                name: "__protVer",
                value: Some(b(bad))
            },
            "{bad:?}"
        );
    }
}

#[test]
fn request_without_version_means_1_0() {
    let mut msg = sample_request(None, false);
    set_prop(&mut msg, "__protVer", None);
    assert!(parse_request(&msg).is_ok());
    set_prop(&mut msg, "__protVer", Some("1.9"));
    assert!(parse_request(&msg).is_ok());
}

#[test]
fn request_with_text_plain_is_415() {
    let mut msg = sample_request(None, false);
    msg.content_type = Some(b("text/plain"));
    assert_eq!(
        rejected(&msg),
        RejectedRequest {
            reply_to: reply_to_sample(),
            error: IncomingRequestError::UnsupportedContentType(b("text/plain"))
        }
    );
}

#[test]
fn request_without_content_type_is_accepted() {
    let mut msg = sample_request(None, false);
    msg.content_type = None;
    assert!(parse_request(&msg).is_ok());
}

#[test]
fn request_passes_timestamps_raw_and_persist_only_for_true() {
    let mut msg = sample_request(None, false);
    set_prop(&mut msg, "__ts", Some("abc"));
    set_prop(&mut msg, "__ft", Some("1:2"));
    set_prop(&mut msg, "aio-persistence", Some("TRUE"));
    let r = parse_request(&msg).unwrap();
    assert_eq!(r.timestamp, Some(b("abc")));
    assert_eq!(r.fencing_token, Some(b("1:2")));
    assert!(!r.persist);
    set_prop(&mut msg, "__ts", None);
    assert_eq!(parse_request(&msg).unwrap().timestamp, None);
}

#[test]
fn request_correlation_of_any_length_is_echoed() {
    let mut msg = sample_request(None, false);
    msg.correlation_data = Some(Bytes::from_static(b"xyz"));
    assert_eq!(parse_request(&msg).unwrap().correlation.as_ref(), b"xyz");
}

// ---- build_response / build_error_response ----

#[test]
fn response_round_trips() {
    let msg = valid_response();
    assert_eq!(msg.qos, QoS::AtLeastOnce);
    assert_eq!(msg.message_expiry_secs, Some(10));
    assert_eq!(msg.content_type, Some(b(CONTENT_TYPE)));
    assert_eq!(msg.payload_format_indicator, Some(0));
    assert_eq!(
        msg.user_properties,
        props(&[
            ("__stat", "200"),
            ("__protVer", "1.0"),
            ("__ts", "001696374425000:00001:StateStore"),
        ])
    );
    let r = parse_response(&msg).unwrap();
    assert_eq!(
        r,
        ResponseEnvelope {
            correlation: CORR,
            status: 200,
            status_message: None,
            timestamp: Some(hlc(1_696_374_425_000, 1, "StateStore")),
            payload: Bytes::from_static(b"+OK\r\n"),
        }
    );
    let bare = build_response(
        b("t"),
        Bytes::copy_from_slice(&CORR),
        None,
        Bytes::new(),
        None,
    );
    assert_eq!(bare.message_expiry_secs, None);
    assert_eq!(parse_response(&bare).unwrap().timestamp, None);
}

#[test]
fn error_response_400_with_value() {
    let rej = RejectedRequest {
        reply_to: reply_to_sample(),
        error: IncomingRequestError::BadHeader {
            name: "__protVer",
            value: Some(b("abc")),
        },
    };
    let msg = build_error_response(&rej).unwrap();
    assert_eq!(msg.topic, b(&response_topic("client-id1")));
    assert_eq!(msg.correlation_data.as_deref(), Some(&CORR[..]));
    assert_eq!(msg.qos, QoS::AtLeastOnce);
    assert!(msg.payload.is_empty());
    assert_eq!(msg.user_property("__stat"), Some(&b("400")));
    assert!(msg.user_property("__stMsg").is_some());
    assert_eq!(msg.user_property("__propName"), Some(&b("__protVer")));
    assert_eq!(msg.user_property("__propVal"), Some(&b("abc")));
    let r = parse_response(&msg).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.status_message.is_some());
}

#[test]
fn error_response_400_without_value() {
    let rej = RejectedRequest {
        reply_to: reply_to_sample(),
        error: IncomingRequestError::BadHeader {
            name: MESSAGE_EXPIRY,
            value: None,
        },
    };
    let msg = build_error_response(&rej).unwrap();
    assert_eq!(msg.user_property("__propName"), Some(&b("Message Expiry")));
    assert_eq!(msg.user_property("__propVal"), None);
}

#[test]
fn error_response_415() {
    let rej = RejectedRequest {
        reply_to: reply_to_sample(),
        error: IncomingRequestError::UnsupportedContentType(b("text/plain")),
    };
    let msg = build_error_response(&rej).unwrap();
    assert_eq!(msg.user_property("__stat"), Some(&b("415")));
    assert_eq!(msg.user_property("__propName"), Some(&b("Content Type")));
    assert_eq!(msg.user_property("__propVal"), Some(&b("text/plain")));
    assert!(msg.payload.is_empty());
    assert_eq!(rej.error.status(), Some(415));
}

#[test]
fn error_response_505_matches_spec_row_36() {
    let mut req = sample_request(None, false);
    set_prop(&mut req, "__protVer", Some("2.0"));
    let msg = build_error_response(&rejected(&req)).unwrap();
    assert_eq!(msg.user_property("__stat"), Some(&b("505")));
    assert_eq!(msg.user_property("__supProtMajVer"), Some(&b("1")));
    assert_eq!(msg.user_property("__requestProtVer"), Some(&b("2.0")));
    assert!(msg.payload.is_empty());
    assert_eq!(parse_response(&msg).unwrap().status, 505);
}

#[test]
fn unanswerable_and_forbidden_get_no_response() {
    for error in [
        IncomingRequestError::Unanswerable,
        IncomingRequestError::ForbiddenResponseTopic,
    ] {
        assert_eq!(error.status(), None);
        // Even if a caller attached a destination, these are never answered.
        let rej = RejectedRequest {
            reply_to: reply_to_sample(),
            error,
        };
        assert_eq!(build_error_response(&rej), None);
    }
    let no_dest = RejectedRequest {
        reply_to: None,
        error: IncomingRequestError::BadHeader {
            name: "__srcId",
            value: None,
        },
    };
    assert_eq!(build_error_response(&no_dest), None);
}

#[test]
fn errors_display() {
    use alloc::string::ToString;
    assert_eq!(
        EnvelopeError::MissingProperty("__ts").to_string(),
        "missing property __ts"
    );
    assert!(
        EnvelopeError::BadNotifyPayload(NotifyPayloadError::UnexpectedShape)
            .to_string()
            .contains("UnexpectedShape")
    );
    assert!(IncomingRequestError::UnsupportedVersion(b("2.0"))
        .to_string()
        .contains("2.0"));
    let e: &dyn core::error::Error = &EnvelopeError::WrongTopic;
    assert!(!e.to_string().is_empty());
}

// ---- property tests ----

const NAMES: &[&str] = &[
    "__srcId",
    "__ts",
    "__ft",
    "__protVer",
    "__stat",
    "__stMsg",
    "aio-persistence",
    "$partition",
    "x",
];

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// Values that are sometimes meaningful (versions, statuses, HLCs) and sometimes garbage.
fn arb_value() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        arb_bytes(24),
        "[0-9]{0,6}".prop_map(|s| b(&s)),
        "[0-9]{1,3}\\.[0-9x]{0,3}".prop_map(|s| b(&s)),
        "[0-9]{1,16}:[0-9]{1,6}:[a-z:]{0,8}".prop_map(|s| b(&s)),
        Just(b("true")),
        Just(b(CONTENT_TYPE)),
    ]
}

fn arb_name() -> impl Strategy<Value = Bytes> {
    prop_oneof![proptest::sample::select(NAMES).prop_map(b), arb_bytes(8),]
}

/// Random topics, including near-misses of a notification topic for `client-id1`.
fn arb_topic() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        arb_bytes(48),
        "[0-9A-Fa-f/+#]{0,12}".prop_map(|k| b(&alloc::format!(
            "{NOTIFY_TOPIC_PREFIX}/636C69656E742D696431/command/notify/{k}"
        ))),
        "[0-9A-F]{0,24}".prop_map(|c| b(&alloc::format!(
            "{NOTIFY_TOPIC_PREFIX}/{c}/command/notify/41"
        ))),
        Just(b(REQUEST_TOPIC)),
    ]
}

fn arb_qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

prop_compose! {
    fn arb_message()(
        topic in arb_topic(),
        payload in arb_bytes(64),
        qos in arb_qos(),
        retain in any::<bool>(),
        correlation_data in proptest::option::of(arb_bytes(20)),
        response_topic in proptest::option::of(prop_oneof![arb_topic(), Just(b("resp/x"))]),
        message_expiry_secs in proptest::option::of(any::<u32>()),
        content_type in proptest::option::of(prop_oneof![arb_bytes(8), Just(b(CONTENT_TYPE))]),
        payload_format_indicator in proptest::option::of(any::<u8>()),
        user_properties in proptest::collection::vec((arb_name(), arb_value()), 0..10),
    ) -> Message {
        Message {
            topic, payload, qos, retain, correlation_data, response_topic,
            message_expiry_secs, content_type, payload_format_indicator, user_properties,
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    RemoveProp(usize),
    SetPropValue(usize, Bytes),
    InsertProp(usize, Bytes, Bytes),
    Correlation(Option<Bytes>),
    ContentType(Option<Bytes>),
    ResponseTopic(Option<Bytes>),
    Expiry(Option<u32>),
    TopicByte(usize, u8),
    TruncateTopic(usize),
    Payload(Bytes),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::RemoveProp),
        (any::<usize>(), arb_value()).prop_map(|(i, v)| Mutation::SetPropValue(i, v)),
        (any::<usize>(), arb_name(), arb_value())
            .prop_map(|(i, k, v)| Mutation::InsertProp(i, k, v)),
        proptest::option::of(arb_bytes(20)).prop_map(Mutation::Correlation),
        proptest::option::of(arb_bytes(8)).prop_map(Mutation::ContentType),
        proptest::option::of(arb_topic()).prop_map(Mutation::ResponseTopic),
        proptest::option::of(any::<u32>()).prop_map(Mutation::Expiry),
        (any::<usize>(), any::<u8>()).prop_map(|(i, c)| Mutation::TopicByte(i, c)),
        any::<usize>().prop_map(Mutation::TruncateTopic),
        arb_bytes(32).prop_map(Mutation::Payload),
    ]
}

fn mutate(msg: &mut Message, m: Mutation) {
    let n = msg.user_properties.len();
    match m {
        Mutation::RemoveProp(i) if n > 0 => {
            msg.user_properties.remove(i % n);
        }
        Mutation::SetPropValue(i, v) if n > 0 => msg.user_properties[i % n].1 = v,
        Mutation::InsertProp(i, k, v) => msg.user_properties.insert(i % (n + 1), (k, v)),
        Mutation::Correlation(c) => msg.correlation_data = c,
        Mutation::ContentType(c) => msg.content_type = c,
        Mutation::ResponseTopic(t) => msg.response_topic = t,
        Mutation::Expiry(e) => msg.message_expiry_secs = e,
        Mutation::TopicByte(i, c) if !msg.topic.is_empty() => {
            let mut t = msg.topic.to_vec();
            let len = t.len();
            t[i % len] = c;
            msg.topic = Bytes::from(t);
        }
        Mutation::TruncateTopic(i) => {
            let keep = i % (msg.topic.len() + 1);
            msg.topic.truncate(keep);
        }
        Mutation::Payload(p) => msg.payload = p,
        _ => {}
    }
}

fn without_timestamps(msg: &Message) -> Message {
    let mut m = msg.clone();
    m.user_properties.retain(|(k, _)| k.as_ref() != b"__ts");
    m
}

proptest! {
    #[test]
    fn random_messages_never_panic(msg in arb_message()) {
        let _ = parse_response(&msg);
        let _ = parse_request(&msg);
        // Without `__ts` the notification parser stops before the payload codec, so this runs
        // on every branch; the full path is covered by `random_notifications_never_panic`.
        let n = parse_notification(&without_timestamps(&msg), "client-id1");
        prop_assert!(n.is_err());
        if let Ok(r) = parse_request(&msg) {
            prop_assert!(msg.response_topic.is_some() && msg.message_expiry_secs.is_some());
            prop_assert_eq!(r.payload, msg.payload.clone());
        }
        if let Err(rej) = parse_request(&msg) {
            let _ = build_error_response(&rej);
        }
    }

    #[test]
    fn mutated_responses_never_panic(muts in proptest::collection::vec(arb_mutation(), 0..6)) {
        let mut msg = valid_response();
        let untouched = muts.is_empty();
        for m in muts {
            mutate(&mut msg, m);
        }
        let r = parse_response(&msg);
        if untouched {
            prop_assert!(r.is_ok());
        }
        if let Ok(r) = r {
            prop_assert_eq!(msg.correlation_data.as_deref(), Some(&r.correlation[..]));
        }
    }

    #[test]
    fn mutated_requests_never_panic(
        muts in proptest::collection::vec(arb_mutation(), 0..6),
        ft in any::<bool>(),
        persist in any::<bool>(),
    ) {
        let token = hlc(1, 2, "n");
        let mut msg = sample_request(ft.then_some(&token), persist);
        let untouched = muts.is_empty();
        for m in muts {
            mutate(&mut msg, m);
        }
        match parse_request(&msg) {
            Ok(r) => prop_assert_eq!(msg.correlation_data.as_ref(), Some(&r.correlation)),
            Err(rej) => {
                prop_assert!(!untouched);
                if let Some(reply) = build_error_response(&rej) {
                    prop_assert!(parse_response(&reply).is_ok() || reply.correlation_data.as_ref().map(|c| c.len()) != Some(16));
                }
            }
        }
    }

    #[test]
    fn mutated_notifications_before_payload_never_panic(
        muts in proptest::collection::vec(arb_mutation(), 0..6),
    ) {
        let mut msg = valid_notification();
        for m in muts {
            mutate(&mut msg, m);
        }
        prop_assert!(parse_notification(&without_timestamps(&msg), "client-id1").is_err());
    }

    #[test]
    fn notification_topic_round_trips(
        client in "\\PC{0,12}",
        key in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let topic = notification_topic(&client, &key);
        let segment = notification_key_segment(topic.as_bytes(), &client);
        prop_assert!(segment.is_some());
        let decoded = hex::decode_upper(segment.unwrap_or_default(), MAX_NOTIFY_KEY_LEN);
        prop_assert_eq!(decoded, Ok(key.clone()));
        let filter = notification_filter(&client);
        prop_assert!(filter.ends_with("/+"));
        prop_assert!(topic.starts_with(filter.trim_end_matches('+')));
        // The same topic is not addressed to anyone else.
        let other = alloc::format!("{client}x");
        prop_assert!(notification_key_segment(topic.as_bytes(), &other).is_none());
    }

    #[test]
    fn request_round_trips(
        client in "[ -~]{1,16}",
        corr in any::<[u8; 16]>(),
        ms in 0u64..=u64::MAX,
        counter in any::<u64>(),
        timeout_ms in any::<u64>(),
        persist in any::<bool>(),
        payload in arb_bytes(64),
    ) {
        let ts = hlc(ms, counter, "node");
        let resp = response_topic(&client);
        let msg = build_request(&RequestEnvelope {
            client_id: &client,
            response_topic: &resp,
            correlation: corr,
            timestamp: &ts,
            fencing_token: Some(&ts),
            persist,
            timeout: Duration::from_millis(timeout_ms),
            payload: payload.clone(),
        });
        // Client ids with wildcards make an unpublishable response topic; those are dropped.
        if client.contains(['+', '#']) {
            prop_assert_eq!(parse_request(&msg).unwrap_err().error, IncomingRequestError::Unanswerable);
        } else {
            let r = parse_request(&msg);
            prop_assert!(r.is_ok());
            let r = r.unwrap_or_else(|_| unreachable!());
            prop_assert_eq!(r.source_id, b(&client));
            prop_assert_eq!(r.correlation.as_ref(), &corr[..]);
            prop_assert_eq!(r.expiry_secs, expiry_secs(Duration::from_millis(timeout_ms)));
            prop_assert_eq!(r.persist, persist);
            prop_assert_eq!(r.timestamp.clone().map(|t| Hlc::parse(&t)), Some(Ok(ts.clone())));
            prop_assert_eq!(r.payload, payload);
        }
    }

    #[test]
    fn response_round_trips_prop(
        corr in any::<[u8; 16]>(),
        expiry in proptest::option::of(any::<u32>()),
        payload in arb_bytes(64),
        version in proptest::option::of((any::<u64>(), any::<u64>(), "[a-zA-Z0-9-]{0,36}")),
    ) {
        let version = version.map(|(ms, c, node)| hlc(ms, c, &node));
        let msg = build_response(b("resp"), Bytes::copy_from_slice(&corr), expiry, payload.clone(), version.as_ref());
        let r = parse_response(&msg);
        prop_assert_eq!(r, Ok(ResponseEnvelope {
            correlation: corr,
            status: 200,
            status_message: None,
            timestamp: version,
            payload,
        }));
    }
}

proptest! {
    #[test]
    fn random_notifications_never_panic(msg in arb_message()) {
        let _ = parse_notification(&msg, "client-id1");
    }

    #[test]
    fn mutated_notifications_never_panic(muts in proptest::collection::vec(arb_mutation(), 0..6)) {
        let mut msg = valid_notification();
        let untouched = muts.is_empty();
        for m in muts {
            mutate(&mut msg, m);
        }
        let r = parse_notification(&msg, "client-id1");
        if untouched {
            prop_assert!(r.is_ok());
        }
    }

    #[test]
    fn notification_round_trips(
        client in "\\PC{0,12}",
        key in proptest::collection::vec(any::<u8>(), 1..64),
        value in proptest::option::of(arb_bytes(64)),
        ms in any::<u64>(),
        counter in any::<u64>(),
    ) {
        let payload = match value {
            Some(value) => NotifyPayload::Set { value },
            None => NotifyPayload::Delete,
        };
        let version = hlc(ms, counter, "StateStore");
        let msg = build_notification(client.as_bytes(), &key, &version, &payload);
        let expected_topic = notification_topic(&client, &key);
        prop_assert_eq!(msg.topic.as_ref(), expected_topic.as_bytes());
        let n = parse_notification(&msg, &client);
        prop_assert_eq!(n, Ok(NotificationEnvelope { key: Bytes::from(key), version, payload }));
    }
}
