//! Both adapters side by side over one broker and one emulator, against the raw MQTT
//! request/reply round trip measured in the same run (see the crate documentation).
//!
//! `cargo bench -p leasedlock-adapter-bench --bench side_by_side`. Without
//! `LEASEDLOCK_TEST_BROKER` a private Mosquitto is started on a free port. Samples:
//! `LEASEDLOCK_BENCH_ITERS` (default 1000) per request measure, a tenth of that (at least 20)
//! per handover measure; taken in `LEASEDLOCK_BENCH_ROUNDS` (default 5) interleaved rounds, the
//! first tenth of each measure discarded as warm-up.

use std::time::Duration;

use leasedlock_adapter_bench::echo::Echo;
use leasedlock_adapter_bench::measure::{versus, Recorder, Table};
use leasedlock_adapter_bench::sides::{async_std_leases, async_std_side, tokio_leases, tokio_side};
use leasedlock_adapter_bench::world::World;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Recorders of one adapter.
struct Lane {
    get: Recorder,
    acquire: Recorder,
    cycle: Recorder,
    unlock: Recorder,
    handover: Recorder,
    handover_jitter: Recorder,
}

impl Lane {
    fn new(iters: usize, handovers: usize) -> Lane {
        let (w, h) = (iters / 10, handovers / 10);
        Lane {
            get: Recorder::new(w),
            acquire: Recorder::new(w),
            cycle: Recorder::new(w),
            unlock: Recorder::new(h),
            handover: Recorder::new(h),
            handover_jitter: Recorder::new(h),
        }
    }

    fn rows(&self, table: &mut Table, adapter: &str) {
        table.row(&format!("{adapter}: GET"), self.get.summary());
        table.row(&format!("{adapter}: lease acquire"), self.acquire.summary());
        table.row(
            &format!("{adapter}: lease acquire + release"),
            self.cycle.summary(),
        );
        table.row(
            &format!("{adapter}: unlock (holder)"),
            self.unlock.summary(),
        );
        table.row(
            &format!("{adapter}: lock handover (no jitter)"),
            self.handover.summary(),
        );
        table.row(
            &format!("{adapter}: lock handover (default jitter)"),
            self.handover_jitter.summary(),
        );
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
    let tokio_client = rt.block_on(tokio_side::Side::start(&world));
    let tokio_locks = rt.block_on(tokio_leases::Leases::start(&world));
    let async_std_client = async_std::task::block_on(async_std_side::Side::start(&world));
    let async_std_locks = async_std::task::block_on(async_std_leases::Leases::start(&world));

    let mut raw = Recorder::new(iters / 10);
    let mut tokio_lane = Lane::new(iters, handovers);
    let mut async_std_lane = Lane::new(iters, handovers);
    for _ in 0..rounds {
        rt.block_on(async {
            for _ in 0..per_round {
                raw.push(echo.round_trip().await);
            }
            for _ in 0..per_round {
                tokio_lane.get.push(tokio_client.get().await);
            }
            for _ in 0..per_round {
                let (acquire, cycle) = tokio_locks.acquire_release().await;
                tokio_lane.acquire.push(acquire);
                tokio_lane.cycle.push(cycle);
            }
            for _ in 0..handovers_per_round {
                let (handover, unlock) = tokio_locks.handover(Some(Duration::ZERO)).await;
                tokio_lane.handover.push(handover);
                tokio_lane.unlock.push(unlock);
                let (handover, _) = tokio_locks.handover(None).await;
                tokio_lane.handover_jitter.push(handover);
            }
        });
        async_std::task::block_on(async {
            for _ in 0..per_round {
                async_std_lane.get.push(async_std_client.get().await);
            }
            for _ in 0..per_round {
                let (acquire, cycle) = async_std_locks.acquire_release().await;
                async_std_lane.acquire.push(acquire);
                async_std_lane.cycle.push(cycle);
            }
            for _ in 0..handovers_per_round {
                let (handover, unlock) = async_std_locks.handover(Some(Duration::ZERO)).await;
                async_std_lane.handover.push(handover);
                async_std_lane.unlock.push(unlock);
                let (handover, _) = async_std_locks.handover(None).await;
                async_std_lane.handover_jitter.push(handover);
            }
        });
    }

    let Some(baseline) = raw.summary() else {
        eprintln!("no baseline samples");
        return;
    };
    let mut table = Table::new("raw MQTT request/reply (echo)", baseline);
    tokio_lane.rows(&mut table, "tokio");
    async_std_lane.rows(&mut table, "async-std");
    println!("{}", table.render());
    println!("async-std relative to tokio:");
    for (measure, a, b) in [
        ("GET", &tokio_lane.get, &async_std_lane.get),
        (
            "lease acquire",
            &tokio_lane.acquire,
            &async_std_lane.acquire,
        ),
        (
            "lease acquire + release",
            &tokio_lane.cycle,
            &async_std_lane.cycle,
        ),
        (
            "unlock (holder)",
            &tokio_lane.unlock,
            &async_std_lane.unlock,
        ),
        (
            "lock handover (no jitter)",
            &tokio_lane.handover,
            &async_std_lane.handover,
        ),
        (
            "lock handover (default jitter)",
            &tokio_lane.handover_jitter,
            &async_std_lane.handover_jitter,
        ),
    ] {
        if let Some(line) = versus(measure, a.summary(), b.summary()) {
            println!("{line}");
        }
    }

    rt.block_on(async {
        tokio_client.close().await;
        tokio_locks.close().await;
    });
    async_std::task::block_on(async {
        async_std_client.close().await;
        async_std_locks.close().await;
    });
    drop(rt);
    drop(world);
}
