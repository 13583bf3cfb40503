//! S6: the command each holder runs under its lease, modelled as the CLI supervisor runs it,
//! and the check that no such command outlives its hold.
//!
//! A node that reports [`Report::Acquired`] starts a command. When it ends is decided by the
//! supervisor's policy ([`crate::supervise`]) from the `safe_until` the node knows, on the
//! node's own clock: a renewal reported before SIGTERM is due moves the safe end later; once
//! SIGTERM would have gone out the end is fixed at the kill time; a [`Report::Lost`] before then
//! ends it early (killed within the grace, never after the last safe end); a
//! [`Report::Released`] means the command exited by itself (the CLI releases only after that);
//! a crash takes it down with the node (the guard kills the group when the supervisor dies).
//!
//! Whenever the store grants the lease key to a client at global time `t`, every other node's
//! command on that key must have ended at or before `t`. All ends are converted to global time
//! through the node's clock, as the S1 and S2 checks do.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use bytes::Bytes;

use super::agent::Report;
use super::check::{fail, Failure, Invariant, Who};
use super::clock::NodeClock;
use crate::supervise;
use crate::time::{Duration, Instant};

/// The kill policy the model runs: the supervisor's, or (in tests) another one to show that
/// the check catches a policy that lets a command outlive its hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// When SIGTERM is due for a hold safe until the first argument, with the grace.
    pub(crate) term_at: fn(Instant, Duration) -> Instant,
    /// When SIGKILL is due once SIGTERM went out on schedule.
    pub(crate) kill_at: fn(Instant, Duration) -> Instant,
    /// When SIGKILL is due after the hold ended early at the third argument.
    pub(crate) kill_at_after_early_end: fn(Instant, Duration, Instant) -> Instant,
}

impl Policy {
    /// The policy the CLI runs.
    pub(crate) const SUPERVISOR: Policy = Policy {
        term_at: supervise::term_at,
        kill_at: |safe_until, _grace| supervise::kill_at(safe_until),
        kill_at_after_early_end: supervise::kill_at_after_early_end,
    };
}

/// One modelled command.
#[derive(Debug, Clone)]
struct Command {
    /// The node's clock, to turn its deadlines into global time.
    clock: NodeClock,
    /// The last safe end the supervisor read (node-local); moves only later, unless the node
    /// reports it lowered.
    known: Instant,
    /// When the command ended or will end for sure (global ns); `None` while renewals can
    /// still move its end (then its end is at least its SIGTERM time, which has not come yet:
    /// so a grant to another node while it runs breaks S6 at once, and a renewal that comes
    /// later cannot be the first to take it past a grant).
    end: Option<u64>,
}

impl Command {
    /// When it ends if nothing moves its safe end again (global ns): SIGTERM at the policy's
    /// time, then SIGKILL at the kill time, or at once when that has passed already.
    fn scheduled_end(&self, policy: &Policy, grace: Duration) -> u64 {
        let term = (policy.term_at)(self.known, grace);
        let kill = (policy.kill_at)(self.known, grace);
        self.clock.global_at(term.max(kill))
    }

    /// Fixes its end once SIGTERM was due by `local` (node time): renewals no longer count.
    fn settle(&mut self, policy: &Policy, grace: Duration, local: Instant) {
        if self.end.is_none() && (policy.term_at)(self.known, grace) <= local {
            self.end = Some(self.scheduled_end(policy, grace));
        }
    }

    /// The global time by which it has ended, as far as known now.
    fn latest_end(&self, policy: &Policy, grace: Duration) -> u64 {
        self.end
            .unwrap_or_else(|| self.scheduled_end(policy, grace))
    }

    /// It stops at `now` (global) by itself or with its supervisor, unless it ended before.
    fn stop_at(&mut self, policy: &Policy, grace: Duration, now: u64) {
        self.settle(policy, grace, self.clock.mono(now));
        self.end = Some(self.end.map_or(now, |end| end.min(now)));
    }
}

/// The commands of every node, per lease key.
#[derive(Debug)]
pub(crate) struct Commands {
    policy: Policy,
    grace: Duration,
    /// (key, node) → that node's commands on the key, oldest first (a node may hold again
    /// while the command of its previous hold is still being stopped).
    running: BTreeMap<(Bytes, Who), Vec<Command>>,
}

impl Commands {
    /// No command yet; every one gets `grace` and ends as `policy` says.
    pub(crate) fn new(policy: Policy, grace: Duration) -> Commands {
        Commands {
            policy,
            grace,
            running: BTreeMap::new(),
        }
    }

    /// The commands of every node on `key`.
    fn on_key(&mut self, key: &Bytes) -> impl Iterator<Item = (Who, &mut Vec<Command>)> {
        let all = Who::node(0)..=Who {
            node: usize::MAX,
            holder: u32::MAX,
        };
        self.running
            .range_mut((key.clone(), *all.start())..=(key.clone(), *all.end()))
            .map(|((_, who), commands)| (*who, commands))
    }

    /// A report of `node` at global time `now`; `clock` is the node's.
    pub(crate) fn report(
        &mut self,
        who: Who,
        now: u64,
        clock: NodeClock,
        report: &Report,
    ) -> Result<(), Failure> {
        if !matches!(
            report,
            Report::Acquired { .. }
                | Report::Renewed { .. }
                | Report::SafeUntilLowered { .. }
                | Report::Lost { .. }
                | Report::Released { .. }
        ) {
            return Ok(());
        }
        let local = clock.mono(now);
        let (policy, grace) = (self.policy, self.grace);
        let key = report.key().clone();
        let commands = self.running.entry((key.clone(), who)).or_default();
        for c in commands.iter_mut() {
            c.settle(&policy, grace, local);
        }
        // One that has ended cannot overlap a grant from now on.
        commands.retain(|c| c.end.is_none_or(|end| end > now));
        match report {
            Report::Acquired { safe_until, .. } => {
                let mut command = Command {
                    clock,
                    known: *safe_until,
                    end: None,
                };
                // A hold whose SIGTERM is due at once stops at once.
                command.settle(&policy, grace, local);
                commands.push(command);
            }
            Report::Renewed { safe_until, .. } => {
                // Read before SIGTERM was due: the command runs on to the new safe end.
                if let Some(c) = commands.last_mut().filter(|c| c.end.is_none()) {
                    c.known = c.known.max(*safe_until);
                }
            }
            Report::SafeUntilLowered { safe_until, .. } => {
                // The supervisor reads the lowered safe end; a fixed end moves earlier with it.
                if let Some(c) = commands.last_mut() {
                    c.known = c.known.min(*safe_until);
                    let lowered = c.scheduled_end(&policy, grace);
                    if let Some(end) = &mut c.end {
                        *end = (*end).min(lowered);
                    }
                }
            }
            Report::Lost { .. } => {
                if let Some(c) = commands.last_mut() {
                    if c.end.is_none() {
                        // SIGTERM now, SIGKILL as the policy says (at once when that passed).
                        let kill = (policy.kill_at_after_early_end)(c.known, grace, local);
                        c.end = Some(clock.global_at(kill).max(now));
                    }
                }
            }
            Report::Released { .. } => {
                // The command exited by itself; the supervisor releases only after that.
                if let Some(c) = commands.last_mut() {
                    c.stop_at(&policy, grace, now);
                }
            }
            _ => {}
        }
        if commands.is_empty() {
            self.running.remove(&(key, who));
        }
        Ok(())
    }

    /// `node` crashed at global time `now`: its supervisor died, and the guard killed its
    /// commands.
    pub(crate) fn crashed(&mut self, node: usize, now: u64) {
        let (policy, grace) = (self.policy, self.grace);
        for ((_, who), commands) in &mut self.running {
            if who.node == node {
                for c in commands {
                    c.stop_at(&policy, grace, now);
                }
            }
        }
    }

    /// The store granted `key` to `owner` (a node, or `None` for a client that is none) at
    /// global time `now`: every other node's command on it must have ended by then.
    pub(crate) fn granted(
        &mut self,
        key: &Bytes,
        owner: Option<Who>,
        now: u64,
    ) -> Result<(), Failure> {
        let (policy, grace) = (self.policy, self.grace);
        let mut broken = None;
        for (holder, commands) in self.on_key(key) {
            for c in commands.iter_mut() {
                c.settle(&policy, grace, c.clock.mono(now));
                let end = c.latest_end(&policy, grace);
                if Some(holder) != owner && end > now && broken.is_none() {
                    broken = Some((holder, end, c.known));
                }
            }
        }
        if let Some((holder, end, known)) = broken {
            let who = owner.map_or_else(|| "a client".into(), |o| format!("{o}"));
            return fail(
                Invariant::S6CommandEnds,
                format!("the store granted {key:?} to {who} at {now} ns while {holder}'s command under it runs until {end} ns, {} ns later (its safe end: {} ns on its clock, grace {grace:?})", end - now, known.as_nanos()),
            );
        }
        // Ended commands can no longer overlap a later grant.
        for (_, commands) in self.on_key(key) {
            commands.retain(|c| c.end.is_none_or(|end| end > now));
        }
        self.running.retain(|_, commands| !commands.is_empty());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const GRACE: Duration = Duration::from_millis(300);

    fn key() -> Bytes {
        Bytes::from_static(b"lease")
    }

    fn token(n: u64) -> Hlc {
        Hlc::new(n, 0, Bytes::from_static(b"store")).unwrap()
    }

    fn acquired(safe_ms: u64) -> Report {
        Report::Acquired {
            key: key(),
            token: token(1),
            safe_until: Instant::from_millis(safe_ms),
            renewing: true,
        }
    }

    fn renewed(n: u64, safe_ms: u64) -> Report {
        Report::Renewed {
            key: key(),
            token: token(n),
            safe_until: Instant::from_millis(safe_ms),
        }
    }

    /// Node 0 acquires at 0 ms, safe until 1000 ms (an ideal clock: local = global).
    fn holding() -> Commands {
        let mut c = Commands::new(Policy::SUPERVISOR, GRACE);
        c.report(Who::node(0), 0, NodeClock::IDEAL, &acquired(1_000))
            .unwrap();
        c
    }

    fn kill_ns(safe_ms: u64) -> u64 {
        supervise::kill_at(Instant::from_millis(safe_ms)).as_nanos()
    }

    #[test]
    fn a_grant_to_another_before_the_kill_breaks_s6() {
        let mut c = holding();
        let e = c
            .granted(&key(), Some(Who::node(1)), kill_ns(1_000) - 1)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S6CommandEnds);
        // The holder's own renewal is no grant to another.
        holding()
            .granted(&key(), Some(Who::node(0)), 500 * MS)
            .unwrap();
        // At the kill time the command is gone.
        holding()
            .granted(&key(), Some(Who::node(1)), kill_ns(1_000))
            .unwrap();
        // A client that is no node counts as another.
        let e = holding().granted(&key(), None, 500 * MS).unwrap_err();
        assert_eq!(e.invariant, Invariant::S6CommandEnds);
    }

    #[test]
    fn renewals_count_until_sigterm_is_due() {
        let mut c = holding();
        // Before SIGTERM (700 ms): the command runs on to the new safe end.
        c.report(Who::node(0), 600 * MS, NodeClock::IDEAL, &renewed(2, 1_600))
            .unwrap();
        let e = c
            .granted(&key(), Some(Who::node(1)), kill_ns(1_600) - 1)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S6CommandEnds);
        // After SIGTERM was due the renewal no longer moves the end.
        let mut c = holding();
        c.report(Who::node(0), 700 * MS, NodeClock::IDEAL, &renewed(2, 1_700))
            .unwrap();
        c.granted(&key(), Some(Who::node(1)), kill_ns(1_000))
            .unwrap();
    }

    #[test]
    fn an_early_end_kills_within_the_grace() {
        let mut c = holding();
        c.report(
            Who::node(0),
            100 * MS,
            NodeClock::IDEAL,
            &Report::Lost { key: key() },
        )
        .unwrap();
        let e = c
            .granted(&key(), Some(Who::node(1)), 400 * MS - 1)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S6CommandEnds);
        let mut c = holding();
        c.report(
            Who::node(0),
            100 * MS,
            NodeClock::IDEAL,
            &Report::Lost { key: key() },
        )
        .unwrap();
        c.granted(&key(), Some(Who::node(1)), 400 * MS).unwrap();
        // Lost close to the safe end: killed at the kill time, not a grace later.
        let mut c = holding();
        c.report(
            Who::node(0),
            650 * MS,
            NodeClock::IDEAL,
            &Report::Lost { key: key() },
        )
        .unwrap();
        c.granted(&key(), Some(Who::node(1)), kill_ns(1_000))
            .unwrap();
    }

    #[test]
    fn release_and_crash_end_the_command_at_once() {
        let mut c = holding();
        c.report(
            Who::node(0),
            100 * MS,
            NodeClock::IDEAL,
            &Report::Released { key: key() },
        )
        .unwrap();
        c.granted(&key(), Some(Who::node(1)), 100 * MS).unwrap();
        let mut c = holding();
        c.crashed(0, 200 * MS);
        c.granted(&key(), Some(Who::node(1)), 200 * MS).unwrap();
        assert!(c.running.is_empty(), "{c:?}");
    }

    #[test]
    fn a_short_grace_stops_at_sigterm() {
        // A grace shorter than the kill lead: SIGTERM comes after the kill time, and SIGKILL
        // with it, still before the safe end.
        let mut c = Commands::new(Policy::SUPERVISOR, Duration::from_millis(2));
        c.report(Who::node(0), 0, NodeClock::IDEAL, &acquired(1_000))
            .unwrap();
        let e = c
            .granted(&key(), Some(Who::node(1)), 998 * MS - 1)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S6CommandEnds);
        c.granted(&key(), Some(Who::node(1)), 998 * MS).unwrap();
    }

    proptest! {
        /// Whatever renewals and losses a hold sees, its command is gone by the last safe end
        /// reported before SIGTERM was due, and within the grace of a loss before then.
        #[test]
        fn the_supervised_command_ends_by_the_last_safe_end(
            grace_ms in 0u64..2_000,
            renewals in proptest::collection::vec((1u64..500, 0u64..3_000), 0..6),
            lost_after in proptest::option::of(0u64..2_000),
        ) {
            let grace = Duration::from_millis(grace_ms);
            let mut c = Commands::new(Policy::SUPERVISOR, grace);
            c.report(Who::node(0), 0, NodeClock::IDEAL, &acquired(1_000)).unwrap();
            let (mut now, mut safe) = (0u64, 1_000u64);
            for (i, (step, ahead)) in renewals.iter().enumerate() {
                now += step;
                if now < safe.saturating_sub(grace_ms) {
                    safe = safe.max(now + ahead);
                }
                let r = renewed(i as u64 + 2, now + ahead);
                c.report(Who::node(0), now * MS, NodeClock::IDEAL, &r).unwrap();
            }
            let mut by = safe * MS;
            if let Some(after) = lost_after {
                let at = now + after;
                c.report(Who::node(0), at * MS, NodeClock::IDEAL, &Report::Lost { key: key() }).unwrap();
                if at < safe.saturating_sub(grace_ms) {
                    by = by.min((at + grace_ms) * MS);
                }
            }
            prop_assert!(c.granted(&key(), Some(Who::node(1)), by).is_ok());
        }
    }
}
