//! Ready-made workloads on the real machines, each with the checks it feeds:
//! - [`LeaseContention`]: every node competes for one lease with auto-renew, holds it for a
//!   while, releases, and competes again.
//! - [`LockContention`]: every node locks, does fenced writes to a protected key in its
//!   critical section, unlocks, and locks again.
//! - [`EditCounter`]: every node increments a shared counter with the edit machine; the
//!   counter must end equal to the number of committed edits.
//! - [`LeaderElection`]: every node campaigns; leaders resign after a while (drain, then
//!   release) and campaign again; crashes come from the fault mix.
//! - [`SharedConnection`]: several lock handles per node on one connection, driven through
//!   the client host as the adapters drive it, with dropped futures, dropped handles and
//!   closes in the middle of operations.
//!
//! Each takes optional tamper hooks ([`Tamper`]) that break a machine from the outside (change
//! its events or its requests), so tests can show the checkers catch a broken machine.

mod edit;
mod leader;
mod lease;
mod lock;
mod shared;

use alloc::rc::Rc;
use bytes::Bytes;
use core::time::Duration;

pub use edit::EditCounter;
pub use leader::LeaderElection;
pub use lease::LeaseContention;
pub use lock::LockContention;
pub use shared::SharedConnection;

use super::agent::TrackedRequester;
use crate::client::{Output, RequestError, RequestId, RequestOptions, Requester};
use crate::command::Request;
use crate::lease::LeaseOptions;
use crate::machine::Machine;
use crate::time::Now;

/// Timing shared by the workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Lease duration (PX).
    pub lease: Duration,
    /// Auto-renew interval.
    pub renew: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long a holder keeps the lease before releasing (uniform up to this).
    pub hold: Duration,
    /// Pause between two attempts of one node (uniform up to this).
    pub think: Duration,
}

impl Timing {
    /// A lease of `lease` renewed every `renew`, with a timeout that satisfies the lease
    /// machine's rule (duration > renew + timeout + margin).
    pub fn new(lease: Duration, renew: Duration) -> Timing {
        let margin = crate::lease::default_margin(lease);
        let room = lease.saturating_sub(renew).saturating_sub(margin);
        let timeout = (room / 2).clamp(Duration::from_millis(1), Duration::from_secs(2));
        Timing {
            lease,
            renew,
            timeout,
            hold: lease * 3,
            think: lease / 2,
        }
    }

    /// The lease options for these timings.
    pub fn lease_options(&self) -> LeaseOptions {
        LeaseOptions {
            timeout: Some(self.timeout),
            renew: Some(self.renew),
            ..LeaseOptions::default()
        }
    }

    /// L1 bound: a lease duration for a dead holder to expire, the lock's fallback (one
    /// lease), retries and jitter, a few round trips.
    pub fn liveness_bound(&self) -> Duration {
        self.lease * 3 + self.timeout * 4 + self.think + Duration::from_secs(1)
    }
}

/// An event hook: sees each machine event (and the node's time); `false` drops it.
pub type EventHook<E> = Rc<dyn Fn(&mut E, Now) -> bool>;

/// A request hook: sees (and may change) each request and its options.
pub type RequestHook = Rc<dyn Fn(&mut Request, &mut RequestOptions)>;

/// Hooks that break a machine from the outside (tests of the checkers).
pub struct Tamper<E> {
    /// Sees each machine event before the agent; returning `false` drops it.
    pub event: Option<EventHook<E>>,
    /// Sees each request the machine sends (and may change it, or its options).
    pub request: Option<RequestHook>,
}

impl<E> Clone for Tamper<E> {
    fn clone(&self) -> Self {
        Tamper {
            event: self.event.clone(),
            request: self.request.clone(),
        }
    }
}

impl<E> Default for Tamper<E> {
    fn default() -> Self {
        Tamper {
            event: None,
            request: None,
        }
    }
}

impl<E> Tamper<E> {
    fn keep(&self, e: &mut E, now: Now) -> bool {
        self.event.as_ref().is_none_or(|f| f(e, now))
    }
}

/// A requester that lets a [`Tamper`] rewrite requests on their way out.
struct Tampered<'x, 'a> {
    inner: &'x mut TrackedRequester<'a>,
    hook: Option<&'x RequestHook>,
}

impl Requester for Tampered<'_, '_> {
    fn request(
        &mut self,
        mut request: Request,
        mut options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        if let Some(f) = self.hook {
            f(&mut request, &mut options);
        }
        self.inner.request(request, options, now)
    }

    fn observe(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        self.inner.observe(key, options, now)
    }

    fn unobserve(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        self.inner.unobserve(key, options, now)
    }

    fn client_id(&self) -> &str {
        self.inner.client_id()
    }
}

/// The node's requester with the request hook applied (borrows the hook, not the agent).
fn tampered<'x, 'a>(
    hook: &'x Option<RequestHook>,
    ctx: &'x mut super::agent::Ctx<'a>,
) -> Tampered<'x, 'a> {
    Tampered {
        inner: ctx.requester(),
        hook: hook.as_ref(),
    }
}

/// Feeds a client output to a machine, as an adapter's router does (for an [`Agent`] that
/// drives a machine directly; [`HostAgent`](super::HostAgent) does this for every machine of
/// a host).
///
/// [`Agent`]: super::Agent
pub fn route(m: &mut dyn Machine, out: &Output, r: &mut dyn Requester, now: Now) {
    match out {
        Output::Completion(c) => {
            m.on_completion(c, r, now);
        }
        Output::Notification(n) => {
            m.on_notification(n, r, now);
        }
        Output::Connected { .. } => m.on_connected(r, now),
        Output::Disconnected => m.on_disconnected(now),
        Output::Reregistered { key, result } => {
            m.on_reregistered(key, result.is_ok(), r, now);
        }
        _ => {}
    }
}

/// A random instant from `now` up to `upto` later on the node's monotonic clock (think times,
/// hold times), drawn from `rng` (the node's [`Ctx::rng`](super::Ctx::rng)).
pub fn later(now: Now, rng: &mut crate::rng::Rng, upto: Duration) -> crate::time::Instant {
    let ns = u64::try_from(upto.as_nanos()).unwrap_or(u64::MAX);
    now.mono + Duration::from_nanos(rng.below(ns.max(1)))
}

/// The earlier of two optional deadlines (`None` is "no deadline").
pub fn min_opt(
    a: Option<crate::time::Instant>,
    b: Option<crate::time::Instant>,
) -> Option<crate::time::Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}
