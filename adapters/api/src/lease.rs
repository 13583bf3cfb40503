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

pub use leasedlock_core::lease::{ConfigRule, LostReason, ReleaseOutcome};

pub use crate::error::LeaseError;
pub use crate::options::AcquireOptions;
pub use crate::view::Change;

use crate::engine::{MachineKind, Op};
use crate::error::ObserveError;
use crate::handle::{hold_methods, AbandonGuard, Handle, Identity};
use crate::shared::Shared;

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
