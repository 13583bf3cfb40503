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
use leasedlock_core::edit::EditEvent;

pub use leasedlock_core::edit::{EditDecision, EditOutcome};
pub use leasedlock_core::lease::LostReason;

pub use crate::error::EditError;

use crate::engine::protocol::{Cmd, MachineKind, Op};
use crate::lock::{Lock, LockOptions};
use crate::shared::Shared;

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
