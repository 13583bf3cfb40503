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
use crate::state_store::StoreError;

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
            LeaseError::InvalidConfig(rule) => write!(f, "invalid lease configuration: {rule}"),
            LeaseError::Lost(reason) => write!(f, "lease lost: {reason}"),
            LeaseError::HolderInUse => write!(
                f,
                "another handle of this connection uses this holder value for this name"
            ),
            other => write!(f, "{}", to_core_text(other)),
        }
    }
}

fn to_core_text(e: &LeaseError) -> String {
    let core = match e {
        LeaseError::NoLease => core_lease::LeaseError::NoLease,
        LeaseError::Renewing => core_lease::LeaseError::Renewing,
        LeaseError::Busy => core_lease::LeaseError::Busy,
        LeaseError::AlreadyObserving => core_lease::LeaseError::AlreadyObserving,
        LeaseError::NotObserving => core_lease::LeaseError::NotObserving,
        LeaseError::InvalidArgument(a) => core_lease::LeaseError::InvalidArgument(a),
        LeaseError::MissingToken => core_lease::LeaseError::MissingToken,
        LeaseError::ReplyTooLate => core_lease::LeaseError::ReplyTooLate,
        LeaseError::UnexpectedReply => core_lease::LeaseError::UnexpectedReply,
        LeaseError::Cancelled => core_lease::LeaseError::Cancelled,
        _ => return format!("{e:?}"),
    };
    core.to_string()
}

impl std::error::Error for LeaseError {}

impl LeaseError {
    /// Whether retrying later may succeed (timeouts, disconnects, busy, late replies).
    pub fn is_transient(&self) -> bool {
        match self {
            LeaseError::Request(e) => matches!(
                e,
                StoreError::Timeout { .. }
                    | StoreError::Unknown
                    | StoreError::Busy
                    | StoreError::SubscriptionRefused
            ),
            LeaseError::Busy
            | LeaseError::MissingToken
            | LeaseError::ReplyTooLate
            | LeaseError::UnexpectedReply
            | LeaseError::Lost(_)
            | LeaseError::Cancelled => true,
            _ => false,
        }
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
            other => LeaseError::Request(StoreError::Other(format!("{other:?}"))),
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
    /// arrives as `held = false`). Drop the stream to stop observing.
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

/// The stream of [`Change`]s of an observed lease. Dropping it stops the observation (KEYNOTIFY
/// STOP with its own timeout).
///
/// ```no_run
/// # async fn demo(lease: leasedlock_api::Lease) -> Result<(), leasedlock_api::LeaseError> {
/// let mut changes = lease.observe().await?;
/// while let Some(change) = changes.next().await {
///     println!("held: {}, by {:?}", change.held, change.holder);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LeaseObservation {
    // Boxed: the receiver is `!Unpin`, the stream should not be.
    rx: Pin<Box<async_channel::Receiver<Change>>>,
    _stop: AbandonGuard,
}

impl LeaseObservation {
    /// The next change; `None` when the lease handle or the connection is gone.
    pub async fn next(&mut self) -> Option<Change> {
        self.rx.recv().await.ok()
    }
}

impl Stream for LeaseObservation {
    type Item = Change;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        self.rx.as_mut().poll_next(cx)
    }
}
