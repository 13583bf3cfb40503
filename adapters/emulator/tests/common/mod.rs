//! Shared harness for the emulator's end-to-end tests: one emulator per test binary (started on
//! its own runtime, so it outlives each test's runtime) on the broker at `LEASEDLOCK_TEST_BROKER`
//! (default 127.0.0.1:1883, started by `scripts/mosquitto.sh`), and a raw MQTT 5 test client
//! that speaks the state-store envelope exactly as the official clients do.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use leasedlock_core::envelope::{self, Message, RequestEnvelope};
use leasedlock_core::hlc::Hlc;
use leasedlock_emulator::{convert, Emulator, EmulatorConfig, Snapshot};
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

pub fn broker() -> (String, u16) {
    let addr = std::env::var("LEASEDLOCK_TEST_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (host, port) = addr
        .rsplit_once(':')
        .expect("LEASEDLOCK_TEST_BROKER is HOST:PORT");
    (host.to_string(), port.parse().expect("port"))
}

struct Shared {
    _rt: tokio::runtime::Runtime,
    emulator: Emulator,
}

static EMULATOR: OnceLock<Shared> = OnceLock::new();

/// Starts the binary's emulator once; later calls return at once.
pub fn emulator() -> Snapshot {
    let shared = EMULATOR.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let (host, port) = broker();
            let mut config = EmulatorConfig::new(host, port);
            config.client_id = format!("emulator-{}", unique("e2e"));
            let emulator = rt.block_on(Emulator::start(config)).expect(
                "emulator starts (is Mosquitto running? `bash scripts/mosquitto.sh start`)",
            );
            Shared { _rt: rt, emulator }
        })
        .join()
        .unwrap()
    });
    shared.emulator.snapshot()
}

/// A process-unique name.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// How a request carries `__ts`.
#[derive(Clone, Debug)]
pub enum Ts {
    Now,
    None,
    Raw(String),
}

pub struct TestClient {
    pub id: String,
    pub client: AsyncClient,
    replies: mpsc::UnboundedReceiver<Message>,
    notes: mpsc::UnboundedReceiver<Message>,
    next: u64,
}

impl TestClient {
    /// Connects, subscribes to its response topic and notification filter, and waits for both
    /// SUBACKs.
    pub async fn connect(prefix: &str) -> TestClient {
        let id = unique(prefix);
        let (host, port) = broker();
        let mut o = MqttOptions::new(id.clone(), host, port);
        o.set_keep_alive(Duration::from_secs(30));
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        o.set_network_options(net);
        let (client, mut el) = AsyncClient::new(o, 256);
        let (rtx, replies) = mpsc::unbounded_channel();
        let (ntx, notes) = mpsc::unbounded_channel();
        let (subtx, mut subrx) = mpsc::unbounded_channel();
        let prefix = format!("{}/", envelope::NOTIFY_TOPIC_PREFIX);
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let m = convert::to_message(&p);
                        let tx = if m.topic.starts_with(prefix.as_bytes()) {
                            &ntx
                        } else {
                            &rtx
                        };
                        if tx.send(m).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subtx.send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("test client connection error: {e}");
                        if rtx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        client
            .subscribe(envelope::response_topic(&id), QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .subscribe(envelope::notification_filter(&id), QoS::AtLeastOnce)
            .await
            .unwrap();
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), subrx.recv())
                .await
                .expect("SUBACK")
                .unwrap();
        }
        TestClient {
            id,
            client,
            replies,
            notes,
            next: 1,
        }
    }

    pub fn client_ts(&self) -> Hlc {
        Hlc::new(wall_ms(), 0, self.id.clone()).unwrap()
    }

    /// A request PUBLISH exactly as the official clients build it.
    pub fn build(&mut self, parts: &[&[u8]], ts: Ts, ft: Option<&str>, persist: bool) -> Message {
        let mut payload = Vec::new();
        leasedlock_core::resp3::encode_array(parts.iter().copied(), &mut payload);
        let stamp = self.client_ts();
        let ft = ft.map(|t| Hlc::parse(&Bytes::copy_from_slice(t.as_bytes())).unwrap());
        let mut corr = [0u8; 16];
        corr[..8].copy_from_slice(&self.next.to_be_bytes());
        corr[8..].copy_from_slice(&(std::process::id() as u64).to_be_bytes());
        self.next += 1;
        let rt = envelope::response_topic(&self.id);
        let mut msg = envelope::build_request(&RequestEnvelope {
            client_id: &self.id,
            response_topic: &rt,
            correlation: corr,
            timestamp: &stamp,
            fencing_token: ft.as_ref(),
            persist,
            timeout: Duration::from_secs(10),
            payload: Bytes::from(payload),
        });
        match ts {
            Ts::Now => {}
            Ts::None => msg.user_properties.retain(|(k, _)| &k[..] != b"__ts"),
            Ts::Raw(raw) => {
                for p in &mut msg.user_properties {
                    if &p.0[..] == b"__ts" {
                        p.1 = Bytes::from(raw.clone());
                    }
                }
            }
        }
        // Hostile ft strings (e.g. "1:2") are set verbatim by callers via `with_prop`.
        msg
    }

    pub async fn publish(&self, msg: Message) {
        let (topic, qos, payload, props) = convert::to_publish(msg).expect("UTF-8 fields");
        self.client
            .publish_bytes_with_properties(topic, qos, false, payload, props)
            .await
            .unwrap();
    }

    /// Publishes raw parts (for hostile tests); errors from rumqttc are ignored.
    pub async fn publish_raw(&self, topic: String, payload: Bytes, props: PublishProperties) {
        let _ = self
            .client
            .publish_bytes_with_properties(topic, QoS::AtLeastOnce, false, payload, props)
            .await;
    }

    /// Sends `msg` and waits for the reply with its correlation data.
    pub async fn roundtrip(&mut self, msg: Message) -> Message {
        let corr = msg.correlation_data.clone();
        self.publish(msg).await;
        self.wait_reply(corr).await.expect("a reply within 5 s")
    }

    pub async fn wait_reply(&mut self, corr: Option<Bytes>) -> Option<Message> {
        self.wait_reply_within(corr, Duration::from_secs(5)).await
    }

    pub async fn wait_reply_within(
        &mut self,
        corr: Option<Bytes>,
        within: Duration,
    ) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = tokio::time::timeout_at(deadline, self.replies.recv())
                .await
                .ok()??;
            if m.correlation_data == corr {
                return Some(m);
            }
        }
    }

    pub async fn call(&mut self, parts: &[&[u8]]) -> Message {
        let msg = self.build(parts, Ts::Now, None, false);
        self.roundtrip(msg).await
    }

    pub async fn call_with(&mut self, parts: &[&[u8]], ts: Ts, ft: Option<&str>) -> Message {
        let msg = self.build(parts, ts, ft, false);
        self.roundtrip(msg).await
    }

    pub async fn notification(&mut self, within: Duration) -> Option<Message> {
        tokio::time::timeout(within, self.notes.recv()).await.ok()?
    }

    /// Drains notifications that arrive within `within`.
    pub async fn notifications(&mut self, within: Duration) -> Vec<Message> {
        let mut v = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.notes.recv()).await {
            v.push(m);
        }
        v
    }
}

pub fn ts_of(m: &Message) -> Option<Hlc> {
    m.user_property("__ts").map(|t| Hlc::parse(t).unwrap())
}

pub fn stat(m: &Message) -> &[u8] {
    m.user_property("__stat").map(|v| &v[..]).unwrap_or(b"")
}
