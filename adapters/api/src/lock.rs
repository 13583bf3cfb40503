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
use leasedlock_core::lock as core_lock;

pub use crate::error::LockError;

use crate::engine::{MachineKind, Op};
use crate::error::LeaseError;
use crate::handle::{hold_methods, Handle, Identity};
use crate::lease::{AcquireOptions, ReleaseOutcome};
use crate::shared::Shared;

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
// Not core's `LockOptions` on purpose: a builder over `AcquireOptions`, completed by the handle
// (`to_core`); the core-internal `watch_holder` is the leader's business.
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
    /// Upper bound of the random delay before attempting after a release (herd control: a
    /// waiter pays no delay until one of its attempts after a release lost to another waiter).
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
    pub(crate) handle: Handle,
}

impl Lock {
    pub(crate) fn create(
        shared: Arc<Shared>,
        name: Bytes,
        identity: Identity,
    ) -> Result<Lock, LockError> {
        Handle::validate(&name, &identity, "lock name must not be empty")
            .map_err(LockError::Lease)?;
        let handle = Handle::register(shared, name, identity, |name, status| MachineKind::Lock {
            name,
            status,
        })
        .map_err(|e| match e {
            LeaseError::Closed => LockError::Closed,
            e => LockError::Lease(e),
        })?;
        Ok(Lock { handle })
    }

    /// Waits until the lock is held (returns its fencing token), the wait times out, or the
    /// future is dropped (which unregisters and releases what the wait may have taken).
    pub async fn lock(&self, duration: Duration, options: &LockOptions) -> Result<Hlc, LockError> {
        let seq = self.handle.next_seq();
        let options = options.to_core(
            self.handle.shared.request_timeout,
            self.handle.session_id.as_deref(),
        );
        self.handle
            .guarded_call(seq, |reply| Op::Lock {
                seq,
                duration,
                options,
                reply,
            })
            .await?
    }

    /// Releases the lock (stop renewing, clear the token, VDEL) and reports what the store
    /// found.
    pub async fn unlock(&self) -> Result<ReleaseOutcome, LockError> {
        let options = self.handle.lease_options(&AcquireOptions::new());
        self.handle
            .call(|reply| Op::Unlock { options, reply })
            .await?
    }

    hold_methods!("lock");
}
