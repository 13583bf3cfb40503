//! Emulator benchmark over a real broker (Mosquitto on loopback):
//!
//! - SET and GET throughput and p50/p99 latency with 1, 16 and 64 concurrent closed-loop clients,
//!   against a plain MQTT request/reply echo over the same broker in the same run (the ceiling);
//! - how late expiry `DELETE` notifications arrive after the key's deadline;
//! - the emulator's resident memory per key at 100,000 and 1,000,000 keys of 32-byte values
//!   (`BENCH_KEYS`, comma-separated checkpoints, default `100000,1000000`).
//!
//! The emulator and the echo responder run as separate processes (the release binary and this
//! benchmark re-executed with `--echo-server`), like a real deployment.
//!
//! ```sh
//! bash scripts/mosquitto.sh start
//! cargo bench -p leasedlock-emulator --bench emulator
//! ```
//! Environment: `LEASEDLOCK_TEST_BROKER` (default 127.0.0.1:1883), `BENCH_SECS` per measurement
//! (default 3).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use leasedlock_core::envelope::{self, Message, RequestEnvelope};
use leasedlock_core::hlc::Hlc;
use leasedlock_emulator::convert;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

const ECHO_TOPIC: &str = "leasedlock/bench/echo";

fn broker() -> (String, u16) {
    let addr = std::env::var("LEASEDLOCK_TEST_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (h, p) = addr.rsplit_once(':').expect("HOST:PORT");
    (h.to_string(), p.parse().expect("port"))
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn options(id: &str) -> MqttOptions {
    let (host, port) = broker();
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    o
}

/// The plain request/reply echo: the ceiling any MQTT RPC server can reach on this broker.
async fn echo_server() {
    let (client, mut el) = AsyncClient::new(
        options(&format!("bench-echo-{}", std::process::id())),
        10_000,
    );
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_subscribe(ECHO_TOPIC, QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => eprintln!("echo: ready"),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(props) = p.properties else { continue };
                let Some(topic) = props.response_topic else {
                    continue;
                };
                let reply = PublishProperties {
                    correlation_data: props.correlation_data,
                    user_properties: vec![("__stat".into(), "200".into())],
                    content_type: Some(envelope::CONTENT_TYPE.into()),
                    ..PublishProperties::default()
                };
                let _ = client.try_publish_with_properties(
                    topic,
                    QoS::AtLeastOnce,
                    false,
                    Bytes::from_static(b"+OK\r\n"),
                    reply,
                );
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// One benchmark connection: requests go out, replies and notifications come back on channels.
struct Conn {
    id: String,
    client: AsyncClient,
    replies: mpsc::UnboundedReceiver<Message>,
    notes: mpsc::UnboundedReceiver<(Instant, Message)>,
    next: u64,
    /// Request timeout, sent as Message Expiry (the reply cache keeps replies this long).
    timeout: Duration,
}

impl Conn {
    async fn open(id: String) -> Conn {
        let (client, mut el) = AsyncClient::new(options(&id), 1024);
        let (rtx, replies) = mpsc::unbounded_channel();
        let (ntx, notes) = mpsc::unbounded_channel();
        let (stx, mut subacks) = mpsc::unbounded_channel();
        let prefix = format!("{}/", envelope::NOTIFY_TOPIC_PREFIX);
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = Instant::now();
                        let m = convert::to_message(&p);
                        if m.topic.starts_with(prefix.as_bytes()) {
                            let _ = ntx.send((at, m));
                        } else if rtx.send(m).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = stx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if rtx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        for filter in [
            envelope::response_topic(&id),
            envelope::notification_filter(&id),
        ] {
            client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        }
        for _ in 0..2 {
            subacks.recv().await.unwrap();
        }
        Conn {
            id,
            client,
            replies,
            notes,
            next: 0,
            timeout: Duration::from_secs(10),
        }
    }

    fn request(&mut self, parts: &[&[u8]]) -> Message {
        let mut payload = Vec::new();
        leasedlock_core::resp3::encode_array(parts.iter().copied(), &mut payload);
        self.next += 1;
        let mut corr = [0u8; 16];
        corr[..8].copy_from_slice(&self.next.to_be_bytes());
        let ts = Hlc::new(wall_ms(), 0, self.id.clone()).unwrap();
        let rt = envelope::response_topic(&self.id);
        envelope::build_request(&RequestEnvelope {
            client_id: &self.id,
            response_topic: &rt,
            correlation: corr,
            timestamp: &ts,
            fencing_token: None,
            persist: false,
            timeout: self.timeout,
            payload: Bytes::from(payload),
        })
    }

    /// One round trip to `topic`; returns the reply.
    async fn call(&mut self, topic: &str, parts: &[&[u8]]) -> Message {
        let mut msg = self.request(parts);
        msg.topic = Bytes::copy_from_slice(topic.as_bytes());
        let corr = msg.correlation_data.clone();
        let (t, qos, payload, props) = convert::to_publish(msg).unwrap();
        self.client
            .publish_bytes_with_properties(t, qos, false, payload, props)
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.replies.recv())
                .await
                .expect("a reply within 10 s")
                .unwrap();
            if m.correlation_data == corr {
                return m;
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Stats {
    ops: usize,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Set,
    Get,
    Echo,
}

/// `clients` closed-loop clients doing `op` for `secs`.
async fn run(conns: &mut Vec<Conn>, op: Op, secs: f64) -> Stats {
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for (n, mut c) in conns.drain(..).enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < until {
                let key = format!("bench-{n}-{}", i % 1000);
                i += 1;
                let t = Instant::now();
                let reply = match op {
                    Op::Set => {
                        c.call(
                            envelope::REQUEST_TOPIC,
                            &[b"SET", key.as_bytes(), &[b'v'; 32]],
                        )
                        .await
                    }
                    Op::Get => {
                        c.call(envelope::REQUEST_TOPIC, &[b"GET", key.as_bytes()])
                            .await
                    }
                    Op::Echo => {
                        c.call(ECHO_TOPIC, &[b"SET", key.as_bytes(), &[b'v'; 32]])
                            .await
                    }
                };
                lat.push(t.elapsed());
                assert_eq!(
                    reply.user_property("__stat").map(|v| &v[..]),
                    Some(&b"200"[..])
                );
            }
            (c, lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let (c, lat) = t.await.unwrap();
        conns.push(c);
        all.extend(lat);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    Stats {
        ops: all.len(),
        secs: elapsed,
        p50_us: percentile(&all, 0.5),
        p99_us: percentile(&all, 0.99),
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn spawn(cmd: &mut Command) -> Child {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Both servers print one line to stderr once they serve.
    use std::io::BufRead;
    let mut out = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // Keep draining so the child never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn bench() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let (host, port) = broker();
    let emulator = Killed(spawn(
        Command::new(env!("CARGO_BIN_EXE_leasedlock-emulator"))
            .args(["--broker", &format!("{host}:{port}")]),
    ));
    let echo = Killed(spawn(
        Command::new(std::env::current_exe().unwrap()).arg("--echo-server"),
    ));

    println!("emulator benchmark over {host}:{port} ({secs} s per row)\n");
    println!(
        "{:<8} {:>7} {:>12} {:>10} {:>10} {:>12}",
        "op", "clients", "req/s", "p50 µs", "p99 µs", "vs echo"
    );
    for clients in [1usize, 16, 64] {
        let mut conns = Vec::new();
        for i in 0..clients {
            conns.push(Conn::open(format!("bench-{}-{clients}-{i}", std::process::id())).await);
        }
        // Warm up and fill the keys the GETs read.
        run(&mut conns, Op::Set, 0.3).await;
        let echo_stats = run(&mut conns, Op::Echo, secs).await;
        for (name, op) in [("echo", Op::Echo), ("SET", Op::Set), ("GET", Op::Get)] {
            let s = if op == Op::Echo {
                echo_stats
            } else {
                run(&mut conns, op, secs).await
            };
            println!(
                "{:<8} {:>7} {:>12.0} {:>10.0} {:>10.0} {:>11.0}%",
                name,
                clients,
                s.rate(),
                s.p50_us,
                s.p99_us,
                100.0 * s.rate() / echo_stats.rate()
            );
        }
    }

    // Expiry lateness: 200 keys with deadlines spread over 100–500 ms; lateness is measured from
    // the latest possible deadline (reply receipt + PX), so it is an upper bound.
    let mut watcher = Conn::open(format!("bench-watch-{}", std::process::id())).await;
    let mut writer = Conn::open(format!("bench-write-{}", std::process::id())).await;
    let mut deadlines = std::collections::HashMap::new();
    for i in 0..200u32 {
        let key = format!("bench-exp-{i}");
        watcher
            .call(envelope::REQUEST_TOPIC, &[b"KEYNOTIFY", key.as_bytes()])
            .await;
    }
    for i in 0..200u32 {
        let key = format!("bench-exp-{i}");
        let px = 100 + (i * 2);
        writer
            .call(
                envelope::REQUEST_TOPIC,
                &[
                    b"SET",
                    key.as_bytes(),
                    b"v",
                    b"PX",
                    px.to_string().as_bytes(),
                ],
            )
            .await;
        let topic = envelope::notification_topic(&watcher.id, key.as_bytes());
        deadlines.insert(topic, Instant::now() + Duration::from_millis(u64::from(px)));
    }
    let mut late = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while late.len() < 200 && Instant::now() < until {
        let Ok(Some((at, m))) =
            tokio::time::timeout(Duration::from_secs(1), watcher.notes.recv()).await
        else {
            break;
        };
        if m.payload.starts_with(b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE") {
            if let Some(d) = deadlines.get(std::str::from_utf8(&m.topic).unwrap_or("")) {
                late.push(at.saturating_duration_since(*d));
            }
        }
    }
    late.sort();
    println!(
        "\nexpiry DELETE lateness over {} keys: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        late.len(),
        percentile(&late, 0.5) / 1000.0,
        percentile(&late, 0.99) / 1000.0,
        late.last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    );

    // Resident memory with 100,000 (then 1,000,000) keys of 32-byte values (16-byte keys),
    // loaded by 16 clients into a fresh emulator process (so memory freed by the runs above
    // cannot be reused and flatter the figure). Requests carry a 1 s timeout, so the reply cache
    // holds about one second of replies, as it would for clients with 1 s timeouts.
    let checkpoints: Vec<usize> = std::env::var("BENCH_KEYS")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("BENCH_KEYS: key counts"))
        .collect();
    drop(emulator);
    let emulator = Killed(spawn(
        Command::new(env!("CARGO_BIN_EXE_leasedlock-emulator"))
            .args(["--broker", &format!("{host}:{port}")]),
    ));
    let pid = emulator.0.id();
    let mut conns = Vec::new();
    for i in 0..16 {
        let mut c = Conn::open(format!("bench-mem-{}-{i}", std::process::id())).await;
        c.timeout = Duration::from_secs(1);
        conns.push(c);
    }
    // Warm the connections so buffers are not counted as key memory.
    run(&mut conns, Op::Get, 0.3).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    let mut loaded = 0usize;
    for target in checkpoints {
        let mut tasks = Vec::new();
        for (n, mut c) in conns.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                for i in (loaded + n..target).step_by(16) {
                    let key = format!("mem-key-{i:08}");
                    c.call(
                        envelope::REQUEST_TOPIC,
                        &[b"SET", key.as_bytes(), &[b'x'; 32]],
                    )
                    .await;
                }
                c
            }));
        }
        conns = Vec::new();
        for t in tasks {
            conns.push(t.await.unwrap());
        }
        // The next round's ranges start here; each client took every 16th key.
        loaded = target;
        let load_secs = started.elapsed().as_secs_f64();
        // Let the last second of cached replies expire (a GET purges them).
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        conns[0]
            .call(envelope::REQUEST_TOPIC, &[b"GET", b"mem-key-00000000"])
            .await;
        let rss_after = rss_kib(pid);
        let raw = target * (16 + 32);
        let delta = (rss_after.saturating_sub(rss_before)) * 1024;
        println!(
            "\nmemory (fresh emulator): RSS idle {} KiB, after {} keys {} KiB (loaded in {:.1} s); \
             growth {:.1} MB for {:.1} MB of raw key+value bytes = {:.2}x, {:.0} B per key",
            rss_before,
            target,
            rss_after,
            load_secs,
            delta as f64 / 1e6,
            raw as f64 / 1e6,
            delta as f64 / raw as f64,
            delta as f64 / target as f64
        );
    }
    drop(echo);
    drop(emulator);
}

fn main() {
    let echo_mode = std::env::args().any(|a| a == "--echo-server");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if echo_mode {
        rt.block_on(echo_server());
    } else if std::env::args().any(|a| a == "--bench") {
        rt.block_on(bench());
    }
}
