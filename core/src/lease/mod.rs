//! The lease machine (sans-IO): one named lease on the state store, held by `clientId` or
//! `clientId:sessionId` (docs/protocol.md §10.2).
//!
//! What it does:
//! - [`Lease::acquire`]: one attempt, `SET name holder NEX PX ms`, answered by
//!   [`LeaseEvent::Acquired`], [`LeaseEvent::NotAcquired`] or [`LeaseEvent::AcquireFailed`].
//! - auto-renew: a timer inside the machine re-sends the same SET (same holder, same duration).
//!   A renewal that fails for a transient reason is retried until `safe_until`.
//! - [`Lease::release`]: stops renewing and clears the token *before* sending `VDEL`, and reports
//!   honestly what the store did.
//! - [`Lease::holder`] (GET), [`Lease::observe_start`] / [`Lease::observe_stop`] (KEYNOTIFY) and
//!   the [`LeaseEvent::Change`] stream.
//!
//! Safety model: `safe_until = issue_time + duration − margin`, where `issue_time` is the
//! monotonic time at which this machine handed the SET to the client. The store starts its TTL
//! when it runs the SET, which is never before that instant, so `safe_until` never runs past the
//! store's expiry as long as the clock-rate difference stays within `margin`. The completion's
//! `sent_at` is deliberately not used: it is the *last* publish, and a redelivered request may
//! have been applied at the first one. [`LeaseEvent::Lost`] is raised at `safe_until` whether or
//! not a reply ever comes.
//!
//! Every SET of ours replaces the store's TTL with its own PX when it runs, so `safe_until` is
//! also capped by every SET of ours that may still run: one sent while held (a re-acquire with
//! a shorter duration lowers `safe_until` as it leaves, whatever its reply), and one whose
//! outcome is unknown, for as long as it may still land (a grant made meanwhile is safe only
//! for that SET's `duration − margin` from its own issue, and a reconnect that may publish it
//! again caps the grant from the reconnect on).
//!
//! The monotonic clock must keep counting while the system is suspended (the adapters use
//! `CLOCK_BOOTTIME` where there is one). As a second line, a wall clock that advances further
//! than the monotonic clock plus the margin between two inputs ends the grant
//! ([`LostReason::ClockJump`]): the monotonic clock stood still while the TTL ran. An acquire whose outcome is unknown leaves the lease
//! [`LeaseState::MaybeHeld`]: never reported held (no token) nor free until the store proves it.
//!
//! Requests that land late (see `exposure` for the bounds: a request cannot be applied after
//! its deadline + its rounded-up Message Expiry, unless a reconnect publishes a copy again):
//! - a release `VDEL` carries the same holder value as our next grant, so if it lands after a
//!   re-acquire it deletes that grant and lets someone else in while we believe we hold (S1).
//!   Hence no new SET while a VDEL of ours may still be applied ([`LeaseError::ReleasePending`]
//!   with the instant to retry at), and a reconnect that may republish one ends a grant made
//!   since ([`LostReason::ReleaseInDoubt`]) and voids an acquire in flight;
//! - a late SET of ours (earlier term) is harmless to others: NEX refuses it when someone else
//!   holds, and when it applies it holds only for its own PX, tracked by `MaybeHeld`;
//! - a late KEYNOTIFY after our STOP leaves a registration behind, so once we stop observing a
//!   final STOP is sent after every KEYNOTIFY of ours can no longer be applied, and repeated
//!   (every [`MAX_RENEW_RETRY`]) until the store answers it. It is a plain request, so another
//!   machine observing the same key on the same client loses its registration too.
//!
//! Inputs are routed by the driver: completions whose [`RequestId`] this machine got from the
//! [`Requester`] ([`Lease::handle_completion`] returns whether it consumed one), notifications
//! for its key, reconnects, re-registrations and timeouts.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use crate::client::{Completion, Notification, RequestError, RequestId, RequestOptions, Requester};
use crate::command::{Request, Response, SetCondition, SetOutcome, VdelOutcome};
use crate::hlc::Hlc;
use crate::time::{Instant, Now};

pub(crate) mod exposure;

use exposure::{apply_bound, Exposure};

mod events;
mod options;

pub use events::{LeaseError, LeaseEvent, LeaseState, LostReason, ReleaseOutcome};
use options::WALL_RESOLUTION;
pub use options::{
    default_margin, holder_value, validate, ConfigRule, LeaseOptions, OpId, Timing,
    DEFAULT_MARGIN_DIVISOR, DEFAULT_MIN_MARGIN, DEFAULT_REQUEST_TIMEOUT, MAX_RENEW_RETRY,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class {
    pub(crate) transient: bool,
    pub(crate) maybe_applied: bool,
}

/// How a request failure is treated: can a retry help, and may the request have run?
pub(crate) fn classify(e: &RequestError) -> Class {
    let (transient, maybe_applied) = match e {
        RequestError::Timeout { sent } => (true, *sent),
        RequestError::Unknown => (true, true),
        RequestError::Busy => (true, false),
        // Never sent; the next connection may be granted the subscription.
        RequestError::SubscriptionRefused => (true, false),
        RequestError::Status { status, .. } => match status {
            // Rejected before running.
            400 | 415 | 505 => (false, false),
            408 | 503 => (true, true),
            _ => (false, true),
        },
        RequestError::ClockDrift | RequestError::BadReply => (false, true),
        RequestError::Service(_) | RequestError::InvalidArgument(_) => (false, false),
    };
    Class {
        transient,
        maybe_applied,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Acquire(OpId),
    Renew,
}

#[derive(Debug, Clone)]
struct Attempt {
    id: RequestId,
    issued: Instant,
    purpose: Purpose,
    timing: Timing,
    holder: Bytes,
    /// A release of ours may be applied after this SET (a reconnect exposed it again): even
    /// if applied, the SET is no hold.
    tainted: bool,
}

#[derive(Debug, Clone)]
struct Grant {
    token: Hlc,
    safe_until: Instant,
    /// When the reply of the SET that made this grant arrived: the store ran it before then.
    acked_at: Instant,
    timing: Timing,
    holder: Bytes,
    renew_at: Option<Instant>,
    renew_failed: bool,
}

impl Grant {
    fn renewing(&self) -> bool {
        self.timing.renew.is_some()
    }
}

#[derive(Debug, Clone)]
enum Phase {
    Idle,
    Acquiring,
    Held(Grant),
    MaybeHeld {
        until: Instant,
    },
    Releasing {
        op: OpId,
        id: RequestId,
        issued: Instant,
        timeout: Duration,
    },
}

#[derive(Debug, Clone)]
enum Observe {
    Off,
    Starting {
        id: RequestId,
        op: OpId,
        issued: Instant,
        timeout: Duration,
    },
    /// Registered; `timeout` is the caller's request timeout from `observe_start`, which the
    /// re-check GET after a re-registration uses too.
    On {
        timeout: Duration,
    },
}

/// A request whose answer no longer matters to the user (abandoned renewal, cleanup, ...),
/// but whose outcome may still matter to the machine.
#[derive(Debug, Clone)]
struct Ignored {
    id: RequestId,
    what: Abandoned,
}

#[derive(Debug, Clone)]
enum Abandoned {
    /// Nothing to do with the answer.
    Plain,
    /// An abandoned SET dropped by a release: a late success is deleted again.
    Set { holder: Bytes, timing: Timing },
    /// A cleanup VDEL: an unknown outcome keeps re-acquiring blocked.
    Vdel { issued: Instant, timeout: Duration },
    /// An abandoned KEYNOTIFY: once it ends, a STOP must follow it.
    KeyNotify { issued: Instant, timeout: Duration },
}

/// The `KEYNOTIFY STOP` that makes sure the store keeps no registration of ours once we stop
/// observing: it must be issued after every KEYNOTIFY of ours can no longer be applied, and
/// repeated until the store answers it (at most [`SWEEP_ATTEMPTS`] failures in a row).
#[derive(Debug, Clone, Copy, Default)]
struct Sweep {
    /// A STOP is needed, not before this instant.
    due: Option<Instant>,
    /// The sweep STOP in flight and when it was issued.
    in_flight: Option<(RequestId, Instant)>,
    /// STOPs of ours that failed in a row without reaching the store.
    failures: u8,
}

/// How many STOPs in a row may fail without reaching the store before the machine stops
/// repeating them. The client keeps re-sending a STOP that may be lost, with back-off, while
/// connected, and a new connection without a session drops every registration; repeating
/// forever here would only keep the machine of a dropped handle alive while the store is
/// unreachable.
const SWEEP_ATTEMPTS: u8 = 8;

/// SETs of ours that may still reach the store. One that lands at `t` leaves the store's TTL
/// at `t + its duration`, possibly shorter than the grant we hold (a re-acquire with a smaller
/// duration whose outcome is unknown). No SET lands before it was sent, so while any of them
/// may still land after an instant `from`, a grant is safe only until `from` + the shortest
/// `duration − margin` among them.
#[derive(Debug, Clone, Copy, Default)]
struct PendingSets {
    /// The shortest `duration − margin` of the SETs `exposure` tracks; `None` once none of
    /// them can land any more.
    reach: Option<Duration>,
    exposure: Exposure,
}

impl PendingSets {
    fn include(&mut self, timing: &Timing) {
        let reach = timing.duration.saturating_sub(timing.margin);
        self.reach = Some(self.reach.map_or(reach, |r| r.min(reach)));
    }

    /// A SET was handed to the client at `issued`.
    fn sent(&mut self, issued: Instant, timing: &Timing, last_connect: Option<Instant>) {
        if self.exposure.settled(issued, last_connect) {
            self.reach = None;
        }
        self.exposure.sent(issued, timing.timeout);
        self.include(timing);
    }

    /// A SET issued at `issued` ended at `now` without a reply proving its outcome.
    fn unknown(&mut self, issued: Instant, timing: &Timing, now: Instant) {
        self.exposure.unknown(issued, timing.timeout, now);
        self.include(timing);
    }

    /// The latest safe instant for a grant, given that a SET whose outcome is unknown may
    /// still land after `from`; `None` when none can.
    fn cap(&self, from: Instant) -> Option<Instant> {
        if self.exposure.blocks(from) {
            self.reach.map(|r| from + r)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Query {
    id: RequestId,
    op: Option<OpId>,
    issued: Instant,
}

/// The lease machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct Lease {
    name: Bytes,
    phase: Phase,
    /// What `token()` reports when not held.
    ended: LeaseError,
    attempt: Option<Attempt>,
    observe: Observe,
    /// KEYNOTIFY STOPs in flight. A new observation may start meanwhile: the client forgets
    /// the key at once and the STOP reaches the store before the new KEYNOTIFY.
    stops: Vec<(RequestId, OpId, Instant)>,
    queries: Vec<Query>,
    resync_again: bool,
    ignored: Vec<Ignored>,
    /// No SET of ours whose outcome is unknown can be applied by the store after this instant.
    unknown_apply_until: Instant,
    /// No grant of ours can still exist on the store after this instant.
    maybe_until: Instant,
    /// Release VDELs that may still reach the store: no new grant while one may be applied.
    vdel: Exposure,
    /// SETs that may still reach the store: they cap `safe_until`.
    sets: PendingSets,
    /// The latest time input, to notice a wall clock that ran ahead of the monotonic one.
    clock_ref: Option<Now>,
    /// KEYNOTIFYs that may still reach the store: the final STOP must come after them.
    notify: Exposure,
    /// The timeout of the last KEYNOTIFY or STOP (used by the sweep STOP).
    notify_timeout: Duration,
    sweep: Sweep,
    /// When the connection last came back (`handle_connected`).
    last_connect: Instant,
    /// Whether the driver reports disconnects ([`Lease::handle_disconnected`]).
    disconnects_reported: bool,
    last_holder: Option<Bytes>,
    events: VecDeque<LeaseEvent>,
    op_seq: u64,
}

fn later(a: Instant, b: Instant) -> Instant {
    if a > b {
        a
    } else {
        b
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if x < y { x } else { y }),
        (x, None) => x,
        (None, y) => y,
    }
}

fn request_options(timeout: Duration) -> RequestOptions {
    RequestOptions {
        timeout: Some(timeout),
        ..RequestOptions::default()
    }
}

impl Lease {
    /// A lease machine for the key `name` (non-empty).
    pub fn new(name: Bytes) -> Result<Lease, LeaseError> {
        if name.is_empty() {
            return Err(LeaseError::InvalidArgument("lease name must not be empty"));
        }
        Ok(Lease {
            name,
            phase: Phase::Idle,
            ended: LeaseError::NoLease,
            attempt: None,
            observe: Observe::Off,
            stops: Vec::new(),
            queries: Vec::new(),
            resync_again: false,
            ignored: Vec::new(),
            unknown_apply_until: Instant::ZERO,
            maybe_until: Instant::ZERO,
            vdel: Exposure::default(),
            sets: PendingSets::default(),
            clock_ref: None,
            notify: Exposure::default(),
            notify_timeout: DEFAULT_REQUEST_TIMEOUT,
            sweep: Sweep::default(),
            last_connect: Instant::ZERO,
            disconnects_reported: false,
            last_holder: None,
            events: VecDeque::new(),
            op_seq: 0,
        })
    }

    /// The lease key.
    pub fn name(&self) -> &Bytes {
        &self.name
    }

    /// The holder value of the last acquisition, if any.
    pub fn last_holder(&self) -> Option<&Bytes> {
        self.last_holder.as_ref()
    }

    fn next_op(&mut self) -> OpId {
        self.op_seq = self.op_seq.wrapping_add(1);
        OpId(self.op_seq)
    }

    /// One acquisition attempt: `SET name holder NEX PX duration`. With `options.renew` the
    /// machine renews automatically once held. While held without auto-renew this is a manual
    /// renewal. Errors at once with `Renewing` while auto-renewing, `Busy` while an acquire or
    /// release is in flight, `InvalidConfig` when the options break a rule.
    pub fn acquire<R: Requester + ?Sized>(
        &mut self,
        duration: Duration,
        options: &LeaseOptions,
        r: &mut R,
        now: Now,
    ) -> Result<OpId, LeaseError> {
        self.expire(now);
        let timing = validate(duration, options).map_err(LeaseError::InvalidConfig)?;
        let holder = holder_value(r.client_id(), options.session_id.as_deref());
        match &self.phase {
            Phase::Releasing { .. } => return Err(LeaseError::Busy),
            Phase::Held(g) if g.renewing() => return Err(LeaseError::Renewing),
            Phase::Held(g) if g.holder != holder => {
                return Err(LeaseError::InvalidArgument(
                    "the lease is held under another session id",
                ))
            }
            _ => {}
        }
        if self.attempt.is_some() {
            return Err(LeaseError::Busy);
        }
        // A release VDEL of ours that may still be applied would delete the new grant (it
        // carries the same holder value) and let someone else in while we believe we hold.
        if let Some(until) = self.release_pending(now.mono) {
            return Err(LeaseError::ReleasePending { until });
        }
        if holder.is_empty() {
            return Err(LeaseError::InvalidArgument("holder must not be empty"));
        }
        let id = r
            .request(
                self.set_request(&holder, &timing),
                request_options(timing.timeout),
                now,
            )
            .map_err(LeaseError::Request)?;
        let op = self.next_op();
        self.set_sent(now.mono, &timing);
        self.attempt = Some(Attempt {
            id,
            issued: now.mono,
            purpose: Purpose::Acquire(op),
            timing,
            holder: holder.clone(),
            tainted: false,
        });
        self.last_holder = Some(holder);
        if !matches!(self.phase, Phase::Held(_)) {
            self.phase = Phase::Acquiring;
        }
        Ok(op)
    }

    /// The previous reconnect when the driver does not report disconnects (see
    /// [`Exposure::reconnected`]), else `None`.
    fn unreported_last_connect(&self) -> Option<Instant> {
        (!self.disconnects_reported).then_some(self.last_connect)
    }

    /// A SET of ours left at `issued`. Once applied it replaces the store's TTL with its own
    /// duration, counted from when it runs (not before `issued`), so a grant we hold is safe
    /// no longer than that SET's own rule allows, whatever its reply turns out to be.
    fn set_sent(&mut self, issued: Instant, timing: &Timing) {
        let last = self.unreported_last_connect();
        self.sets.sent(issued, timing, last);
        self.cap_grant((issued + timing.duration) - timing.margin);
    }

    /// Lowers the held grant's `safe_until` to `cap` if it is later.
    fn cap_grant(&mut self, cap: Instant) {
        if let Phase::Held(g) = &mut self.phase {
            if cap < g.safe_until {
                g.safe_until = cap;
            }
        }
    }

    fn set_request(&self, holder: &Bytes, timing: &Timing) -> Request {
        Request::Set {
            key: self.name.clone(),
            value: holder.clone(),
            condition: SetCondition::NotExistsOrEqual,
            px_ms: Some(timing.px_ms),
        }
    }

    /// Releases: stops renewing and clears the token first, then sends `VDEL name holder`
    /// (the holder of the current lease, else the one built from `options.session_id`). An
    /// acquire in flight is answered `Cancelled`. Answered by [`LeaseEvent::Released`].
    pub fn release<R: Requester + ?Sized>(
        &mut self,
        options: &LeaseOptions,
        r: &mut R,
        now: Now,
    ) -> Result<OpId, LeaseError> {
        self.expire(now);
        if matches!(self.phase, Phase::Releasing { .. }) {
            return Err(LeaseError::Busy);
        }
        let timeout = options.request_timeout();
        if timeout.is_zero() {
            return Err(LeaseError::InvalidConfig(ConfigRule::TimeoutNonZero));
        }
        let holder = match (&self.phase, options.session_id.as_deref()) {
            (Phase::Held(g), _) => g.holder.clone(),
            (_, Some(session)) => holder_value(r.client_id(), Some(session)),
            (_, None) => self
                .last_holder
                .clone()
                .unwrap_or_else(|| holder_value(r.client_id(), None)),
        };
        // Stop renewing and clear the token before anything is sent: a renewal can no longer
        // start, and one in flight is abandoned (its late success is deleted again).
        if let Phase::Held(g) = &self.phase {
            let bound = g.acked_at + g.timing.duration + g.timing.margin;
            self.maybe_until = later(self.maybe_until, bound);
        }
        self.phase = Phase::Idle;
        self.ended = LeaseError::NoLease;
        let abandoned = self.attempt.take();
        if let Some(att) = abandoned {
            self.abandon(&att, now.mono, true);
            if let Purpose::Acquire(op) = att.purpose {
                self.events.push_back(LeaseEvent::AcquireFailed {
                    op,
                    error: LeaseError::Cancelled,
                });
            }
        }
        let request = Request::Vdel {
            key: self.name.clone(),
            value: holder,
        };
        match r.request(request, request_options(timeout), now) {
            Ok(id) => {
                let op = self.next_op();
                self.vdel.sent(now.mono, timeout);
                self.phase = Phase::Releasing {
                    op,
                    id,
                    issued: now.mono,
                    timeout,
                };
                Ok(op)
            }
            Err(e) => {
                self.settle_without_proof(now.mono);
                Err(LeaseError::Request(e))
            }
        }
    }

    /// Asks the store who holds the lease (`GET name`). Answered by [`LeaseEvent::Holder`].
    pub fn holder<R: Requester + ?Sized>(
        &mut self,
        timeout: Option<Duration>,
        r: &mut R,
        now: Now,
    ) -> Result<OpId, LeaseError> {
        self.expire(now);
        let timeout = timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if timeout.is_zero() {
            return Err(LeaseError::InvalidConfig(ConfigRule::TimeoutNonZero));
        }
        let id = r
            .request(
                Request::Get {
                    key: self.name.clone(),
                },
                request_options(timeout),
                now,
            )
            .map_err(LeaseError::Request)?;
        let op = self.next_op();
        self.queries.push(Query {
            id,
            op: Some(op),
            issued: now.mono,
        });
        Ok(op)
    }

    /// Starts observing the lease key (KEYNOTIFY). Answered by [`LeaseEvent::ObserveStarted`];
    /// changes then arrive as [`LeaseEvent::Change`].
    pub fn observe_start<R: Requester + ?Sized>(
        &mut self,
        timeout: Option<Duration>,
        r: &mut R,
        now: Now,
    ) -> Result<OpId, LeaseError> {
        if !matches!(self.observe, Observe::Off) {
            return Err(LeaseError::AlreadyObserving);
        }
        let timeout = timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if timeout.is_zero() {
            return Err(LeaseError::InvalidConfig(ConfigRule::TimeoutNonZero));
        }
        let id = r
            .observe(self.name.clone(), request_options(timeout), now)
            .map_err(LeaseError::Request)?;
        let op = self.next_op();
        self.notify.sent(now.mono, timeout);
        self.notify_timeout = timeout;
        // The new registration is wanted: no sweep STOP may remove it.
        self.sweep.due = None;
        self.sweep.failures = 0;
        self.observe = Observe::Starting {
            id,
            op,
            issued: now.mono,
            timeout,
        };
        Ok(op)
    }

    /// Stops observing (KEYNOTIFY STOP with its own `timeout`). A start still in flight is
    /// answered `Cancelled`. Answered by [`LeaseEvent::ObserveStopped`]. If the STOP cannot
    /// even be started the machine stops reporting changes anyway and returns the error.
    pub fn observe_stop<R: Requester + ?Sized>(
        &mut self,
        timeout: Option<Duration>,
        r: &mut R,
        now: Now,
    ) -> Result<OpId, LeaseError> {
        let timeout = timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if timeout.is_zero() {
            return Err(LeaseError::InvalidConfig(ConfigRule::TimeoutNonZero));
        }
        match self.observe.clone() {
            Observe::Off => return Err(LeaseError::NotObserving),
            Observe::Starting {
                id,
                op,
                issued,
                timeout,
            } => {
                // The KEYNOTIFY may land after this STOP: its end triggers another one.
                self.ignored.push(Ignored {
                    id,
                    what: Abandoned::KeyNotify { issued, timeout },
                });
                self.events.push_back(LeaseEvent::ObserveStarted {
                    op,
                    result: Err(LeaseError::Cancelled),
                });
            }
            Observe::On { .. } => {}
        }
        self.observe = Observe::Off;
        self.notify_timeout = timeout;
        if self.notify.blocks(now.mono) {
            self.sweep_needed(now.mono);
        }
        let id = match r.unobserve(self.name.clone(), request_options(timeout), now) {
            Ok(id) => id,
            Err(e) => {
                self.sweep_needed(now.mono);
                return Err(LeaseError::Request(e));
            }
        };
        let op = self.next_op();
        self.stops.push((id, op, now.mono));
        Ok(op)
    }

    /// Whether a KEYNOTIFY of ours may still be registered at the store without being wanted:
    /// a cleanup STOP is due (it waits until that KEYNOTIFY can no longer land), in flight,
    /// or waits for the outcome of an abandoned KEYNOTIFY; or a KEYNOTIFY was on its way when
    /// the connection dropped, and the reconnect may publish it again (the machine then
    /// schedules that STOP at the reconnect). A driver keeps the machine (and its timer) until
    /// this is false, or the registration outlives it.
    pub fn unregistration_pending(&self) -> bool {
        self.sweep.due.is_some()
            || self.sweep.in_flight.is_some()
            || self.notify.held_for_reconnect()
            || self
                .ignored
                .iter()
                .any(|i| matches!(i.what, Abandoned::KeyNotify { .. }))
    }

    /// Renews no more: the grant is left to expire at the store (a driver whose handle is gone
    /// but whose machine stays for its cleanup STOP; a reconnect must not renew it either).
    pub fn stop_renewing(&mut self) {
        if let Phase::Held(g) = &mut self.phase {
            g.timing.renew = None;
            g.renew_at = None;
            g.renew_failed = false;
        }
    }

    /// When the cleanup STOP of [`Lease::unregistration_pending`] may leave (`None`: it waits
    /// for a reply, or none is due).
    pub fn unregistration_at(&self) -> Option<Instant> {
        self.sweep_at()
    }

    /// Sends the cleanup STOP if it is due, and does nothing else: no renewal, no loss. What a
    /// driver calls for a machine whose handle is gone and whose lease is left to expire.
    pub fn handle_unregistration_timeout<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        self.start_sweep(r, now);
    }

    /// Whether KEYNOTIFY is registered or being registered.
    pub fn is_observing(&self) -> bool {
        matches!(self.observe, Observe::Starting { .. } | Observe::On { .. })
    }

    /// Whether auto-renew is active.
    pub fn is_renewing(&self) -> bool {
        matches!(&self.phase, Phase::Held(g) if g.renewing())
    }

    /// The current fencing token, or the error that ended the lease ([`LeaseError::NoLease`]
    /// when never acquired, refused or released).
    pub fn token(&self, now: Instant) -> Result<Hlc, LeaseError> {
        match &self.phase {
            Phase::Held(g) if now < g.safe_until => Ok(g.token.clone()),
            Phase::Held(_) => Err(LeaseError::Lost(LostReason::Expired)),
            Phase::Releasing { .. } => Err(LeaseError::NoLease),
            _ => Err(self.ended.clone()),
        }
    }

    /// The state at `now` (held only while `now < safe_until`).
    pub fn state(&self, now: Instant) -> LeaseState {
        match &self.phase {
            Phase::Idle => LeaseState::Idle,
            Phase::Acquiring => LeaseState::Acquiring,
            Phase::Held(g) if now < g.safe_until => LeaseState::Held {
                token: g.token.clone(),
                safe_until: g.safe_until,
            },
            Phase::Held(_) | Phase::MaybeHeld { .. } => LeaseState::MaybeHeld,
            Phase::Releasing { .. } => LeaseState::Releasing,
        }
    }

    /// Number of requests whose completion this machine still awaits.
    pub fn outstanding(&self) -> usize {
        usize::from(self.attempt.is_some())
            + usize::from(matches!(self.phase, Phase::Releasing { .. }))
            + usize::from(matches!(self.observe, Observe::Starting { .. }))
            + self.stops.len()
            + usize::from(self.sweep.in_flight.is_some())
            + self.queries.len()
            + self.ignored.len()
    }

    /// Whether `id` is a request this machine awaits.
    pub fn owns(&self, id: RequestId) -> bool {
        self.attempt.as_ref().is_some_and(|a| a.id == id)
            || matches!(self.phase, Phase::Releasing { id: x, .. } if x == id)
            || matches!(self.observe, Observe::Starting { id: x, .. } if x == id)
            || self.stops.iter().any(|(x, _, _)| *x == id)
            || self.sweep.in_flight.is_some_and(|(x, _)| x == id)
            || self.queries.iter().any(|q| q.id == id)
            || self.ignored.iter().any(|i| i.id == id)
    }

    /// The next event, or `None` when drained.
    pub fn poll_event(&mut self) -> Option<LeaseEvent> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`Lease::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let lease = match &self.phase {
            Phase::Held(g) => {
                let renew = if self.attempt.is_none() {
                    g.renew_at
                } else {
                    None
                };
                earliest(Some(g.safe_until), renew)
            }
            Phase::MaybeHeld { until } => Some(*until),
            _ => None,
        };
        earliest(lease, self.sweep_at())
    }

    /// When the sweep STOP may leave: observation off, no KEYNOTIFY of ours in flight, and
    /// none that may still be applied.
    fn sweep_at(&self) -> Option<Instant> {
        let due = self.sweep.due?;
        let waiting = self.sweep.in_flight.is_some()
            || !matches!(self.observe, Observe::Off)
            || self
                .ignored
                .iter()
                .any(|i| matches!(i.what, Abandoned::KeyNotify { .. }));
        if waiting {
            None
        } else {
            Some(later(due, self.notify.until()))
        }
    }

    fn sweep_needed(&mut self, not_before: Instant) {
        if matches!(self.observe, Observe::Off) {
            self.sweep.due = Some(match self.sweep.due {
                Some(d) if d < not_before => d,
                _ => not_before,
            });
        }
    }

    fn start_sweep<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        if self.sweep_at().is_none_or(|t| now.mono < t) {
            return;
        }
        // A plain request, not `unobserve`: the client's observation count is not ours to
        // change any more (another machine of this client may observe the key).
        let stop = Request::KeyNotifyStop {
            key: self.name.clone(),
        };
        match r.request(stop, request_options(self.notify_timeout), now) {
            Ok(id) => {
                self.sweep.due = None;
                self.sweep.in_flight = Some((id, now.mono));
            }
            Err(e) if classify(&e).transient => {
                self.sweep.due = None;
                self.sweep_failed(now.mono);
            }
            Err(_) => self.sweep.due = None,
        }
    }

    /// A STOP issued at `issued` ended with `result`: another one is needed if it may not
    /// have run, or if a KEYNOTIFY of ours may be applied after it.
    fn stop_ended(
        &mut self,
        issued: Instant,
        result: &Result<Response, RequestError>,
        now: Instant,
    ) {
        match result {
            Ok(_) => {
                self.sweep.failures = 0;
                if issued < self.notify.until() {
                    self.sweep_needed(self.notify.until());
                }
            }
            Err(e) if classify(e).transient => self.sweep_failed(now),
            // Refused for good: retrying cannot help.
            Err(_) => {}
        }
    }

    /// A STOP of ours did not reach the store: another one after a pause, up to
    /// [`SWEEP_ATTEMPTS`] in a row.
    fn sweep_failed(&mut self, now: Instant) {
        self.sweep.failures = self.sweep.failures.saturating_add(1);
        if self.sweep.failures < SWEEP_ATTEMPTS {
            self.sweep_needed(now + MAX_RENEW_RETRY);
        }
    }

    /// Until when an earlier release of ours may still be applied, if it may be now.
    fn release_pending(&self, now: Instant) -> Option<Instant> {
        let mut until = None;
        // An abandoned VDEL still waiting for its reply past its apply bound can no longer be
        // applied (a copy published again is covered by `self.vdel` below): counting it would
        // refuse every acquire with an `until` already in the past, and a lock retrying at
        // that `until` would spin.
        let in_flight = self
            .ignored
            .iter()
            .filter_map(|i| match i.what {
                Abandoned::Vdel { issued, timeout } => Some(apply_bound(issued, timeout, issued)),
                _ => None,
            })
            .filter(|bound| *bound > now);
        for bound in in_flight {
            until = Some(until.map_or(bound, |u| later(u, bound)));
        }
        if self.vdel.blocks(now) {
            let bound = self.vdel.until();
            until = Some(until.map_or(bound, |u| later(u, bound)));
        }
        until
    }

    /// Time passed: raises `Lost` at `safe_until`, starts due renewals, ends `MaybeHeld` once
    /// no grant of ours can remain.
    pub fn handle_timeout<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        self.expire(now);
        let due = match &self.phase {
            Phase::Held(g) => self.attempt.is_none() && g.renew_at.is_some_and(|t| now.mono >= t),
            _ => false,
        };
        if due {
            self.start_renew(r, now);
        }
        self.start_sweep(r, now);
    }

    /// The connection is up again: a renewal that failed meanwhile is retried at once.
    ///
    /// A reconnect that keeps the MQTT session may publish unacknowledged requests again, with
    /// a fresh Message Expiry. If a release of ours may be among them, a grant made since is
    /// no longer safe (it is `Lost` with [`LostReason::ReleaseInDoubt`]) and an acquire in
    /// flight will not count as a hold; if a KEYNOTIFY may be among them, the final STOP is
    /// repeated after it.
    pub fn handle_connected<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        self.expire(now);
        let last = core::mem::replace(&mut self.last_connect, now.mono);
        let last = (!self.disconnects_reported).then_some(last);
        if self.vdel.reconnected(last, now.mono) {
            self.lose(LostReason::ReleaseInDoubt, now.mono);
            if let Some(att) = self.attempt.as_mut() {
                att.tainted = true;
            }
        }
        if self.notify.reconnected(last, now.mono) {
            self.sweep_needed(self.notify.until());
        }
        // A SET of ours published again lands from now on, with its own duration.
        if self.sets.exposure.reconnected(last, now.mono) {
            if let Some(cap) = self.sets.cap(now.mono) {
                self.cap_grant(cap);
                self.expire(now);
            }
        }
        let retry = match &mut self.phase {
            Phase::Held(g) if g.renewing() && g.renew_failed && self.attempt.is_none() => {
                g.renew_at = Some(now.mono);
                true
            }
            _ => false,
        };
        if retry {
            self.start_renew(r, now);
        }
    }

    /// The connection dropped. Requests on their way may be published again at the reconnect
    /// (see [`Lease::handle_connected`]); drivers that do not report drops get a more
    /// conservative rule.
    pub fn handle_disconnected(&mut self, now: Now) {
        self.expire(now);
        self.disconnects_reported = true;
        self.sets.exposure.disconnected(now.mono);
        self.vdel.disconnected(now.mono);
        self.notify.disconnected(now.mono);
    }

    /// The client re-registered `key` after a reconnect (`ok` = the KEYNOTIFY succeeded).
    /// When it is our key and we observe it, the machine GETs the key and reports the current
    /// holder as a [`LeaseEvent::Change`], since notifications may have been missed while
    /// disconnected. Returns whether the key is ours.
    pub fn handle_reregistered<R: Requester + ?Sized>(
        &mut self,
        key: &[u8],
        ok: bool,
        r: &mut R,
        now: Now,
    ) -> bool {
        // Even when the registration failed, a GET tells where things stand; the lock's
        // fallback timer covers the notifications that may then be missed.
        let _ = ok;
        if key != self.name.as_ref() || !matches!(self.observe, Observe::On { .. }) {
            return false;
        }
        self.expire(now);
        if self.queries.iter().any(|q| q.op.is_none()) {
            self.resync_again = true;
        } else {
            self.start_resync(r, now);
        }
        true
    }

    fn start_resync<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        // The caller's request timeout of the observation (of the last KEYNOTIFY or STOP if
        // the observation ended while an earlier re-check was in flight).
        let timeout = match self.observe {
            Observe::On { timeout } => timeout,
            _ => self.notify_timeout,
        };
        let get = Request::Get {
            key: self.name.clone(),
        };
        if let Ok(id) = r.request(get, request_options(timeout), now) {
            self.queries.push(Query {
                id,
                op: None,
                issued: now.mono,
            });
        }
    }

    /// A key notification. Consumed (returns true) when it is for our key while observing:
    /// reported as [`LeaseEvent::Change`]; if it shows our held lease deleted or taken (with a
    /// version not older than our token) the lease is `Lost` first.
    pub fn handle_notification(&mut self, n: &Notification, now: Now) -> bool {
        if n.key != self.name || !self.is_observing() {
            return false;
        }
        self.expire(now);
        let reason = match &self.phase {
            Phase::Held(g) if n.version >= g.token => match &n.value {
                None => Some(LostReason::Deleted),
                Some(v) if *v != g.holder => Some(LostReason::Taken),
                Some(_) => None,
            },
            _ => None,
        };
        if let Some(reason) = reason {
            self.lose(reason, now.mono);
        }
        self.events.push_back(LeaseEvent::Change {
            held: n.value.is_some(),
            holder: n.value.clone(),
        });
        true
    }

    /// A completion. Returns whether it answered a request of this machine.
    pub fn handle_completion<R: Requester + ?Sized>(
        &mut self,
        c: &Completion,
        r: &mut R,
        now: Now,
    ) -> bool {
        // Expire first: a renewal reply that arrives after safe_until is not a hold.
        self.expire(now);
        if let Some(pos) = self.ignored.iter().position(|i| i.id == c.id) {
            let ignored = self.ignored.swap_remove(pos);
            self.on_ignored(ignored, c, r, now);
            return true;
        }
        if self.attempt.as_ref().is_some_and(|a| a.id == c.id) {
            if let Some(att) = self.attempt.take() {
                self.on_set_reply(att, c, now.mono);
            }
            return true;
        }
        if let Phase::Releasing {
            op,
            id,
            issued,
            timeout,
        } = self.phase
        {
            if id == c.id {
                self.on_release_reply(op, issued, timeout, c, now.mono);
                return true;
            }
        }
        if let Some((id, issued)) = self.sweep.in_flight {
            if id == c.id {
                self.sweep.in_flight = None;
                self.stop_ended(issued, &c.result, now.mono);
                return true;
            }
        }
        if let Some(pos) = self.stops.iter().position(|(id, _, _)| *id == c.id) {
            let (_, op, issued) = self.stops.swap_remove(pos);
            self.stop_ended(issued, &c.result, now.mono);
            let result = match &c.result {
                Ok(Response::KeyNotifyStop(registered)) => Ok(*registered),
                Ok(_) => Err(LeaseError::UnexpectedReply),
                Err(e) => Err(LeaseError::Request(e.clone())),
            };
            self.events
                .push_back(LeaseEvent::ObserveStopped { op, result });
            return true;
        }
        if let Some(pos) = self.queries.iter().position(|q| q.id == c.id) {
            let q = self.queries.swap_remove(pos);
            self.on_get_reply(q, c, now.mono);
            if q.op.is_none() && self.resync_again {
                self.resync_again = false;
                self.start_resync(r, now);
            }
            return true;
        }
        match self.observe {
            Observe::Starting {
                id,
                op,
                issued,
                timeout,
            } if id == c.id => {
                match &c.result {
                    Ok(Response::KeyNotify) => {
                        self.observe = Observe::On { timeout };
                        self.events
                            .push_back(LeaseEvent::ObserveStarted { op, result: Ok(()) });
                    }
                    other => {
                        let error = match other {
                            Err(e) => LeaseError::Request(e.clone()),
                            Ok(_) => LeaseError::UnexpectedReply,
                        };
                        self.observe = Observe::Off;
                        if notify_may_have_run(&c.result) {
                            self.notify.unknown(issued, timeout, now.mono);
                            // Whatever the STOP below does, the KEYNOTIFY may land after it.
                            self.sweep_needed(now.mono);
                        }
                        // The client may still remember the key: make it forget.
                        match r.unobserve(self.name.clone(), request_options(timeout), now) {
                            Ok(stop) => self.ignored.push(Ignored {
                                id: stop,
                                what: Abandoned::Plain,
                            }),
                            Err(_) => self.sweep_needed(now.mono),
                        }
                        self.events.push_back(LeaseEvent::ObserveStarted {
                            op,
                            result: Err(error),
                        });
                    }
                }
                true
            }
            _ => false,
        }
    }

    fn on_ignored<R: Requester + ?Sized>(
        &mut self,
        ignored: Ignored,
        c: &Completion,
        r: &mut R,
        now: Now,
    ) {
        let (holder, timing) = match ignored.what {
            Abandoned::Plain => return,
            Abandoned::Vdel { issued, timeout } => {
                if vdel_may_have_run(&c.result) {
                    self.vdel.unknown(issued, timeout, now.mono);
                }
                return;
            }
            Abandoned::KeyNotify { issued, timeout } => {
                if notify_may_have_run(&c.result) {
                    if c.result.is_err() {
                        self.notify.unknown(issued, timeout, now.mono);
                    }
                    // It ran (or may run) after the STOP that went with it.
                    self.sweep_needed(now.mono);
                }
                return;
            }
            Abandoned::Set { holder, timing } => (holder, timing),
        };
        if !matches!(c.result, Ok(Response::Set(SetOutcome::Applied))) {
            return;
        }
        // A renewal abandoned by a release was applied anyway. Unless the user has since
        // started using the lease again, delete it once more so it does not linger.
        let bound = now.mono + timing.duration + timing.margin;
        self.maybe_until = later(self.maybe_until, bound);
        if self.attempt.is_none() && matches!(self.phase, Phase::Idle | Phase::MaybeHeld { .. }) {
            let vdel = Request::Vdel {
                key: self.name.clone(),
                value: holder,
            };
            if let Ok(id) = r.request(vdel, request_options(timing.timeout), now) {
                self.vdel.sent(now.mono, timing.timeout);
                self.ignored.push(Ignored {
                    id,
                    what: Abandoned::Vdel {
                        issued: now.mono,
                        timeout: timing.timeout,
                    },
                });
            }
        }
        if matches!(self.phase, Phase::Idle) {
            self.settle_without_proof(now.mono);
        }
    }

    fn on_set_reply(&mut self, att: Attempt, c: &Completion, now: Instant) {
        match (&c.result, &c.version) {
            (Ok(Response::Set(SetOutcome::Applied)), Some(_)) if att.tainted => {
                let until = self.vdel.until();
                self.set_failed(att, LeaseError::ReleasePending { until }, now);
            }
            (Ok(Response::Set(SetOutcome::Applied)), Some(token)) => {
                let mut safe_until = (att.issued + att.timing.duration) - att.timing.margin;
                // An earlier SET whose outcome is unknown may still land after this one ran
                // and shorten the TTL again.
                if let Some(cap) = self.sets.cap(att.issued) {
                    safe_until = if cap < safe_until { cap } else { safe_until };
                }
                if now >= safe_until {
                    self.set_failed(att, LeaseError::ReplyTooLate, now);
                } else {
                    self.granted(att, token.clone(), safe_until, now);
                }
            }
            (Ok(Response::Set(SetOutcome::Applied)), None) => {
                self.set_failed(att, LeaseError::MissingToken, now);
            }
            (Ok(Response::Set(SetOutcome::NotApplied)), _) => self.refused(att, now),
            (Ok(_), _) => self.set_failed(att, LeaseError::UnexpectedReply, now),
            (Err(e), _) => self.set_failed(att, LeaseError::Request(e.clone()), now),
        }
    }

    fn granted(&mut self, att: Attempt, token: Hlc, safe_until: Instant, now: Instant) {
        // The new SET replaced the store's TTL: only its own send time counts, even if an older
        // grant would have lasted longer (a manual re-acquire with a shorter duration).
        self.phase = Phase::Held(Grant {
            token: token.clone(),
            safe_until,
            acked_at: now,
            timing: att.timing,
            holder: att.holder,
            renew_at: att.timing.renew.map(|i| att.issued + i),
            renew_failed: false,
        });
        self.ended = LeaseError::NoLease;
        self.events.push_back(match att.purpose {
            Purpose::Acquire(op) => LeaseEvent::Acquired {
                op,
                token,
                safe_until,
            },
            Purpose::Renew => LeaseEvent::Renewed { token, safe_until },
        });
    }

    fn refused(&mut self, att: Attempt, now: Instant) {
        if matches!(self.phase, Phase::Held(_)) {
            self.lose(LostReason::Taken, now);
        } else {
            self.ended = LeaseError::NoLease;
        }
        if let Purpose::Acquire(op) = att.purpose {
            self.events.push_back(LeaseEvent::NotAcquired { op });
        }
        // The refusal proves our value was not there when the SET ran (after `issued`).
        self.settle_with_proof(att.issued, now);
    }

    fn set_failed(&mut self, att: Attempt, error: LeaseError, now: Instant) {
        let (transient, applied, maybe_applied) = match &error {
            LeaseError::Request(e) => {
                let class = classify(e);
                (class.transient, false, class.maybe_applied)
            }
            LeaseError::MissingToken | LeaseError::ReplyTooLate => (false, true, true),
            // Applied, but a release of ours may delete it: no hold, try again later.
            LeaseError::ReleasePending { .. } => (true, true, true),
            _ => (false, false, true),
        };
        let t = att.timing;
        if applied {
            // The store ran it before now, so its TTL ends before now + duration (+ margin for
            // clock-rate differences).
            self.maybe_until = later(self.maybe_until, now + t.duration + t.margin);
        } else if maybe_applied {
            self.sets.unknown(att.issued, &t, now);
            let apply_until = now + t.expiry();
            self.unknown_apply_until = later(self.unknown_apply_until, apply_until);
            self.maybe_until = later(self.maybe_until, apply_until + t.duration + t.margin);
        }
        let held = matches!(self.phase, Phase::Held(_));
        if held {
            if transient {
                if let Phase::Held(g) = &mut self.phase {
                    g.renew_failed = true;
                    g.renew_at = g.timing.renew.map(|_| now + g.timing.retry_delay());
                }
            } else {
                self.lose(lost_reason(&error), now);
            }
        } else {
            self.ended = error.clone();
            self.settle_without_proof(now);
        }
        if let Purpose::Acquire(op) = att.purpose {
            self.events
                .push_back(LeaseEvent::AcquireFailed { op, error });
        }
    }

    fn start_renew<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        let Phase::Held(g) = &self.phase else {
            return;
        };
        let (holder, timing) = (g.holder.clone(), g.timing);
        // The renewal carries the very holder of the grant: the session id is never dropped.
        match r.request(
            self.set_request(&holder, &timing),
            request_options(timing.timeout),
            now,
        ) {
            Ok(id) => {
                if let Phase::Held(g) = &mut self.phase {
                    g.renew_at = None;
                }
                self.set_sent(now.mono, &timing);
                self.attempt = Some(Attempt {
                    id,
                    issued: now.mono,
                    purpose: Purpose::Renew,
                    timing,
                    holder,
                    tainted: false,
                });
            }
            Err(e) => {
                if classify(&e).transient {
                    if let Phase::Held(g) = &mut self.phase {
                        g.renew_failed = true;
                        g.renew_at = Some(now.mono + timing.retry_delay());
                    }
                } else {
                    self.lose(LostReason::RequestFailed(e), now.mono);
                }
            }
        }
    }

    fn on_release_reply(
        &mut self,
        op: OpId,
        issued: Instant,
        timeout: Duration,
        c: &Completion,
        now: Instant,
    ) {
        if vdel_may_have_run(&c.result) {
            self.vdel.unknown(issued, timeout, now);
        }
        let result = match &c.result {
            Ok(Response::Vdel(VdelOutcome::Deleted)) => Ok(ReleaseOutcome::Deleted),
            Ok(Response::Vdel(VdelOutcome::NotFound)) => Ok(ReleaseOutcome::NotFound),
            Ok(Response::Vdel(VdelOutcome::Mismatch)) => Ok(ReleaseOutcome::HeldByOther),
            Ok(_) => Err(LeaseError::UnexpectedReply),
            Err(e) => Err(LeaseError::Request(e.clone())),
        };
        self.phase = Phase::Idle;
        if result.is_ok() {
            self.settle_with_proof(issued, now);
        } else {
            self.settle_without_proof(now);
        }
        self.events.push_back(LeaseEvent::Released { op, result });
    }

    fn on_get_reply(&mut self, q: Query, c: &Completion, now: Instant) {
        let result = match &c.result {
            Ok(Response::Get(value)) => Ok(value.clone()),
            Ok(_) => Err(LeaseError::UnexpectedReply),
            Err(e) => Err(LeaseError::Request(e.clone())),
        };
        if let Ok(value) = &result {
            match &self.phase {
                // Only a GET issued after the grant's reply arrived ran after the grant.
                Phase::Held(g) if g.acked_at <= q.issued => match value {
                    None => self.lose(LostReason::Deleted, now),
                    Some(v) if *v != g.holder => self.lose(LostReason::Taken, now),
                    Some(_) => {}
                },
                // Our value there does not tell its expiry: only its absence resolves.
                Phase::MaybeHeld { .. }
                    if self.attempt.is_none() && value.as_ref() != self.last_holder.as_ref() =>
                {
                    self.settle_with_proof(q.issued, now);
                }
                _ => {}
            }
        }
        match q.op {
            Some(op) => self.events.push_back(LeaseEvent::Holder { op, result }),
            None => {
                if let Ok(value) = result {
                    if self.is_observing() {
                        self.events.push_back(LeaseEvent::Change {
                            held: value.is_some(),
                            holder: value,
                        });
                    }
                }
            }
        }
    }

    /// Gives up on an in-flight SET: its completion is swallowed, and since it may still be
    /// applied, it bounds `MaybeHeld`.
    fn abandon(&mut self, att: &Attempt, now: Instant, cleanup: bool) {
        let t = att.timing;
        self.sets.unknown(att.issued, &t, now);
        let apply_until = later(att.issued + t.timeout, now) + t.expiry();
        self.unknown_apply_until = later(self.unknown_apply_until, apply_until);
        self.maybe_until = later(self.maybe_until, apply_until + t.duration + t.margin);
        self.ignored.push(Ignored {
            id: att.id,
            what: if cleanup {
                Abandoned::Set {
                    holder: att.holder.clone(),
                    timing: t,
                }
            } else {
                Abandoned::Plain
            },
        });
    }

    /// Time passed: checks the clocks against each other, then ends what `now` ends.
    fn expire(&mut self, now: Now) {
        self.check_clocks(now);
        let now = now.mono;
        match self.phase {
            Phase::Held(ref g) if now >= g.safe_until => self.lose(LostReason::Expired, now),
            Phase::MaybeHeld { until } if now >= until => self.phase = Phase::Idle,
            _ => {}
        }
    }

    /// A grant's `safe_until` is on the monotonic clock. If that clock stood still while time
    /// went on (a suspend it does not count, a frozen VM), the store's TTL ran out unseen; the
    /// wall clock then shows a jump larger than the monotonic time elapsed. Anything beyond the
    /// margin (plus the wall clock's millisecond resolution) ends the grant. Slewing (NTP) and
    /// backward steps never do. An input older than the last one compares nothing.
    fn check_clocks(&mut self, now: Now) {
        let prev = match self.clock_ref {
            Some(prev) if now.mono < prev.mono => return,
            prev => prev,
        };
        self.clock_ref = Some(now);
        let (Some(prev), Phase::Held(g)) = (prev, &self.phase) else {
            return;
        };
        let wall = Duration::from_millis(now.wall_ms.saturating_sub(prev.wall_ms));
        let mono = now.mono - prev.mono;
        if wall > mono + g.timing.margin + WALL_RESOLUTION {
            self.lose(LostReason::ClockJump { wall, mono }, now.mono);
        }
    }

    /// Ends a held grant: the renewal in flight is abandoned (no `Renewed` after `Lost`); a
    /// manual acquire in flight stays and may bring a new hold.
    fn lose(&mut self, reason: LostReason, now: Instant) {
        if !matches!(self.phase, Phase::Held(_)) {
            return;
        }
        let Phase::Held(g) = core::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let bound = g.acked_at + g.timing.duration + g.timing.margin;
        self.maybe_until = later(self.maybe_until, bound);
        if self
            .attempt
            .as_ref()
            .is_some_and(|a| a.purpose == Purpose::Renew)
        {
            if let Some(att) = self.attempt.take() {
                self.abandon(&att, now, false);
            }
        }
        self.ended = LeaseError::Lost(reason.clone());
        self.events.push_back(LeaseEvent::Lost { reason });
        self.settle_without_proof(now);
    }

    fn settle_without_proof(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Held(_) | Phase::Releasing { .. }) {
            return;
        }
        self.phase = if self.attempt.is_some() {
            Phase::Acquiring
        } else if now < self.maybe_until {
            Phase::MaybeHeld {
                until: self.maybe_until,
            }
        } else {
            Phase::Idle
        };
    }

    /// The store showed, for a request issued at `issued`, that our value is not there. That
    /// settles it unless a SET of ours may still be applied after that.
    fn settle_with_proof(&mut self, issued: Instant, now: Instant) {
        if matches!(self.phase, Phase::Held(_) | Phase::Releasing { .. }) {
            return;
        }
        if issued >= self.unknown_apply_until && self.attempt.is_none() {
            self.maybe_until = Instant::ZERO;
            self.phase = Phase::Idle;
        } else {
            self.settle_without_proof(now);
        }
    }
}

/// Whether a VDEL that ended with `result` may have run (or may still run).
fn vdel_may_have_run(result: &Result<Response, RequestError>) -> bool {
    match result {
        Ok(_) => false,
        Err(e) => classify(e).maybe_applied,
    }
}

/// Whether a KEYNOTIFY that ended with `result` may have registered us (or may still).
fn notify_may_have_run(result: &Result<Response, RequestError>) -> bool {
    match result {
        Ok(Response::KeyNotify) => true,
        Ok(_) => false,
        Err(e) => classify(e).maybe_applied,
    }
}

fn lost_reason(error: &LeaseError) -> LostReason {
    match error {
        LeaseError::Request(e) => LostReason::RequestFailed(e.clone()),
        LeaseError::MissingToken => LostReason::MissingToken,
        LeaseError::ReplyTooLate => LostReason::Expired,
        _ => LostReason::UnexpectedReply,
    }
}

#[cfg(test)]
mod tests;
