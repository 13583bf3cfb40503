//! [`Lock`]: a blocking lock on a lease, the way Go's `leasedlock.Lock` works, in async Rust.
//!
//! `lock()` registers for notifications first, then attempts; on refusal it waits for the
//! holder's release (or expiry), with herd control and a fallback timer, all inside the core
//! machine. Dropping the `lock()` future unregisters the notification and releases anything
//! the abandoned wait may have taken.
//!
//! ```no_run
//! # async fn demo(conn: leasedlock_api::Connection) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use leasedlock_api::LockOptions;
//!
//! let lock = conn.lock("inventory")?;
//! let token = lock
//!     .lock(Duration::from_secs(10), &LockOptions::new().wait_timeout(Duration::from_secs(30)))
//!     .await?;
//! // ... fenced writes with `token` ...
//! lock.unlock().await?;
//! # let _ = token; Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::hlc::Hlc;
use leasedlock_core::lease::holder_value;
use leasedlock_core::lock as core_lock;

use crate::connection::Shared;
use crate::engine::{Cmd, MachineKind, Op, Status};
use crate::lease::{call, AbandonGuard, AcquireOptions, LeaseError, ReleaseOutcome, StatusView};
use crate::state_store::StoreError;
use crate::watch;

/// Why a lock operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// The wait deadline passed.
    Timeout,
    /// The wait was cancelled.
    Cancelled,
    /// `lock` while a wait is active on this handle.
    Busy,
    /// `lock` while this handle holds the lock.
    AlreadyHeld,
    /// `unlock` without the lock.
    NotLocked,
    /// The lease underneath failed in a way retrying will not fix.
    Lease(LeaseError),
    /// The connection was closed.
    Closed,
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Timeout => write!(f, "lock wait timed out"),
            LockError::Cancelled => write!(f, "lock wait cancelled"),
            LockError::Busy => write!(f, "a lock wait is already active"),
            LockError::AlreadyHeld => write!(f, "the lock is already held"),
            LockError::NotLocked => write!(f, "the lock is not held"),
            LockError::Lease(e) => write!(f, "{e}"),
            LockError::Closed => write!(f, "connection closed"),
        }
    }
}

impl std::error::Error for LockError {}

impl From<core_lock::LockError> for LockError {
    fn from(e: core_lock::LockError) -> Self {
        use core_lock::LockError as C;
        match e {
            C::Timeout => LockError::Timeout,
            C::Cancelled => LockError::Cancelled,
            C::Busy => LockError::Busy,
            C::AlreadyHeld => LockError::AlreadyHeld,
            C::NotLocked => LockError::NotLocked,
            C::Lease(l) => LockError::Lease(l.into()),
            other => LockError::Lease(LeaseError::Request(StoreError::Other(format!("{other:?}")))),
        }
    }
}

impl From<StoreError> for LockError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => LockError::Closed,
            other => LockError::Lease(LeaseError::Request(other)),
        }
    }
}

/// Options of [`Lock::lock`].
///
/// ```
/// use std::time::Duration;
/// use leasedlock_api::LockOptions;
///
/// let options = LockOptions::new()
///     .wait_timeout(Duration::from_secs(30))
///     .renew(Duration::from_secs(2));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockOptions {
    pub(crate) acquire: AcquireOptions,
    pub(crate) wait_timeout: Option<Duration>,
    pub(crate) fallback: Option<Duration>,
    pub(crate) max_jitter: Option<Duration>,
}

impl LockOptions {
    /// Wait without a deadline, no auto-renew.
    pub fn new() -> LockOptions {
        LockOptions::default()
    }
    /// Per-request timeout, renew interval and margin of the lease.
    pub fn acquire(mut self, acquire: AcquireOptions) -> LockOptions {
        self.acquire = acquire;
        self
    }
    /// Renew the held lock automatically every `interval`.
    pub fn renew(mut self, interval: Duration) -> LockOptions {
        self.acquire = self.acquire.renew(interval);
        self
    }
    /// Give up waiting after this long (`LockError::Timeout`).
    pub fn wait_timeout(mut self, timeout: Duration) -> LockOptions {
        self.wait_timeout = Some(timeout);
        self
    }
    /// Attempt again after this long without news (default: the lease duration).
    pub fn fallback(mut self, fallback: Duration) -> LockOptions {
        self.fallback = Some(fallback);
        self
    }
    /// Upper bound of the random delay before attempting after a release (herd control).
    pub fn max_jitter(mut self, jitter: Duration) -> LockOptions {
        self.max_jitter = Some(jitter);
        self
    }

    pub(crate) fn to_core(
        &self,
        default_timeout: Duration,
        session_id: Option<&str>,
    ) -> core_lock::LockOptions {
        core_lock::LockOptions {
            lease: self.acquire.to_core(default_timeout, session_id),
            wait_timeout: self.wait_timeout,
            fallback: self.fallback,
            max_jitter: self.max_jitter,
            ..core_lock::LockOptions::default()
        }
    }
}

/// A named lock. Dropping a handle that holds the lock unlocks it (bounded, fire and forget)
/// unless [`Lock::detach`]ed.
///
/// ```no_run
/// # async fn demo(conn: leasedlock_api::Connection) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use leasedlock_api::{LockOptions, SetOptions};
///
/// let lock = conn.lock("accounts/42/lock")?;
/// let token = lock.lock(Duration::from_secs(10), &LockOptions::new()).await?;
/// conn.state_store()
///     .set("accounts/42", "balance=10", &SetOptions::new().fencing_token(token))
///     .await?;
/// lock.unlock().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Lock {
    pub(crate) shared: Arc<Shared>,
    id: u64,
    pub(crate) name: Bytes,
    pub(crate) session_id: Option<String>,
    status: StatusView,
    detached: bool,
}

impl Lock {
    pub(crate) fn create(
        shared: Arc<Shared>,
        name: Bytes,
        session_id: Option<String>,
    ) -> Result<Lock, LockError> {
        if name.is_empty() {
            return Err(LockError::Lease(LeaseError::InvalidArgument(
                "lock name must not be empty",
            )));
        }
        if session_id.as_deref() == Some("") {
            return Err(LockError::Lease(LeaseError::InvalidConfig(
                crate::lease::ConfigRule::SessionIdNonEmpty,
            )));
        }
        let id = shared.next_id();
        let (status_tx, status_rx) = watch::channel(Status::NotHeld(LeaseError::NoLease));
        shared.send(Cmd::Create {
            id,
            kind: MachineKind::Lock {
                name: name.clone(),
                status: status_tx,
            },
        })?;
        Ok(Lock {
            shared,
            id,
            name,
            session_id,
            status: StatusView::new(status_rx),
            detached: false,
        })
    }

    /// The lock's key.
    pub fn name(&self) -> &Bytes {
        &self.name
    }

    /// The value this handle stores as holder: `clientId` or `clientId:sessionId`.
    pub fn holder_value(&self) -> Bytes {
        holder_value(self.shared.client_id(), self.session_id.as_deref())
    }

    /// Waits until the lock is held (returns its fencing token), the wait times out, or the
    /// future is dropped (which unregisters and releases what the wait may have taken).
    pub async fn lock(&self, duration: Duration, options: &LockOptions) -> Result<Hlc, LockError> {
        let seq = self.shared.next_id();
        let mut guard = AbandonGuard::new(self.shared.clone(), self.id, seq);
        let options = options.to_core(self.shared.request_timeout, self.session_id.as_deref());
        let result = call(&self.shared, self.id, |reply| Op::Lock {
            seq,
            duration,
            options,
            reply,
        })
        .await;
        guard.disarm();
        result?
    }

    /// Releases the lock (stop renewing, clear the token, VDEL) and reports what the store
    /// found.
    pub async fn unlock(&self) -> Result<ReleaseOutcome, LockError> {
        let options =
            AcquireOptions::new().to_core(self.shared.request_timeout, self.session_id.as_deref());
        call(&self.shared, self.id, |reply| Op::Unlock { options, reply }).await?
    }

    /// The fencing token while held (never past `safe_until`), or why there is none.
    pub fn token(&self) -> Result<Hlc, LeaseError> {
        self.status.token()
    }

    /// Whether the lock is held now.
    pub fn is_held(&self) -> bool {
        self.status.safe_until().is_some()
    }

    /// Until when acting as the holder is safe, while held.
    pub fn safe_until(&self) -> Option<std::time::Instant> {
        self.status.safe_until()
    }

    /// Waits until the current hold ends and says why (`Lost(..)` at `safe_until` at the
    /// latest, or `NoLease` after an unlock).
    pub async fn lost(&self) -> LeaseError {
        self.status.ended().await
    }

    /// Gives up the handle without unlocking: the lock stops renewing and expires by itself.
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.shared.send(Cmd::Machine {
            id: self.id,
            op: Op::Drop {
                release: !self.detached,
            },
        });
    }
}
