//! `lock NAME -- CMD` and `elect NAME -- CMD`: run a command under a lease, renewed while it
//! runs, stopped before the lease can pass to anyone else, released when it ends (after what
//! it left running in its process group was killed). See [`crate::supervise`] for the timeline
//! and [`crate::guard`] for what happens when `leasedlock` itself dies.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use leasedlock_tokio::{Connection, Hlc, LeaderOptions, LockError, LockOptions};

use crate::args::{ElectArgs, GlobalOptions, LockArgs};
use crate::commands::common::{lossy, Report, ShutdownSignals};
use crate::commands::connect::{connect, Failure, RenewPlan};
use crate::commands::hold_events;
use crate::exit;
use crate::supervise::{
    supervise, ChildSpec, Outcome, Stop, Supervised, Terminated, FENCING_TOKEN_ENV, HOLDER_ENV,
    LOCK_NAME_ENV,
};

/// Exit status of `leasedlock` itself when SIGINT/SIGTERM arrives before the command started.
const INTERRUPTED: u8 = 130;

fn child_spec(
    command: &[OsString],
    name: &str,
    holder: &str,
    token: &Hlc,
    safe_until: Option<Instant>,
    report: Report,
) -> Result<ChildSpec, Failure> {
    let spec = ChildSpec::from_argv(command)
        .ok_or_else(|| Failure::new(exit::USAGE, "no command given after `--`"))?;
    Ok(spec
        .json_errors(report.is_json())
        // The guard kills the group at the safe end by itself unless a renewal moved it: even a
        // stopped leasedlock cannot keep the command running past the lease.
        .kill_by(safe_until.unwrap_or_else(Instant::now))
        .env(FENCING_TOKEN_ENV, token.to_string())
        .env(LOCK_NAME_ENV, name)
        .env(HOLDER_ENV, holder))
}

fn describe_stop<R>(why: &Stop<R>, terminated: &Terminated) -> String {
    let when = match why {
        Stop::Ended(_) => "at once",
        Stop::NotRenewed { .. } => "--grace before the lease's safe end",
    };
    if terminated.killed {
        format!(
            "the command was sent SIGTERM {when} and, still running at the lease's safe end, \
             SIGKILL"
        )
    } else {
        format!("the command was sent SIGTERM {when}")
    }
}

/// `lock NAME --ttl D [--grace G] [--session S] -- CMD ARGS…`.
pub async fn lock(global: &GlobalOptions, args: &LockArgs, report: Report) -> Result<u8, Failure> {
    let mut signals = ShutdownSignals::new();
    let (plan, grace) = RenewPlan::for_command(args.ttl, args.grace, global.request_timeout())?;
    let conn = connect(global, plan.timeout)
        .await
        .map_err(|f| Failure::new(exit::WRAPPER_FAILED, f.message))?;
    let result = lock_with(&conn, args, plan, grace, &mut signals, report).await;
    conn.close().await;
    result
}

async fn lock_with(
    conn: &Connection,
    args: &LockArgs,
    plan: RenewPlan,
    grace: Duration,
    signals: &mut ShutdownSignals,
    report: Report,
) -> Result<u8, Failure> {
    let wrapper = |f: Failure| Failure::new(exit::WRAPPER_FAILED, f.message);
    let lock = match &args.session {
        Some(s) => conn.lock_with_session(args.name.clone(), s.clone()),
        None => conn.lock(args.name.clone()),
    }
    .map_err(|e| wrapper(e.into()))?;
    let holder = lossy(&lock.holder_value());
    let mut options = LockOptions::new().acquire(plan.acquire_options());
    // Only --wait bounds the wait; --request-timeout bounds each request of it.
    if let Some(wait) = args.wait {
        options = options.wait_timeout(wait);
    }
    let token = tokio::select! {
        locked = lock.lock(args.ttl, &options) => match locked {
            Ok(token) => token,
            Err(LockError::Timeout) => {
                report.error(&format!("{} was not acquired within --wait", args.name));
                return Ok(exit::NOT_ACQUIRED);
            }
            Err(e) => return Err(wrapper(Failure::from(e).context("lock"))),
        },
        // Dropping the wait unregisters it and releases anything it may have taken.
        () = signals.recv() => return Ok(INTERRUPTED),
    };
    tracing::info!(name = %args.name, %holder, %token, "lock acquired");
    hold_events::acquired(report, &args.name, &holder, &token, lock.safe_until(), None);
    let spec = child_spec(
        &args.command,
        &args.name,
        &holder,
        &token,
        lock.safe_until(),
        report,
    )?;
    let mut child = match Supervised::spawn(&spec) {
        Ok(child) => child,
        Err(e) => {
            report.error(&e.to_string());
            let _ = lock.unlock().await;
            return Ok(e.exit_code());
        }
    };
    let ended = hold_events::until_lost(
        report,
        &args.name,
        lock.lost(),
        |why| why.to_string(),
        || lock.token().ok().zip(lock.safe_until()),
        hold_events::renewal_check_interval(args.ttl),
    );
    let outcome = supervise(&mut child, ended, || lock.safe_until(), grace)
        .await
        .map_err(|e| {
            Failure::new(
                exit::WRAPPER_FAILED,
                format!("supervising the command: {e}"),
            )
        })?;
    match outcome {
        // `Supervised::wait` returned only once the command's group was killed: nothing of it
        // runs when the lock is released.
        Outcome::Exited(status) => {
            hold_events::exit(report, &args.name, status, false, false);
            match lock.unlock().await {
                Ok(outcome) => {
                    hold_events::released(report, &args.name, Some(format!("{outcome:?}")))
                }
                // The command's status still stands; the lock expires after --ttl anyway.
                Err(e) => report.error(&format!("releasing {}: {e}", args.name)),
            }
            Ok(exit::from_status(status))
        }
        Outcome::Stopped { why, terminated } => {
            if let Stop::NotRenewed { safe_until } = &why {
                hold_events::renew_failed(report, &args.name, *safe_until);
            }
            hold_events::exit(
                report,
                &args.name,
                terminated.status,
                true,
                terminated.killed,
            );
            report.error(&format!(
                "lost the lock {} ({why}); {}",
                args.name,
                describe_stop(&why, &terminated)
            ));
            let _ = lock.unlock().await;
            Ok(exit::LEASE_LOST)
        }
    }
}

/// `elect NAME --ttl D [--grace G] [--once] -- CMD ARGS…`.
pub async fn elect(
    global: &GlobalOptions,
    args: &ElectArgs,
    report: Report,
) -> Result<u8, Failure> {
    let mut signals = ShutdownSignals::new();
    let (plan, grace) = RenewPlan::for_command(args.ttl, args.grace, global.request_timeout())?;
    let conn = connect(global, plan.timeout)
        .await
        .map_err(|f| Failure::new(exit::WRAPPER_FAILED, f.message))?;
    let result = elect_with(&conn, args, plan, grace, &mut signals, report).await;
    conn.close().await;
    result
}

async fn elect_with(
    conn: &Connection,
    args: &ElectArgs,
    plan: RenewPlan,
    grace: Duration,
    signals: &mut ShutdownSignals,
    report: Report,
) -> Result<u8, Failure> {
    let wrapper = |f: Failure| Failure::new(exit::WRAPPER_FAILED, f.message);
    let leader = conn
        .leader(args.name.clone())
        .map_err(|e| wrapper(e.into()))?;
    let holder = lossy(&leader.holder_value());
    let options = LeaderOptions::new(args.ttl)
        .acquire(plan.acquire_options())
        .recampaign(!args.once);
    leader
        .campaign(&options)
        .await
        .map_err(|e| wrapper(e.into()))?;
    loop {
        let term = tokio::select! {
            term = leader.elected() => term.map_err(|e| wrapper(e.into()))?,
            () = signals.recv() => {
                let _ = leader.resign().await;
                return Ok(INTERRUPTED);
            }
        };
        tracing::info!(name = %args.name, token = %term.token(), "elected");
        hold_events::acquired(
            report,
            &args.name,
            &holder,
            term.token(),
            Some(term.safe_until()),
            Some(term.number()),
        );
        let spec = child_spec(
            &args.command,
            &args.name,
            &holder,
            term.token(),
            Some(term.safe_until()),
            report,
        )?;
        let mut child = match Supervised::spawn(&spec) {
            Ok(child) => child,
            Err(e) => {
                report.error(&e.to_string());
                let _ = leader.resign().await;
                return Ok(e.exit_code());
            }
        };
        // While the command runs, its own reaction to SIGINT/SIGTERM decides (they are
        // forwarded to it); ours resume when it is gone. The term's safe end as renewals move
        // it; `None` once this term is over.
        let term_safe_until = || -> Option<Instant> {
            leader
                .term()
                .filter(|t| t.number() == term.number() && !t.is_cancelled())
                .map(|t| t.safe_until())
                .filter(|s| Instant::now() < *s)
        };
        let ended = hold_events::until_lost(
            report,
            &args.name,
            term.cancelled(),
            |()| "deposed".to_string(),
            || {
                leader
                    .term()
                    .filter(|t| t.number() == term.number())
                    .map(|t| (t.token().clone(), t.safe_until()))
            },
            hold_events::renewal_check_interval(args.ttl),
        );
        let outcome = supervise(&mut child, ended, term_safe_until, grace)
            .await
            .map_err(|e| {
                Failure::new(
                    exit::WRAPPER_FAILED,
                    format!("supervising the command: {e}"),
                )
            })?;
        match outcome {
            Outcome::Exited(status) => {
                hold_events::exit(report, &args.name, status, false, false);
                if leader.resign().await.is_ok() {
                    hold_events::released(report, &args.name, None);
                }
                return Ok(exit::from_status(status));
            }
            Outcome::Stopped { why, terminated } => {
                if let Stop::NotRenewed { safe_until } = &why {
                    hold_events::renew_failed(report, &args.name, *safe_until);
                }
                hold_events::exit(
                    report,
                    &args.name,
                    terminated.status,
                    true,
                    terminated.killed,
                );
                let reason = match &why {
                    Stop::Ended(()) => "deposed",
                    Stop::NotRenewed { .. } => {
                        "no renewal succeeded in time to keep the command running"
                    }
                };
                report.error(&format!(
                    "no longer leader of {} ({reason}); {}",
                    args.name,
                    describe_stop(&why, &terminated)
                ));
                if args.once {
                    let _ = leader.resign().await;
                    return Ok(exit::LEASE_LOST);
                }
                if matches!(why, Stop::NotRenewed { .. }) {
                    // The term may still be current (a renewal late, not failed): it must not
                    // hand the command a term that is about to end again at once. Give it up
                    // and stand again.
                    // (Resigning a campaign that has already stopped is not an error here.)
                    let _ = leader.resign().await;
                    leader
                        .campaign(&options)
                        .await
                        .map_err(|e| wrapper(e.into()))?;
                }
            }
        }
    }
}
