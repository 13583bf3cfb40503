//! A hostile state store: it answers requests with garbage of every kind, chosen by a marker
//! in the request's key, so a scenario can check that each gives a typed error, not a hang.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::envelope::{CONTENT_TYPE, NOTIFY_TOPIC_PREFIX, REQUEST_TOPIC};
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::oneshot;

/// The kinds of garbage; put the marker in the key of a GET.
pub mod marker {
    /// 200 with a payload that is not RESP3.
    pub const NOT_RESP3: &str = "garbage-notresp3";
    /// No `__stat`.
    pub const NO_STATUS: &str = "garbage-nostatus";
    /// `__stat: 500`.
    pub const STATUS_500: &str = "garbage-status500";
    /// A RESP3 form GET cannot answer with.
    pub const WRONG_FORM: &str = "garbage-wrongform";
    /// `__ts` two minutes ahead of the clock.
    pub const DRIFT: &str = "garbage-drift";
    /// Correlation data of the wrong length (matches nothing).
    pub const BAD_CORRELATION: &str = "garbage-badcorr";
    /// Content type `text/plain`.
    pub const CONTENT_TYPE: &str = "garbage-ctype";
    /// Never answered.
    pub const SILENT: &str = "garbage-silent";
    /// A huge blob length in a tiny payload.
    pub const HUGE_LENGTH: &str = "garbage-hugelen";
    /// Answers correctly (`$-1`), after first sending malformed notifications to the caller.
    pub const BAD_NOTIFY: &str = "garbage-badnotify";
}

/// The hostile server, on its own thread and runtime.
#[derive(Debug)]
pub struct GarbageServer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn upper_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// A reply: payload, properties, and notifications (key segment, payload) to send first.
type Reply = (Bytes, PublishProperties, Vec<(String, Bytes)>);

fn reply_for(payload: &[u8], props: &PublishProperties) -> Option<Reply> {
    let text = String::from_utf8_lossy(payload);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut reply = PublishProperties {
        correlation_data: props.correlation_data.clone(),
        content_type: Some(CONTENT_TYPE.to_string()),
        user_properties: vec![("__stat".into(), "200".into())],
        ..Default::default()
    };
    let mut notes = Vec::new();
    let body: &[u8] = if text.contains(marker::NOT_RESP3) {
        b"hello world"
    } else if text.contains(marker::NO_STATUS) {
        reply.user_properties.clear();
        b"$-1\r\n"
    } else if text.contains(marker::STATUS_500) {
        reply.user_properties = vec![
            ("__stat".into(), "500".into()),
            ("__stMsg".into(), "boom".into()),
        ];
        b"$-1\r\n"
    } else if text.contains(marker::WRONG_FORM) {
        b":5\r\n"
    } else if text.contains(marker::DRIFT) {
        reply
            .user_properties
            .push(("__ts".into(), format!("{:015}:00000:evil", wall + 120_000)));
        b"$1\r\nx\r\n"
    } else if text.contains(marker::BAD_CORRELATION) {
        reply.correlation_data = Some(Bytes::from_static(b"abc"));
        b"$-1\r\n"
    } else if text.contains(marker::CONTENT_TYPE) {
        reply.content_type = Some("text/plain".into());
        b"$-1\r\n"
    } else if text.contains(marker::SILENT) {
        return None;
    } else if text.contains(marker::HUGE_LENGTH) {
        b"$99999999999\r\nab\r\n"
    } else if text.contains(marker::BAD_NOTIFY) {
        notes.push((
            "7a7a".to_string(),
            Bytes::from_static(b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"),
        ));
        notes.push((
            upper_hex(b"zz"),
            Bytes::from_static(b"*2\r\n$6\r\nNOTIFY\r\n$3\r\nBAD\r\n"),
        ));
        notes.push(("ABC".to_string(), Bytes::from_static(b"\xff\xfe")));
        b"$-1\r\n"
    } else {
        b"$-1\r\n"
    };
    Some((Bytes::copy_from_slice(body), reply, notes))
}

impl GarbageServer {
    /// Starts serving garbage on the broker at `host:port`; returns once subscribed.
    pub fn start(host: &str, port: u16) -> GarbageServer {
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let host = host.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let id = crate::util::unique("garbage-server");
                let mut opts = MqttOptions::new(id, host, port);
                let mut net = rumqttc::NetworkOptions::new();
                net.set_tcp_nodelay(true);
                opts.set_network_options(net);
                let (client, mut el) = AsyncClient::new(opts, 256);
                let _ = client.subscribe(REQUEST_TOPIC, QoS::AtLeastOnce).await;
                let mut ready = Some(ready_tx);
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        ev = el.poll() => match ev {
                            Ok(Event::Incoming(Packet::SubAck(_))) => {
                                if let Some(r) = ready.take() {
                                    let _ = r.send(());
                                }
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                let props = p.properties.clone().unwrap_or_default();
                                let Some(topic) = props.response_topic.clone() else { continue };
                                let src = props
                                    .user_properties
                                    .iter()
                                    .find(|(k, _)| k == "__srcId")
                                    .map(|(_, v)| v.clone())
                                    .unwrap_or_default();
                                if let Some((body, reply, notes)) = reply_for(&p.payload, &props) {
                                    for (key_hex, payload) in notes {
                                        let t = format!("{NOTIFY_TOPIC_PREFIX}/{}/command/notify/{key_hex}", upper_hex(src.as_bytes()));
                                        let _ = client.try_publish(t, QoS::AtLeastOnce, false, payload);
                                    }
                                    let _ = client.try_publish_with_properties(topic, QoS::AtLeastOnce, false, body, reply);
                                }
                            }
                            Ok(_) => {}
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_millis(200), async {
                    while el.poll().await.is_ok() {}
                })
                .await;
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("garbage server subscribed");
        GarbageServer {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for GarbageServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
