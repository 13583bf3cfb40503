//! Cost as the work grows: one tokio connection holding N auto-renewed leases.
//!
//! `cargo bench -p leasedlock-adapter-bench --bench scale`. For each N (`LEASEDLOCK_SCALE_N`,
//! default `1,100,1000,10000`) a fresh process connects once, acquires N leases one after
//! another (lease 4 s, renew every 1 s, request timeout 2 s) and holds them for
//! `LEASEDLOCK_SCALE_HOLD_SECS` (default 10) seconds. The emulator runs in its own process
//! and the broker is a private Mosquitto (or `LEASEDLOCK_TEST_BROKER`, e.g. from
//! `bash scripts/mosquitto.sh start-free`), so the client process's CPU time and resident
//! memory are the client's alone.
//!
//! Renewals are observed from outside the adapter: a sampler thread reads every lease's
//! `safe_until` five times a second. `safe_until` is the renewal's send time plus a constant,
//! so the difference between two successive values is the time between two renewals exactly,
//! and anything above the 1 s interval is that renewal's lateness. The sampler's own CPU time
//! is subtracted from the client's.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leasedlock_adapter_bench::measure::Summary;
use leasedlock_adapter_bench::process::{cpu_of_pid, process_cpu, resident_bytes, thread_cpu};
use leasedlock_adapter_bench::world::client_id;
use leasedlock_scenarios::PrivateBroker;
use leasedlock_tokio::{AcquireOptions, Connection, ConnectionOptions, Lease};

const LEASE: Duration = Duration::from_secs(4);
const RENEW: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// Set in the emulator child: the broker address it serves.
const EMULATOR_ENV: &str = "LEASEDLOCK_SCALE_EMULATOR";
/// Set in a client child: how many leases it holds.
const CLIENT_ENV: &str = "LEASEDLOCK_SCALE_CLIENT";
/// Set in a client child: the broker address.
const BROKER_ENV: &str = "LEASEDLOCK_SCALE_BROKER";

fn main() {
    if let Ok(address) = std::env::var(EMULATOR_ENV) {
        return run_emulator(&address);
    }
    if let Ok(n) = std::env::var(CLIENT_ENV) {
        let n: usize = n.parse().expect("lease count");
        let address = std::env::var(BROKER_ENV).expect("broker address");
        return run_client(n, &address);
    }
    run_parent();
}

fn split(address: &str) -> (String, u16) {
    let (host, port) = address.rsplit_once(':').expect("host:port");
    (host.to_string(), port.parse().expect("port"))
}

/// The emulator process: serves the broker until its stdin closes.
fn run_emulator(address: &str) {
    let (host, port) = split(address);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("emulator runtime");
    rt.block_on(async {
        let mut config = leasedlock_emulator::EmulatorConfig::new(host, port);
        config.client_id = client_id("scale-emulator");
        let emulator = leasedlock_emulator::Emulator::start(config)
            .await
            .expect("emulator starts");
        println!("ready");
        std::io::stdout().flush().expect("stdout");
        // The parent closes stdin to stop us.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0) {
                line.clear();
            }
        })
        .await
        .expect("stdin watcher");
        emulator.shutdown().await;
    });
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn hold_secs() -> u64 {
    env_or("LEASEDLOCK_SCALE_HOLD_SECS", "10")
        .parse()
        .expect("LEASEDLOCK_SCALE_HOLD_SECS")
}

fn run_parent() {
    let counts: Vec<usize> = env_or("LEASEDLOCK_SCALE_N", "1,100,1000,10000")
        .split(',')
        .map(|n| n.trim().parse().expect("LEASEDLOCK_SCALE_N: counts"))
        .collect();
    let (_broker, address) = match std::env::var("LEASEDLOCK_TEST_BROKER") {
        Ok(a) => (None, a),
        Err(_) => {
            let b = PrivateBroker::start();
            let a = format!("127.0.0.1:{}", b.port());
            (Some(b), a)
        }
    };
    let exe = std::env::current_exe().expect("own path");
    let mut emulator = Command::new(&exe)
        .env(EMULATOR_ENV, &address)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("emulator process");
    let mut ready = String::new();
    BufReader::new(emulator.stdout.take().expect("emulator stdout"))
        .read_line(&mut ready)
        .expect("emulator says ready");
    assert_eq!(ready.trim(), "ready", "emulator did not start");

    println!(
        "one tokio connection, N leases (lease {LEASE:?}, renew {RENEW:?}, request timeout \
         {REQUEST_TIMEOUT:?}), held {} s; broker {address}",
        hold_secs()
    );
    println!("{}", Report::header());
    for n in counts {
        let emulator_before = cpu_of_pid(emulator.id());
        let out = Command::new(&exe)
            .env(CLIENT_ENV, n.to_string())
            .env(BROKER_ENV, &address)
            .stderr(Stdio::inherit())
            .output()
            .expect("client process");
        let emulator_cpu = cpu_of_pid(emulator.id())
            .zip(emulator_before)
            .map(|(a, b)| a.saturating_sub(b));
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().last() {
            Some(line) if out.status.success() => println!(
                "{line} {:>9}",
                emulator_cpu.map_or("n/a".into(), |d| format!("{:.2}", d.as_secs_f64()))
            ),
            _ => println!("N = {n}: client failed ({}): {text}", out.status),
        }
    }
    stop(emulator);
}

fn stop(mut emulator: Child) {
    drop(emulator.stdin.take());
    let _ = emulator.wait();
}

/// One client run's results.
struct Report {
    n: usize,
    acquired: usize,
    acquire_all: Duration,
    acquire_cpu: Option<Duration>,
    client_cpu: Option<Duration>,
    renewals: usize,
    bytes_per_lease: Option<f64>,
    held_at_end: usize,
    lateness: Option<Summary>,
    late_over_half_second: usize,
}

fn fmt_opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or("n/a".to_string(), f)
}

impl Report {
    fn header() -> String {
        format!(
            "{:>6} {:>8} {:>10} {:>10} {:>9} {:>8} {:>9} {:>9} {:>6} {:>9} {:>9} {:>6} {:>9}",
            "N",
            "acquired",
            "acquire ms",
            "acq cpu s",
            "cpu s",
            "renewals",
            "µs/renew",
            "B/lease",
            "held",
            "late p50",
            "late p99",
            ">0.5s",
            "emu cpu s"
        )
    }

    fn line(&self) -> String {
        let per_renewal = self
            .client_cpu
            .filter(|_| self.renewals > 0)
            .map(|c| c.as_secs_f64() * 1e6 / self.renewals as f64);
        format!(
            "{:>6} {:>8} {:>10.1} {:>10} {:>9} {:>8} {:>9} {:>9} {:>6} {:>9} {:>9} {:>6}",
            self.n,
            self.acquired,
            self.acquire_all.as_secs_f64() * 1e3,
            fmt_opt(self.acquire_cpu, |c| format!("{:.2}", c.as_secs_f64())),
            fmt_opt(self.client_cpu, |c| format!("{:.2}", c.as_secs_f64())),
            self.renewals,
            fmt_opt(per_renewal, |c| format!("{c:.1}")),
            fmt_opt(self.bytes_per_lease, |b| format!("{b:.0}")),
            self.held_at_end,
            fmt_opt(self.lateness, |s| format!("{:.1}ms", s.p50 / 1e3)),
            fmt_opt(self.lateness, |s| format!("{:.1}ms", s.p99 / 1e3)),
            self.late_over_half_second,
        )
    }
}

/// What the sampler thread saw.
struct Sampled {
    renewals: usize,
    lateness: Vec<Duration>,
    own_cpu: Option<Duration>,
}

/// Reads every lease's `safe_until` every [`SAMPLE_EVERY`] until `stop`; each change is one
/// renewal, and the change's size minus the renew interval its lateness.
fn sample(leases: Arc<Vec<Lease>>, stop: Arc<AtomicBool>) -> Sampled {
    let mut last: Vec<Option<Instant>> = leases.iter().map(Lease::safe_until).collect();
    let mut renewals = 0;
    let mut lateness = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(SAMPLE_EVERY);
        for (lease, last) in leases.iter().zip(last.iter_mut()) {
            let now = lease.safe_until();
            if let (Some(before), Some(after)) = (*last, now) {
                // The reading converts the adapter's clock to `Instant` anew each time, so it
                // wobbles by microseconds; a renewal moves it by about a whole interval.
                if after > before + RENEW / 2 {
                    renewals += 1;
                    lateness.push((after - before).saturating_sub(RENEW));
                }
            }
            if now.is_none_or(|n| last.is_none_or(|l| n > l + RENEW / 2 || n < l)) {
                *last = now;
            }
        }
    }
    Sampled {
        renewals,
        lateness,
        own_cpu: thread_cpu(),
    }
}

fn run_client(n: usize, address: &str) {
    let (host, port) = split(address);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    let report = rt.block_on(async move {
        let options = ConnectionOptions::new(host, port, client_id("scale-client"))
            .request_timeout(REQUEST_TIMEOUT);
        let conn = Connection::connect(options).await.expect("client connects");
        let prefix = client_id("scale-lease");
        let leases: Vec<Lease> = (0..n)
            .map(|i| conn.lease(format!("{prefix}-{i}")).expect("lease handle"))
            .collect();
        let acquire = AcquireOptions::new().renew(RENEW).timeout(REQUEST_TIMEOUT);
        let rss_before = resident_bytes();
        let acquire_cpu_before = process_cpu();
        let start = Instant::now();
        let mut acquired = 0;
        for lease in &leases {
            match lease.acquire(LEASE, &acquire).await {
                Ok(true) => acquired += 1,
                Ok(false) => eprintln!("a fresh lease was refused"),
                Err(e) => eprintln!("acquire failed: {e}"),
            }
        }
        let acquire_all = start.elapsed();
        let acquire_cpu = process_cpu()
            .zip(acquire_cpu_before)
            .map(|(a, b)| a.saturating_sub(b));
        let bytes_per_lease = resident_bytes()
            .zip(rss_before)
            .map(|(a, b)| a.saturating_sub(b) as f64 / n as f64);

        let leases = Arc::new(leases);
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_before = process_cpu();
        let sampler = {
            let (leases, stop) = (leases.clone(), stop.clone());
            std::thread::Builder::new()
                .name("scale-sampler".into())
                .spawn(move || sample(leases, stop))
                .expect("sampler thread")
        };
        tokio::time::sleep(Duration::from_secs(hold_secs())).await;
        stop.store(true, Ordering::Relaxed);
        let sampled = tokio::task::spawn_blocking(move || sampler.join().expect("sampler"))
            .await
            .expect("sampler join");
        let client_cpu = process_cpu()
            .zip(cpu_before)
            .map(|(a, b)| a.saturating_sub(b))
            .map(|c| c.saturating_sub(sampled.own_cpu.unwrap_or_default()));
        let held_at_end = leases.iter().filter(|l| l.is_held()).count();
        let late_over_half_second = sampled
            .lateness
            .iter()
            .filter(|l| **l > Duration::from_millis(500))
            .count();
        let report = Report {
            n,
            acquired,
            acquire_all,
            acquire_cpu,
            client_cpu,
            renewals: sampled.renewals,
            bytes_per_lease,
            held_at_end,
            lateness: Summary::of(&sampled.lateness),
            late_over_half_second,
        };
        conn.close().await;
        report
    });
    println!("{}", report.line());
}
