//! Editing one key under a lock ([`Lock::edit`]): lock, read, let the application decide, write
//! fenced with the lock's token, unlock — always unlock.
//!
//! ```no_run
//! # async fn demo(conn: leasedlock_api::Connection) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use leasedlock_api::EditDecision;
//!
//! let lock = conn.lock("counter-lock")?;
//! lock.edit("counter", Duration::from_secs(5), |current| async move {
//!     let n: u64 = current
//!         .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
//!         .unwrap_or(0);
//!     EditDecision::Set((n + 1).to_string().into())
//! })
//! .await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::edit::{self as core_edit, EditEvent};

pub use leasedlock_core::edit::{EditDecision, EditOutcome};
pub use leasedlock_core::lease::LostReason;

use crate::connection::Shared;
use crate::engine::{Cmd, MachineKind, Op};
use crate::lock::{Lock, LockError, LockOptions};
use crate::state_store::StoreError;

/// Why an edit failed.
// Not core's `EditError` on purpose: it wraps this crate's `LockError`/`StoreError`, adds
// `Closed`, and drops the core's `Busy`/`NotDeciding`, which `Lock::edit` cannot cause.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditError {
    /// The key is empty.
    EmptyKey,
    /// The lock could not be taken.
    Lock(LockError),
    /// The lock was lost before the write was sent.
    Lost(LostReason),
    /// The GET or the write failed (a fencing rejection is `Request(Service(..))`).
    Request(StoreError),
    /// The store sent a reply the command cannot have.
    UnexpectedReply,
    /// The edit was cancelled before the write.
    Cancelled,
    /// A failure of the core edit machine this crate has no variant of its own for: the
    /// core's error itself (also the [`source`](std::error::Error::source)).
    Core(core_edit::EditError),
    /// The connection was closed.
    Closed,
    /// The write failed in a way that leaves its outcome unknown: it may or may not have been
    /// applied. With `may_still_land == false` the edit kept the lock until the write could no
    /// longer land; with `true` the lock was lost first and the write may still land later.
    OutcomeUnknown {
        /// How the write failed.
        error: StoreError,
        /// Whether the write may still land after another holder took the lock.
        may_still_land: bool,
    },
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EditError::EmptyKey => write!(f, "the key must not be empty"),
            EditError::Lock(e) => write!(f, "{e}"),
            EditError::Lost(reason) => write!(f, "lock lost during the edit: {reason}"),
            EditError::Request(e) => write!(f, "state store request failed: {e}"),
            EditError::UnexpectedReply => write!(f, "unexpected reply"),
            EditError::Cancelled => write!(f, "edit cancelled"),
            EditError::Core(e) => write!(f, "{e}"),
            EditError::Closed => write!(f, "connection closed"),
            EditError::OutcomeUnknown {
                error,
                may_still_land,
            } => {
                write!(f, "the write may or may not have been applied: {error}")?;
                if *may_still_land {
                    write!(f, " (and the lock was lost while it could still land)")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for EditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EditError::OutcomeUnknown { error, .. } => Some(error),
            EditError::Lock(e) => Some(e),
            EditError::Request(e) => Some(e),
            EditError::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl From<core_edit::EditError> for EditError {
    fn from(e: core_edit::EditError) -> Self {
        use core_edit::EditError as C;
        match e {
            C::EmptyKey => EditError::EmptyKey,
            C::Lock(l) => EditError::Lock(l.into()),
            C::Lost(reason) => EditError::Lost(reason),
            C::Request(r) => EditError::Request(r.into()),
            C::UnexpectedReply => EditError::UnexpectedReply,
            C::Cancelled => EditError::Cancelled,
            C::OutcomeUnknown {
                error,
                may_still_land,
            } => EditError::OutcomeUnknown {
                error: error.into(),
                may_still_land,
            },
            other => EditError::Core(other),
        }
    }
}

/// Cancels the edit's machine when the `edit()` future is dropped before it finished.
struct EditGuard {
    shared: Arc<Shared>,
    id: u64,
    finished: bool,
}

impl Drop for EditGuard {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.shared.send(Cmd::Machine {
                id: self.id,
                op: Op::Drop { release: true },
            });
        }
    }
}

impl Lock {
    /// Edits `key` under this lock with the default [`LockOptions`]: lock for `duration`, read
    /// the key, call `decide` with its value (`None` when absent), write the decision fenced
    /// with the lock's token, unlock. Deleting an absent key succeeds.
    ///
    /// The edit holds the lock under a holder value of its own, not this handle's: while this
    /// handle (or another edit) holds the lock, the edit waits for its release like any other
    /// client would, so do not call it while this handle holds the lock.
    pub async fn edit<F, Fut>(
        &self,
        key: impl Into<Bytes>,
        duration: Duration,
        decide: F,
    ) -> Result<EditOutcome, EditError>
    where
        F: FnOnce(Option<Bytes>) -> Fut,
        Fut: Future<Output = EditDecision>,
    {
        self.edit_with(key, duration, &LockOptions::new(), decide)
            .await
    }

    /// [`Lock::edit`] with explicit lock options (wait timeout, renew interval...).
    pub async fn edit_with<F, Fut>(
        &self,
        key: impl Into<Bytes>,
        duration: Duration,
        options: &LockOptions,
        decide: F,
    ) -> Result<EditOutcome, EditError>
    where
        F: FnOnce(Option<Bytes>) -> Fut,
        Fut: Future<Output = EditDecision>,
    {
        let key = key.into();
        if key.is_empty() {
            return Err(EditError::EmptyKey);
        }
        let shared = self.handle.shared.clone();
        let id = shared.next_id();
        let (events, rx) = async_channel::unbounded();
        // Every edit is a holder of its own (`clientId:instance.edit`), whatever this handle's
        // identity: it competes for the lock like any other client, so two edits (or this
        // handle and an edit) never hold it at once.
        let session = shared.generated_session(id);
        let options = options.to_core(shared.request_timeout, Some(&session));
        let mut guard = EditGuard {
            shared: shared.clone(),
            id,
            finished: false,
        };
        shared
            .send(Cmd::Create {
                id,
                kind: MachineKind::Edit {
                    lock_name: self.handle.name.clone(),
                    key,
                    duration,
                    options: Box::new(options),
                    events,
                },
            })
            .map_err(|_| EditError::Closed)?;
        let mut decide = Some(decide);
        loop {
            match rx.recv().await.ok() {
                None => return Err(EditError::Closed),
                Some(EditEvent::Requested { current, .. }) => {
                    let decision = match decide.take() {
                        Some(f) => f(current).await,
                        None => EditDecision::Abort,
                    };
                    shared
                        .send(Cmd::Machine {
                            id,
                            op: Op::EditDecide { decision },
                        })
                        .map_err(|_| EditError::Closed)?;
                }
                Some(EditEvent::Done { result }) => {
                    guard.finished = true;
                    return result.map_err(EditError::from);
                }
                Some(_) => {}
            }
        }
    }
}
