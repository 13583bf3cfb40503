//! The embedded default broker: an MQTT 5 broker running in this process, so that
//! `leasedlock serve` and `leasedlock demo` need nothing installed.
//!
//! It is the broker of the `mqtt5` crate (LabOverWire/mqtt-lib), chosen because, measured on
//! loopback with a rumqttc v5 client and TCP_NODELAY on both sides:
//! - it passes the properties the state-store protocol relies on through unchanged (user
//!   properties in order, duplicates and empty values included; correlation data; response
//!   topic; content type; message expiry, reduced by the time spent as MQTT 5 requires), honours
//!   No Local, and sets TCP_NODELAY on every accepted socket, so a QoS 1 request/reply costs
//!   about as much as through Mosquitto with `set_tcp_nodelay true` (p50 0.10 ms against
//!   0.11 ms) rather than rumqttd's ~44 ms Nagle stall;
//! - its one addition: every forwarded PUBLISH gains a user property `x-mqtt-client-id` naming
//!   the publisher (a trusted-sender feature that version 0.49 cannot switch off). The protocol
//!   ignores unknown user properties, so clients and the emulator are unaffected.
//!
//! The tests below prove both properties on every run.

use std::fmt;
use std::net::SocketAddr;

use mqtt5::broker::{BrokerConfig, BrokerShutdownHandle, MqttBroker, StorageBackendType};
use tokio::task::JoinHandle;

/// The user property the embedded broker adds to every PUBLISH it forwards.
pub const ADDED_USER_PROPERTY: &str = "x-mqtt-client-id";

/// Why the embedded broker did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum BrokerError {
    /// Binding the listener failed (address in use, permission).
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The broker's message.
        message: String,
    },
    /// The broker bound but reported no listening address.
    NoAddress,
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::Bind { addr, message } => {
                write!(
                    f,
                    "the embedded broker could not listen on {addr}: {message}"
                )
            }
            BrokerError::NoAddress => {
                write!(f, "the embedded broker reported no listening address")
            }
        }
    }
}

impl std::error::Error for BrokerError {}

/// A running in-process broker. Dropping it shuts the broker down.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    shutdown: BrokerShutdownHandle,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.addr)
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts the broker on `addr` (port 0 picks a free port): MQTT 5 over plain TCP, anonymous
    /// access, sessions and queued messages in memory only, no `$SYS` topics. Connections are
    /// accepted as soon as this returns.
    pub async fn start(addr: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        let mut config = BrokerConfig::default().with_bind_address(addr);
        config.storage_config.backend = StorageBackendType::Memory;
        config.storage_config.enable_persistence = false;
        config.sys_topics_enabled = false;
        let mut broker = MqttBroker::with_config(config)
            .await
            .map_err(|e| BrokerError::Bind {
                addr,
                message: e.to_string(),
            })?;
        let bound = broker.local_addr().ok_or(BrokerError::NoAddress)?;
        let shutdown = broker.shutdown_handle();
        let task = tokio::spawn(async move {
            if let Err(e) = broker.run().await {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        });
        tracing::info!(addr = %bound, "embedded MQTT 5 broker (mqtt5 crate) listening");
        Ok(EmbeddedBroker {
            addr: bound,
            shutdown,
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the broker and waits until it has closed its connections.
    pub async fn stop(mut self) {
        self.shutdown.shutdown();
        if let Some(task) = self.task.take() {
            // A panicked broker task has nothing left to clean up.
            let _ = task.await;
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

#[cfg(test)]
mod tests {
    //! The two properties the embedded broker must have, checked with a rumqttc v5 client (the
    //! client the adapters use): MQTT 5 properties arrive intact, and a QoS 1 request/reply round
    //! trip does not stall on Nagle's algorithm.
    use super::*;
    use bytes::Bytes;
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    use std::time::{Duration, Instant};
    use tokio::sync::mpsc;

    /// A connected client whose incoming publishes and acks arrive on channels.
    struct TestClient {
        client: AsyncClient,
        publishes: mpsc::UnboundedReceiver<(Publish, Instant)>,
        subacks: mpsc::UnboundedReceiver<()>,
    }

    fn connect(id: &str, addr: SocketAddr) -> TestClient {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (pub_tx, publishes) = mpsc::unbounded_channel();
        let (sub_tx, subacks) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = pub_tx.send((p, Instant::now()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        TestClient {
            client,
            publishes,
            subacks,
        }
    }

    async fn subscribe(c: &mut TestClient, filter: &str, no_local: bool) {
        let mut f = Filter::new(filter, QoS::AtLeastOnce);
        f.nolocal = no_local;
        c.client.subscribe_many(vec![f]).await.expect("subscribe");
        tokio::time::timeout(Duration::from_secs(5), c.subacks.recv())
            .await
            .expect("suback in time")
            .expect("suback");
    }

    async fn next_publish(c: &mut TestClient) -> (Publish, Instant) {
        tokio::time::timeout(Duration::from_secs(5), c.publishes.recv())
            .await
            .expect("publish in time")
            .expect("publish")
    }

    fn request_properties(correlation: Bytes) -> PublishProperties {
        PublishProperties {
            message_expiry_interval: Some(10),
            response_topic: Some("clients/req/response".into()),
            correlation_data: Some(correlation),
            user_properties: vec![
                ("__srcId".into(), "req".into()),
                ("__ts".into(), "001696374425000:00000:node".into()),
                ("__ft".into(), "001696374425000:00003:other".into()),
                ("dup".into(), "first".into()),
                ("dup".into(), "second".into()),
                ("$high_priority".into(), String::new()),
            ],
            content_type: Some("application/octet-stream".into()),
            payload_format_indicator: Some(0),
            ..Default::default()
        }
    }

    /// The user properties as sent, without the one the broker adds.
    fn without_added(props: &PublishProperties) -> Vec<(String, String)> {
        props
            .user_properties
            .iter()
            .filter(|(k, _)| k != ADDED_USER_PROPERTY)
            .cloned()
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn properties_arrive_intact_and_no_local_is_honoured() {
        let broker = EmbeddedBroker::start(([127, 0, 0, 1], 0).into())
            .await
            .expect("broker");
        let addr = broker.local_addr();
        let mut server = connect("prop-server", addr);
        let mut requester = connect("prop-requester", addr);
        subscribe(&mut server, "statestore/+/command/invoke", false).await;
        subscribe(&mut requester, "echo/self", true).await;

        let correlation =
            Bytes::from_static(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff]);
        let sent = request_properties(correlation.clone());
        let payload = Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        requester
            .client
            .publish_with_properties(
                "statestore/v1/command/invoke",
                QoS::AtLeastOnce,
                false,
                payload.clone(),
                sent.clone(),
            )
            .await
            .expect("publish");
        let (got, _) = next_publish(&mut server).await;
        assert_eq!(got.payload, payload);
        let props = got.properties.expect("properties");
        assert_eq!(
            without_added(&props),
            sent.user_properties,
            "user properties in order"
        );
        assert_eq!(props.correlation_data, Some(correlation));
        assert_eq!(props.response_topic, sent.response_topic);
        assert_eq!(props.content_type, sent.content_type);
        let expiry = props
            .message_expiry_interval
            .expect("message expiry forwarded");
        assert!((9..=10).contains(&expiry), "expiry {expiry}");

        // No Local: our own publish on a topic we subscribed to with no_local never comes back.
        requester
            .client
            .publish(
                "echo/self",
                QoS::AtLeastOnce,
                false,
                Bytes::from_static(b"x"),
            )
            .await
            .expect("publish");
        let echoed =
            tokio::time::timeout(Duration::from_millis(300), requester.publishes.recv()).await;
        assert!(
            echoed.is_err(),
            "a no_local subscription received its own message"
        );
        broker.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qos1_request_reply_does_not_stall() {
        let broker = EmbeddedBroker::start(([127, 0, 0, 1], 0).into())
            .await
            .expect("broker");
        let addr = broker.local_addr();
        let mut server = connect("rtt-server", addr);
        let mut requester = connect("rtt-requester", addr);
        subscribe(&mut server, "rtt/request", false).await;
        subscribe(&mut requester, "clients/req/response", false).await;
        let responder = server.client.clone();
        tokio::spawn(async move {
            while let Some((request, _)) = server.publishes.recv().await {
                let props = request.properties.unwrap_or_default();
                let Some(topic) = props.response_topic.clone() else {
                    continue;
                };
                let reply = PublishProperties {
                    correlation_data: props.correlation_data,
                    user_properties: vec![("__stat".into(), "200".into())],
                    ..Default::default()
                };
                if responder
                    .publish_with_properties(topic, QoS::AtLeastOnce, false, request.payload, reply)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });

        let mut round_trips = Vec::new();
        for i in 0..60u32 {
            let correlation = Bytes::from(i.to_be_bytes().repeat(4));
            let started = Instant::now();
            requester
                .client
                .publish_with_properties(
                    "rtt/request",
                    QoS::AtLeastOnce,
                    false,
                    Bytes::from_static(b"ping"),
                    request_properties(correlation.clone()),
                )
                .await
                .expect("publish");
            let (reply, at) = next_publish(&mut requester).await;
            assert_eq!(
                reply.properties.and_then(|p| p.correlation_data),
                Some(correlation)
            );
            round_trips.push(at - started);
        }
        round_trips.sort();
        let median = round_trips[round_trips.len() / 2];
        // A Nagle + delayed-ACK stall costs >= 40 ms per round trip on Linux (rumqttd measured
        // ~44 ms); without it loopback takes ~0.1 ms. 10 ms leaves room for a loaded machine.
        assert!(
            median < Duration::from_millis(10),
            "median QoS 1 request/reply round trip {median:?}: the broker stalls (Nagle?)"
        );
        broker.stop().await;
    }
}
