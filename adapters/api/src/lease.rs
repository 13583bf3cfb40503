//! [`Lease`]: one named lease on the state store, the way Go's `leasedlock.Lease` works, in
//! async Rust.
//!
//! ```no_run
//! # async fn demo(conn: leasedlock_api::Connection) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use leasedlock_api::AcquireOptions;
//!
//! let lease = conn.lease("jobs/nightly")?;
//! if lease.acquire(Duration::from_secs(10), &AcquireOptions::new()).await? {
//!     let token = lease.token()?; // fence writes with it
//!     println!("holding with token {token}");
//!     lease.release().await?;
//! }
//! # Ok(()) }
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use leasedlock_core::lease::{self as core_lease, LeaseOptions};

pub use leasedlock_core::lease::{ConfigRule, LostReason, ReleaseOutcome};

use crate::connection::Shared;
use crate::engine::{MachineKind, Op};
use crate::handle::{hold_methods, AbandonGuard, Handle, Identity};
use crate::state_store::{ObserveError, StoreError};

/// Why a lease operation failed.
// Not core's `LeaseError` on purpose: requests fail with this crate's `StoreError`, and a
// closed connection (`Closed`) is an outcome the sans-IO core cannot have.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseError {
    /// No lease: never acquired, refused, or released (Go's `ErrNoLease`).
    NoLease,
    /// The lease is already auto-renewing (Go's `ErrRenewing`).
    Renewing,
    /// A conflicting operation (acquire, release, observe start/stop) is in progress.
    Busy,
    /// `observe` while this handle already observes.
    AlreadyObserving,
    /// Stopping an observation that is not running.
    NotObserving,
    /// The duration and options break a configuration rule.
    InvalidConfig(ConfigRule),
    /// An argument is invalid (the rule).
    InvalidArgument(&'static str),
    /// A state-store request failed.
    Request(StoreError),
    /// The SET succeeded without a `__ts`: there is no fencing token.
    MissingToken,
    /// The SET succeeded, but its reply came after `safe_until`: not a hold.
    ReplyTooLate,
    /// The store sent a reply the command cannot have.
    UnexpectedReply,
    /// The held lease was lost.
    Lost(LostReason),
    /// The operation was superseded (e.g. a release while acquiring).
    Cancelled,
    /// A failure of the core lease machine this crate has no variant of its own for, e.g.
    /// `ReleasePending { until }` (an earlier release of ours may still be applied until then:
    /// retry after it). The core's error itself, also the [`source`](std::error::Error::source).
    Core(core_lease::LeaseError),
    /// Another live handle of this connection already uses this holder value (the same
    /// session id, or the bare client id) for this name: one holder value never acts twice.
    HolderInUse,
    /// The connection was closed.
    Closed,
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseError::Request(e) => write!(f, "state store request failed: {e}"),
            LeaseError::Closed => write!(f, "connection closed"),
            LeaseError::HolderInUse => write!(
                f,
                "another handle of this connection uses this holder value for this name"
            ),
            LeaseError::Core(e) => write!(f, "{e}"),
            other => match other.to_core() {
                Some(core) => write!(f, "{core}"),
                None => write!(f, "lease operation failed"),
            },
        }
    }
}

impl std::error::Error for LeaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LeaseError::Request(e) => Some(e),
            LeaseError::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl LeaseError {
    /// The core's error this is, if the core has it (everything but `HolderInUse` and
    /// `Closed`, which only a connection can have; a `Request` with a `Closed` store error).
    pub fn to_core(&self) -> Option<core_lease::LeaseError> {
        use core_lease::LeaseError as C;
        Some(match self {
            LeaseError::NoLease => C::NoLease,
            LeaseError::Renewing => C::Renewing,
            LeaseError::Busy => C::Busy,
            LeaseError::AlreadyObserving => C::AlreadyObserving,
            LeaseError::NotObserving => C::NotObserving,
            LeaseError::InvalidConfig(rule) => C::InvalidConfig(*rule),
            LeaseError::InvalidArgument(a) => C::InvalidArgument(a),
            LeaseError::Request(e) => C::Request(e.to_core()?),
            LeaseError::MissingToken => C::MissingToken,
            LeaseError::ReplyTooLate => C::ReplyTooLate,
            LeaseError::UnexpectedReply => C::UnexpectedReply,
            LeaseError::Lost(reason) => C::Lost(reason.clone()),
            LeaseError::Cancelled => C::Cancelled,
            LeaseError::Core(e) => e.clone(),
            LeaseError::HolderInUse | LeaseError::Closed => return None,
        })
    }

    /// Whether retrying later may succeed (timeouts, disconnects, busy, late replies, a
    /// pending release): exactly what the core says of the same failure. `HolderInUse` and
    /// `Closed` are not.
    pub fn is_transient(&self) -> bool {
        self.to_core().is_some_and(|e| e.is_transient())
    }
}

impl From<core_lease::LeaseError> for LeaseError {
    fn from(e: core_lease::LeaseError) -> Self {
        use core_lease::LeaseError as C;
        match e {
            C::NoLease => LeaseError::NoLease,
            C::Renewing => LeaseError::Renewing,
            C::Busy => LeaseError::Busy,
            C::AlreadyObserving => LeaseError::AlreadyObserving,
            C::NotObserving => LeaseError::NotObserving,
            C::InvalidConfig(rule) => LeaseError::InvalidConfig(rule),
            C::InvalidArgument(a) => LeaseError::InvalidArgument(a),
            C::Request(r) => LeaseError::Request(r.into()),
            C::MissingToken => LeaseError::MissingToken,
            C::ReplyTooLate => LeaseError::ReplyTooLate,
            C::UnexpectedReply => LeaseError::UnexpectedReply,
            C::Lost(reason) => LeaseError::Lost(reason),
            C::Cancelled => LeaseError::Cancelled,
            other => LeaseError::Core(other),
        }
    }
}

impl From<StoreError> for LeaseError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => LeaseError::Closed,
            other => LeaseError::Request(other),
        }
    }
}

/// Options of [`Lease::acquire`] (and of a lock's acquisition).
///
/// ```
/// use std::time::Duration;
/// use leasedlock_api::AcquireOptions;
///
/// // Renew every 3 s; each request may take 2 s; the lease duration must exceed 3 + 2 + margin.
/// let options = AcquireOptions::new()
///     .renew(Duration::from_secs(3))
///     .timeout(Duration::from_secs(2));
/// # let _ = options;
/// ```
// Not core's `LeaseOptions` on purpose: a builder whose timeout defaults to the connection's
// and whose session id comes from the handle (`to_core` fills both in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcquireOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) renew: Option<Duration>,
    pub(crate) margin: Option<Duration>,
}

impl AcquireOptions {
    /// One attempt with the connection's request timeout, no auto-renew, the default margin.
    pub fn new() -> AcquireOptions {
        AcquireOptions::default()
    }
    /// Per-request timeout.
    pub fn timeout(mut self, timeout: Duration) -> AcquireOptions {
        self.timeout = Some(timeout);
        self
    }
    /// Renew automatically every `interval` while held. The lease duration must exceed
    /// interval + request timeout + margin.
    pub fn renew(mut self, interval: Duration) -> AcquireOptions {
        self.renew = Some(interval);
        self
    }
    /// Safety margin subtracted from the duration to get `safe_until` (covers clock-rate
    /// drift; default 5 % of the duration, at least 100 ms).
    pub fn margin(mut self, margin: Duration) -> AcquireOptions {
        self.margin = Some(margin);
        self
    }

    pub(crate) fn to_core(
        &self,
        default_timeout: Duration,
        session_id: Option<&str>,
    ) -> LeaseOptions {
        LeaseOptions {
            timeout: Some(self.timeout.unwrap_or(default_timeout)),
            renew: self.renew,
            session_id: session_id.map(str::to_string),
            margin: self.margin,
        }
    }
}

/// A change of the observed lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Whether someone holds the lease.
    pub held: bool,
    /// The holder value, if held.
    pub holder: Option<Bytes>,
}

/// A named lease held by this client (or by `clientId:sessionId`).
///
/// ```no_run
/// # async fn demo(conn: leasedlock_api::Connection) -> Result<(), leasedlock_api::LeaseError> {
/// use std::time::Duration;
/// use leasedlock_api::AcquireOptions;
///
/// let lease = conn.lease_with_session("db-migration", "replica-2")?;
/// let options = AcquireOptions::new().renew(Duration::from_secs(5));
/// if lease.acquire(Duration::from_secs(15), &options).await? {
///     // ... migrate, fencing writes with lease.token(), stopping when lease.lost() resolves ...
///     lease.release().await?;
/// }
/// # Ok(()) }
/// ```
///
/// Dropping a handle whose lease is held (or may be held) releases it with a bounded
/// fire-and-forget VDEL; [`Lease::detach`] leaves it to expire instead. Every method is safe to
/// cancel: an abandoned acquisition is released.
#[derive(Debug)]
pub struct Lease {
    handle: Handle,
}

impl Lease {
    pub(crate) fn create(
        shared: Arc<Shared>,
        name: Bytes,
        identity: Identity,
    ) -> Result<Lease, LeaseError> {
        Handle::validate(&name, &identity, "lease name must not be empty")?;
        let handle = Handle::register(shared, name, identity, |name, status| MachineKind::Lease {
            name,
            status,
        })?;
        Ok(Lease { handle })
    }

    /// One acquisition attempt (`SET name holder NEX PX duration`): `true` when held, `false`
    /// when someone else holds it. With [`AcquireOptions::renew`] the lease then renews itself
    /// until released or lost. While held without auto-renew, this renews manually.
    pub async fn acquire(
        &self,
        duration: Duration,
        options: &AcquireOptions,
    ) -> Result<bool, LeaseError> {
        let seq = self.handle.next_seq();
        let options = self.handle.lease_options(options);
        self.handle
            .guarded_call(seq, |reply| Op::Acquire {
                seq,
                duration,
                options,
                reply,
            })
            .await?
    }

    /// Who holds the lease (`GET`): `None` when free.
    pub async fn holder(&self) -> Result<Option<Bytes>, LeaseError> {
        let timeout = Some(self.handle.shared.request_timeout);
        self.handle
            .call(|reply| Op::Holder { timeout, reply })
            .await?
    }

    /// Starts observing the lease (KEYNOTIFY): a stream of [`Change`]s (a release or an expiry
    /// arrives as `held = false`), and of `Err(ObserveError::MayHaveMissed)` when the
    /// registration lapsed after a reconnect (it is retried; the lease is re-read and a
    /// difference arrives as a change). Drop the stream to stop observing.
    pub async fn observe(&self) -> Result<LeaseObservation, LeaseError> {
        let (tx, rx) = async_channel::bounded(self.handle.shared.notification_buffer);
        let seq = self.handle.next_seq();
        self.handle
            .guarded_call(seq, |reply| Op::ObserveStart { seq, tx, reply })
            .await??;
        Ok(LeaseObservation {
            rx: Box::pin(rx),
            _stop: self.handle.abandon_guard(seq),
        })
    }

    /// Releases: stops renewing and clears the token first, then `VDEL name holder`. Reports
    /// honestly what the store found.
    pub async fn release(&self) -> Result<ReleaseOutcome, LeaseError> {
        let options = self.handle.lease_options(&AcquireOptions::new());
        self.handle
            .call(|reply| Op::Release { options, reply })
            .await?
    }

    hold_methods!("lease");
}

/// The stream of [`Change`]s of an observed lease (and of
/// [`ObserveError::MayHaveMissed`] when its notification registration lapsed). Dropping it
/// stops the observation (KEYNOTIFY STOP with its own timeout).
///
/// ```no_run
/// # async fn demo(lease: leasedlock_api::Lease) -> Result<(), leasedlock_api::LeaseError> {
/// let mut changes = lease.observe().await?;
/// while let Some(item) = changes.next().await {
///     match item {
///         Ok(change) => println!("held: {}, by {:?}", change.held, change.holder),
///         Err(lapse) => println!("{lapse}; holder now: {:?}", lease.holder().await?),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LeaseObservation {
    // Boxed: the receiver is `!Unpin`, the stream should not be.
    rx: Pin<Box<async_channel::Receiver<Result<Change, ObserveError>>>>,
    _stop: AbandonGuard,
}

impl LeaseObservation {
    /// The next change (or lapse); `None` when the lease handle or the connection is gone.
    pub async fn next(&mut self) -> Option<Result<Change, ObserveError>> {
        self.rx.recv().await.ok()
    }
}

impl Stream for LeaseObservation {
    type Item = Result<Change, ObserveError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use leasedlock_core::client::RequestError;
    use leasedlock_core::command::ServiceError;
    use leasedlock_core::lease::LeaseError as Core;
    use leasedlock_core::Instant;

    use super::*;
    use crate::LockError;

    fn request_errors() -> Vec<RequestError> {
        let mut all = vec![
            RequestError::Service(ServiceError::FencingTokenLowerVersion),
            RequestError::Timeout { sent: true },
            RequestError::Timeout { sent: false },
            RequestError::Unknown,
            RequestError::ClockDrift,
            RequestError::BadReply,
            RequestError::Busy,
            RequestError::InvalidArgument("x"),
            RequestError::SubscriptionRefused,
        ];
        for status in [400, 404, 408, 415, 500, 503, 505] {
            all.push(RequestError::Status {
                status,
                message: Some(bytes::Bytes::from_static(b"why")),
            });
        }
        all
    }

    /// Every core lease error (with every request error inside `Request`).
    fn core_errors() -> Vec<Core> {
        let mut all = vec![
            Core::NoLease,
            Core::Renewing,
            Core::Busy,
            Core::AlreadyObserving,
            Core::NotObserving,
            Core::InvalidConfig(ConfigRule::SessionIdNonEmpty),
            Core::InvalidArgument("x"),
            Core::MissingToken,
            Core::ReplyTooLate,
            Core::UnexpectedReply,
            Core::Lost(LostReason::Expired),
            Core::Cancelled,
            Core::ReleasePending {
                until: Instant::from_millis(1234),
            },
        ];
        all.extend(request_errors().into_iter().map(Core::Request));
        all
    }

    #[test]
    fn every_core_lease_error_keeps_its_meaning_and_transience() {
        for core in core_errors() {
            let api = LeaseError::from(core.clone());
            assert_eq!(
                api.is_transient(),
                core.is_transient(),
                "{core:?} -> {api:?}"
            );
            assert_eq!(api.to_core(), Some(core.clone()), "round trip of {core:?}");
            let text = api.to_string();
            assert!(!text.contains("Other("), "{text}");
        }
    }

    #[test]
    fn a_pending_release_reaches_users_as_the_core_error() {
        let until = Instant::from_millis(1234);
        let api = LeaseError::from(Core::ReleasePending { until });
        assert_eq!(api, LeaseError::Core(Core::ReleasePending { until }));
        assert!(api.is_transient());
        let source = api.source().expect("the core error as source");
        assert_eq!(
            source.downcast_ref::<Core>(),
            Some(&Core::ReleasePending { until })
        );
        let lock = LockError::from(leasedlock_core::lock::LockError::Lease(
            Core::ReleasePending { until },
        ));
        assert_eq!(lock, LockError::Lease(api));
    }

    #[test]
    fn store_errors_are_transient_as_the_core_says() {
        for e in request_errors() {
            let api = StoreError::from(e.clone());
            assert_eq!(api.is_transient(), e.is_transient(), "{e:?}");
            assert_eq!(api.to_core(), Some(e.clone()));
            let lease = LeaseError::from(api.clone());
            assert_eq!(lease.is_transient(), e.is_transient(), "{e:?}");
        }
        assert!(!StoreError::Closed.is_transient());
        assert!(!LeaseError::Closed.is_transient() && !LeaseError::HolderInUse.is_transient());
    }

    #[test]
    fn errors_chain_to_their_causes() {
        let e = LeaseError::Request(StoreError::Service(ServiceError::FencingTokenLowerVersion));
        let store = e.source().expect("store error");
        assert!(store.source().is_some(), "the service error");
        let lock = LockError::Lease(e);
        assert!(lock.source().is_some());
    }
}
