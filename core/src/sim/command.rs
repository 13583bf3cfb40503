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
use super::check::{fail, Failure, Invariant};
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
    /// still move its end.
    end: Option<u64>,
    /// The earliest grant of its key to another node (global ns) seen while it ran.
    overtaken: Option<u64>,
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
    running: BTreeMap<(Bytes, usize), Vec<Command>>,
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
    fn on_key(&mut self, key: &Bytes) -> impl Iterator<Item = (usize, &mut Vec<Command>)> {
        self.running
            .range_mut((key.clone(), 0)..=(key.clone(), usize::MAX))
            .map(|((_, node), commands)| (*node, commands))
    }

    /// A report of `node` at global time `now`; `clock` is the node's.
    pub(crate) fn report(
        &mut self,
        node: usize,
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
        let commands = self.running.entry((key.clone(), node)).or_default();
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
                    overtaken: None,
                };
                // A hold whose SIGTERM is due at once stops at once.
                command.settle(&policy, grace, local);
                commands.push(command);
            }
            Report::Renewed { safe_until, .. } => {
                if let Some(c) = commands.last_mut() {
                    if c.end.is_none() && *safe_until > c.known {
                        c.known = *safe_until;
                        let end = c.latest_end(&policy, grace);
                        if let Some(t) = c.overtaken.filter(|t| end > *t) {
                            return fail(
                                Invariant::S6CommandEnds,
                                format!("a renewal moved the end of c{node}'s command under {key:?} to {end} ns, {} ns after the store granted the key to another client at {t} ns", end - t),
                            );
                        }
                    }
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
            self.running.remove(&(key, node));
        }
        Ok(())
    }

    /// `node` crashed at global time `now`: its supervisor died, and the guard killed its
    /// commands.
    pub(crate) fn crashed(&mut self, node: usize, now: u64) {
        let (policy, grace) = (self.policy, self.grace);
        for ((_, n), commands) in &mut self.running {
            if *n == node {
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
        owner: Option<usize>,
        now: u64,
    ) -> Result<(), Failure> {
        let (policy, grace) = (self.policy, self.grace);
        let mut broken = None;
        for (node, commands) in self.on_key(key) {
            for c in commands.iter_mut() {
                c.settle(&policy, grace, c.clock.mono(now));
                let end = c.latest_end(&policy, grace);
                if Some(node) != owner && end > now && broken.is_none() {
                    broken = Some((node, end, c.known));
                }
            }
        }
        if let Some((node, end, known)) = broken {
            let who = owner.map_or_else(|| "a client".into(), |o| format!("c{o}"));
            return fail(
                Invariant::S6CommandEnds,
                format!("the store granted {key:?} to {who} at {now} ns while c{node}'s command under it runs until {end} ns, {} ns later (its safe end: {} ns on its clock, grace {grace:?})", end - now, known.as_nanos()),
            );
        }
        // Ended commands can no longer overlap a later grant; the others remember this one.
        for (node, commands) in self.on_key(key) {
            if Some(node) != owner {
                commands.retain(|c| c.end.is_none_or(|end| end > now));
                for c in commands.iter_mut() {
                    c.overtaken = Some(c.overtaken.unwrap_or(now));
                }
            }
        }
        self.running.retain(|_, commands| !commands.is_empty());
        Ok(())
    }
}
