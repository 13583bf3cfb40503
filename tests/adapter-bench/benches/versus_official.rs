//! The tokio adapter against the official Rust SDK (`azure_iot_operations_services`): the same
//! emulator, the same broker, the same run, interleaved rounds, and the raw MQTT 5
//! request/reply round trip (a bare rumqttc echo) of the same run as the baseline.
//!
//! `cargo bench -p leasedlock-adapter-bench --bench versus_official`. Without
//! `LEASEDLOCK_TEST_BROKER` a private Mosquitto is started on a free port; the emulator runs in
//! this process. Samples: `LEASEDLOCK_BENCH_ITERS` (default 1000) per request measure, a tenth
//! of that (at least 20) per handover, in `LEASEDLOCK_BENCH_ROUNDS` (default 5) interleaved
//! rounds; the first tenth of each measure is discarded as warm-up.
//!
//! Both handovers use each library's defaults: for leasedlock a lone waiter attempts as soon as
//! it sees the DELETE (herd control starts only once attempts lose); the official lock loop
//! attempts on every DELETE and stops observing before `lock()` returns.

use leasedlock_adapter_bench::echo::Echo;
use leasedlock_adapter_bench::measure::{Recorder, Summary};
use leasedlock_adapter_bench::official::Official;
use leasedlock_adapter_bench::sides::tokio_leases;
use leasedlock_adapter_bench::world::World;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// One measure for both libraries.
struct Pair {
    name: &'static str,
    ours: Recorder,
    official: Recorder,
}

impl Pair {
    fn new(name: &'static str, warmup: usize) -> Pair {
        Pair {
            name,
            ours: Recorder::new(warmup),
            official: Recorder::new(warmup),
        }
    }

    fn line(&self, raw: &Summary) -> String {
        let (Some(a), Some(b)) = (self.ours.summary(), self.official.summary()) else {
            return format!("{:<24} no samples", self.name);
        };
        format!(
            "{:<24} {:>5} {:>9.1} {:>9.1} {:>7.2}x {:>9.1} {:>9.1} {:>7.2}x {:>7.2}x {:>7.2}x",
            self.name,
            a.n,
            a.p50,
            a.p99,
            a.p50 / raw.p50,
            b.p50,
            b.p99,
            b.p50 / raw.p50,
            a.p50 / b.p50,
            a.p99 / b.p99,
        )
    }
}

fn main() {
    let iters = env_usize("LEASEDLOCK_BENCH_ITERS", 1000);
    let rounds = env_usize("LEASEDLOCK_BENCH_ROUNDS", 5);
    let handovers = (iters / 10).max(20);
    let (per_round, handovers_per_round) = (iters.div_ceil(rounds), handovers.div_ceil(rounds));

    let world = World::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut echo = rt.block_on(Echo::start(&world));
    let ours = rt.block_on(tokio_leases::Leases::start(&world));
    let official = rt.block_on(Official::start(&world));

    let mut raw = Recorder::new(iters / 10);
    // Each handover starts after 30 ms of idleness (the waiter settling), which costs parked
    // threads a wake-up per hop: the round trip under the same condition.
    let mut raw_idle = Recorder::new(handovers / 10);
    let mut acquire = Pair::new("lease acquire", iters / 10);
    let mut cycle = Pair::new("acquire + release", iters / 10);
    let mut handover = Pair::new("lock handover", handovers / 10);
    rt.block_on(async {
        for _ in 0..rounds {
            for _ in 0..per_round {
                raw.push(echo.round_trip().await);
            }
            for _ in 0..per_round {
                let (a, c) = ours.acquire_release().await;
                acquire.ours.push(a);
                cycle.ours.push(c);
                let (a, c) = official.acquire_release().await;
                acquire.official.push(a);
                cycle.official.push(c);
            }
            for _ in 0..handovers_per_round {
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                raw_idle.push(echo.round_trip().await);
                handover.ours.push(ours.handover(None).await.0);
                handover.official.push(official.handover().await);
            }
        }
    });

    let Some(baseline) = raw.summary() else {
        eprintln!("no baseline samples");
        return;
    };
    println!(
        "raw MQTT request/reply (echo): n {} p50 {:.1} µs p99 {:.1} µs",
        baseline.n, baseline.p50, baseline.p99
    );
    if let Some(idle) = raw_idle.summary() {
        println!(
            "raw MQTT request/reply, each after 30 ms idle: n {} p50 {:.1} µs p99 {:.1} µs",
            idle.n, idle.p50, idle.p99
        );
        if let (Some(a), Some(b)) = (handover.ours.summary(), handover.official.summary()) {
            println!(
                "lock handover p50 / idle round trip p50: ours {:.2}x, SDK {:.2}x",
                a.p50 / idle.p50,
                b.p50 / idle.p50
            );
        }
    }
    println!(
        "{:<24} {:>5} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "measure (µs)",
        "n",
        "ours p50",
        "ours p99",
        "/raw",
        "SDK p50",
        "SDK p99",
        "/raw",
        "p50 ours/SDK",
        "p99"
    );
    for pair in [&acquire, &cycle, &handover] {
        println!("{}", pair.line(&baseline));
    }

    rt.block_on(async {
        ours.close().await;
        official.close().await;
    });
    drop(rt);
    drop(world);
}
