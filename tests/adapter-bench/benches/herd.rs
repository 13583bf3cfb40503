//! N waiters on one lock spread over M tokio connections: handover delay and SET attempts per
//! handover, over a real broker and emulator.
//!
//! `cargo bench -p leasedlock-adapter-bench --bench herd`. `LEASEDLOCK_HERD_WAITERS` (default
//! 100) lock handles, round robin over `LEASEDLOCK_HERD_CONNECTIONS` (default 10) connections,
//! each looping: `lock()`, hold 5 ms, `unlock()`, rest 20 ms (so the one that just unlocked
//! does not compete for the handover its unlock started), for `LEASEDLOCK_HERD_SECS` (default
//! 20) per variant, the first 2 s discarded. Variants, one after the other in the same run: the
//! lock defaults, and `max_jitter(0)` (every waiter attempts on every DELETE, like the official
//! clients' loop).
//!
//! A handover is the time from one holder's `unlock()` call to the next holder's `lock()`
//! returning. SET attempts are counted on the wire by a separate MQTT client subscribed to the
//! state store's request topic: every `SET` of the lock key between two acquisitions (this
//! includes the rested holder's own first attempt when it queues again, as in the simulator's
//! herd table).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leasedlock_adapter_bench::measure::Summary;
use leasedlock_adapter_bench::wire::is_set_of;
use leasedlock_adapter_bench::world::{client_id, World};
use leasedlock_tokio::{Connection, ConnectionOptions, LockOptions};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

const HOLD: Duration = Duration::from_millis(5);
const REST: Duration = Duration::from_millis(20);
const WARMUP: Duration = Duration::from_secs(2);
const TTL: Duration = Duration::from_secs(10);
const REQUEST_TOPIC: &str = "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Counts the SETs of `key` the broker delivers on the request topic.
async fn spy(world: &World, key: String, sets: Arc<AtomicU64>) -> AsyncClient {
    let mut options = MqttOptions::new(client_id("bench-herd-spy"), world.host(), world.port());
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    options.set_network_options(net);
    let (client, mut el) = AsyncClient::new(options, 4096);
    client
        .subscribe(REQUEST_TOPIC, QoS::AtMostOnce)
        .await
        .expect("spy subscribes");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if is_set_of(&p.payload, key.as_bytes()) {
                        sets.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    ready_rx.await.expect("spy SUBACK");
    client
}

/// What the waiters share: the last unlock, and the samples.
#[derive(Default)]
struct Book {
    unlocked_at: Option<Instant>,
    sets_at_last_lock: u64,
    delays: Vec<Duration>,
    sets: Vec<u64>,
    winners: std::collections::BTreeSet<usize>,
}

struct Row {
    handovers: usize,
    delay: Option<Summary>,
    sets_p50: u64,
    sets_p99: u64,
    sets_mean: f64,
    winners: usize,
}

async fn variant(
    world: &World,
    waiters: usize,
    connections: usize,
    run: Duration,
    options: LockOptions,
) -> Row {
    let name = client_id("bench-herd-lock");
    let sets = Arc::new(AtomicU64::new(0));
    let spy = spy(world, name.clone(), sets.clone()).await;
    let mut conns = Vec::new();
    for _ in 0..connections {
        let o = ConnectionOptions::new(world.host(), world.port(), client_id("bench-herd"))
            .request_timeout(Duration::from_secs(5));
        conns.push(Connection::connect(o).await.expect("connects"));
    }
    let book = Arc::new(Mutex::new(Book::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..waiters {
        let lock = conns[i % connections]
            .lock(name.clone())
            .expect("lock handle");
        let (book, stop, sets, options) =
            (book.clone(), stop.clone(), sets.clone(), options.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if lock.lock(TTL, &options).await.is_err() {
                    continue;
                }
                let got = Instant::now();
                {
                    let mut b = book.lock().unwrap_or_else(|p| p.into_inner());
                    let now_sets = sets.load(Ordering::Relaxed);
                    if let Some(released) = b.unlocked_at.take() {
                        if released.duration_since(start) >= WARMUP {
                            b.delays.push(got - released);
                            let since = now_sets - b.sets_at_last_lock;
                            b.sets.push(since);
                            b.winners.insert(i);
                        }
                    }
                    b.sets_at_last_lock = now_sets;
                }
                tokio::time::sleep(HOLD).await;
                {
                    let mut b = book.lock().unwrap_or_else(|p| p.into_inner());
                    b.unlocked_at = Some(Instant::now());
                }
                let _ = lock.unlock().await;
                tokio::time::sleep(REST).await;
            }
        }));
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    for c in &conns {
        c.close().await;
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = spy.disconnect().await;
    let mut b = book.lock().unwrap_or_else(|p| p.into_inner());
    let mut counts = std::mem::take(&mut b.sets);
    counts.sort_unstable();
    let rank = |q: f64| {
        let n = counts.len();
        counts
            .get(((q * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1)
            .copied()
            .unwrap_or(0)
    };
    Row {
        handovers: b.delays.len(),
        delay: Summary::of(&b.delays),
        sets_p50: rank(0.5),
        sets_p99: rank(0.99),
        sets_mean: counts.iter().sum::<u64>() as f64 / counts.len().max(1) as f64,
        winners: b.winners.len(),
    }
}

fn main() {
    let waiters = env_usize("LEASEDLOCK_HERD_WAITERS", 100);
    let connections = env_usize("LEASEDLOCK_HERD_CONNECTIONS", 10);
    let run = Duration::from_secs(env_usize("LEASEDLOCK_HERD_SECS", 20) as u64);
    let world = World::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "{waiters} waiters over {connections} connections, {} s per variant (first 2 s discarded)",
        run.as_secs()
    );
    println!(
        "{:<28} {:>9} {:>12} {:>12} {:>22} {:>8}",
        "variant", "handovers", "p50 ms", "p99 ms", "SETs/handover p50/p99 (mean)", "winners"
    );
    for (label, options) in [
        ("lock defaults", LockOptions::new()),
        (
            "max_jitter 0 (wake-all)",
            LockOptions::new().max_jitter(Duration::ZERO),
        ),
    ] {
        let row = rt.block_on(variant(&world, waiters, connections, run, options));
        let (p50, p99) = row
            .delay
            .map_or((f64::NAN, f64::NAN), |s| (s.p50 / 1e3, s.p99 / 1e3));
        println!(
            "{:<28} {:>9} {:>12.2} {:>12.2} {:>14} / {} ({:.1}) {:>8}",
            label, row.handovers, p50, p99, row.sets_p50, row.sets_p99, row.sets_mean, row.winners
        );
    }
    drop(rt);
    drop(world);
}
