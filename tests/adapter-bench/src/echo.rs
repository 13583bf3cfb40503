//! The baseline: one MQTT 5 request/reply round trip with no adapter and no state store.
//!
//! A requester publishes at QoS 1 with a response topic and correlation data, the shape of a
//! state-store request; an echo client (a bare rumqttc client) answers at QoS 1 on the
//! response topic with the same correlation data. Both run on tokio, which rumqttc needs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::mpsc;

use crate::world::{client_id, World};

/// How long one round trip may take before the benchmark gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A requester and its echo, connected; must be used inside the tokio runtime that made it.
#[derive(Debug)]
pub struct Echo {
    requester: AsyncClient,
    replies: mpsc::UnboundedReceiver<Publish>,
    request_topic: String,
    response_topic: String,
    next: u64,
    payload: Bytes,
}

fn options(world: &World, id: String) -> MqttOptions {
    let mut o = MqttOptions::new(id, world.host(), world.port());
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    o
}

/// Drives an event loop in the background, forwarding every incoming PUBLISH.
fn forward(mut el: EventLoop) -> mpsc::UnboundedReceiver<Publish> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if tx.is_closed() {
                        return;
                    }
                    eprintln!("echo baseline connection error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    rx
}

impl Echo {
    /// Connects both clients and waits until both subscriptions are acknowledged.
    pub async fn start(world: &World) -> Echo {
        let tag = client_id("bench-echo");
        let request_topic = format!("leasedlock-bench/{tag}/request");
        let response_topic = format!("leasedlock-bench/{tag}/response");

        let (echo, echo_loop) = AsyncClient::new(options(world, format!("{tag}-e")), 1024);
        let mut incoming = forward(echo_loop);
        echo.subscribe(request_topic.clone(), QoS::AtLeastOnce)
            .await
            .expect("echo subscribes");
        tokio::spawn(async move {
            while let Some(p) = incoming.recv().await {
                let props = p.properties.unwrap_or_default();
                let Some(topic) = props.response_topic else {
                    continue;
                };
                let reply = PublishProperties {
                    correlation_data: props.correlation_data,
                    ..Default::default()
                };
                let sent = echo
                    .publish_with_properties(topic, QoS::AtLeastOnce, false, p.payload, reply)
                    .await;
                if sent.is_err() {
                    return;
                }
            }
        });

        let (requester, requester_loop) =
            AsyncClient::new(options(world, format!("{tag}-r")), 1024);
        let replies = forward(requester_loop);
        requester
            .subscribe(response_topic.clone(), QoS::AtLeastOnce)
            .await
            .expect("requester subscribes");
        let mut echo = Echo {
            requester,
            replies,
            request_topic,
            response_topic,
            next: 0,
            // A GET request's RESP3 payload: the same size on the wire as the adapters' GET.
            payload: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$9\r\nbench-key\r\n"),
        };
        // The first answered round trip proves both SUBACKs landed.
        let deadline = Instant::now() + REPLY_TIMEOUT;
        while tokio::time::timeout(Duration::from_millis(500), echo.round_trip_once())
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the echo never answered");
        }
        echo
    }

    async fn round_trip_once(&mut self) -> Duration {
        self.next += 1;
        let correlation = Bytes::from(self.next.to_le_bytes().to_vec());
        let props = PublishProperties {
            response_topic: Some(self.response_topic.clone()),
            correlation_data: Some(correlation.clone()),
            message_expiry_interval: Some(10),
            ..Default::default()
        };
        let start = Instant::now();
        self.requester
            .publish_with_properties(
                self.request_topic.clone(),
                QoS::AtLeastOnce,
                false,
                self.payload.clone(),
                props,
            )
            .await
            .expect("request published");
        loop {
            let reply = self
                .replies
                .recv()
                .await
                .expect("requester connection alive");
            // Replies to earlier, abandoned attempts are skipped.
            if reply.properties.and_then(|p| p.correlation_data) == Some(correlation.clone()) {
                return start.elapsed();
            }
        }
    }

    /// One request/reply round trip.
    pub async fn round_trip(&mut self) -> Duration {
        tokio::time::timeout(REPLY_TIMEOUT, self.round_trip_once())
            .await
            .expect("echo reply in time")
    }
}
