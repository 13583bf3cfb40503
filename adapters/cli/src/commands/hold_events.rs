//! The event lines `lock --json` and `elect --json` write to stderr while they hold: acquired,
//! renewed, lost, renew_failed, exit, released (and error). One JSON object per line, each with
//! `event`, the lock `name` and `wall_ms`; see the README for the fields of each.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use leasedlock_tokio::Hlc;
use serde_json::json;

use crate::commands::common::{wall_ms, Report};

/// `at` as milliseconds since the Unix epoch (by the wall clock now; events are for people and
/// monitoring, not for deciding anything).
pub fn wall_ms_of(at: Instant) -> u64 {
    let now = Instant::now();
    let base = wall_ms();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match at.checked_duration_since(now) {
        Some(ahead) => base.saturating_add(ms(ahead)),
        None => base.saturating_sub(ms(now - at)),
    }
}

/// `acquired`: the hold began (for `elect`, `term` counts the terms of this process).
pub fn acquired(
    report: Report,
    name: &str,
    holder: &str,
    token: &Hlc,
    safe_until: Option<Instant>,
    term: Option<u64>,
) {
    let mut fields = json!({
        "name": name,
        "holder": holder,
        "token": token.to_string(),
        "safe_until_ms": safe_until.map(wall_ms_of),
    });
    if let Some(term) = term {
        fields["term"] = term.into();
    }
    report.event("acquired", fields);
}

/// How often a renewal is looked for, for `renewed` events: renewals come every third of the
/// lease, so each is reported within a tenth of the lease of its reply.
pub fn renewal_check_interval(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(10))
}

/// Resolves as `ended` does (the hold ended early) and reports that as `lost`, with the reason
/// `reason` gives. Meanwhile, with JSON output on, reports each renewal (a new token from
/// `current`, checked every `every`) as `renewed`.
pub async fn until_lost<R>(
    report: Report,
    name: &str,
    ended: impl Future<Output = R>,
    reason: impl Fn(&R) -> String,
    current: impl Fn() -> Option<(Hlc, Instant)>,
    every: Duration,
) -> R {
    tokio::pin!(ended);
    let mut last = current().map(|(token, _)| token);
    let why = if report.is_json() {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                why = &mut ended => break why,
                _ = ticks.tick() => {
                    if let Some((token, safe_until)) = current() {
                        if last.as_ref() != Some(&token) {
                            report.event(
                                "renewed",
                                json!({
                                    "name": name,
                                    "token": token.to_string(),
                                    "safe_until_ms": wall_ms_of(safe_until),
                                }),
                            );
                            last = Some(token);
                        }
                    }
                }
            }
        }
    } else {
        ended.await
    };
    report.event("lost", json!({ "name": name, "reason": reason(&why) }));
    why
}

/// `renew_failed`: no renewal succeeded by `--grace` before the safe end, so the command was
/// stopped (reported once it is).
pub fn renew_failed(report: Report, name: &str, safe_until: Instant) {
    report.event(
        "renew_failed",
        json!({ "name": name, "safe_until_ms": wall_ms_of(safe_until) }),
    );
}

/// `exit`: the command ended, with `code` or killed by `signal`; `stopped` when leasedlock
/// stopped it (the hold was ending), `sigkill` when that took SIGKILL.
pub fn exit(report: Report, name: &str, status: ExitStatus, stopped: bool, sigkill: bool) {
    report.event(
        "exit",
        json!({
            "name": name,
            "code": status.code(),
            "signal": status.signal(),
            "stopped": stopped,
            "sigkill": sigkill,
        }),
    );
}

/// `released`: the lock was released (for `elect`: leadership resigned) after the command;
/// `outcome` is what the store found for `lock` (`Deleted`, or `NotFound`/`HeldByOther` when
/// the lease had already run out).
pub fn released(report: Report, name: &str, outcome: Option<String>) {
    let mut fields = json!({ "name": name });
    if let Some(outcome) = outcome {
        fields["outcome"] = outcome.into();
    }
    report.event("released", fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_follow_instants() {
        let now_ms = wall_ms();
        let later = wall_ms_of(Instant::now() + Duration::from_secs(10));
        assert!(
            (now_ms + 9_000..=now_ms + 11_000).contains(&later),
            "{later} vs {now_ms}"
        );
        let earlier = wall_ms_of(Instant::now() - Duration::from_secs(10));
        assert!((now_ms - 11_000..=now_ms - 9_000).contains(&earlier));
    }

    #[test]
    fn renewals_are_looked_for_often_enough() {
        assert_eq!(
            renewal_check_interval(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            renewal_check_interval(Duration::from_millis(50)),
            Duration::from_millis(10)
        );
    }
}
