//! The checkers: the invariants of docs/architecture.md §7, evaluated on every report and at the
//! end of a run.
//!
//! All times here are global (true) nanoseconds; the world converts each node's `safe_until`
//! through that node's clock before it gets here, so a lease whose margin does not cover its
//! clock's rate error is caught.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use bytes::Bytes;
use core::fmt;

use super::agent::{Report, WriteOutcome};
use crate::hlc::Hlc;

/// Which rule a run broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Invariant {
    /// S1: at most one node holds a lease (`now < safe_until`) at any instant.
    S1SingleHolder,
    /// S2: a holder's `safe_until` is no later than the store's expiry of that grant.
    S2SafeUntil,
    /// S3: fenced writes are accepted in token order, and a holder's write is not refused.
    S3Fencing,
    /// S4: events are well ordered.
    S4EventOrder,
    /// L1: after faults heal, someone holds the lease within the bound.
    L1Progress,
    /// L2: an undisturbed holder with auto-renew never loses its lease.
    L2KeepsLease,
    /// S6: a command run under a lease, stopped as the CLI supervisor stops it, has ended
    /// whenever the store grants the lease to another client.
    S6CommandEnds,
    /// Every request ends in exactly one completion.
    Outcome,
    /// No request, timer or store entry is left over once the run has drained.
    Leak,
    /// A shared counter edited under a lock ends equal to the number of committed edits.
    Counter,
    /// The run could not be set up (invalid configuration, or a workload that contradicts
    /// itself, such as a lease key reported but not declared in [`Workload::lease_keys`]).
    ///
    /// [`Workload::lease_keys`]: super::Workload::lease_keys
    Setup,
    /// A rule of the user's own: a [`Check`](super::Check) of that name, or
    /// [`Ctx::fail`](super::Ctx::fail) with that name.
    Custom(&'static str),
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::S1SingleHolder => "S1 (at most one holder)",
            Invariant::S2SafeUntil => "S2 (safe_until within the store's expiry)",
            Invariant::S3Fencing => "S3 (fenced writes)",
            Invariant::S4EventOrder => "S4 (event order)",
            Invariant::L1Progress => "L1 (progress after healing)",
            Invariant::L2KeepsLease => "L2 (undisturbed holder keeps its lease)",
            Invariant::S6CommandEnds => "S6 (a holder's command ends before the lease passes on)",
            Invariant::Outcome => "exactly one outcome per request",
            Invariant::Leak => "no leaked request, timer or store entry",
            Invariant::Counter => "counter equals committed edits",
            Invariant::Setup => "valid configuration",
            Invariant::Custom(name) => return write!(f, "{name} (custom invariant)"),
        })
    }
}

/// A broken rule, before the world adds seed and trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) invariant: Invariant,
    pub(crate) message: String,
}

pub(crate) fn fail<T>(invariant: Invariant, message: String) -> Result<T, Failure> {
    Err(Failure { invariant, message })
}

#[derive(Debug, Clone)]
struct Hold {
    token: Hlc,
    safe_until: u64,
    since: u64,
    renewing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    Held,
    Released,
}

/// Grants and writes kept per key; older ones are forgotten (and then not checked).
const KEEP_PER_KEY: usize = 4096;

/// Counters of what the checkers saw, for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Acquisitions reported.
    pub acquisitions: u64,
    /// Renewals reported.
    pub renewals: u64,
    /// Losses reported.
    pub losses: u64,
    /// Fenced writes accepted.
    pub writes_accepted: u64,
    /// Fenced writes refused by fencing.
    pub writes_fenced: u64,
    /// Edits committed.
    pub edits: u64,
    /// Elections won.
    pub elections: u64,
    /// Facts of the user's own ([`Report::Custom`]).
    pub custom: u64,
}

/// Who reports: a node, and which of its holders (0: the node's only one; otherwise the `n`
/// of a `clientId:h<n>` holder value, one per handle of a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Who {
    /// The node's index.
    pub node: usize,
    /// The holder on that node: 0 for [`Ctx::report`](super::Ctx::report), `n` for
    /// [`Ctx::report_as`](super::Ctx::report_as)`(n, ..)`.
    pub holder: u32,
}

impl Who {
    const MIN: Who = Who { node: 0, holder: 0 };
    const MAX: Who = Who {
        node: usize::MAX,
        holder: u32::MAX,
    };

    /// The node's only holder.
    pub(crate) fn node(node: usize) -> Who {
        Who { node, holder: 0 }
    }
}

impl core::fmt::Display for Who {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.holder {
            0 => write!(f, "c{}", self.node),
            h => write!(f, "c{}:h{h}", self.node),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Checker {
    holds: BTreeMap<(Bytes, Who), Hold>,
    phase: BTreeMap<(Bytes, Who), Phase>,
    elected: BTreeSet<(Bytes, Who)>,
    /// Per lease key: version → store expiry (global ns; `u64::MAX` = none).
    grants: BTreeMap<Bytes, BTreeMap<Hlc, u64>>,
    /// Per protected key: accepted version → token.
    writes: BTreeMap<Bytes, BTreeMap<Hlc, Hlc>>,
    /// Per lease key: the last time anyone reported holding it.
    last_hold: BTreeMap<Bytes, u64>,
    commits: BTreeMap<Bytes, u64>,
    unknown_edits: BTreeMap<Bytes, u64>,
    /// Per counter: unknown-outcome writes that may have landed after their lock passed on.
    stray_edits: BTreeMap<Bytes, u64>,
    /// Per counter: writes the store applied (counted by the world).
    applied: BTreeMap<Bytes, u64>,
    pub(crate) stats: CheckStats,
}

fn bounded_insert<K: Ord, V>(map: &mut BTreeMap<K, V>, k: K, v: V) {
    map.insert(k, v);
    if map.len() > KEEP_PER_KEY {
        map.pop_first();
    }
}

/// What the world knows about disturbances, for L2.
pub(crate) struct Quiet {
    /// Last global time a fault touched the reporting node (or any node, for faults that can
    /// affect everyone).
    pub(crate) last_disturbance: Option<u64>,
    /// How long before an acquisition the node must have been left alone.
    pub(crate) window: Option<u64>,
}

impl Checker {
    /// The store made (or still has) this version of a lease key; `true` when the version is
    /// new.
    ///
    /// A new grant replaces the key's TTL: a holder that still believes the key safe past the
    /// new expiry breaks S2 at once (a SET of its own with a shorter PX, say, whose effect on
    /// `safe_until` it did not take into account).
    pub(crate) fn grant(
        &mut self,
        key: &Bytes,
        version: &Hlc,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, Failure> {
        let grants = self.grants.entry(key.clone()).or_default();
        if grants.contains_key(version) {
            return Ok(false);
        }
        bounded_insert(grants, version.clone(), expires_at);
        for ((_, who), h) in self
            .holds
            .range((key.clone(), Who::MIN)..=(key.clone(), Who::MAX))
        {
            if h.safe_until > now && h.safe_until > expires_at {
                return fail(
                    Invariant::S2SafeUntil,
                    format!("the store granted {key:?} anew (version {version}) until {expires_at} ns, while {who} believes it safe (token {}) until {} ns", h.token, h.safe_until),
                );
            }
        }
        Ok(true)
    }

    /// A node died: it believes nothing any more.
    pub(crate) fn crashed(&mut self, node: usize) {
        self.holds.retain(|(_, w), _| w.node != node);
        self.phase.retain(|(_, w), _| w.node != node);
        self.elected.retain(|(_, w)| w.node != node);
    }

    /// Checks one report made at global time `now` by `node`; `safe_until` has already been
    /// converted to global time by the caller (as `safe_until_g`).
    pub(crate) fn report(
        &mut self,
        who: Who,
        now: u64,
        report: &Report,
        safe_until_g: Option<u64>,
        quiet: &Quiet,
    ) -> Result<(), Failure> {
        let key = report.key().clone();
        let slot = (key.clone(), who);
        match report {
            Report::Acquired {
                token, renewing, ..
            } => {
                self.stats.acquisitions += 1;
                if let Some(h) = self.holds.get(&slot) {
                    if *token <= h.token {
                        return fail(
                            Invariant::S4EventOrder,
                            format!("{who} acquired {key:?} again with token {token} not above its held token {}", h.token),
                        );
                    }
                }
                let safe_until = safe_until_g.unwrap_or(now);
                self.hold(who, now, &key, token, safe_until)?;
                self.holds.insert(
                    slot.clone(),
                    Hold {
                        token: token.clone(),
                        safe_until,
                        since: now,
                        renewing: *renewing,
                    },
                );
                self.phase.insert(slot, Phase::Held);
            }
            Report::Renewed { token, .. } => {
                self.stats.renewals += 1;
                let Some(h) = self.holds.get(&slot).cloned() else {
                    let after = match self.phase.get(&slot) {
                        Some(Phase::Released) => "after Released",
                        _ => "without a hold",
                    };
                    return fail(
                        Invariant::S4EventOrder,
                        format!("{who} reported Renewed of {key:?} {after}"),
                    );
                };
                if *token <= h.token {
                    return fail(
                        Invariant::S4EventOrder,
                        format!(
                            "{who} renewed {key:?} with token {token} not above {}",
                            h.token
                        ),
                    );
                }
                let safe_until = safe_until_g.unwrap_or(now);
                self.hold(who, now, &key, token, safe_until)?;
                self.holds.insert(
                    slot,
                    Hold {
                        token: token.clone(),
                        safe_until,
                        since: h.since,
                        renewing: h.renewing,
                    },
                );
            }
            Report::Lost { .. } => {
                self.stats.losses += 1;
                let Some(h) = self.holds.remove(&slot) else {
                    return fail(
                        Invariant::S4EventOrder,
                        format!("{who} reported Lost of {key:?} without a hold"),
                    );
                };
                self.phase.insert(slot, Phase::Free);
                if let (true, Some(window)) = (h.renewing, quiet.window) {
                    let quiet_since = h.since.saturating_sub(window);
                    let undisturbed = quiet.last_disturbance.is_none_or(|d| d < quiet_since);
                    if undisturbed {
                        return fail(
                            Invariant::L2KeepsLease,
                            format!("{who} lost auto-renewed {key:?} (held since {} ns, token {}) although nothing disturbed it", h.since, h.token),
                        );
                    }
                }
            }
            Report::Released { .. } => {
                self.holds.remove(&slot);
                self.phase.insert(slot, Phase::Released);
            }
            Report::Write {
                lease,
                token,
                outcome,
                ..
            } => match outcome {
                WriteOutcome::Accepted { version } => {
                    self.stats.writes_accepted += 1;
                    let writes = self.writes.entry(key.clone()).or_default();
                    let before = writes.range(..version.clone()).next_back();
                    if let Some((v, t)) = before {
                        if t > token {
                            return fail(
                                Invariant::S3Fencing,
                                format!("{who}'s write to {key:?} with token {token} was accepted (version {version}) after a write with the higher token {t} (version {v})"),
                            );
                        }
                    }
                    let after = writes.range(version.clone()..).next();
                    if let Some((v, t)) = after {
                        if t < token {
                            return fail(
                                Invariant::S3Fencing,
                                format!("{who}'s write to {key:?} with token {token} (version {version}) precedes an accepted write with the lower token {t} (version {v})"),
                            );
                        }
                    }
                    bounded_insert(writes, version.clone(), token.clone());
                }
                WriteOutcome::Fenced => {
                    self.stats.writes_fenced += 1;
                    let holder = self.holds.get(&(lease.clone(), who));
                    if let Some(h) = holder {
                        if h.token == *token && now < h.safe_until {
                            return fail(
                                Invariant::S3Fencing,
                                format!("{who}'s write to {key:?} with token {token} was refused by fencing while it still holds {lease:?} with that token and was never told Lost"),
                            );
                        }
                    }
                }
                WriteOutcome::Failed => {}
            },
            Report::Elected { .. } => {
                self.stats.elections += 1;
                if !self.elected.insert(slot) {
                    return fail(
                        Invariant::S4EventOrder,
                        format!("{who} elected for {key:?} twice without Deposed"),
                    );
                }
            }
            Report::Deposed { .. } => {
                if !self.elected.remove(&slot) {
                    return fail(
                        Invariant::S4EventOrder,
                        format!("{who} deposed for {key:?} without Elected"),
                    );
                }
            }
            Report::SafeUntilLowered { .. } => {
                if let (Some(h), Some(lowered)) = (self.holds.get_mut(&slot), safe_until_g) {
                    h.safe_until = h.safe_until.min(lowered);
                }
            }
            Report::EditCommitted { .. } => {
                self.stats.edits += 1;
                *self.commits.entry(key).or_default() += 1;
            }
            Report::Custom { .. } => self.stats.custom += 1,
            Report::EditUnknown { may_still_land, .. } => {
                if *may_still_land {
                    *self.stray_edits.entry(key.clone()).or_default() += 1;
                }
                *self.unknown_edits.entry(key).or_default() += 1;
            }
        }
        Ok(())
    }

    /// S1 and S2 for a new or renewed hold.
    fn hold(
        &mut self,
        who: Who,
        now: u64,
        key: &Bytes,
        token: &Hlc,
        safe_until: u64,
    ) -> Result<(), Failure> {
        self.last_hold.insert(key.clone(), now);
        for ((k, other), h) in self
            .holds
            .range((key.clone(), Who::MIN)..=(key.clone(), Who::MAX))
        {
            debug_assert_eq!(k, key);
            if *other != who && h.safe_until > now {
                return fail(
                    Invariant::S1SingleHolder,
                    format!("{who} holds {key:?} (token {token}) while {other} still holds it (token {}) until {} ns, {} ns from now", h.token, h.safe_until, h.safe_until - now),
                );
            }
        }
        let Some(grants) = self.grants.get(key) else {
            return fail(
                Invariant::S2SafeUntil,
                format!(
                    "{who} holds {key:?} with token {token} but the store never granted that key"
                ),
            );
        };
        match grants.get(token) {
            Some(&expiry) if safe_until > expiry => fail(
                Invariant::S2SafeUntil,
                format!("{who} believes {key:?} (token {token}) safe until {safe_until} ns, {} ns after the store expires that grant at {expiry} ns", safe_until - expiry),
            ),
            Some(_) => Ok(()),
            None if grants.len() < KEEP_PER_KEY => fail(
                Invariant::S2SafeUntil,
                format!("{who} holds {key:?} with token {token}, a version the store never granted"),
            ),
            // Forgotten: too old to check.
            None => Ok(()),
        }
    }

    /// L1: called at `heal + bound`; someone must have reported a hold since `heal`, or hold
    /// now.
    pub(crate) fn progress(&self, key: &Bytes, heal: u64, now: u64) -> Result<(), Failure> {
        let reported = self.last_hold.get(key).is_some_and(|t| *t >= heal);
        let held = self
            .holds
            .range((key.clone(), Who::MIN)..=(key.clone(), Who::MAX))
            .any(|(_, h)| h.safe_until > now);
        if reported || held {
            return Ok(());
        }
        fail(
            Invariant::L1Progress,
            format!("nobody held {key:?} between the heal at {heal} ns and {now} ns"),
        )
    }

    /// The store applied a write to the counter `key`.
    pub(crate) fn counter_written(&mut self, key: &Bytes) {
        *self.applied.entry(key.clone()).or_default() += 1;
    }

    /// The counter check at the end of a run: `value` is the store's final value.
    pub(crate) fn counters(
        &self,
        mut value_of: impl FnMut(&Bytes) -> Option<u64>,
    ) -> Result<(), Failure> {
        let keys: BTreeSet<&Bytes> = self
            .commits
            .keys()
            .chain(self.unknown_edits.keys())
            .chain(self.applied.keys())
            .collect();
        for key in keys {
            let commits = self.commits.get(key).copied().unwrap_or(0);
            let unknown = self.unknown_edits.get(key).copied().unwrap_or(0);
            let value = value_of(key).unwrap_or(0);
            if value < commits || value > commits + unknown {
                return fail(
                    Invariant::Counter,
                    format!("counter {key:?} ends at {value} after {commits} committed edits and {unknown} with unknown outcome"),
                );
            }
            // Every applied write stores the value it read + 1, so with no update lost the
            // counter equals the number of applied writes. Only a write that landed after its
            // lock passed on (the lock lost first, or a crash) can lose one.
            let applied = self.applied.get(key).copied().unwrap_or(0);
            let stray = self.stray_edits.get(key).copied().unwrap_or(0);
            if value > applied || value.saturating_add(stray) < applied {
                return fail(
                    Invariant::Counter,
                    format!("counter {key:?} ends at {value} after {applied} applied writes, {stray} of which may have landed after their lock passed on: an update was lost"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Hlc {
        Hlc::new(ms, 0, Bytes::from_static(b"store")).unwrap()
    }

    fn key() -> Bytes {
        Bytes::from_static(b"lease")
    }

    const NOISY: Quiet = Quiet {
        last_disturbance: Some(u64::MAX),
        window: Some(0),
    };

    fn acquired(token: Hlc, renewing: bool) -> Report {
        Report::Acquired {
            key: key(),
            token,
            safe_until: crate::time::Instant::ZERO,
            renewing,
        }
    }

    #[test]
    fn two_handles_of_one_node_holding_at_once_break_s1() {
        // Each handle of a connection is a holder of its own: the same node is no excuse.
        let one = Who { node: 0, holder: 1 };
        let two = Who { node: 0, holder: 2 };
        let mut c = Checker::default();
        c.grant(&key(), &t(1), 1_000, 0).unwrap();
        c.grant(&key(), &t(2), 2_000, 0).unwrap();
        c.report(one, 10, &acquired(t(1), false), Some(900), &NOISY)
            .unwrap();
        let e = c
            .report(two, 500, &acquired(t(2), false), Some(1_900), &NOISY)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S1SingleHolder);
        assert!(
            e.message.contains("c0:h2") && e.message.contains("c0:h1"),
            "{}",
            e.message
        );
        // A crash of the node ends the holds of all its handles.
        let mut c = Checker::default();
        c.grant(&key(), &t(1), 1_000, 0).unwrap();
        c.grant(&key(), &t(2), 2_000, 0).unwrap();
        c.report(one, 10, &acquired(t(1), false), Some(900), &NOISY)
            .unwrap();
        c.crashed(0);
        c.report(two, 500, &acquired(t(2), false), Some(1_900), &NOISY)
            .unwrap();
    }

    #[test]
    fn two_holders_at_once_break_s1() {
        let mut c = Checker::default();
        c.grant(&key(), &t(1), 1_000, 0).unwrap();
        c.grant(&key(), &t(2), 2_000, 0).unwrap();
        c.report(Who::node(0), 10, &acquired(t(1), false), Some(900), &NOISY)
            .unwrap();
        let e = c
            .report(
                Who::node(1),
                500,
                &acquired(t(2), false),
                Some(1_900),
                &NOISY,
            )
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S1SingleHolder);
        // After the first hold's safe_until it is fine.
        let mut c = Checker::default();
        c.grant(&key(), &t(1), 1_000, 0).unwrap();
        c.grant(&key(), &t(2), 2_000, 0).unwrap();
        c.report(Who::node(0), 10, &acquired(t(1), false), Some(900), &NOISY)
            .unwrap();
        c.report(
            Who::node(1),
            901,
            &acquired(t(2), false),
            Some(1_900),
            &NOISY,
        )
        .unwrap();
    }

    #[test]
    fn safe_until_past_the_grant_breaks_s2() {
        let mut c = Checker::default();
        c.grant(&key(), &t(1), 1_000, 0).unwrap();
        let e = c
            .report(
                Who::node(0),
                10,
                &acquired(t(1), false),
                Some(1_001),
                &NOISY,
            )
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S2SafeUntil);
        let e = c
            .report(Who::node(0), 10, &acquired(t(9), false), Some(5), &NOISY)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S2SafeUntil);
    }

    #[test]
    fn event_order_rules() {
        let mut c = Checker::default();
        let renewed = Report::Renewed {
            key: key(),
            token: t(2),
            safe_until: crate::time::Instant::ZERO,
        };
        let e = c
            .report(Who::node(0), 1, &renewed, Some(5), &NOISY)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S4EventOrder);
        c.report(
            Who::node(0),
            1,
            &Report::Released { key: key() },
            None,
            &NOISY,
        )
        .unwrap();
        let e = c
            .report(Who::node(0), 1, &renewed, Some(5), &NOISY)
            .unwrap_err();
        assert!(e.message.contains("after Released"), "{}", e.message);
        let e = c
            .report(Who::node(0), 1, &Report::Lost { key: key() }, None, &NOISY)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S4EventOrder);
        let e = c
            .report(
                Who::node(0),
                1,
                &Report::Deposed { key: key() },
                None,
                &NOISY,
            )
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S4EventOrder);
        c.report(
            Who::node(0),
            1,
            &Report::Elected { key: key() },
            None,
            &NOISY,
        )
        .unwrap();
        let e = c
            .report(
                Who::node(0),
                1,
                &Report::Elected { key: key() },
                None,
                &NOISY,
            )
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S4EventOrder);
    }

    #[test]
    fn undisturbed_loss_breaks_l2() {
        let mut c = Checker::default();
        c.grant(&key(), &t(1), 1_000_000, 0).unwrap();
        let quiet = Quiet {
            last_disturbance: Some(5),
            window: Some(10),
        };
        c.report(Who::node(0), 100, &acquired(t(1), true), Some(900), &quiet)
            .unwrap();
        let e = c
            .report(
                Who::node(0),
                900,
                &Report::Lost { key: key() },
                None,
                &quiet,
            )
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::L2KeepsLease);
        // Disturbed within the window: allowed.
        c.report(
            Who::node(0),
            1_000,
            &acquired(t(1), true),
            Some(900),
            &NOISY,
        )
        .unwrap();
        c.report(
            Who::node(0),
            1_100,
            &Report::Lost { key: key() },
            None,
            &NOISY,
        )
        .unwrap();
    }

    #[test]
    fn out_of_order_fenced_writes_break_s3() {
        let mut c = Checker::default();
        let w = |token, version| Report::Write {
            key: Bytes::from_static(b"data"),
            lease: key(),
            token,
            outcome: WriteOutcome::Accepted { version },
        };
        c.report(Who::node(0), 1, &w(t(5), t(10)), None, &NOISY)
            .unwrap();
        c.report(Who::node(0), 2, &w(t(5), t(11)), None, &NOISY)
            .unwrap();
        let e = c
            .report(Who::node(1), 3, &w(t(4), t(12)), None, &NOISY)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S3Fencing);
        let e = c
            .report(Who::node(1), 3, &w(t(6), t(9)), None, &NOISY)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S3Fencing);
    }

    #[test]
    fn refused_write_while_holding_breaks_s3() {
        let mut c = Checker::default();
        c.grant(&key(), &t(1), 1_000, 0).unwrap();
        c.report(Who::node(0), 10, &acquired(t(1), false), Some(900), &NOISY)
            .unwrap();
        let refused = Report::Write {
            key: Bytes::from_static(b"data"),
            lease: key(),
            token: t(1),
            outcome: WriteOutcome::Fenced,
        };
        let e = c
            .report(Who::node(0), 20, &refused, None, &NOISY)
            .unwrap_err();
        assert_eq!(e.invariant, Invariant::S3Fencing);
        // After safe_until the refusal is expected.
        c.report(Who::node(0), 901, &refused, None, &NOISY).unwrap();
    }

    #[test]
    fn progress_and_counters() {
        let mut c = Checker::default();
        assert_eq!(
            c.progress(&key(), 10, 20).unwrap_err().invariant,
            Invariant::L1Progress
        );
        c.grant(&key(), &t(1), 1_000, 0).unwrap();
        c.report(Who::node(0), 15, &acquired(t(1), false), Some(900), &NOISY)
            .unwrap();
        c.progress(&key(), 10, 2_000).unwrap();
        let counter = Bytes::from_static(b"n");
        for _ in 0..3 {
            c.report(
                Who::node(0),
                1,
                &Report::EditCommitted {
                    key: counter.clone(),
                },
                None,
                &NOISY,
            )
            .unwrap();
        }
        c.report(
            Who::node(0),
            1,
            &Report::EditUnknown {
                key: counter.clone(),
                may_still_land: false,
            },
            None,
            &NOISY,
        )
        .unwrap();
        // The store applied the three committed writes.
        for _ in 0..3 {
            c.counter_written(&counter);
        }
        c.counters(|_| Some(3)).unwrap();
        // Above what was applied.
        assert_eq!(
            c.counters(|_| Some(4)).unwrap_err().invariant,
            Invariant::Counter
        );
        assert_eq!(
            c.counters(|_| Some(2)).unwrap_err().invariant,
            Invariant::Counter
        );
        // The unknown one was applied too.
        c.counter_written(&counter);
        c.counters(|_| Some(4)).unwrap();
        assert_eq!(
            c.counters(|_| Some(5)).unwrap_err().invariant,
            Invariant::Counter
        );
        // Four writes applied, yet the counter says 3: an increment was overwritten (a write
        // landed after its lock passed on, and nobody said it could).
        let lost = c.counters(|_| Some(3)).unwrap_err();
        assert_eq!(lost.invariant, Invariant::Counter);
        assert!(lost.message.contains("lost"), "{}", lost.message);
        // Unless that write may have landed after its lock passed on.
        c.report(
            Who::node(0),
            1,
            &Report::EditUnknown {
                key: counter.clone(),
                may_still_land: true,
            },
            None,
            &NOISY,
        )
        .unwrap();
        c.counter_written(&counter);
        c.counters(|_| Some(4)).unwrap();
    }
}
