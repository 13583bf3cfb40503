//! The emulator acknowledges requests itself (manual acks) and does so after replying: a
//! minimal MQTT 5 "broker" on a loopback socket hands it one QoS 1 request and watches the order
//! of what comes back. A missing PUBACK would leave the request in flight at the broker forever
//! (and, with a broker's in-flight limit, stall every later request).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use leasedlock_core::envelope::{self, RequestEnvelope, REQUEST_TOPIC};
use leasedlock_core::hlc::Hlc;
use leasedlock_emulator::{convert, Emulator, EmulatorConfig};
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
use rumqttc::v5::mqttbytes::v5::{ConnAck, ConnectReturnCode, Packet, Publish, SubAck};
use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PKID: u16 = 7;

/// Reads the next whole packet from `stream`.
async fn next_packet(stream: &mut TcpStream, buf: &mut BytesMut) -> Packet {
    loop {
        match Packet::read(buf, None) {
            Ok(p) => return p,
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                let n = stream.read_buf(buf).await.expect("read");
                assert!(n > 0, "the emulator closed the connection");
            }
            Err(e) => panic!("undecodable packet: {e:?}"),
        }
    }
}

async fn send(stream: &mut TcpStream, packet: Packet) {
    let mut out = BytesMut::new();
    packet.write(&mut out, None).expect("encode");
    stream.write_all(&out).await.expect("write");
}

fn request() -> Publish {
    let id = "acks-test-client";
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let stamp = Hlc::new(wall, 0, id.to_string()).unwrap();
    let mut payload = Vec::new();
    leasedlock_core::resp3::encode_array([&b"GET"[..], &b"acks-key"[..]].into_iter(), &mut payload);
    let msg = envelope::build_request(&RequestEnvelope {
        client_id: id,
        response_topic: &envelope::response_topic(id),
        correlation: [1; 16],
        timestamp: &stamp,
        fencing_token: None,
        persist: false,
        timeout: Duration::from_secs(10),
        payload: Bytes::from(payload),
    });
    let (topic, _, payload, props) = convert::to_publish(msg).expect("UTF-8 fields");
    let mut p = Publish::new(topic, QoS::AtLeastOnce, payload, Some(props));
    p.pkid = PKID;
    p
}

#[tokio::test]
async fn a_request_is_acked_after_its_reply() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        assert!(matches!(
            next_packet(&mut s, &mut buf).await,
            Packet::Connect(..)
        ));
        let connack = ConnAck {
            session_present: false,
            code: ConnectReturnCode::Success,
            properties: None,
        };
        send(&mut s, Packet::ConnAck(connack)).await;
        let Packet::Subscribe(sub) = next_packet(&mut s, &mut buf).await else {
            panic!("expected SUBSCRIBE");
        };
        assert_eq!(sub.filters[0].path, REQUEST_TOPIC);
        let ack = SubAck {
            pkid: sub.pkid,
            return_codes: vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            properties: None,
        };
        send(&mut s, Packet::SubAck(ack)).await;
        send(&mut s, Packet::Publish(request())).await;
        // Everything up to our PUBACK, in order.
        let mut seen = Vec::new();
        loop {
            match next_packet(&mut s, &mut buf).await {
                Packet::PubAck(a) if a.pkid == PKID => return seen,
                Packet::Publish(p) => seen.push(p.topic),
                _ => {}
            }
        }
    });
    let mut config = EmulatorConfig::new("127.0.0.1", port);
    config.client_id = "acks-test-emulator".into();
    let emulator = Emulator::start(config).await.expect("emulator starts");
    let seen = tokio::time::timeout(Duration::from_secs(5), broker)
        .await
        .expect("the request is acked")
        .expect("fake broker");
    let reply_topic = envelope::response_topic("acks-test-client");
    assert_eq!(
        seen,
        vec![Bytes::from(reply_topic)],
        "the reply leaves before the PUBACK"
    );
    emulator.shutdown().await;
}
