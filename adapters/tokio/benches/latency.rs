//! Latency over a real broker: the raw MQTT 5 request/reply round trip (a bare rumqttc echo)
//! against the adapter's lease acquire+release cycle and lock handover, in one run.
//!
//! `cargo bench -p leasedlock-tokio --bench latency` with Mosquitto on `LEASEDLOCK_TEST_BROKER`
//! (default 127.0.0.1:1883; `bash scripts/mosquitto.sh start`). The state store is an emulator
//! started in-process. Iterations: `LEASEDLOCK_BENCH_ITERS` (default 2000; handovers a tenth).
//!
//! Nothing else may serve the state-store request topic on that broker during the run.
//!
//! `LEASEDLOCK_BENCH_TRACE=1` runs only the echo and a traced handover instead: the adapter's
//! and the emulator's TRACE events of target `leasedlock::hop` (publish in/out, timers,
//! commands, the emulator's request in / serving / publish) are recorded with their time, and
//! the median offset of each hop from the holder's `unlock()` call is printed.
//!
//! Reading the unlock rows: an unlock is one VDEL round trip (no KEYNOTIFY STOP before or after
//! it; the STOP of a lock wait leaves when the lock is taken). It costs more than the echo for two
//! reasons the extra rows separate: it follows a pause, and a request after 2 ms of idleness pays
//! for waking parked threads ("... after 2 ms idle" rows, the echo's included); and in the
//! handover the waiter's notification, its SET and the emulator serving it run at the same moment
//! in this process, on the same few cores ("unlock, no waiter" against "unlock ... by the holder").
//! Each handover follows 30 ms of idleness (the waiter settling); "raw echo, each after 30 ms
//! idle" is the round trip under that condition.

use std::time::{Duration, Instant};

use bytes::Bytes;
use leasedlock_emulator::{Emulator, EmulatorConfig};
use leasedlock_tokio::{AcquireOptions, Connection, ConnectionOptions, LockOptions};
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
/// data, echoed by a bare rumqttc client at QoS 1; the same shape as a state-store call. Back
/// to back, or each after `pause` of idleness.
/// Waits for the reply carrying `correlation`, skipping stale ones (from warm-up requests).
async fn await_reply(
    replies: &mut mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Publish>,
    correlation: &Bytes,
) {
    loop {
        let p = replies.recv().await.expect("a reply");
        if p.properties.and_then(|pp| pp.correlation_data).as_ref() == Some(correlation) {
            return;
        }
    }
}

async fn raw_round_trip(iters: usize, pause: Option<Duration>) -> Vec<Duration> {
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
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
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
        await_reply(&mut replies, &corr).await;
        // The first tenth warms up connections and caches.
        if i >= iters / 10 {
            samples.push(start.elapsed());
        }
    }
    samples
}

/// The raw state-store round trip: a bare rumqttc client sends a GET (built with the core's
/// envelope) to the emulator and waits for the reply, with no adapter in between. The
/// difference to the echo is the store's own cost; the difference to an adapter call is the
/// adapter's.
async fn raw_store_round_trip(iters: usize) -> Vec<Duration> {
    use leasedlock_core::command::Request;
    use leasedlock_core::envelope::{build_request, response_topic, RequestEnvelope};
    use leasedlock_core::hlc::{HybridClock, DEFAULT_MAX_DRIFT_MS};

    let id = format!(
        "bench-raw-store-{}-{}",
        std::process::id(),
        leasedlock_bench_nonce()
    );
    let (client, el) = AsyncClient::new(mqtt_options(&id), 1024);
    let (tx, mut replies) = mpsc::unbounded_channel();
    pump(el, tx);
    let resp = response_topic(&id);
    client
        .subscribe(resp.clone(), QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut clock =
        HybridClock::new(Bytes::from_static(b"bench-node"), DEFAULT_MAX_DRIFT_MS).unwrap();
    let mut payload = Vec::new();
    Request::Get {
        key: Bytes::from_static(b"bench-raw-key"),
    }
    .encode(&mut payload);
    let payload = Bytes::from(payload);
    let mut samples = Vec::with_capacity(iters);
    for i in 0..iters + iters / 10 {
        let mut correlation = [0u8; 16];
        correlation[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let ts = clock.tick(leasedlock_bench_wall_ms()).unwrap();
        let msg = build_request(&RequestEnvelope {
            client_id: &id,
            response_topic: &resp,
            correlation,
            timestamp: &ts,
            fencing_token: None,
            persist: false,
            timeout: Duration::from_secs(10),
            payload: payload.clone(),
        });
        let props = PublishProperties {
            message_expiry_interval: msg.message_expiry_secs,
            response_topic: msg
                .response_topic
                .map(|t| String::from_utf8_lossy(&t).into_owned()),
            correlation_data: msg.correlation_data,
            content_type: msg
                .content_type
                .map(|t| String::from_utf8_lossy(&t).into_owned()),
            payload_format_indicator: msg.payload_format_indicator,
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
            ..Default::default()
        };
        let topic = String::from_utf8_lossy(&msg.topic).into_owned();
        let start = Instant::now();
        client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, msg.payload, props)
            .await
            .unwrap();
        await_reply(&mut replies, &Bytes::copy_from_slice(&correlation)).await;
        if i >= iters / 10 {
            samples.push(start.elapsed());
        }
    }
    samples
}

fn leasedlock_bench_wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A state-store GET through the adapter (the same request as the raw store round trip),
/// back to back, or each after `pause` of idleness (as the unlocks below come after a pause).
async fn adapter_get(iters: usize, pause: Option<Duration>) -> Vec<Duration> {
    let conn = connect("bench-get").await;
    let store = conn.state_store();
    let mut samples = Vec::with_capacity(iters);
    for i in 0..iters + iters / 10 {
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        let start = Instant::now();
        store.get("bench-raw-key", None).await.unwrap();
        if i >= iters / 10 {
            samples.push(start.elapsed());
        }
    }
    conn.close().await;
    samples
}

fn leasedlock_bench_nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

async fn connect(prefix: &str) -> Connection {
    let (host, port) = broker();
    let id = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        leasedlock_bench_nonce()
    );
    Connection::connect(ConnectionOptions::new(host, port, id))
        .await
        .expect("connect")
}

/// Acquire and release of a free lease: (acquire latency, whole cycle latency).
async fn acquire_release(iters: usize) -> (Vec<Duration>, Vec<Duration>) {
    let conn = connect("bench-lease").await;
    let lease = conn
        .lease(format!("bench-lease-{}", leasedlock_bench_nonce()))
        .unwrap();
    let options = AcquireOptions::new();
    let (mut acquire, mut cycle) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
    for i in 0..iters + iters / 10 {
        let start = Instant::now();
        assert!(lease
            .acquire(Duration::from_secs(10), &options)
            .await
            .unwrap());
        let acquired = start.elapsed();
        lease.release().await.unwrap();
        if i >= iters / 10 {
            acquire.push(acquired);
            cycle.push(start.elapsed());
        }
    }
    conn.close().await;
    (acquire, cycle)
}

/// Lock and unlock without contention: (lock latency, unlock latency). The unlock is the same
/// single VDEL as in the handover below, without a waiter being woken at the same moment.
async fn lock_unlock(iters: usize) -> (Vec<Duration>, Vec<Duration>) {
    let conn = connect("bench-lock-alone").await;
    let lock = conn
        .lock(format!("bench-lock-alone-{}", leasedlock_bench_nonce()))
        .unwrap();
    let options = LockOptions::new();
    let (mut locks, mut unlocks) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
    for i in 0..iters + iters / 10 {
        let start = Instant::now();
        lock.lock(Duration::from_secs(10), &options).await.unwrap();
        let locked = start.elapsed();
        // Let the KEYNOTIFY STOP that follows a successful lock() finish first.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let start = Instant::now();
        lock.unlock().await.unwrap();
        if i >= iters / 10 {
            locks.push(locked);
            unlocks.push(start.elapsed());
        }
    }
    conn.close().await;
    (locks, unlocks)
}

/// Release by one client to acquisition by a client waiting in `lock()`; also how long the
/// releasing `unlock()` itself took.
async fn handover(iters: usize, jitter: Option<Duration>) -> (Vec<Duration>, Vec<Duration>) {
    let a = connect("bench-holder").await;
    let b = connect("bench-waiter").await;
    let name = format!("bench-lock-{}", leasedlock_bench_nonce());
    let la = a.lock(name.clone()).unwrap();
    let lb = std::sync::Arc::new(b.lock(name).unwrap());
    let mut options = LockOptions::new().wait_timeout(Duration::from_secs(10));
    if let Some(j) = jitter {
        options = options.max_jitter(j);
    }
    let mut samples = Vec::with_capacity(iters);
    let mut unlocks = Vec::with_capacity(iters);
    for _ in 0..iters {
        la.lock(Duration::from_secs(10), &options).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiter = lb.clone();
        let opts = options.clone();
        tokio::spawn(async move {
            let r = waiter.lock(Duration::from_secs(10), &opts).await;
            let _ = tx.send((r, Instant::now()));
        });
        // Let the waiter register, be refused and settle into waiting.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let released = Instant::now();
        la.unlock().await.unwrap();
        unlocks.push(released.elapsed());
        let (r, got) = rx.await.unwrap();
        r.expect("waiter gets the lock");
        samples.push(got.duration_since(released));
        lb.unlock().await.unwrap();
    }
    a.close().await;
    b.close().await;
    (samples, unlocks)
}

/// Records the `leasedlock::hop` TRACE events with their time (trace mode only).
mod hops {
    use std::fmt::Write as _;
    use std::sync::Mutex;
    use std::time::Instant;

    use tracing::field::{Field, Visit};
    use tracing::span;

    static EVENTS: Mutex<Vec<(Instant, String)>> = Mutex::new(Vec::new());

    /// Records a bench-side mark.
    pub fn mark(at: Instant, what: &str) {
        if let Ok(mut v) = EVENTS.lock() {
            v.push((at, what.to_string()));
        }
    }

    /// Takes everything recorded so far.
    pub fn take() -> Vec<(Instant, String)> {
        EVENTS
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    struct Fields {
        client: String,
        topic: String,
        message: String,
    }

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let mut text = String::new();
            let _ = write!(text, "{value:?}");
            match field.name() {
                "client" => self.client = text,
                "topic" => self.topic = text,
                "message" => self.message = text,
                _ => {}
            }
        }
    }

    /// Who: the bench role in a client id (`bench-waiter-PID-NONCE` -> `waiter`).
    fn role(client: &str) -> &str {
        client.split('-').nth(1).unwrap_or("emulator")
    }

    /// What kind of topic: a state-store request, a notification or a response.
    fn kind(topic: &str) -> &'static str {
        if topic.is_empty() {
            ""
        } else if topic.contains("notify") {
            " [notification]"
        } else if topic.ends_with("/response") {
            " [response]"
        } else {
            " [request]"
        }
    }

    /// The recording subscriber.
    pub struct Recorder;

    impl tracing::Subscriber for Recorder {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            metadata.target() == "leasedlock::hop"
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let at = Instant::now();
            let mut f = Fields {
                client: String::new(),
                topic: String::new(),
                message: String::new(),
            };
            event.record(&mut f);
            let who = if f.message.starts_with("emulator") {
                "emulator"
            } else if f.client.is_empty() {
                "a driver's timer"
            } else {
                role(&f.client)
            };
            mark(at, &format!("{who}: {}{}", f.message, kind(&f.topic)));
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }
}

/// Traced handovers (jitter `None`: the default): prints each hop's median offset from the
/// `unlock()` call.
async fn traced_handover(iters: usize, raw: &Summary, jitter: Option<Duration>) {
    let a = connect("bench-holder").await;
    let b = connect("bench-waiter").await;
    let name = format!("bench-lock-{}", leasedlock_bench_nonce());
    let la = a.lock(name.clone()).unwrap();
    let lb = std::sync::Arc::new(b.lock(name).unwrap());
    let mut options = LockOptions::new().wait_timeout(Duration::from_secs(10));
    if let Some(j) = jitter {
        options = options.max_jitter(j);
    }
    let mut offsets: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for i in 0..iters {
        la.lock(Duration::from_secs(10), &options).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiter = lb.clone();
        let opts = options.clone();
        tokio::spawn(async move {
            let r = waiter.lock(Duration::from_secs(10), &opts).await;
            let _ = tx.send((r, Instant::now()));
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        hops::take();
        let released = Instant::now();
        la.unlock().await.unwrap();
        hops::mark(Instant::now(), "bench: holder's unlock() returned");
        let (r, got) = rx.await.unwrap();
        r.expect("waiter gets the lock");
        hops::mark(got, "bench: waiter's lock() returned");
        let mut line = Vec::new();
        for (us, key) in timeline(released, got) {
            line.push(format!("{us:.0} {key}"));
            offsets.entry(key).or_default().push(us);
        }
        if i < 3 {
            println!("handover {i}: {}", line.join(" | "));
        }
        lb.unlock().await.unwrap();
    }
    print_medians(
        "median offsets from the holder's unlock() call",
        offsets,
        iters,
        raw,
    );
    a.close().await;
    b.close().await;
}

/// Orders the recorded events of one operation after `start` by time, numbering repeats.
fn timeline(start: Instant, end: Instant) -> Vec<(f64, String)> {
    let mut events = hops::take();
    events.sort_by_key(|(at, _)| *at);
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let mut out = Vec::new();
    for (at, what) in events.into_iter().filter(|(at, _)| *at <= end) {
        let n = seen.entry(what.clone()).or_default();
        *n += 1;
        let key = if *n > 1 { format!("{what} #{n}") } else { what };
        out.push((at.saturating_duration_since(start).as_secs_f64() * 1e6, key));
    }
    out
}

/// Prints each event's median offset, in µs and as a ratio to the echo.
fn print_medians(
    title: &str,
    offsets: std::collections::BTreeMap<String, Vec<f64>>,
    iters: usize,
    raw: &Summary,
) {
    let mut medians: Vec<(f64, String, usize)> = offsets
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(|x, y| x.total_cmp(y));
            (v[v.len() / 2], k, v.len())
        })
        .collect();
    medians.sort_by(|x, y| x.0.total_cmp(&y.0));
    println!("echo p50 {:.1} µs; {title}:", raw.p50);
    for (us, what, n) in medians {
        println!(
            "{us:>9.1} µs {:>6.2}x  {what}  (in {n}/{iters})",
            us / raw.p50
        );
    }
}

/// Traced acquires of a free lease: each hop's median offset from the `acquire()` call.
async fn traced_acquire(iters: usize, raw: &Summary) {
    let conn = connect("bench-lease").await;
    let lease = conn
        .lease(format!("bench-lease-{}", leasedlock_bench_nonce()))
        .unwrap();
    let options = AcquireOptions::new();
    let mut offsets: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for i in 0..iters + iters / 10 {
        hops::take();
        let start = Instant::now();
        assert!(lease
            .acquire(Duration::from_secs(10), &options)
            .await
            .unwrap());
        let end = Instant::now();
        hops::mark(end, "bench: acquire() returned");
        let line = timeline(start, end);
        lease.release().await.unwrap();
        if i >= iters / 10 {
            for (us, key) in line {
                offsets.entry(key).or_default().push(us);
            }
        }
    }
    print_medians(
        "median offsets from the acquire() call",
        offsets,
        iters,
        raw,
    );
    conn.close().await;
}

fn row(name: &str, s: &Summary, raw: &Summary) {
    println!(
        "{:<40} {:>9.1} {:>9.1} {:>9.1} {:>9.2}x",
        name,
        s.p50,
        s.p99,
        s.mean,
        s.p50 / raw.p50
    );
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
        let (host, port) = broker();
        let mut config = EmulatorConfig::new(host, port);
        config.client_id = format!("bench-emulator-{}", std::process::id());
        let emulator = Emulator::start(config).await.expect("emulator starts");

        let raw = summarize(raw_round_trip(iters, None).await);
        if std::env::var_os("LEASEDLOCK_BENCH_TRACE").is_some() {
            if tracing::subscriber::set_global_default(hops::Recorder).is_ok() {
                traced_acquire(iters / 5, &raw).await;
                traced_handover((iters / 10).max(20), &raw, Some(Duration::ZERO)).await;
                println!("with the default jitter:");
                traced_handover((iters / 10).max(20), &raw, None).await;
            }
            emulator.shutdown().await;
            return;
        }
        let raw_paused =
            summarize(raw_round_trip((iters / 5).max(20), Some(Duration::from_millis(2))).await);
        // The handovers below follow 30 ms of idleness.
        let raw_idle30 =
            summarize(raw_round_trip((iters / 50).max(20), Some(Duration::from_millis(30))).await);
        let raw_store = summarize(raw_store_round_trip(iters).await);
        let get = summarize(adapter_get(iters, None).await);
        let get_paused =
            summarize(adapter_get((iters / 5).max(20), Some(Duration::from_millis(2))).await);
        let (acquire, cycle) = acquire_release(iters).await;
        let (acquire, cycle) = (summarize(acquire), summarize(cycle));
        let (lock_alone, unlock_alone) = lock_unlock((iters / 5).max(20)).await;
        let (lock_alone, unlock_alone) = (summarize(lock_alone), summarize(unlock_alone));
        let handovers = (iters / 10).max(20);
        let (hand_nojitter, unlock) = handover(handovers, Some(Duration::ZERO)).await;
        let (hand_nojitter, unlock) = (summarize(hand_nojitter), summarize(unlock));
        let hand_default = summarize(handover(handovers, None).await.0);

        println!(
            "{:<40} {:>9} {:>9} {:>9} {:>10}",
            "measure (µs)", "p50", "p99", "mean", "p50/raw"
        );
        row("raw MQTT request/reply RTT (echo)", &raw, &raw);
        row("raw echo, each after 2 ms idle", &raw_paused, &raw);
        row("raw echo, each after 30 ms idle", &raw_idle30, &raw);
        row("raw state-store GET (bare rumqttc)", &raw_store, &raw);
        row("adapter GET", &get, &raw);
        row("adapter GET, each after 2 ms idle", &get_paused, &raw);
        row("lease acquire", &acquire, &raw);
        row("lease acquire + release cycle", &cycle, &raw);
        row("lock, uncontended (KEYNOTIFY + SET)", &lock_alone, &raw);
        row("unlock, no waiter (VDEL)", &unlock_alone, &raw);
        row("unlock (VDEL) by the holder", &unlock, &raw);
        row("lock handover (no jitter)", &hand_nojitter, &raw);
        row("lock handover (default jitter)", &hand_default, &raw);
        emulator.shutdown().await;
    });
}
