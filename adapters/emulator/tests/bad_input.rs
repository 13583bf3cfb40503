//! Hostile traffic on the request topic: random payloads, mutated valid requests and random
//! properties never crash the emulator or stop it serving others.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{emulator, TestClient, Ts};
use leasedlock_core::envelope::{NOTIFY_TOPIC_PREFIX, REQUEST_TOPIC};
use leasedlock_core::rng::Rng;
use rumqttc::v5::mqttbytes::v5::PublishProperties;

fn random_bytes(rng: &mut Rng, max: u64) -> Vec<u8> {
    let n = rng.below(max + 1) as usize;
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

fn random_text(rng: &mut Rng, max: u64) -> String {
    // No control characters: Mosquitto disconnects a client whose MQTT strings carry them, so
    // such strings never reach the emulator.
    const ALPHABET: &[u8] = b"abc:/+#$_-.0123456789 *\xc3";
    let n = rng.below(max + 1) as usize;
    (0..n)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn pick<T: Clone>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize].clone()
}

#[tokio::test]
async fn random_and_mutated_requests_never_stop_the_emulator() {
    emulator();
    let mut good = TestClient::connect("bad-good").await;
    let mut evil = TestClient::connect("bad-evil").await;
    let mut rng = Rng::new(0x5EED_BAD1);
    let response_topics = [
        leasedlock_core::envelope::response_topic(&evil.id),
        REQUEST_TOPIC.to_string(),
        format!("{NOTIFY_TOPIC_PREFIX}/41/command/notify/41"),
        "some/other/topic".to_string(),
        // Wildcard or empty response topics never reach the emulator: Mosquitto disconnects
        // the publisher (a protocol error), so they are not sent here.
    ];
    let prop_names = [
        "__srcId",
        "__ts",
        "__ft",
        "__protVer",
        "aio-persistence",
        "x",
    ];
    for i in 0..1500u32 {
        let mut msg = evil.build(
            &[b"SET", b"bad-k", b"v", b"NEX", b"PX", b"100"],
            Ts::Now,
            None,
            i % 2 == 0,
        );
        let mut payload = msg.payload.to_vec();
        match i % 4 {
            0 => payload = random_bytes(&mut rng, 64),
            1 => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(payload.len() as u64) as usize;
                    payload[at] = rng.next_u64() as u8;
                }
            }
            2 => payload.truncate(rng.below(payload.len() as u64) as usize),
            _ => {}
        }
        msg.payload = Bytes::from(payload);
        let mut props = PublishProperties {
            payload_format_indicator: msg.payload_format_indicator,
            message_expiry_interval: msg.message_expiry_secs,
            response_topic: msg
                .response_topic
                .as_ref()
                .map(|t| String::from_utf8_lossy(t).into_owned()),
            correlation_data: msg.correlation_data.clone(),
            user_properties: msg
                .user_properties
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect(),
            content_type: msg
                .content_type
                .as_ref()
                .map(|t| String::from_utf8_lossy(t).into_owned()),
            ..PublishProperties::default()
        };
        for _ in 0..rng.below(3) {
            match rng.below(7) {
                0 => props.response_topic = Some(pick(&mut rng, &response_topics)),
                1 => props.correlation_data = Some(Bytes::from(random_bytes(&mut rng, 40))),
                2 => {
                    props.message_expiry_interval =
                        pick(&mut rng, &[None, Some(0), Some(1), Some(u32::MAX)])
                }
                3 => props.content_type = Some(random_text(&mut rng, 12)),
                4 => props.user_properties.push((
                    pick(&mut rng, &prop_names).to_string(),
                    random_text(&mut rng, 30),
                )),
                5 => {
                    let n = props.user_properties.len() as u64;
                    if n > 0 {
                        let at = rng.below(n) as usize;
                        props.user_properties[at].1 = random_text(&mut rng, 40);
                    }
                }
                _ => props.user_properties.clear(),
            }
        }
        if i % 500 == 0 {
            // A large value: bounded by the store's quotas, not by luck.
            msg.payload = Bytes::from(vec![b'*'; 1 << 20]);
        }
        evil.publish_raw(REQUEST_TOPIC.to_string(), msg.payload, props)
            .await;
        if i % 100 == 0 {
            // Someone else is still served, promptly, in the middle of the barrage.
            let key = format!("bad-probe-{i}");
            let r = good.call(&[b"SET", key.as_bytes(), b"ok"]).await;
            assert_eq!(&r.payload[..], b"+OK\r\n");
        }
    }
    let r = good.call(&[b"GET", b"bad-probe-1400"]).await;
    assert_eq!(&r.payload[..], b"$2\r\nok\r\n");
    // The emulator saw the barrage.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let snap = emulator();
    assert!(snap.stats.requests >= 1500, "{snap:?}");
    assert!(snap.stats.rejected + snap.stats.dropped > 0, "{snap:?}");
}
