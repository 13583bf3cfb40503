//! `leasedlock-faults-contender RUNTIME --port P --id ID --lock NAME --key KEY --log FILE
//! --ttl-ms T --hold-ms H --rounds N --keep-alive-ms K --deadline-ms D [--handles M]`
//!
//! A library client of the suite, on `tokio` or `async-std`: N times it takes the lock, and for
//! H ms it records a `HELD` heartbeat whenever its handle says the lock is held and makes a
//! fenced write to KEY with the current token, then releases. When it finds the lock lost, it
//! waits until another holder has written KEY and makes one more write fenced with its lost
//! token (a `STALE` record), which the store must refuse. Exit status 0 when every round ran,
//! 3 when the deadline passed first, 2 on bad arguments.
//!
//! With `--shorten-to-ms S`, it instead takes the lock once as a plain lease with no
//! auto-renew, records heartbeats and fenced writes while its handle says held, and as soon as
//! the file `LOG.shorten` exists re-acquires the held lease for only S ms (a manual renewal with
//! a shorter duration, whose reply the scenario keeps from coming back). Then, as above, one
//! stale write after a loss.
//!
//! With `--handles M` (default 1), M lock handles of the one connection do all that side by
//! side, each recording as `ID.i`: two handles of one connection must exclude each other exactly
//! as two processes do.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::future;

use leasedlock_api::{AcquireOptions, ConnectionOptions, Hlc, LockOptions, SetOptions, StoreError};
use leasedlock_core::command::ServiceError;
use leasedlock_faults::clock::now_ns;
use leasedlock_faults::record::{Log, Record, WriteOutcome};

/// How often a holder records that it holds the lock.
const BEAT: Duration = Duration::from_millis(5);
/// How long a holder pauses between fenced writes.
const WRITE_EVERY: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
struct Args {
    runtime: String,
    port: u16,
    id: String,
    lock: String,
    key: String,
    log: Log,
    ttl: Duration,
    hold: Duration,
    rounds: u32,
    keep_alive: Duration,
    deadline: Duration,
    handles: u32,
    shorten_to: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    let runtime = argv.next().ok_or("missing RUNTIME (tokio or async-std)")?;
    let mut flags = HashMap::new();
    while let Some(flag) = argv.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected `{flag}`"))?
            .to_string();
        let value = argv
            .next()
            .ok_or_else(|| format!("--{name} needs a value"))?;
        flags.insert(name, value);
    }
    let mut take = |name: &str| {
        flags
            .remove(name)
            .ok_or_else(|| format!("missing --{name}"))
    };
    let number = |name: &str, text: String| {
        text.parse::<u64>()
            .map_err(|_| format!("--{name} `{text}` is not a number"))
    };
    let ms = |name: &str, text: String| number(name, text).map(Duration::from_millis);
    let args = Args {
        port: u16::try_from(number("port", take("port")?)?).map_err(|_| "--port too large")?,
        id: take("id")?,
        lock: take("lock")?,
        key: take("key")?,
        log: Log::new(take("log")?),
        ttl: ms("ttl-ms", take("ttl-ms")?)?,
        hold: ms("hold-ms", take("hold-ms")?)?,
        rounds: u32::try_from(number("rounds", take("rounds")?)?)
            .map_err(|_| "--rounds too large")?,
        keep_alive: ms("keep-alive-ms", take("keep-alive-ms")?)?,
        deadline: ms("deadline-ms", take("deadline-ms")?)?,
        handles: match flags.remove("handles") {
            None => 1,
            Some(text) => u32::try_from(number("handles", text)?)
                .ok()
                .filter(|n| (1..=16).contains(n))
                .ok_or("--handles must be 1 to 16")?,
        },
        shorten_to: flags
            .remove("shorten-to-ms")
            .map(|text| ms("shorten-to-ms", text))
            .transpose()?,
        runtime,
    };
    if let Some(extra) = flags.keys().next() {
        return Err(format!("unknown --{extra}"));
    }
    Ok(args)
}

impl Args {
    /// Per-request timeout: a quarter of the lease, so renewals fit (ttl > renew + timeout +
    /// margin with renew = ttl/3 and the default margin).
    fn request_timeout(&self) -> Duration {
        self.ttl / 4
    }

    fn options(&self) -> ConnectionOptions {
        ConnectionOptions::new("127.0.0.1", self.port, self.id.clone())
            .keep_alive(self.keep_alive)
            .request_timeout(self.request_timeout())
            .connect_timeout(Duration::from_secs(10))
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
    }

    fn note(&self, text: impl Into<String>) {
        self.record(Record::Note {
            at: now_ns(),
            who: self.id.clone(),
            text: text.into(),
        });
    }

    fn record(&self, record: Record) {
        if let Err(e) = self.log.append(&record) {
            // Without its log the scenario cannot judge anything: stop loudly.
            eprintln!("{}: cannot write the log: {e}", self.id);
            std::process::exit(1);
        }
    }
}

/// Ran out of time.
struct DeadlinePassed;

/// One handle's rounds, boxed so several can be polled side by side.
type Rounds<'a> = Pin<Box<dyn Future<Output = Result<(), DeadlinePassed>> + 'a>>;

/// Every handle's rounds side by side on the one connection: handle `i` records as `ID.i` when
/// there are several, as `ID` when there is one.
async fn contend_all<S, F>(
    conn: &leasedlock_api::Connection,
    args: &Args,
    sleep: S,
) -> Result<(), DeadlinePassed>
where
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    if let Some(shorter) = args.shorten_to {
        return shorten(conn, args, shorter, &sleep).await;
    }
    if args.handles == 1 {
        return contend(conn, args, &sleep).await;
    }
    let per_handle: Vec<Args> = (0..args.handles)
        .map(|i| Args {
            id: format!("{}.{i}", args.id),
            ..args.clone()
        })
        .collect();
    let mut rounds: Vec<Option<Rounds<'_>>> = per_handle
        .iter()
        .map(|a| Some(Box::pin(contend(conn, a, &sleep)) as Rounds<'_>))
        .collect();
    let mut result = Ok(());
    std::future::poll_fn(|cx| {
        for slot in rounds.iter_mut() {
            if let Some(round) = slot {
                if let Poll::Ready(r) = round.as_mut().poll(cx) {
                    if r.is_err() {
                        result = Err(DeadlinePassed);
                    }
                    *slot = None;
                }
            }
        }
        if rounds.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    result
}

fn outcome_of(result: &Result<leasedlock_api::SetResult, StoreError>) -> WriteOutcome {
    match result {
        Ok(r) if r.applied => WriteOutcome::Applied,
        Ok(_) => WriteOutcome::Unknown("not-applied".into()),
        Err(StoreError::Service(ServiceError::FencingTokenLowerVersion)) => WriteOutcome::Refused,
        Err(e) => WriteOutcome::Unknown(e.to_string()),
    }
}

/// The rounds, on the runtime-independent half of either adapter's connection. `sleep` is the
/// runtime's timer.
async fn contend<S, F>(
    conn: &leasedlock_api::Connection,
    args: &Args,
    sleep: &S,
) -> Result<(), DeadlinePassed>
where
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let deadline = Instant::now() + args.deadline;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let store = conn.state_store();
    let acquire = AcquireOptions::new()
        .renew(args.ttl / 3)
        .timeout(args.request_timeout());
    for round in 0..args.rounds {
        let session = round.to_string();
        let lock = loop {
            if remaining().is_zero() {
                return Err(DeadlinePassed);
            }
            let lock = match conn.lock(args.lock.clone()) {
                Ok(l) => l,
                Err(e) => {
                    args.note(format!("lock handle: {e}"));
                    return Err(DeadlinePassed);
                }
            };
            let options = LockOptions::new()
                .acquire(acquire.clone())
                .wait_timeout(remaining());
            match lock.lock(args.ttl, &options).await {
                Ok(token) => {
                    args.note(format!("acquired round {round} token {token}"));
                    break lock;
                }
                Err(e) => {
                    args.note(format!("lock attempt failed: {e}"));
                    sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let hold_until = Instant::now() + args.hold;
        // Beats and writes run side by side, so a write waiting for its reply never leaves a
        // gap in the record of when this process believed it held the lock.
        let beats = async {
            let mut last = None;
            loop {
                // Stamp, then ask: the stamp precedes a moment the handle said "held".
                let at = now_ns();
                match lock.token() {
                    Ok(token) => {
                        args.record(Record::Held {
                            at,
                            who: args.id.clone(),
                            session: session.clone(),
                            token: token.clone(),
                            group: None,
                        });
                        last = Some(token);
                    }
                    Err(e) => {
                        args.note(format!("lost round {round}: {e}"));
                        return (true, last);
                    }
                }
                if Instant::now() >= hold_until {
                    return (false, last);
                }
                sleep(BEAT).await;
            }
        };
        let writes = fenced_writes(&store, args, round, || lock.token(), hold_until, sleep);
        let ((lost, last), ()) = future::zip(beats, writes).await;
        if !lost {
            match lock.unlock().await {
                Ok(outcome) => args.note(format!("released round {round}: {outcome:?}")),
                Err(e) => args.note(format!("release round {round} failed: {e}")),
            }
            continue;
        }
        drop(lock);
        if let Some(token) = last {
            stale_write(&store, args, token, sleep, deadline).await?;
        }
    }
    Ok(())
}

/// One write of `value` to the protected key fenced with `token`, recorded with its outcome
/// (`stale`: made on purpose with a lost token).
async fn fenced_write(
    store: &leasedlock_api::StateStore,
    args: &Args,
    value: String,
    token: Hlc,
    stale: bool,
) -> WriteOutcome {
    let start = now_ns();
    let result = store
        .set(
            args.key.clone(),
            value,
            &SetOptions::new()
                .fencing_token(token.clone())
                .persist()
                .timeout(args.request_timeout()),
        )
        .await;
    let outcome = outcome_of(&result);
    args.record(Record::Write {
        start,
        end: now_ns(),
        who: args.id.clone(),
        token,
        outcome: outcome.clone(),
        stale,
    });
    outcome
}

/// Fenced writes to the protected key, one every [`WRITE_EVERY`], with the current token, as
/// long as `token` gives one and `until` has not passed; each recorded with its outcome.
async fn fenced_writes<S, F, T>(
    store: &leasedlock_api::StateStore,
    args: &Args,
    round: u32,
    token: T,
    until: Instant,
    sleep: &S,
) where
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
    T: Fn() -> Result<Hlc, leasedlock_api::LeaseError>,
{
    let mut writes = 0u64;
    while let Ok(token) = token() {
        if Instant::now() >= until {
            break;
        }
        writes += 1;
        let value = format!("{}:{round}:{writes}", args.id);
        fenced_write(store, args, value, token, false).await;
        sleep(WRITE_EVERY).await;
    }
}

/// The `--shorten-to-ms` mode (see the crate docs): one hold as a lease without auto-renew,
/// re-acquired with a shorter duration when the trigger file appears.
async fn shorten<S, F>(
    conn: &leasedlock_api::Connection,
    args: &Args,
    shorter: Duration,
    sleep: &S,
) -> Result<(), DeadlinePassed>
where
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let deadline = Instant::now() + args.deadline;
    let store = conn.state_store();
    let lease = conn.lease(args.lock.clone()).map_err(|e| {
        args.note(format!("lease handle: {e}"));
        DeadlinePassed
    })?;
    let once = AcquireOptions::new().timeout(args.request_timeout());
    loop {
        if Instant::now() >= deadline {
            return Err(DeadlinePassed);
        }
        match lease.acquire(args.ttl, &once).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => args.note(format!("acquire failed: {e}")),
        }
        sleep(Duration::from_millis(50)).await;
    }
    args.note(format!("acquired for {} ms", args.ttl.as_millis()));
    let trigger = std::path::PathBuf::from(format!("{}.shorten", args.log.path().display()));
    let beats = async {
        let mut last = None;
        while let Ok(token) = lease.token() {
            args.record(Record::Held {
                at: now_ns(),
                who: args.id.clone(),
                session: "0".into(),
                token: token.clone(),
                group: None,
            });
            last = Some(token);
            if Instant::now() >= deadline {
                break;
            }
            sleep(BEAT).await;
        }
        args.note("lost round 0");
        last
    };
    let shorten = async {
        while !trigger.exists() {
            if lease.token().is_err() {
                return;
            }
            sleep(BEAT).await;
        }
        args.note(format!("re-acquiring for {} ms", shorter.as_millis()));
        let outcome = lease.acquire(shorter, &once).await;
        args.note(format!("re-acquire: {outcome:?}"));
    };
    let writes = fenced_writes(&store, args, 0, || lease.token(), deadline, sleep);
    let (last, ((), ())) = future::zip(beats, future::zip(shorten, writes)).await;
    drop(lease);
    match last {
        Some(token) => stale_write(&store, args, token, sleep, deadline).await,
        None => Ok(()),
    }
}

/// After a loss: waits until another holder has written the key, then writes it fenced with the
/// lost token, retrying until the store gives a definite answer.
async fn stale_write<S, F>(
    store: &leasedlock_api::StateStore,
    args: &Args,
    token: Hlc,
    sleep: &S,
    deadline: Instant,
) -> Result<(), DeadlinePassed>
where
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let mine = format!("{}:", args.id);
    loop {
        if Instant::now() >= deadline {
            args.note("gave up on the stale write: deadline");
            return Err(DeadlinePassed);
        }
        match store
            .get(args.key.clone(), Some(args.request_timeout()))
            .await
        {
            Ok(Some(v)) if !v.value.starts_with(mine.as_bytes()) => break,
            Ok(_) => {}
            Err(e) => args.note(format!("stale write: GET failed: {e}")),
        }
        sleep(Duration::from_millis(50)).await;
    }
    loop {
        let value = format!("{}:stale", args.id);
        let outcome = fenced_write(store, args, value, token.clone(), true).await;
        if !matches!(outcome, WriteOutcome::Unknown(_)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DeadlinePassed);
        }
        sleep(Duration::from_millis(50)).await;
    }
}

fn run_tokio(args: &Args) -> Result<Result<(), DeadlinePassed>, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let conn = leasedlock_tokio::Connection::connect(args.options())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        args.note("ready (tokio)");
        let result = contend_all(conn.as_api(), args, tokio::time::sleep).await;
        conn.close().await;
        Ok(result)
    })
}

fn run_async_std(args: &Args) -> Result<Result<(), DeadlinePassed>, String> {
    async_std::task::block_on(async {
        let conn = leasedlock_async_std::Connection::connect(args.options())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        args.note("ready (async-std)");
        let result = contend_all(conn.as_api(), args, async_std::task::sleep).await;
        conn.close().await;
        Ok(result)
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("leasedlock-faults-contender: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.runtime.as_str() {
        "tokio" => run_tokio(&args),
        "async-std" => run_async_std(&args),
        other => Err(format!("unknown runtime `{other}` (tokio or async-std)")),
    };
    match result {
        Ok(Ok(())) => {
            args.note("done");
            ExitCode::SUCCESS
        }
        Ok(Err(DeadlinePassed)) => {
            args.note("deadline passed");
            ExitCode::from(3)
        }
        Err(e) => {
            args.note(e.clone());
            eprintln!("leasedlock-faults-contender: {e}");
            ExitCode::from(1)
        }
    }
}
