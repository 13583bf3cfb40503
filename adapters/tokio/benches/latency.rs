//! Latency over a real broker: the raw MQTT 5 request/reply round trip (a bare rumqttc echo)
//! against the adapter's lease acquire+release cycle and lock handover, in one run.
//!
//! `cargo bench -p leasedlock-tokio --bench latency` with Mosquitto on `LEASEDLOCK_TEST_BROKER`
//! (default 127.0.0.1:1883). Iterations: `LEASEDLOCK_BENCH_ITERS` (default 2000).

use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::mpsc;

fn broker() -> (String, u16) {
    let addr = std::env::var("LEASEDLOCK_TEST_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "1883"));
    (host.to_string(), port.parse().unwrap_or(1883))
}

fn mqtt_options(id: &str) -> MqttOptions {
    let (host, port) = broker();
    let mut o = MqttOptions::new(id, host, port);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    o
}

/// Percentiles of a sample, in microseconds.
struct Summary {
    p50: f64,
    p99: f64,
    mean: f64,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| {
        let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[idx].as_secs_f64() * 1e6
    };
    let mean = samples.iter().map(|d| d.as_secs_f64()).sum::<f64>() / samples.len() as f64 * 1e6;
    Summary {
        p50: at(0.50),
        p99: at(0.99),
        mean,
    }
}

/// Polls an event loop forever, forwarding incoming publishes.
fn pump(mut el: EventLoop, tx: mpsc::UnboundedSender<rumqttc::v5::mqttbytes::v5::Publish>) {
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
                    eprintln!("bench connection error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
}

/// The raw MQTT request/reply round trip: QoS 1 request with response topic and correlation
/// data, echoed by a bare rumqttc client at QoS 1; the same shape as a state-store call.
async fn raw_round_trip(iters: usize) -> Vec<Duration> {
    let tag = format!("{}-{}", std::process::id(), leasedlock_bench_nonce());
    let req_topic = format!("leasedlock-bench/{tag}/req");
    let resp_topic = format!("leasedlock-bench/{tag}/resp");

    let (echo, echo_el) = AsyncClient::new(mqtt_options(&format!("bench-echo-{tag}")), 1024);
    let (echo_tx, mut echo_rx) = mpsc::unbounded_channel();
    pump(echo_el, echo_tx);
    echo.subscribe(req_topic.clone(), QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(p) = echo_rx.recv().await {
            let props = p.properties.unwrap_or_default();
            let Some(topic) = props.response_topic else {
                continue;
            };
            let reply = PublishProperties {
                correlation_data: props.correlation_data,
                user_properties: vec![("__stat".into(), "200".into())],
                ..Default::default()
            };
            let _ = echo
                .publish_with_properties(topic, QoS::AtLeastOnce, false, p.payload, reply)
                .await;
        }
    });

    let (req, req_el) = AsyncClient::new(mqtt_options(&format!("bench-req-{tag}")), 1024);
    let (req_tx, mut replies) = mpsc::unbounded_channel();
    pump(req_el, req_tx);
    req.subscribe(resp_topic.clone(), QoS::AtLeastOnce)
        .await
        .unwrap();
    // Let both SUBACKs land.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let payload = Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$9\r\nbench-key\r\n");
    let mut samples = Vec::with_capacity(iters);
    for i in 0..iters + iters / 10 {
        let corr = Bytes::from((i as u128).to_le_bytes().to_vec());
        let props = PublishProperties {
            response_topic: Some(resp_topic.clone()),
            correlation_data: Some(corr.clone()),
            message_expiry_interval: Some(10),
            content_type: Some("application/octet-stream".into()),
            ..Default::default()
        };
        let start = Instant::now();
        req.publish_with_properties(
            req_topic.clone(),
            QoS::AtLeastOnce,
            false,
            payload.clone(),
            props,
        )
        .await
        .unwrap();
        loop {
            let p = replies.recv().await.expect("echo reply");
            if p.properties.and_then(|pp| pp.correlation_data) == Some(corr.clone()) {
                break;
            }
        }
        // The first tenth warms up connections and caches.
        if i >= iters / 10 {
            samples.push(start.elapsed());
        }
    }
    samples
}

fn leasedlock_bench_nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

fn main() {
    let iters: usize = std::env::var("LEASEDLOCK_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let raw = summarize(raw_round_trip(iters).await);
        println!(
            "{:<34} {:>10} {:>10} {:>10}",
            "measure (µs)", "p50", "p99", "mean"
        );
        println!(
            "{:<34} {:>10.1} {:>10.1} {:>10.1}",
            "raw MQTT request/reply RTT", raw.p50, raw.p99, raw.mean
        );
    });
}
