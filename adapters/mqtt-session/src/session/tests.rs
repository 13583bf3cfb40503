use super::*;
use alloc::string::ToString;
use alloc::vec;
use mqtt5_protocol::packet::MqttPacket;
use proptest::prelude::*;

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

fn config() -> SessionConfig {
    SessionConfig {
        keep_alive: Duration::from_secs(10),
        ping_timeout: Duration::from_secs(2),
        ..SessionConfig::new("c1")
    }
}

fn bytes_of<P: MqttPacket>(p: &P) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode(p, &mut out).unwrap();
    out.to_vec()
}

/// Everything the session wants to write, decoded.
fn sent(s: &mut Session) -> Vec<Packet> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    while let Some(b) = s.poll_transmit() {
        buf.extend_from_slice(&b);
    }
    while let Some(p) = frame::decode_packet(&mut buf, u32::MAX).unwrap() {
        out.push(p);
    }
    assert!(buf.is_empty(), "partial packet in transmit buffer");
    out
}

fn one<T: core::fmt::Debug>(mut v: Vec<T>) -> T {
    assert_eq!(v.len(), 1, "expected exactly one: {v:?}");
    v.remove(0)
}

fn events(s: &mut Session) -> Vec<Event> {
    core::iter::from_fn(|| s.poll_event()).collect()
}

fn connack(session_present: bool, receive_max: Option<u16>) -> Vec<u8> {
    let mut p = ConnAckPacket::new(session_present, mqtt5_protocol::ReasonCode::Success);
    if let Some(n) = receive_max {
        p = p.with_receive_maximum(n);
    }
    bytes_of(&p)
}

/// Opens a connection and accepts it; returns the CONNECT that was sent.
fn connect(s: &mut Session, now: Instant, session_present: bool, rm: Option<u16>) -> ConnectPacket {
    s.handle_connection_opened(now);
    let mut packets = sent(s);
    assert_eq!(packets.len(), 1);
    let Some(Packet::Connect(c)) = packets.pop() else {
        panic!("expected CONNECT")
    };
    s.handle_bytes_received(&connack(session_present, rm), now);
    *c
}

fn request(n: u8) -> Message {
    Message {
        topic: Bytes::from_static(b"statestore/v1/x/command/invoke"),
        payload: Bytes::from(vec![n; 4]),
        qos: QoS::AtLeastOnce,
        correlation_data: Some(Bytes::from(vec![n; 16])),
        ..Message::default()
    }
}

fn publishes(packets: &[Packet]) -> Vec<(u16, bool, u8)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.packet_id.unwrap_or(0), p.dup, p.payload[0])),
            _ => None,
        })
        .collect()
}

#[test]
fn connect_carries_the_configured_options() {
    let cfg = SessionConfig {
        clean_start: true,
        session_expiry_secs: 3600,
        username: Some("user".to_string()),
        password: Some(Bytes::from_static(b"pw")),
        receive_maximum: 32,
        max_packet_size: 4096,
        user_properties: vec![("metriccategory".to_string(), "aiosdk-rust".to_string())],
        ..config()
    };
    let mut s = Session::new(cfg).unwrap();
    s.handle_connection_opened(ms(0));
    let Packet::Connect(c) = one(sent(&mut s)) else {
        panic!("expected one CONNECT")
    };
    assert_eq!(c.protocol_version, 5);
    assert_eq!(c.client_id, "c1");
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 10);
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
    assert!(c.will.is_none());
    let props = &c.properties;
    assert_eq!(
        props.get(PropertyId::SessionExpiryInterval),
        Some(&PropertyValue::FourByteInteger(3600))
    );
    assert_eq!(
        props.get(PropertyId::ReceiveMaximum),
        Some(&PropertyValue::TwoByteInteger(32))
    );
    assert_eq!(
        props.get(PropertyId::MaximumPacketSize),
        Some(&PropertyValue::FourByteInteger(4096))
    );
    assert_eq!(props.get(PropertyId::TopicAliasMaximum), None);
    assert_eq!(
        props.get(PropertyId::UserProperty),
        Some(&PropertyValue::Utf8StringPair(
            "metriccategory".to_string(),
            "aiosdk-rust".to_string()
        ))
    );
    assert_eq!(s.poll_timeout(), Some(ms(10_000)), "CONNACK deadline");
}

#[test]
fn first_connack_reports_connected_without_session_lost() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    assert!(s.is_connected());
    assert_eq!(
        events(&mut s),
        vec![Event::Connected {
            session_present: false
        }]
    );
}

#[test]
fn connack_timeout_closes() {
    let mut s = Session::new(config()).unwrap();
    s.handle_connection_opened(ms(0));
    sent(&mut s);
    s.handle_timeout(ms(9_999));
    assert!(events(&mut s).is_empty());
    s.handle_timeout(ms(10_000));
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected(DisconnectReason::ConnackTimeout)]
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn refused_connack_is_reported_with_its_reason() {
    let mut s = Session::new(config()).unwrap();
    s.handle_connection_opened(ms(0));
    sent(&mut s);
    let p = ConnAckPacket::new(false, mqtt5_protocol::ReasonCode::NotAuthorized)
        .with_reason_string("nope".to_string());
    s.handle_bytes_received(&bytes_of(&p), ms(1));
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected(DisconnectReason::Refused {
            reason: ReasonCode(0x87),
            reason_string: Some("nope".to_string())
        })]
    );
}

#[test]
fn keep_alive_pings_after_idle_and_pingresp_timeout_kills_the_connection() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    events(&mut s);
    assert_eq!(s.poll_timeout(), Some(ms(10_000)));
    s.handle_timeout(ms(9_999));
    assert!(sent(&mut s).is_empty());
    s.handle_timeout(ms(10_000));
    assert!(matches!(sent(&mut s).as_slice(), [Packet::PingReq]));
    // Waiting for PINGRESP: no second ping, deadline = ping time + ping timeout.
    assert_eq!(s.poll_timeout(), Some(ms(12_000)));
    s.handle_bytes_received(&[0xD0, 0x00], ms(11_000));
    // Next ping: keep-alive after the earlier of last send (10 s) and last receive (11 s).
    assert_eq!(s.poll_timeout(), Some(ms(20_000)));
    s.handle_timeout(ms(20_000));
    assert!(matches!(sent(&mut s).as_slice(), [Packet::PingReq]));
    s.handle_timeout(ms(21_999));
    assert!(events(&mut s).is_empty());
    s.handle_timeout(ms(22_000));
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected(DisconnectReason::PingTimeout)]
    );
    assert!(!s.is_connected());
    assert_eq!(s.stats().pings_sent, 2);
}

#[test]
fn traffic_in_both_directions_postpones_the_ping() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    s.publish(&request(1), ms(6_000)).unwrap();
    sent(&mut s);
    // Sent at 6 s, but nothing received since 0 s: still due at 10 s.
    assert_eq!(s.poll_timeout(), Some(ms(10_000)));
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(1)), ms(7_000));
    assert_eq!(s.poll_timeout(), Some(ms(16_000)));
}

#[test]
fn server_keep_alive_overrides_ours_and_zero_disables_pings() {
    let mut s = Session::new(config()).unwrap();
    s.handle_connection_opened(ms(0));
    sent(&mut s);
    let p =
        ConnAckPacket::new(false, mqtt5_protocol::ReasonCode::Success).with_server_keep_alive(3);
    s.handle_bytes_received(&bytes_of(&p), ms(0));
    assert_eq!(s.poll_timeout(), Some(ms(3_000)));

    let mut s = Session::new(SessionConfig {
        keep_alive: Duration::ZERO,
        ..config()
    })
    .unwrap();
    connect(&mut s, ms(0), false, None);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn puback_tracking_respects_the_brokers_receive_maximum() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, Some(2));
    events(&mut s);
    let a = s.publish(&request(1), ms(1)).unwrap();
    let b = s.publish(&request(2), ms(1)).unwrap();
    let c = s.publish(&request(3), ms(1)).unwrap();
    assert_eq!(publishes(&sent(&mut s)), vec![(1, false, 1), (2, false, 2)]);
    assert_eq!((s.in_flight(), s.queued()), (2, 1));
    // An ack for an id not in flight is ignored and counted.
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(9)), ms(2));
    assert_eq!(s.stats().unmatched_acks, 1);
    assert!(sent(&mut s).is_empty());
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(2)), ms(3));
    assert_eq!(publishes(&sent(&mut s)), vec![(3, false, 3)]);
    let no_subscribers =
        PubAckPacket::new_with_reason(1, mqtt5_protocol::ReasonCode::NoMatchingSubscribers);
    s.handle_bytes_received(&bytes_of(&no_subscribers), ms(4));
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(3)), ms(5));
    assert_eq!(
        events(&mut s),
        vec![
            Event::Published {
                id: b,
                outcome: PublishOutcome::Acknowledged(ReasonCode::SUCCESS)
            },
            Event::Published {
                id: a,
                outcome: PublishOutcome::Acknowledged(ReasonCode::NO_MATCHING_SUBSCRIBERS)
            },
            Event::Published {
                id: c,
                outcome: PublishOutcome::Acknowledged(ReasonCode::SUCCESS)
            },
        ]
    );
    assert_eq!((s.in_flight(), s.queued()), (0, 0));
}

#[test]
fn qos0_is_sent_in_order_and_reported_sent() {
    let mut s = Session::new(config()).unwrap();
    let id = s
        .publish(
            &Message {
                qos: QoS::AtMostOnce,
                ..request(5)
            },
            ms(0),
        )
        .unwrap();
    // Queued while disconnected.
    assert_eq!(s.queued(), 1);
    connect(&mut s, ms(1), false, None);
    let packets = sent(&mut s);
    assert_eq!(publishes(&packets), vec![(0, false, 5)]);
    assert!(events(&mut s).contains(&Event::Published {
        id,
        outcome: PublishOutcome::Sent
    }));
}

#[test]
fn reconnect_with_session_resends_in_flight_qos1_with_dup() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, Some(2));
    let a = s.publish(&request(1), ms(1)).unwrap();
    let b = s.publish(&request(2), ms(1)).unwrap();
    let c = s.publish(&request(3), ms(1)).unwrap();
    sent(&mut s);
    events(&mut s);
    s.handle_connection_lost(ms(2));
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected(DisconnectReason::Transport)]
    );
    // Lost twice is still one event.
    s.handle_connection_lost(ms(2));
    assert!(events(&mut s).is_empty());

    let c2 = connect(&mut s, ms(3), true, Some(2));
    assert!(!c2.clean_start, "reconnects resume the session");
    assert_eq!(
        events(&mut s),
        vec![Event::Connected {
            session_present: true
        }]
    );
    // Same ids, same order, DUP set; the queued third one waits for quota.
    assert_eq!(publishes(&sent(&mut s)), vec![(1, true, 1), (2, true, 2)]);
    assert_eq!(s.stats().publishes_resent, 2);
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(1)), ms(4));
    assert_eq!(publishes(&sent(&mut s)), vec![(3, false, 3)]);
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(2)), ms(4));
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(3)), ms(4));
    let outcomes: Vec<_> = events(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Published { id, outcome } => Some((id, outcome)),
            _ => None,
        })
        .collect();
    let ok = PublishOutcome::Acknowledged(ReasonCode::SUCCESS);
    assert_eq!(outcomes, vec![(a, ok), (b, ok), (c, ok)]);
}

#[test]
fn smaller_receive_maximum_after_reconnect_limits_resends() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, Some(3));
    for n in 1..=3 {
        s.publish(&request(n), ms(1)).unwrap();
    }
    sent(&mut s);
    s.handle_connection_lost(ms(2));
    connect(&mut s, ms(3), true, Some(1));
    assert_eq!(publishes(&sent(&mut s)), vec![(1, true, 1)]);
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(1)), ms(4));
    assert_eq!(publishes(&sent(&mut s)), vec![(2, true, 2)]);
}

#[test]
fn session_present_false_after_an_earlier_connect_is_session_lost() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, Some(1));
    let a = s.publish(&request(1), ms(1)).unwrap();
    let b = s.publish(&request(2), ms(1)).unwrap();
    sent(&mut s);
    events(&mut s);
    s.handle_connection_lost(ms(2));
    events(&mut s);
    connect(&mut s, ms(3), false, Some(1));
    assert_eq!(
        events(&mut s),
        vec![
            Event::SessionLost,
            Event::Published {
                id: a,
                outcome: PublishOutcome::Lost
            },
            Event::Connected {
                session_present: false
            },
        ]
    );
    // The one that never left is sent fresh (no DUP) on the new session.
    assert_eq!(publishes(&sent(&mut s)), vec![(2, false, 2)]);
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(2)), ms(4));
    assert_eq!(
        events(&mut s),
        vec![Event::Published {
            id: b,
            outcome: PublishOutcome::Acknowledged(ReasonCode::SUCCESS)
        }]
    );
}

#[test]
fn session_present_on_clean_start_is_a_protocol_violation() {
    let mut s = Session::new(SessionConfig {
        clean_start: true,
        ..config()
    })
    .unwrap();
    connect(&mut s, ms(0), true, None);
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected(DisconnectReason::Protocol(
            ProtocolViolation::SessionPresentOnCleanStart
        ))]
    );
    let Some(Packet::Disconnect(d)) = sent(&mut s).pop() else {
        panic!("expected DISCONNECT")
    };
    assert_eq!(u8::from(d.reason_code), 0x82);
}

#[test]
fn zero_receive_maximum_is_a_protocol_violation() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, Some(0));
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected(DisconnectReason::Protocol(
            ProtocolViolation::ZeroReceiveMaximum
        ))]
    );
}

#[test]
fn incoming_qos1_is_acked_and_qos2_handled_once() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    events(&mut s);
    let q1 = PublishPacket::new("a/b", &b"x"[..], mqtt5_protocol::QoS::AtLeastOnce)
        .with_packet_id(7)
        .with_correlation_data(vec![1; 16]);
    s.handle_bytes_received(&bytes_of(&q1), ms(1));
    let Packet::PubAck(ack) = one(sent(&mut s)) else {
        panic!("expected PUBACK")
    };
    assert_eq!(ack.packet_id, 7);
    let Event::Message(m) = one(events(&mut s)) else {
        panic!("expected a message")
    };
    assert_eq!(&m.topic[..], b"a/b");
    assert_eq!(m.correlation_data.as_deref(), Some(&[1u8; 16][..]));

    let q2 =
        PublishPacket::new("a/b", &b"y"[..], mqtt5_protocol::QoS::ExactlyOnce).with_packet_id(8);
    s.handle_bytes_received(&bytes_of(&q2), ms(2));
    s.handle_bytes_received(&bytes_of(&q2.clone().with_dup(true)), ms(2));
    let packets = sent(&mut s);
    assert!(
        matches!(packets.as_slice(), [Packet::PubRec(a), Packet::PubRec(b)] if a.packet_id == 8 && b.packet_id == 8)
    );
    assert_eq!(events(&mut s).len(), 1, "delivered once");
    let pubrel = mqtt5_protocol::packet::pubrel::PubRelPacket::new(8);
    s.handle_bytes_received(&bytes_of(&pubrel), ms(3));
    s.handle_bytes_received(&bytes_of(&pubrel), ms(3));
    let packets = sent(&mut s);
    let [Packet::PubComp(first), Packet::PubComp(second)] = packets.as_slice() else {
        panic!("expected two PUBCOMPs")
    };
    assert_eq!(u8::from(first.reason_code), 0x00);
    assert_eq!(u8::from(second.reason_code), 0x92);
}

#[test]
fn incoming_qos2_beyond_receive_maximum_is_refused() {
    let mut s = Session::new(SessionConfig {
        receive_maximum: 1,
        ..config()
    })
    .unwrap();
    connect(&mut s, ms(0), false, None);
    events(&mut s);
    for pid in [1, 2] {
        let p =
            PublishPacket::new("t", &b""[..], mqtt5_protocol::QoS::ExactlyOnce).with_packet_id(pid);
        s.handle_bytes_received(&bytes_of(&p), ms(1));
    }
    let evs = events(&mut s);
    assert_eq!(
        evs.last(),
        Some(&Event::Disconnected(DisconnectReason::Protocol(
            ProtocolViolation::ReceiveMaximumExceeded
        )))
    );
}

#[test]
fn topic_alias_from_the_broker_is_refused() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    events(&mut s);
    sent(&mut s);
    let p = PublishPacket::new("t", &b""[..], mqtt5_protocol::QoS::AtMostOnce).with_topic_alias(1);
    s.handle_bytes_received(&bytes_of(&p), ms(1));
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Disconnected(DisconnectReason::Protocol(
            ProtocolViolation::BadMessage(_)
        ))]
    ));
    let Some(Packet::Disconnect(d)) = sent(&mut s).pop() else {
        panic!("expected DISCONNECT")
    };
    assert_eq!(u8::from(d.reason_code), 0x94);
}

#[test]
fn oversized_packet_is_refused_before_it_is_buffered() {
    let mut s = Session::new(SessionConfig {
        max_packet_size: 1024,
        ..config()
    })
    .unwrap();
    connect(&mut s, ms(0), false, None);
    events(&mut s);
    sent(&mut s);
    // A PUBLISH header announcing 100 MB.
    s.handle_bytes_received(&[0x30, 0x80, 0xC2, 0xD7, 0x2F], ms(1));
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Disconnected(DisconnectReason::Decode(
            DecodeError::PacketTooLarge { .. }
        ))]
    ));
    let Some(Packet::Disconnect(d)) = sent(&mut s).pop() else {
        panic!("expected DISCONNECT")
    };
    assert_eq!(u8::from(d.reason_code), 0x95);
    // Further bytes are ignored until a new connection.
    s.handle_bytes_received(&[0xD0, 0x00], ms(2));
    assert!(events(&mut s).is_empty());
}

#[test]
fn packets_a_server_never_sends_are_violations() {
    for bytes in [
        vec![0xC0, 0x00],
        bytes_of(&SubscribePacket::new(1).add_filter("a", mqtt5_protocol::QoS::AtMostOnce)),
    ] {
        let mut s = Session::new(config()).unwrap();
        connect(&mut s, ms(0), false, None);
        events(&mut s);
        s.handle_bytes_received(&bytes, ms(1));
        assert!(matches!(
            events(&mut s).as_slice(),
            [Event::Disconnected(DisconnectReason::Protocol(
                ProtocolViolation::UnexpectedPacket(_)
            ))]
        ));
    }
}

#[test]
fn a_second_connack_is_a_violation() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    events(&mut s);
    s.handle_bytes_received(&connack(false, None), ms(1));
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected(DisconnectReason::Protocol(
            ProtocolViolation::UnexpectedPacket(PacketKind::ConnAck)
        ))]
    );
}

#[test]
fn subscribe_unsubscribe_and_resend_after_reconnect() {
    let mut s = Session::new(config()).unwrap();
    // Requested while disconnected: sent right after CONNACK.
    let id = s
        .subscribe("clients/c1/+", QoS::AtLeastOnce, ms(0))
        .unwrap();
    connect(&mut s, ms(0), false, None);
    let packets = sent(&mut s);
    let [Packet::Subscribe(sub)] = packets.as_slice() else {
        panic!("expected SUBSCRIBE")
    };
    assert_eq!(sub.filters.len(), 1);
    assert_eq!(sub.filters[0].filter, "clients/c1/+");
    assert!(sub.filters[0].options.retain_as_published);
    assert_eq!(sub.filters[0].options.qos, mqtt5_protocol::QoS::AtLeastOnce);
    let pid = sub.packet_id;
    // The connection drops before SUBACK: the SUBSCRIBE is sent again.
    s.handle_connection_lost(ms(1));
    connect(&mut s, ms(2), true, None);
    let packets = sent(&mut s);
    assert!(matches!(packets.as_slice(), [Packet::Subscribe(again)] if again.packet_id == pid));
    events(&mut s);
    let suback = SubAckPacket::new(pid).add_granted_qos(mqtt5_protocol::QoS::AtLeastOnce);
    s.handle_bytes_received(&bytes_of(&suback), ms(3));
    assert_eq!(
        events(&mut s),
        vec![Event::Subscribed {
            id,
            filter: "clients/c1/+".to_string(),
            result: Ok(QoS::AtLeastOnce)
        }]
    );
    // A duplicate SUBACK matches nothing.
    s.handle_bytes_received(&bytes_of(&suback), ms(3));
    assert_eq!(s.stats().unmatched_acks, 1);

    let uid = s.unsubscribe("clients/c1/+", ms(4)).unwrap();
    let packets = sent(&mut s);
    let [Packet::Unsubscribe(u)] = packets.as_slice() else {
        panic!("expected UNSUBSCRIBE")
    };
    let unsuback = UnsubAckPacket::new(u.packet_id).add_success();
    s.handle_bytes_received(&bytes_of(&unsuback), ms(5));
    assert_eq!(
        events(&mut s),
        vec![Event::Unsubscribed {
            id: uid,
            filter: "clients/c1/+".to_string(),
            reason: ReasonCode::SUCCESS
        }]
    );
}

#[test]
fn refused_subscription_reports_its_code() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    let id = s.subscribe("a/#", QoS::AtLeastOnce, ms(0)).unwrap();
    let pid = match sent(&mut s).as_slice() {
        [Packet::Subscribe(sub)] => sub.packet_id,
        other => panic!("unexpected {other:?}"),
    };
    events(&mut s);
    let suback = SubAckPacket::new(pid)
        .add_reason_code(mqtt5_protocol::packet::suback::SubAckReasonCode::NotAuthorized);
    s.handle_bytes_received(&bytes_of(&suback), ms(1));
    assert_eq!(
        events(&mut s),
        vec![Event::Subscribed {
            id,
            filter: "a/#".to_string(),
            result: Err(ReasonCode::NOT_AUTHORIZED)
        }]
    );
}

#[test]
fn bad_filters_are_rejected() {
    let mut s = Session::new(config()).unwrap();
    for f in ["", "a/#/b", "a#", "a/b+", "x\0"] {
        assert_eq!(
            s.subscribe(f, QoS::AtLeastOnce, ms(0)),
            Err(SessionError::InvalidFilter),
            "{f:?}"
        );
    }
    for f in ["#", "+", "a/+/c", "a/#", "/"] {
        assert!(s.subscribe(f, QoS::AtLeastOnce, ms(0)).is_ok(), "{f:?}");
    }
    assert_eq!(
        s.subscribe("a", QoS::ExactlyOnce, ms(0)),
        Err(SessionError::QoS2Unsupported)
    );
}

#[test]
fn publish_errors_are_typed() {
    let mut s = Session::new(SessionConfig {
        max_queued: 1,
        ..config()
    })
    .unwrap();
    let qos2 = Message {
        qos: QoS::ExactlyOnce,
        ..request(1)
    };
    assert_eq!(s.publish(&qos2, ms(0)), Err(SessionError::QoS2Unsupported));
    let bad = Message {
        topic: Bytes::from_static(b"a/#"),
        ..request(1)
    };
    assert!(matches!(
        s.publish(&bad, ms(0)),
        Err(SessionError::Convert(_))
    ));
    s.publish(&request(1), ms(0)).unwrap();
    assert_eq!(s.publish(&request(2), ms(0)), Err(SessionError::QueueFull));

    // The broker's Maximum Packet Size is enforced once known.
    let mut s = Session::new(config()).unwrap();
    s.handle_connection_opened(ms(0));
    sent(&mut s);
    let p =
        ConnAckPacket::new(false, mqtt5_protocol::ReasonCode::Success).with_maximum_packet_size(64);
    s.handle_bytes_received(&bytes_of(&p), ms(0));
    let big = Message {
        payload: Bytes::from(vec![0u8; 100]),
        ..request(1)
    };
    assert!(matches!(
        s.publish(&big, ms(1)),
        Err(SessionError::PacketTooLarge { max: 64, .. })
    ));
}

#[test]
fn graceful_disconnect_ends_the_session() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, Some(1));
    let a = s.publish(&request(1), ms(1)).unwrap();
    let b = s.publish(&request(2), ms(1)).unwrap();
    sent(&mut s);
    events(&mut s);
    s.disconnect(false, ms(2));
    let Packet::Disconnect(d) = one(sent(&mut s)) else {
        panic!("expected DISCONNECT")
    };
    assert_eq!(u8::from(d.reason_code), 0);
    assert_eq!(
        d.properties.get(PropertyId::SessionExpiryInterval),
        Some(&PropertyValue::FourByteInteger(0))
    );
    assert_eq!(
        events(&mut s),
        vec![
            Event::Disconnected(DisconnectReason::Local),
            Event::Published {
                id: a,
                outcome: PublishOutcome::Lost
            },
            Event::Published {
                id: b,
                outcome: PublishOutcome::Discarded
            },
        ]
    );
    // A later connection starts afresh: no SessionLost.
    connect(&mut s, ms(3), false, None);
    assert_eq!(
        events(&mut s),
        vec![Event::Connected {
            session_present: false
        }]
    );
}

#[test]
fn disconnect_keeping_the_session_keeps_in_flight_messages() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    s.publish(&request(1), ms(1)).unwrap();
    sent(&mut s);
    s.disconnect(true, ms(2));
    let Packet::Disconnect(d) = one(sent(&mut s)) else {
        panic!("expected DISCONNECT")
    };
    assert_eq!(d.properties.get(PropertyId::SessionExpiryInterval), None);
    assert_eq!(s.in_flight(), 1);
    connect(&mut s, ms(3), true, None);
    assert_eq!(publishes(&sent(&mut s)), vec![(1, true, 1)]);
}

#[test]
fn server_disconnect_is_reported() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    events(&mut s);
    let d = DisconnectPacket::new(mqtt5_protocol::ReasonCode::SessionTakenOver);
    s.handle_bytes_received(&bytes_of(&d), ms(1));
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected(DisconnectReason::Server {
            reason: ReasonCode(0x8E),
            reason_string: None
        })]
    );
    // The short normal form `E0 00`.
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    events(&mut s);
    s.handle_bytes_received(&[0xE0, 0x00], ms(1));
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected(DisconnectReason::Server {
            reason: ReasonCode::SUCCESS,
            reason_string: None
        })]
    );
}

#[test]
fn enhanced_authentication_round_trip() {
    let cfg = SessionConfig {
        auth_method: Some("K8S-SAT".to_string()),
        auth_data: Some(Bytes::from_static(b"token-1")),
        ..config()
    };
    let mut s = Session::new(cfg).unwrap();
    s.handle_connection_opened(ms(0));
    let Packet::Connect(c) = one(sent(&mut s)) else {
        panic!("expected CONNECT")
    };
    assert_eq!(
        c.properties.get(PropertyId::AuthenticationMethod),
        Some(&PropertyValue::Utf8String("K8S-SAT".to_string()))
    );
    assert_eq!(
        c.properties.get(PropertyId::AuthenticationData),
        Some(&PropertyValue::BinaryData(Bytes::from_static(b"token-1")))
    );
    let challenge =
        AuthPacket::continue_authentication("K8S-SAT".to_string(), Some(b"nonce".to_vec()))
            .unwrap();
    s.handle_bytes_received(&bytes_of(&challenge), ms(1));
    assert_eq!(
        events(&mut s),
        vec![Event::AuthContinue {
            data: Some(Bytes::from_static(b"nonce"))
        }]
    );
    s.auth_continue(Bytes::from_static(b"answer"), ms(1))
        .unwrap();
    assert!(
        matches!(sent(&mut s).as_slice(), [Packet::Auth(a)] if u8::from(a.reason_code) == 0x18)
    );
    s.handle_bytes_received(&connack(false, None), ms(2));
    events(&mut s);

    s.reauthenticate(Bytes::from_static(b"token-2"), ms(3))
        .unwrap();
    let Packet::Auth(a) = one(sent(&mut s)) else {
        panic!("expected AUTH")
    };
    assert_eq!(u8::from(a.reason_code), 0x19);
    assert_eq!(a.authentication_data(), Some(&b"token-2"[..]));
    let ok = AuthPacket::success("K8S-SAT".to_string()).unwrap();
    s.handle_bytes_received(&bytes_of(&ok), ms(4));
    assert_eq!(events(&mut s), vec![Event::Reauthenticated]);
    // The new token is used on the next CONNECT.
    s.handle_connection_lost(ms(5));
    let c = connect(&mut s, ms(6), true, None);
    assert_eq!(
        c.properties.get(PropertyId::AuthenticationData),
        Some(&PropertyValue::BinaryData(Bytes::from_static(b"token-2")))
    );
    // AUTH with another method is refused.
    events(&mut s);
    let other = AuthPacket::success("OTHER".to_string()).unwrap();
    s.handle_bytes_received(&bytes_of(&other), ms(7));
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected(DisconnectReason::Protocol(
            ProtocolViolation::BadAuth
        ))]
    );
}

#[test]
fn auth_without_a_method_is_refused() {
    let mut s = Session::new(config()).unwrap();
    assert_eq!(
        s.reauthenticate(Bytes::new(), ms(0)),
        Err(SessionError::NotConnected)
    );
    connect(&mut s, ms(0), false, None);
    assert_eq!(
        s.reauthenticate(Bytes::new(), ms(0)),
        Err(SessionError::NoAuthMethod)
    );
}

#[test]
fn many_packets_in_one_read_are_all_processed() {
    let mut s = Session::new(config()).unwrap();
    s.handle_connection_opened(ms(0));
    sent(&mut s);
    let mut chunk = connack(false, None);
    for pid in 1..=5u16 {
        let p = PublishPacket::new("t", vec![pid as u8], mqtt5_protocol::QoS::AtLeastOnce)
            .with_packet_id(pid);
        chunk.extend(bytes_of(&p));
    }
    s.handle_bytes_received(&chunk, ms(1));
    assert_eq!(events(&mut s).len(), 6);
    assert_eq!(sent(&mut s).len(), 5);
}

// ---- property tests -----------------------------------------------------------------------

proptest! {
    /// Whatever a hostile broker sends, the session neither panics nor buffers more than one
    /// packet's worth, and a connection that ended stays ended.
    #[test]
    fn arbitrary_byte_streams_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
        connected in any::<bool>(),
    ) {
        let mut s = Session::new(SessionConfig { max_packet_size: 512, ..config() }).unwrap();
        if connected {
            connect(&mut s, ms(0), false, None);
        } else {
            s.handle_connection_opened(ms(0));
        }
        let mut disconnects = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            s.handle_bytes_received(chunk, ms(i as u64));
            prop_assert!(s.rx.len() <= 512 + 300);
            while let Some(e) = s.poll_event() {
                if matches!(e, Event::Disconnected(_)) {
                    disconnects += 1;
                }
            }
            while s.poll_transmit().is_some() {}
            s.handle_timeout(ms(i as u64 * 1000));
        }
        prop_assert!(disconnects <= 1);
    }

    /// Valid server packets with random mutations never panic either.
    #[test]
    fn mutated_server_packets_never_panic(
        which in 0usize..6,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let mut s = Session::new(config()).unwrap();
        connect(&mut s, ms(0), false, None);
        s.publish(&request(1), ms(0)).unwrap();
        s.subscribe("a/+", QoS::AtLeastOnce, ms(0)).unwrap();
        let mut bytes = match which {
            0 => bytes_of(&PubAckPacket::new(1)),
            1 => bytes_of(&SubAckPacket::new(2).add_granted_qos(mqtt5_protocol::QoS::AtLeastOnce)),
            2 => bytes_of(&PublishPacket::new("a/b", &b"xyz"[..], mqtt5_protocol::QoS::AtLeastOnce)
                .with_packet_id(4).with_user_property("k".into(), "v".into())),
            3 => bytes_of(&DisconnectPacket::new(mqtt5_protocol::ReasonCode::ServerBusy)
                .with_reason_string("busy".into())),
            4 => bytes_of(&ConnAckPacket::new(true, mqtt5_protocol::ReasonCode::Success)
                .with_receive_maximum(3)),
            _ => bytes_of(&UnsubAckPacket::new(2).add_success()),
        };
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        s.handle_bytes_received(&bytes, ms(1));
        while s.poll_event().is_some() {}
        while s.poll_transmit().is_some() {}
    }
}

#[derive(Debug, Clone)]
enum Op {
    Publish,
    AckOldest,
    AckRandom(u16),
    Drop,
    Reconnect {
        session_present: bool,
        receive_max: u16,
    },
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Publish),
        3 => Just(Op::AckOldest),
        1 => any::<u16>().prop_map(Op::AckRandom),
        1 => Just(Op::Drop),
        1 => (any::<bool>(), 1u16..5).prop_map(|(session_present, receive_max)| Op::Reconnect { session_present, receive_max }),
        1 => (0u16..15_000).prop_map(Op::Tick),
    ]
}

proptest! {
    /// Model check of the in-flight table across random publishes, acks, drops and reconnects:
    /// the broker's Receive Maximum is never exceeded on a connection, a re-sent message keeps
    /// its packet id and has DUP, and after a final graceful disconnect every publish has had
    /// exactly one outcome.
    #[test]
    fn every_publish_ends_exactly_once(ops in proptest::collection::vec(op(), 1..60)) {
        let mut s = Session::new(config()).unwrap();
        let mut now = 0u64;
        connect(&mut s, ms(now), false, Some(3));
        let mut receive_max = 3usize;
        let mut published = BTreeSet::new();
        let mut outcomes: BTreeMap<PublishId, usize> = BTreeMap::new();
        // Packet ids on the wire of the current connection, oldest first.
        let mut unacked: Vec<u16> = Vec::new();
        let mut connected = true;
        let mut all_ids: BTreeMap<u16, u8> = BTreeMap::new();
        for op in ops {
            now += 10;
            match op {
                Op::Publish => {
                    if let Ok(id) = s.publish(&request((published.len() % 250) as u8), ms(now)) {
                        published.insert(id);
                    }
                }
                Op::AckOldest if connected && !unacked.is_empty() => {
                    let pid = unacked.remove(0);
                    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(pid)), ms(now));
                }
                Op::AckRandom(pid) if connected && pid != 0 => {
                    unacked.retain(|p| *p != pid);
                    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(pid)), ms(now));
                }
                Op::Drop => {
                    s.handle_connection_lost(ms(now));
                    unacked.clear();
                    connected = false;
                }
                Op::Reconnect { session_present, receive_max: rm } => {
                    s.handle_connection_lost(ms(now));
                    unacked.clear();
                    connect(&mut s, ms(now), session_present, Some(rm));
                    receive_max = usize::from(rm);
                    connected = true;
                }
                Op::Tick(dt) => {
                    now += u64::from(dt);
                    s.handle_timeout(ms(now));
                    if !s.is_connected() {
                        connected = false;
                        unacked.clear();
                    }
                    // Answer pings so the connection stays up.
                    s.handle_bytes_received(&[0xD0, 0x00], ms(now));
                }
                _ => {}
            }
            for p in sent(&mut s) {
                if let Packet::Publish(p) = p {
                    let pid = p.packet_id.unwrap_or(0);
                    prop_assert!(pid != 0);
                    if p.dup {
                        // Re-sent with its original id and payload.
                        prop_assert_eq!(all_ids.get(&pid), Some(&p.payload[0]));
                    } else {
                        all_ids.insert(pid, p.payload[0]);
                    }
                    prop_assert!(!unacked.contains(&pid));
                    unacked.push(pid);
                    prop_assert!(unacked.len() <= receive_max);
                }
            }
            while let Some(e) = s.poll_event() {
                if let Event::Published { id, .. } = e {
                    *outcomes.entry(id).or_default() += 1;
                }
            }
        }
        s.disconnect(false, ms(now + 1));
        while let Some(e) = s.poll_event() {
            if let Event::Published { id, .. } = e {
                *outcomes.entry(id).or_default() += 1;
            }
        }
        prop_assert_eq!(s.in_flight() + s.queued(), 0);
        for id in &published {
            prop_assert_eq!(outcomes.get(id), Some(&1), "{:?}", id);
        }
        prop_assert_eq!(outcomes.len(), published.len());
    }
}

// ---- keep-alive, PUBACK tracking and session loss: targeted cases --------------------------

#[test]
fn a_duplicate_puback_is_counted_and_completes_nothing() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    events(&mut s);
    let a = s.publish(&request(1), ms(1)).unwrap();
    sent(&mut s);
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(1)), ms(2));
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(1)), ms(3));
    assert_eq!(
        events(&mut s),
        vec![Event::Published {
            id: a,
            outcome: PublishOutcome::Acknowledged(ReasonCode::SUCCESS)
        }]
    );
    assert_eq!(s.stats().unmatched_acks, 1);
    assert!(
        s.is_connected(),
        "a duplicate PUBACK is not a reason to disconnect"
    );
}

#[test]
fn own_in_flight_cap_bounds_unacknowledged_publishes() {
    let mut s = Session::new(SessionConfig {
        max_in_flight: 2,
        ..config()
    })
    .unwrap();
    // The broker allows far more; our own cap still holds.
    connect(&mut s, ms(0), false, Some(100));
    for n in 1..=4 {
        s.publish(&request(n), ms(1)).unwrap();
    }
    assert_eq!(publishes(&sent(&mut s)), vec![(1, false, 1), (2, false, 2)]);
    assert_eq!((s.in_flight(), s.queued()), (2, 2));
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(1)), ms(2));
    assert_eq!(publishes(&sent(&mut s)), vec![(3, false, 3)]);
    assert_eq!((s.in_flight(), s.queued()), (2, 1));
}

#[test]
fn puback_for_a_message_not_yet_resent_on_this_connection_is_ignored() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, Some(2));
    let a = s.publish(&request(1), ms(1)).unwrap();
    let b = s.publish(&request(2), ms(1)).unwrap();
    sent(&mut s);
    s.handle_connection_lost(ms(2));
    // The broker now allows one at a time: only packet 1 is re-sent.
    connect(&mut s, ms(3), true, Some(1));
    assert_eq!(publishes(&sent(&mut s)), vec![(1, true, 1)]);
    events(&mut s);
    // An acknowledgement of packet 2 (not on this connection yet) must not complete it.
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(2)), ms(4));
    assert!(events(&mut s).is_empty());
    assert_eq!(s.stats().unmatched_acks, 1);
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(1)), ms(5));
    assert_eq!(publishes(&sent(&mut s)), vec![(2, true, 2)]);
    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(2)), ms(6));
    let ok = PublishOutcome::Acknowledged(ReasonCode::SUCCESS);
    assert_eq!(
        events(&mut s),
        vec![
            Event::Published { id: a, outcome: ok },
            Event::Published { id: b, outcome: ok }
        ]
    );
}

#[test]
fn pingresp_just_before_the_deadline_keeps_the_connection() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    events(&mut s);
    s.handle_timeout(ms(10_000));
    assert!(matches!(sent(&mut s).as_slice(), [Packet::PingReq]));
    s.handle_bytes_received(&[0xD0, 0x00], ms(11_999));
    s.handle_timeout(ms(12_000));
    assert!(s.is_connected());
    assert!(events(&mut s).is_empty());
    // Only one ping per keep-alive period, however often the timer fires.
    s.handle_timeout(ms(12_001));
    s.handle_timeout(ms(19_999));
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.stats().pings_sent, 1);
}

#[test]
fn a_reconnect_clears_an_outstanding_ping() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    s.handle_timeout(ms(10_000));
    sent(&mut s);
    s.handle_connection_lost(ms(10_500));
    events(&mut s);
    connect(&mut s, ms(11_000), true, None);
    events(&mut s);
    // The old ping's deadline (12 s) does not kill the new connection.
    assert_eq!(s.poll_timeout(), Some(ms(21_000)));
    s.handle_timeout(ms(12_000));
    assert!(s.is_connected());
}

#[test]
fn session_lost_drops_acknowledged_subscriptions_and_resends_pending_ones() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    let done = s.subscribe("resp/c1", QoS::AtLeastOnce, ms(0)).unwrap();
    let pending = s.subscribe("notify/c1/#", QoS::AtLeastOnce, ms(0)).unwrap();
    let packets = sent(&mut s);
    let [Packet::Subscribe(first), Packet::Subscribe(second)] = packets.as_slice() else {
        panic!("expected two SUBSCRIBEs, got {packets:?}")
    };
    let suback =
        SubAckPacket::new(first.packet_id).add_granted_qos(mqtt5_protocol::QoS::AtLeastOnce);
    s.handle_bytes_received(&bytes_of(&suback), ms(1));
    events(&mut s);
    s.handle_connection_lost(ms(2));
    events(&mut s);
    connect(&mut s, ms(3), false, None);
    // The driver learns the broker forgot everything before it hears Connected, so it can
    // subscribe again; the session itself only re-sends the SUBSCRIBE still unanswered.
    assert_eq!(
        events(&mut s),
        vec![
            Event::SessionLost,
            Event::Connected {
                session_present: false
            }
        ]
    );
    let packets = sent(&mut s);
    assert!(
        matches!(packets.as_slice(), [Packet::Subscribe(again)] if again.packet_id == second.packet_id && again.filters[0].filter == "notify/c1/#"),
        "{packets:?}"
    );
    let suback =
        SubAckPacket::new(second.packet_id).add_granted_qos(mqtt5_protocol::QoS::AtLeastOnce);
    s.handle_bytes_received(&bytes_of(&suback), ms(4));
    assert_eq!(
        events(&mut s),
        vec![Event::Subscribed {
            id: pending,
            filter: "notify/c1/#".to_string(),
            result: Ok(QoS::AtLeastOnce)
        }]
    );
    assert_ne!(done, pending);
    // Re-subscribing after the loss works like a first subscription.
    s.subscribe("resp/c1", QoS::AtLeastOnce, ms(5)).unwrap();
    assert!(matches!(sent(&mut s).as_slice(), [Packet::Subscribe(_)]));
}

#[test]
fn session_present_true_reports_no_loss_and_keeps_subscriptions() {
    let mut s = Session::new(config()).unwrap();
    connect(&mut s, ms(0), false, None);
    s.subscribe("resp/c1", QoS::AtLeastOnce, ms(0)).unwrap();
    let pid = match sent(&mut s).as_slice() {
        [Packet::Subscribe(sub)] => sub.packet_id,
        other => panic!("unexpected {other:?}"),
    };
    let suback = SubAckPacket::new(pid).add_granted_qos(mqtt5_protocol::QoS::AtLeastOnce);
    s.handle_bytes_received(&bytes_of(&suback), ms(1));
    s.handle_connection_lost(ms(2));
    events(&mut s);
    connect(&mut s, ms(3), true, None);
    assert_eq!(
        events(&mut s),
        vec![Event::Connected {
            session_present: true
        }]
    );
    assert!(sent(&mut s).is_empty(), "nothing to re-send");
}

// ---- keep-alive and session-loss properties -------------------------------------------------

#[derive(Debug, Clone)]
enum Traffic {
    /// We send a QoS 0 message after `dt` ms.
    Send(u16),
    /// The broker sends a QoS 0 message after `dt` ms.
    Receive(u16),
    /// The broker answers an outstanding ping after `dt` ms.
    PingResp(u16),
    /// The timer fires after `dt` ms.
    Tick(u16),
}

fn traffic() -> impl Strategy<Value = Traffic> {
    prop_oneof![
        (0u16..12_000).prop_map(Traffic::Send),
        (0u16..12_000).prop_map(Traffic::Receive),
        (0u16..4_000).prop_map(Traffic::PingResp),
        (0u16..15_000).prop_map(Traffic::Tick),
    ]
}

fn qos0(n: u8) -> Message {
    Message {
        qos: QoS::AtMostOnce,
        ..request(n)
    }
}

proptest! {
    /// Against a model of MQTT keep-alive: the next deadline is always the keep-alive after the
    /// earlier of the last send and the last receive (or the PINGRESP deadline while a ping is
    /// outstanding); a PINGREQ is written exactly when the timer fires at or after it, never
    /// twice for one period; the connection is declared dead exactly when the PINGRESP is
    /// later than the ping timeout, and nothing else ends it.
    #[test]
    fn keep_alive_follows_the_model(
        keep_alive_secs in 1u64..8,
        ping_timeout_ms in 1u64..5_000,
        steps in proptest::collection::vec(traffic(), 1..40),
    ) {
        let keep_alive = keep_alive_secs * 1000;
        let mut s = Session::new(SessionConfig {
            keep_alive: Duration::from_secs(keep_alive_secs),
            ping_timeout: Duration::from_millis(ping_timeout_ms),
            ..config()
        })
        .unwrap();
        connect(&mut s, ms(0), false, None);
        events(&mut s);
        let (mut now, mut last_tx, mut last_rx) = (0u64, 0u64, 0u64);
        let mut ping_sent: Option<u64> = None;
        let mut dead = false;
        for step in steps {
            let expected = match ping_sent {
                Some(at) => at + ping_timeout_ms,
                None => last_tx.min(last_rx) + keep_alive,
            };
            prop_assert_eq!(s.poll_timeout(), Some(ms(expected)));
            match step {
                Traffic::Send(dt) => {
                    now += u64::from(dt);
                    s.publish(&qos0(1), ms(now)).unwrap();
                    prop_assert_eq!(publishes(&sent(&mut s)).len(), 1);
                    last_tx = now;
                }
                Traffic::Receive(dt) => {
                    now += u64::from(dt);
                    let p = PublishPacket::new("t", &b"x"[..], mqtt5_protocol::QoS::AtMostOnce);
                    s.handle_bytes_received(&bytes_of(&p), ms(now));
                    prop_assert!(sent(&mut s).is_empty());
                    last_rx = now;
                }
                Traffic::PingResp(dt) => {
                    // Only an answer that beats the deadline; a late one is a timer firing.
                    let Some(at) = ping_sent else { continue };
                    let arrival = (now + u64::from(dt)).min(at + ping_timeout_ms - 1);
                    now = now.max(arrival);
                    s.handle_bytes_received(&[0xD0, 0x00], ms(now));
                    ping_sent = None;
                    last_rx = now;
                }
                Traffic::Tick(dt) => {
                    now += u64::from(dt);
                    s.handle_timeout(ms(now));
                    let packets = sent(&mut s);
                    match ping_sent {
                        Some(at) if now >= at + ping_timeout_ms => {
                            prop_assert!(packets.is_empty());
                            dead = true;
                        }
                        Some(_) => prop_assert!(packets.is_empty(), "a second ping"),
                        None if now >= last_tx.min(last_rx) + keep_alive => {
                            prop_assert!(matches!(packets.as_slice(), [Packet::PingReq]));
                            ping_sent = Some(now);
                            last_tx = now;
                        }
                        None => prop_assert!(packets.is_empty(), "an early ping"),
                    }
                }
            }
            let evs = events(&mut s);
            if dead {
                prop_assert_eq!(evs, vec![Event::Disconnected(DisconnectReason::PingTimeout)]);
                prop_assert!(!s.is_connected());
                prop_assert_eq!(s.poll_timeout(), None);
                break;
            }
            prop_assert!(
                evs.iter().all(|e| matches!(e, Event::Message(_) | Event::Published { .. })),
                "{:?}", evs
            );
            prop_assert!(s.is_connected());
        }
    }
}

#[derive(Debug, Clone)]
enum Life {
    Publish,
    Ack,
    /// Acknowledge the most recently acknowledged packet id again.
    DuplicateAck,
    Reconnect {
        session_present: bool,
    },
}

fn life() -> impl Strategy<Value = Life> {
    prop_oneof![
        4 => Just(Life::Publish),
        3 => Just(Life::Ack),
        1 => Just(Life::DuplicateAck),
        2 => any::<bool>().prop_map(|session_present| Life::Reconnect { session_present }),
    ]
}

proptest! {
    /// Against a model of the in-flight table across reconnects: a message on the wire is
    /// acknowledged once (duplicates complete nothing); a reconnect with the session re-sends
    /// every unacknowledged message with DUP and its old packet id, within our own in-flight
    /// cap; a reconnect without it reports every such message `Lost` (after `SessionLost`,
    /// before `Connected`) and sends nothing with DUP; queued messages are never lost.
    #[test]
    fn in_flight_messages_survive_or_are_reported_lost(
        max_in_flight in 1u16..4,
        steps in proptest::collection::vec(life(), 1..50),
    ) {
        let mut s = Session::new(SessionConfig { max_in_flight, ..config() }).unwrap();
        connect(&mut s, ms(0), false, None);
        events(&mut s);
        let cap = usize::from(max_in_flight);
        let mut now = 0u64;
        let mut next_payload = 0u8;
        // Payload byte -> publish id, for every publish without an outcome yet.
        let mut open: BTreeMap<u8, PublishId> = BTreeMap::new();
        // Packet id -> payload byte, on the wire of this connection, oldest first.
        let mut wire: Vec<(u16, u8)> = Vec::new();
        // Payload bytes of messages that were on the wire of an earlier connection, unacked.
        let mut sent_before: BTreeSet<u8> = BTreeSet::new();
        let mut last_acked: Option<u16> = None;
        for step in steps {
            now += 10;
            let mut expect_lost: BTreeSet<u8> = BTreeSet::new();
            let mut expect_ack: Option<u8> = None;
            let mut session_lost = false;
            match step {
                Life::Publish => {
                    let id = s.publish(&request(next_payload), ms(now)).unwrap();
                    open.insert(next_payload, id);
                    next_payload += 1;
                }
                Life::Ack => {
                    if wire.is_empty() {
                        continue;
                    }
                    let (pid, payload) = wire.remove(0);
                    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(pid)), ms(now));
                    expect_ack = Some(payload);
                    last_acked = Some(pid);
                }
                Life::DuplicateAck => {
                    let Some(pid) = last_acked else { continue };
                    if wire.iter().any(|(p, _)| *p == pid) {
                        continue;
                    }
                    s.handle_bytes_received(&bytes_of(&PubAckPacket::new(pid)), ms(now));
                }
                Life::Reconnect { session_present } => {
                    s.handle_connection_lost(ms(now));
                    prop_assert_eq!(
                        events(&mut s),
                        vec![Event::Disconnected(DisconnectReason::Transport)]
                    );
                    sent_before.extend(wire.drain(..).map(|(_, p)| p));
                    connect(&mut s, ms(now), session_present, None);
                    if !session_present {
                        expect_lost = core::mem::take(&mut sent_before);
                        session_lost = true;
                    }
                    last_acked = None;
                }
            }
            for p in sent(&mut s) {
                if let Packet::Publish(p) = p {
                    let pid = p.packet_id.unwrap_or(0);
                    let payload = p.payload[0];
                    prop_assert!(open.contains_key(&payload), "sent after its outcome");
                    prop_assert_eq!(p.dup, sent_before.remove(&payload), "DUP iff a re-send");
                    prop_assert!(!wire.iter().any(|(w, _)| *w == pid), "packet id in use");
                    wire.push((pid, payload));
                    prop_assert!(wire.len() <= cap, "in-flight cap exceeded");
                }
            }
            let mut lost_seen: BTreeSet<u8> = BTreeSet::new();
            let mut seen_connected = false;
            let by_id: BTreeMap<PublishId, u8> = open.iter().map(|(p, id)| (*id, *p)).collect();
            for (i, e) in events(&mut s).into_iter().enumerate() {
                match e {
                    Event::SessionLost => prop_assert!(session_lost && i == 0),
                    Event::Connected { .. } => seen_connected = true,
                    Event::Published { id, outcome } => {
                        let payload = by_id.get(&id).copied();
                        prop_assert!(payload.is_some(), "a second outcome for {:?}", id);
                        let payload = payload.unwrap_or_default();
                        open.remove(&payload);
                        match outcome {
                            PublishOutcome::Lost => {
                                prop_assert!(!seen_connected, "Lost after Connected");
                                lost_seen.insert(payload);
                            }
                            PublishOutcome::Acknowledged(_) => {
                                prop_assert_eq!(expect_ack.take(), Some(payload));
                            }
                            other => prop_assert!(false, "unexpected {:?}", other),
                        }
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            prop_assert_eq!(expect_ack, None, "PUBACK completed nothing");
            prop_assert_eq!(lost_seen, expect_lost);
            // Everything unacknowledged that was on the wire before is re-sent or still waits
            // for quota.
            prop_assert!(wire.len() + sent_before.len() <= open.len());
        }
        // Nothing still open was dropped silently: sent ones are on the wire or waiting for a
        // re-send, the rest are queued.
        prop_assert_eq!(s.in_flight(), wire.len() + sent_before.len());
        prop_assert_eq!(s.in_flight() + s.queued(), open.len());
    }
}
