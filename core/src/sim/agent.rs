//! What runs on a simulated client node: an [`Agent`] (the code under test, typically built on
//! the lease, lock, edit or leader machines) on top of a real [`Client`].
//!
//! The world feeds the agent exactly what an adapter would: every client output except the
//! network ones (publishes and subscriptions, which the world carries), its own timer, and a
//! start and a stop. The agent talks to the store through [`Ctx::requester`] and tells the
//! checkers what it believes through [`Ctx::report`].

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use bytes::Bytes;

use alloc::string::String;
use core::time::Duration;

use super::check::Failure;
use super::trace::Fingerprint;
use crate::client::{
    Client, Output, Recording, RequestError, RequestId, RequestOptions, Requester,
};
use crate::command::Request;
use crate::hlc::Hlc;
use crate::rng::Rng;
use crate::time::{Instant, Now};

/// The code under test on one node. Build one per node (and a fresh one after each crash) in
/// [`Workload::agent`].
pub trait Agent {
    /// The node started (or restarted after a crash). Requests made now are queued by the
    /// client until the connection is up.
    fn start(&mut self, ctx: &mut Ctx<'_>);
    /// A client output other than `Publish`/`Subscribe`/`Unsubscribe`: completions,
    /// notifications, connection changes, re-registrations.
    fn handle_output(&mut self, output: &Output, ctx: &mut Ctx<'_>);
    /// The agent's deadline ([`Agent::poll_timeout`]) passed (it may be called early; do
    /// whatever is due).
    fn handle_timeout(&mut self, ctx: &mut Ctx<'_>);
    /// The agent's next deadline on its node's monotonic clock.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The run is ending: stop contending, release what is held, stop observing. After the
    /// drain period the checkers require [`Agent::outstanding`] to be 0 and no deadline left.
    fn stop(&mut self, ctx: &mut Ctx<'_>);
    /// Requests and operations still awaiting an answer (0 when idle).
    fn outstanding(&self) -> usize;
    /// The node crashes now: what it can no longer report but the checkers must count, such
    /// as a write in flight whose outcome nobody will learn ([`Report::EditUnknown`]). The
    /// agent is dropped afterwards.
    fn in_doubt_at_crash(&self) -> Vec<Report> {
        Vec::new()
    }
}

/// What the world asks of a workload: agents, and the workload-level checks.
pub trait Workload {
    /// The agent for node `node`, incarnation `incarnation` (0 at start, +1 per restart);
    /// `seed` is derived from the run's seed.
    fn agent(&mut self, node: usize, incarnation: u32, seed: u64) -> Box<dyn Agent>;
    /// Keys that are leases: the world records every grant the store makes on them (for S2).
    fn lease_keys(&self) -> Vec<Bytes>;
    /// Counters edited under a lock: the world counts every write the store applies to them,
    /// and at the end each must equal that count, less the writes that may have landed after
    /// their lock passed on (a lost update).
    fn counter_keys(&self) -> Vec<Bytes> {
        Vec::new()
    }
    /// For L1: the longest time after the faults heal within which some contender must hold
    /// a lease, while contention lasts. `None` disables the check.
    fn liveness_bound(&self) -> Option<core::time::Duration>;
    /// How long before a `Lost` an undisturbed node must have been left alone for L2 to apply
    /// (covers messages of an earlier incarnation still in flight). `None` disables L2.
    fn quiet_window(&self) -> Option<core::time::Duration>;
    /// The duration and renewal interval of the leases the agents hold: each run draws the
    /// grace of the commands modelled under them (S6) among those that fit these leases.
    /// `None` (the default): a grace of zero.
    fn lease_timing(&self) -> Option<super::workload::Timing> {
        None
    }
    /// The user's own invariants for one run: called once per run (a campaign runs many),
    /// they see every report with global time and judge the run at its end. See
    /// [`Check`](super::Check). Default: none.
    fn checks(&mut self) -> Vec<Box<dyn super::Check>> {
        Vec::new()
    }
    /// Node `node` crashes now, at global time `at` (its agent is dropped right after
    /// [`Agent::in_doubt_at_crash`]; [`Workload::agent`] builds the next incarnation when it
    /// restarts). For workloads that keep state across nodes. Default: nothing.
    fn crashed(&mut self, node: usize, at: core::time::Duration) {
        let _ = (node, at);
    }
}

impl<W: Workload + ?Sized> Workload for Box<W> {
    fn agent(&mut self, node: usize, incarnation: u32, seed: u64) -> Box<dyn Agent> {
        (**self).agent(node, incarnation, seed)
    }

    fn lease_keys(&self) -> Vec<Bytes> {
        (**self).lease_keys()
    }

    fn counter_keys(&self) -> Vec<Bytes> {
        (**self).counter_keys()
    }

    fn lease_timing(&self) -> Option<super::workload::Timing> {
        (**self).lease_timing()
    }

    fn checks(&mut self) -> Vec<Box<dyn super::Check>> {
        (**self).checks()
    }

    fn crashed(&mut self, node: usize, at: core::time::Duration) {
        (**self).crashed(node, at)
    }

    fn liveness_bound(&self) -> Option<core::time::Duration> {
        (**self).liveness_bound()
    }

    fn quiet_window(&self) -> Option<core::time::Duration> {
        (**self).quiet_window()
    }
}

/// What an agent tells the checkers. Instants are on the reporting node's monotonic clock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// A lease is held from now until `safe_until`.
    Acquired {
        /// Lease key.
        key: Bytes,
        /// Fencing token.
        token: Hlc,
        /// Until when the holder may act.
        safe_until: Instant,
        /// Whether the machine renews it by itself (L2 applies).
        renewing: bool,
    },
    /// A held lease was renewed.
    Renewed {
        /// Lease key.
        key: Bytes,
        /// New fencing token.
        token: Hlc,
        /// New safe-until.
        safe_until: Instant,
    },
    /// A held lease was lost (not released).
    Lost {
        /// Lease key.
        key: Bytes,
    },
    /// A lease was released (or a release was answered).
    Released {
        /// Lease key.
        key: Bytes,
    },
    /// A fenced write to a protected key finished.
    Write {
        /// The protected key.
        key: Bytes,
        /// The lease whose token fenced the write.
        lease: Bytes,
        /// The `__ft` sent.
        token: Hlc,
        /// What the store did.
        outcome: WriteOutcome,
    },
    /// Leader election: elected.
    Elected {
        /// Election key.
        key: Bytes,
    },
    /// Leader election: no longer leader.
    Deposed {
        /// Election key.
        key: Bytes,
    },
    /// The holder's `safe_until` went down without a new grant (a SET of its own that may
    /// shorten the store's TTL left).
    SafeUntilLowered {
        /// Lease key.
        key: Bytes,
        /// The new safe-until (node-local monotonic).
        safe_until: Instant,
    },
    /// An edit of a shared counter committed (its fenced write was applied).
    EditCommitted {
        /// Counter key.
        key: Bytes,
    },
    /// An edit's fenced write has an unknown outcome (it may have been applied).
    EditUnknown {
        /// Counter key.
        key: Bytes,
        /// The write may still land after the lock passed on (the lock was lost first, or the
        /// node crashed), so it may overwrite a later edit's increment.
        may_still_land: bool,
    },
    /// A fact of the user's own, for a [`Check`](super::Check) to judge (the built-in
    /// checkers ignore it): `tag` says what it is, `value` carries a number (a counter read,
    /// an item id...). It is traced and hashed like every report.
    Custom {
        /// The key the fact is about.
        key: Bytes,
        /// What the fact is (say `"read"` or `"wrote"`).
        tag: &'static str,
        /// Its value.
        value: u64,
    },
}

/// Outcome of a fenced write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// Applied; `version` is the reply's `__ts`.
    Accepted {
        /// The key's new version.
        version: Hlc,
    },
    /// Refused because the token is lower than the one protecting the key.
    Fenced,
    /// Unknown (timeout, disconnect) or refused for another reason.
    Failed,
}

impl Report {
    /// The value of a [`Report::Custom`] tagged `tag`; `None` for any other report.
    pub fn custom(&self, tag: &str) -> Option<u64> {
        match self {
            Report::Custom { tag: t, value, .. } if *t == tag => Some(*value),
            _ => None,
        }
    }

    /// The key the report is about.
    pub fn key(&self) -> &Bytes {
        match self {
            Report::Acquired { key, .. }
            | Report::Renewed { key, .. }
            | Report::Lost { key }
            | Report::Released { key }
            | Report::Write { key, .. }
            | Report::Elected { key }
            | Report::Deposed { key }
            | Report::EditCommitted { key }
            | Report::EditUnknown { key, .. }
            | Report::Custom { key, .. }
            | Report::SafeUntilLowered { key, .. } => key,
        }
    }

    pub(crate) fn hash_into(&self, h: &mut Fingerprint) {
        let hlc = |h: &mut Fingerprint, t: &Hlc| {
            h.u64(t.millis);
            h.u64(t.counter);
            h.bytes(t.node_bytes());
        };
        h.bytes(self.key());
        match self {
            Report::Acquired {
                token,
                safe_until,
                renewing,
                ..
            } => {
                h.u64(1);
                hlc(h, token);
                h.u64(safe_until.as_nanos());
                h.u64(u64::from(*renewing));
            }
            Report::Renewed {
                token, safe_until, ..
            } => {
                h.u64(2);
                hlc(h, token);
                h.u64(safe_until.as_nanos());
            }
            Report::Lost { .. } => h.u64(3),
            Report::Released { .. } => h.u64(4),
            Report::Write {
                lease,
                token,
                outcome,
                ..
            } => {
                h.u64(5);
                h.bytes(lease);
                hlc(h, token);
                match outcome {
                    WriteOutcome::Accepted { version } => {
                        h.u64(1);
                        hlc(h, version);
                    }
                    WriteOutcome::Fenced => h.u64(2),
                    WriteOutcome::Failed => h.u64(3),
                }
            }
            Report::Elected { .. } => h.u64(6),
            Report::Deposed { .. } => h.u64(7),
            Report::EditCommitted { .. } => h.u64(8),
            Report::EditUnknown { may_still_land, .. } => {
                h.u64(9 + u64::from(*may_still_land) * 100)
            }
            Report::SafeUntilLowered { safe_until, .. } => {
                h.u64(10);
                h.u64(safe_until.as_nanos());
            }
            Report::Custom { tag, value, .. } => {
                h.u64(11);
                h.bytes(tag.as_bytes());
                h.u64(*value);
            }
        }
    }
}

/// A [`Requester`] over the node's [`Client`] that records every request id it hands out, so
/// the checkers can verify that each one gets exactly one completion.
pub struct TrackedRequester<'a> {
    client: &'a mut Client,
    issued: &'a mut BTreeSet<RequestId>,
}

impl TrackedRequester<'_> {
    /// The client, recording into `issued` what it sends.
    fn recording(&mut self) -> Recording<'_, impl FnMut(RequestId) + '_> {
        let issued = &mut *self.issued;
        Recording::new(&mut *self.client, move |id| {
            issued.insert(id);
        })
    }
}

impl Requester for TrackedRequester<'_> {
    fn request(
        &mut self,
        request: Request,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        self.recording().request(request, options, now)
    }

    fn observe(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        self.recording().observe(key, options, now)
    }

    fn unobserve(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        self.recording().unobserve(key, options, now)
    }

    fn client_id(&self) -> &str {
        self.client.client_id()
    }
}

/// Everything an agent may touch during one call.
pub struct Ctx<'a> {
    pub(crate) now: Now,
    pub(crate) global: Duration,
    pub(crate) node: usize,
    pub(crate) requester: TrackedRequester<'a>,
    pub(crate) reports: &'a mut Vec<(u32, Report)>,
    pub(crate) failed: &'a mut Option<Failure>,
    pub(crate) rng: &'a mut Rng,
}

/// What a [`Ctx`] is built from: the world's parts the agent may touch.
pub(crate) struct CtxParts<'a> {
    pub(crate) now: Now,
    pub(crate) global: Duration,
    pub(crate) node: usize,
    pub(crate) client: &'a mut Client,
    pub(crate) issued: &'a mut BTreeSet<RequestId>,
    pub(crate) reports: &'a mut Vec<(u32, Report)>,
    pub(crate) failed: &'a mut Option<Failure>,
    pub(crate) rng: &'a mut Rng,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(p: CtxParts<'a>) -> Self {
        Ctx {
            now: p.now,
            global: p.global,
            node: p.node,
            requester: TrackedRequester {
                client: p.client,
                issued: p.issued,
            },
            reports: p.reports,
            failed: p.failed,
            rng: p.rng,
        }
    }

    /// Global (true) time since the start of the run: the same on every node, so facts of
    /// different nodes can be compared (the node's own clocks are [`Ctx::now`]).
    pub fn global_now(&self) -> Duration {
        self.global
    }

    /// Fails the run now: the run stops with a [`Violation`](super::Violation) of
    /// [`Invariant::Custom`](super::Invariant::Custom)`(invariant)` carrying `message`, the
    /// seed, this event's index and the trace. The first failure of a call wins.
    pub fn fail(&mut self, invariant: &'static str, message: impl Into<String>) {
        if self.failed.is_none() {
            *self.failed = Some(Failure {
                invariant: super::Invariant::Custom(invariant),
                message: message.into(),
            });
        }
    }

    /// The node's current time (its own monotonic and wall clocks).
    pub fn now(&self) -> Now {
        self.now
    }

    /// The node's index.
    pub fn node(&self) -> usize {
        self.node
    }

    /// The state-store client, as the machines take it.
    pub fn requester(&mut self) -> &mut TrackedRequester<'a> {
        &mut self.requester
    }

    /// The node's client id.
    pub fn client_id(&self) -> &str {
        self.requester.client.client_id()
    }

    /// Tells the checkers something (a hold, a loss, a fenced write...).
    pub fn report(&mut self, report: Report) {
        self.reports.push((0, report));
    }

    /// Tells the checkers something as the node's holder `holder` (the `n` of its
    /// `clientId:h<n>` holder value; one per handle of a connection, so several handles of
    /// one node are checked as holders of their own). `0` is the node's only holder, as
    /// [`Ctx::report`].
    pub fn report_as(&mut self, holder: u32, report: Report) {
        self.reports.push((holder, report));
    }

    /// The node's own seeded generator (for workload decisions such as think times).
    pub fn rng(&mut self) -> &mut Rng {
        self.rng
    }
}
