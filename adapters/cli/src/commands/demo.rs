//! `leasedlock demo`: N contenders take turns on one lock, each doing fenced writes to a
//! protected key while it holds it; one holder is killed mid-hold (its connection cut, nothing
//! released) to show the failover; a live view and a closing summary report handovers, their
//! latency, the failover time, overlaps and whether tokens strictly increased. With
//! `--timeline FILE` the run is also drawn as an SVG picture.

use std::cell::Cell;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use leasedlock_core::command::ServiceError;
use leasedlock_tokio::{
    Connection, DelOptions, Hlc, Lock, LockError, LockOptions, SetOptions, StateStore, StoreError,
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::args::{DemoArgs, GlobalOptions};
use crate::commands::common::Report;
use crate::commands::connect::{connect_to, Failure, RenewPlan};
use crate::commands::demo_board::{short_token, Board, Event, Phase};
use crate::commands::demo_timeline;
use crate::commands::hold_events::renewal_check_interval;
use crate::commands::stack::Stack;
use crate::duration::format_duration;
use crate::exit;
use crate::logging::use_colour;
use crate::stats::round_ms;

/// The keys of one demo run (namespaced by process id, so runs against a shared store do not
/// meet).
struct Keys {
    lock: String,
    protected: String,
}

/// What every contender shares.
struct Shared {
    board: Mutex<Board>,
    events: mpsc::UnboundedSender<(Duration, Event)>,
    crash_armed: AtomicBool,
    keys: Keys,
    ttl: Duration,
    hold: Duration,
    deadline: Instant,
    lock_options: LockOptions,
}

impl Shared {
    fn board(&self) -> MutexGuard<'_, Board> {
        // A contender that panicked while holding the board leaves it usable: the numbers it
        // holds are still the truth so far.
        self.board
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, at: Duration, events: Vec<Event>) {
        for event in events {
            let _ = self.events.send((at, event));
        }
    }
}

fn name(who: usize) -> String {
    format!("demo-{who}")
}

/// Runs the demo and prints the summary; exit 0 when no invariant was violated.
pub async fn run(global: &GlobalOptions, args: &DemoArgs, report: Report) -> Result<u8, Failure> {
    let plan =
        RenewPlan::new(args.ttl, None, global.request_timeout()).map_err(|f| f.context("--ttl"))?;
    // Created before the run, so that a path that cannot be written fails at once.
    let timeline = match &args.timeline {
        Some(path) => Some(File::create(path).map_err(|e| {
            Failure::new(
                exit::USAGE,
                format!("--timeline {}: cannot create it: {e}", path.display()),
            )
        })?),
        None => None,
    };
    let stack = Stack::start(global).await?;
    let result = run_on(&stack, global, args, plan, report, timeline).await;
    stack.stop().await;
    result
}

async fn run_on(
    stack: &Stack,
    global: &GlobalOptions,
    args: &DemoArgs,
    plan: RenewPlan,
    report: Report,
    timeline: Option<File>,
) -> Result<u8, Failure> {
    let clients = usize::try_from(args.clients).unwrap_or(2);
    let seconds = Duration::from_secs(u64::from(args.seconds));
    let run_id = std::process::id();
    let keys = Keys {
        lock: format!("leasedlock-demo/{run_id}/lock"),
        protected: format!("leasedlock-demo/{run_id}/protected"),
    };

    let mut connections = Vec::with_capacity(clients);
    for who in 0..clients {
        let id = format!("leasedlock-demo-{run_id}-{who}");
        connections.push(connect_to(global, &stack.addr, &id, plan.timeout).await?);
    }
    let observer = connect_to(
        global,
        &stack.addr,
        &format!("leasedlock-demo-{run_id}-check"),
        plan.timeout,
    )
    .await?;

    let view = View::new(report, args, stack);
    view.intro();
    let started = Instant::now();
    let (events, mut event_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        board: Mutex::new(Board::new(started, clients)),
        events,
        crash_armed: AtomicBool::new(false),
        keys,
        ttl: args.ttl,
        hold: args.hold,
        deadline: started + seconds,
        lock_options: LockOptions::new()
            .acquire(plan.acquire_options())
            // Few waiters: a small jitter keeps handovers quick while still spreading retries.
            .max_jitter(Duration::from_millis(1)),
    });

    let mut tasks = Vec::with_capacity(clients);
    for (who, conn) in connections.into_iter().enumerate() {
        tasks.push(tokio::spawn(contender(who, conn, shared.clone())));
    }
    // Kill a holder a little before the middle, leaving time to watch the failover.
    let crash_at = seconds.mul_f64(0.4);

    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut armed = false;
    let wait_all = async {
        let mut failures = Vec::new();
        for task in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(f)) => failures.push(f),
                Err(e) => failures.push(Failure::new(exit::NO, format!("a contender failed: {e}"))),
            }
        }
        failures
    };
    tokio::pin!(wait_all);
    let failures = loop {
        tokio::select! {
            failures = &mut wait_all => break failures,
            Some((at, event)) = event_rx.recv() => view.event(at, &event),
            _ = ticker.tick() => {
                let elapsed = started.elapsed();
                if !armed && elapsed >= crash_at {
                    armed = true;
                    shared.crash_armed.store(true, Ordering::SeqCst);
                }
                view.status(&shared.board(), elapsed, seconds);
            }
        }
    };
    while let Ok((at, event)) = event_rx.try_recv() {
        view.event(at, &event);
    }
    view.clear_status();

    // The killed holder's token is stale now: the store must refuse a write made with it.
    let crashed = shared.board().crashed.clone();
    let stale_write_rejected = match &crashed {
        Some((who, token)) => {
            let rejected =
                stale_write_rejected(&observer.state_store(), &shared.keys.protected, token).await;
            if rejected {
                shared.board().write_refused(*who, true, Instant::now());
            }
            Some(rejected)
        }
        None => None,
    };
    if !stack.is_embedded() {
        // On a shared store, leave nothing behind (the protected key carries a fencing token).
        let mut options = DelOptions::new().timeout(plan.timeout);
        if let Some(token) = shared.board().last_token().cloned() {
            options = options.fencing_token(token);
        }
        let _ = observer
            .state_store()
            .del(shared.keys.protected.clone(), &options)
            .await;
    }
    observer.close().await;

    for failure in &failures {
        report.error(&failure.message);
    }
    let board = shared.board().clone();
    let mut passed = board.passed() && stale_write_rejected != Some(false) && failures.is_empty();
    if let (Some(file), Some(path)) = (timeline, &args.timeline) {
        let title = format!(
            "leasedlock demo: {} contenders, {} s, {} lease, {} hold",
            args.clients,
            args.seconds,
            format_duration(args.ttl),
            format_duration(args.hold)
        );
        let picture = demo_timeline::render(&board.timeline(title, name, Instant::now()));
        if let Err(e) = write_timeline(file, &picture) {
            report.error(&format!(
                "--timeline {}: cannot write it: {e}",
                path.display()
            ));
            passed = false;
        }
    }
    view.summary(&board, args, stale_write_rejected, passed);
    Ok(if passed { exit::OK } else { exit::NO })
}

fn write_timeline(mut file: File, picture: &str) -> std::io::Result<()> {
    file.write_all(picture.as_bytes())?;
    file.sync_all()
}

/// One contender: lock, fenced write, hold, fenced write, unlock, rest; until the deadline. The
/// one that finds the crash armed right after acquiring dies there, holding the lock.
async fn contender(who: usize, conn: Connection, shared: Arc<Shared>) -> Result<(), Failure> {
    let lock = conn.lock(shared.keys.lock.clone())?;
    let store = conn.state_store();
    let mut writes = 0u64;
    loop {
        let remaining = shared.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let options = shared.lock_options.clone().wait_timeout(remaining);
        shared.board().waiting(who);
        let token = match lock.lock(shared.ttl, &options).await {
            Ok(token) => token,
            Err(LockError::Timeout) => break,
            Err(e) => {
                conn.close().await;
                return Err(Failure::from(e).context(&format!("{} lock", name(who))));
            }
        };
        let now = Instant::now();
        let events = {
            let mut board = shared.board();
            let events = board.acquired(who, token.clone(), lock.safe_until(), now);
            (board.elapsed(now), events)
        };
        shared.emit(events.0, events.1);
        fenced_write(&shared, &store, who, &mut writes, &token).await;

        if shared.crash_armed.swap(false, Ordering::SeqCst) {
            let now = Instant::now();
            let events = {
                let mut board = shared.board();
                let events = board.crashing(who, now);
                (board.elapsed(now), events)
            };
            // As a crash: no release, no DISCONNECT; the lease has to expire on the store.
            conn.abort();
            lock.detach();
            shared.emit(events.0, events.1);
            return Ok(());
        }

        hold(&lock, &shared, who).await;
        fenced_write(&shared, &store, who, &mut writes, &token).await;
        shared.board().releasing(who, Instant::now());
        if let Err(e) = lock.unlock().await {
            conn.close().await;
            return Err(Failure::from(e).context(&format!("{} unlock", name(who))));
        }
        // Step back for as long as a hold, so that a waiting contender takes its turn.
        tokio::time::sleep(shared.hold).await;
    }
    shared.board().done(who);
    lock.detach();
    conn.close().await;
    Ok(())
}

/// Keeps the lock for `shared.hold` (renewing goes on in the background), noting on the board
/// each renewal, seen as a later safe end, for the live view and the timeline.
async fn hold(lock: &Lock, shared: &Shared, who: usize) {
    let until = tokio::time::Instant::now() + shared.hold;
    let every = renewal_check_interval(shared.ttl);
    let mut last = lock.safe_until();
    loop {
        let now = tokio::time::Instant::now();
        if now >= until {
            break;
        }
        tokio::time::sleep_until(until.min(now + every)).await;
        let safe_until = lock.safe_until();
        if let (Some(new), Some(old)) = (safe_until, last) {
            if is_renewal(old, new, shared.ttl) {
                shared.board().renewed(who, new, Instant::now());
            }
        }
        last = safe_until.or(last);
    }
}

/// Whether the safe end moving from `old` to `new` is a renewal. The lock converts its safe end
/// to `Instant` at each call (it is kept on a clock that counts through suspend), so it wobbles
/// by microseconds between calls; a renewal moves it by its interval, a sizeable part of the
/// lease, so anything under a twentieth of the lease is taken for that wobble.
fn is_renewal(old: Instant, new: Instant, ttl: Duration) -> bool {
    new.saturating_duration_since(old) > ttl / 20
}

async fn fenced_write(
    shared: &Shared,
    store: &StateStore,
    who: usize,
    writes: &mut u64,
    token: &Hlc,
) {
    *writes += 1;
    let value = format!("{} write {}", name(who), writes);
    let options = SetOptions::new().fencing_token(token.clone());
    let result = store
        .set(shared.keys.protected.clone(), value, &options)
        .await;
    let mut board = shared.board();
    match result {
        Ok(r) if r.applied => board.fenced_writes += 1,
        Err(StoreError::Service(ServiceError::FencingTokenLowerVersion)) => {
            board.write_refused(who, false, Instant::now())
        }
        // Timeouts and other transient failures are neither a success nor a violation.
        _ => {}
    }
}

/// The live table at `elapsed` of `total`: a header with the counters, then one row per
/// contender with its state, token and time left until its safe end (`now` is the moment of
/// `elapsed`).
fn table(board: &Board, elapsed: Duration, total: Duration, now: Instant) -> Vec<String> {
    let mut lines = vec![
        format!(
            "  {:>6.2}s of {}s   handovers {}   overlaps {}   refused writes {}",
            elapsed.as_secs_f64(),
            total.as_secs(),
            board.handovers,
            board.overlaps,
            board.fenced_rejected
        ),
        format!(
            "  {:<10} {:<8} {:<18} {}",
            "contender", "state", "token", "safe for"
        ),
    ];
    for (who, c) in board.contenders.iter().enumerate() {
        let token = c.token.as_ref().map(short_token).unwrap_or_default();
        let safe = match (c.phase, c.safe_until) {
            (Phase::Holding | Phase::Killed, Some(until)) => {
                match until.checked_duration_since(now) {
                    Some(left) if c.phase == Phase::Killed => {
                        format!("{:.2}s (its lease runs out)", left.as_secs_f64())
                    }
                    Some(left) => format!("{:.2}s", left.as_secs_f64()),
                    None => "expired".into(),
                }
            }
            _ => String::new(),
        };
        let line = format!(
            "  {:<10} {:<8} {token:<18} {safe}",
            name(who),
            c.phase.as_str()
        );
        lines.push(line.trim_end().to_string());
    }
    lines
}

async fn stale_write_rejected(store: &StateStore, key: &str, stale: &Hlc) -> bool {
    let options = SetOptions::new().fencing_token(stale.clone());
    matches!(
        store
            .set(
                key.to_string(),
                "a write with the killed holder's token",
                &options
            )
            .await,
        Err(StoreError::Service(ServiceError::FencingTokenLowerVersion))
    )
}

/// The live view on stderr and the summary on stdout. The live view is a table, one row per
/// contender (state, token, time left until its safe end), between event lines: redrawn in
/// place on a terminal, printed as plain lines once a second otherwise (and with `NO_COLOR`,
/// which rules out cursor movement as much as colour).
struct View {
    report: Report,
    /// Redraw the table in place (ANSI cursor movement).
    live: bool,
    events: bool,
    /// Lines of the table now on screen (live only).
    drawn: Cell<usize>,
    /// The next whole second at which the plain table is printed (not live).
    next_plain: Cell<Duration>,
    clients: u32,
    ttl: Duration,
    embedded: bool,
    broker: String,
}

impl View {
    fn new(report: Report, args: &DemoArgs, stack: &Stack) -> View {
        let ansi = use_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        );
        View {
            report,
            live: ansi && !report.is_json(),
            events: !report.is_json(),
            drawn: Cell::new(0),
            next_plain: Cell::new(Duration::from_secs(1)),
            clients: args.clients,
            ttl: args.ttl,
            embedded: stack.is_embedded(),
            broker: stack.addr.to_string(),
        }
    }

    fn intro(&self) {
        if !self.events {
            return;
        }
        let place = if self.embedded {
            format!(
                "embedded MQTT 5 broker and state-store emulator on {}",
                self.broker
            )
        } else {
            format!("the state store behind {}", self.broker)
        };
        eprintln!(
            "leasedlock demo: {} contenders take turns on one lock ({} lease), each doing fenced \
             writes while it holds it; one holder will be killed mid-hold.\n  using the {place}",
            self.clients,
            format_duration(self.ttl)
        );
    }

    fn event(&self, at: Duration, event: &Event) {
        if !self.events {
            return;
        }
        let text = match event {
            Event::Crashed { who } => format!(
                "KILLED {} while it held the lock: no release; the others wait for its lease to expire",
                name(*who)
            ),
            Event::FailedOver { who, after } => format!(
                "FAILOVER {} took the lock {} ms after the kill",
                name(*who),
                after.as_millis()
            ),
            Event::Overlap { who, other } => format!(
                "OVERLAP {} acquired while {} still held the lock",
                name(*who),
                name(*other)
            ),
            Event::TokenNotIncreasing { who } => {
                format!("TOKEN {} got a token not above the previous one", name(*who))
            }
        };
        // The event line goes where the table was; the next tick draws the table below it.
        self.clear_status();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "  {:>6.2}s  {text}", at.as_secs_f64());
    }

    fn status(&self, board: &Board, elapsed: Duration, total: Duration) {
        if !self.events {
            return;
        }
        if !self.live {
            if elapsed < self.next_plain.get() {
                return;
            }
            self.next_plain
                .set(self.next_plain.get() + Duration::from_secs(1));
        }
        let lines = table(board, elapsed, total, Instant::now());
        let mut err = std::io::stderr().lock();
        if self.live {
            // Back to the table's first line, each line cleared as it is rewritten.
            let up = self.drawn.get();
            if up > 0 {
                let _ = write!(err, "\x1b[{up}F");
            }
            for line in &lines {
                let _ = writeln!(err, "\x1b[K{line}");
            }
            let _ = write!(err, "\x1b[J");
            self.drawn.set(lines.len());
        } else {
            for line in &lines {
                let _ = writeln!(err, "{line}");
            }
        }
        let _ = err.flush();
    }

    /// Erases the table from the terminal (nothing to do for plain lines).
    fn clear_status(&self) {
        let up = self.drawn.replace(0);
        if self.live && up > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b[{up}F\x1b[J");
            let _ = err.flush();
        }
    }

    fn summary(
        &self,
        board: &Board,
        args: &DemoArgs,
        stale_write_rejected: Option<bool>,
        passed: bool,
    ) {
        let p50 = board.handover_latency.percentile_ms(0.5).map(round_ms);
        let p99 = board.handover_latency.percentile_ms(0.99).map(round_ms);
        let failover_ms = board.failover.map(|d| round_ms(d.as_secs_f64() * 1e3));
        if self.report.is_json() {
            self.report.json(&json!({
                "clients": args.clients,
                "seconds": args.seconds,
                "ttl_ms": args.ttl.as_millis() as u64,
                "embedded_broker": self.embedded,
                "acquisitions": board.acquisitions,
                "handovers": board.handovers,
                "handover_ms_p50": p50,
                "handover_ms_p99": p99,
                "failover_ms": failover_ms,
                "overlaps": board.overlaps,
                "tokens_strictly_increasing": board.tokens_strictly_increasing,
                "fenced_writes": board.fenced_writes,
                "fenced_writes_rejected": board.fenced_rejected,
                "stale_write_rejected": stale_write_rejected,
                "passed": passed,
            }));
            return;
        }
        let ms = |v: Option<f64>| {
            v.map(|v| format!("{v:.2} ms"))
                .unwrap_or_else(|| "n/a".into())
        };
        let yes = |ok: bool| if ok { "yes" } else { "NO" };
        let lines = [
            format!(
                "leasedlock demo: {} contenders, {} s, {} lease",
                args.clients,
                args.seconds,
                format_duration(args.ttl)
            ),
            format!("  acquisitions                 {}", board.acquisitions),
            format!("  handovers                    {}", board.handovers),
            format!("  handover latency p50 / p99   {} / {}", ms(p50), ms(p99)),
            format!(
                "  failover after the kill      {}  (bounded by the {} lease)",
                ms(failover_ms),
                format_duration(args.ttl)
            ),
            format!("  fenced writes accepted       {}", board.fenced_writes),
            format!(
                "  holder writes refused        {}  (must be 0)",
                board.fenced_rejected
            ),
            format!(
                "  killed holder's token        {}",
                match stale_write_rejected {
                    Some(true) => "refused by the store, as it must be",
                    Some(false) => "ACCEPTED: fencing failed",
                    None => "n/a (nobody was killed)",
                }
            ),
            format!(
                "  overlaps                     {}  (must be 0)",
                board.overlaps
            ),
            format!(
                "  tokens strictly increasing   {}",
                yes(board.tokens_strictly_increasing)
            ),
            format!(
                "  result                       {}",
                if passed { "PASS" } else { "FAIL" }
            ),
        ];
        for line in lines {
            self.report.line(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_is_a_safe_end_moved_by_more_than_a_wobble() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(1);
        assert!(is_renewal(t0, t0 + Duration::from_millis(333), ttl));
        assert!(!is_renewal(t0, t0 + Duration::from_micros(40), ttl));
        assert!(!is_renewal(t0, t0, ttl));
        assert!(!is_renewal(t0 + Duration::from_millis(300), t0, ttl));
    }

    #[test]
    fn the_live_table_has_a_row_per_contender_with_state_token_and_time_left() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let token = |c| Hlc::new(1_700_000_000_000, c, "n").expect("valid hlc");
        let mut board = Board::new(t0, 3);
        board.acquired(0, token(1), Some(ms(950)), ms(0));
        board.crashing(0, ms(100));
        board.acquired(1, token(2), Some(ms(2_000)), ms(1_100));
        let lines = table(
            &board,
            Duration::from_millis(1_200),
            Duration::from_secs(10),
            ms(1_200),
        );
        assert_eq!(lines.len(), 2 + 3, "{lines:#?}");
        assert!(lines[0].contains("1.20s of 10s"), "{}", lines[0]);
        assert_eq!(lines[2], "  demo-0     KILLED   1700000000000:1    expired");
        assert_eq!(lines[3], "  demo-1     holding  1700000000000:2    0.80s");
        assert_eq!(lines[4], "  demo-2     waiting");
        let lines = table(
            &board,
            Duration::from_millis(500),
            Duration::from_secs(10),
            ms(500),
        );
        assert!(
            lines[2].ends_with("0.45s (its lease runs out)"),
            "{}",
            lines[2]
        );
    }
}
