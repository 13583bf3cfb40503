//! [`Handle`]: the plumbing a [`Lease`](crate::Lease) and a [`Lock`](crate::Lock) handle share —
//! registering their machine with the engine, the holding state readable without a round trip,
//! operations whose abandonment the engine must hear of, and unregistering on drop.

use std::sync::Arc;

use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::hlc::Hlc;
use leasedlock_core::lease::{holder_value, ConfigRule, LeaseOptions, LostReason};

use crate::engine::protocol::{Cmd, MachineKind, Op, Status};
use crate::error::{LeaseError, StoreError};
use crate::options::AcquireOptions;
use crate::shared::Shared;
use crate::watch;

/// Whose holder value a handle stores in the lease key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// `clientId:instance.handle`: unique to the handle and to the connection instance.
    Generated,
    /// `clientId:sessionId`, chosen by the application.
    Session(String),
    /// The bare `clientId`.
    ClientId,
}

/// One lease-backed machine in the engine, as its handle sees it. Dropping it drops the machine,
/// releasing what it holds unless [`Handle::detach`]ed.
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) shared: Arc<Shared>,
    id: u64,
    pub(crate) name: Bytes,
    pub(crate) session_id: Option<String>,
    status: StatusView,
    detached: bool,
}

impl Handle {
    /// The argument checks every lease-backed handle makes; `empty_name` is the rule an empty
    /// name breaks.
    pub(crate) fn validate(
        name: &Bytes,
        identity: &Identity,
        empty_name: &'static str,
    ) -> Result<(), LeaseError> {
        if name.is_empty() {
            return Err(LeaseError::InvalidArgument(empty_name));
        }
        if *identity == Identity::Session(String::new()) {
            return Err(LeaseError::InvalidConfig(ConfigRule::SessionIdNonEmpty));
        }
        Ok(())
    }

    /// Claims the holder value `identity` gives on `name` (refused with
    /// [`LeaseError::HolderInUse`] while another live handle of this connection has it) and
    /// registers the machine that `kind` makes from the name and the status sender.
    pub(crate) fn register(
        shared: Arc<Shared>,
        name: Bytes,
        identity: Identity,
        kind: impl FnOnce(Bytes, watch::Sender<Status>) -> MachineKind,
    ) -> Result<Handle, LeaseError> {
        let id = shared.next_id();
        let session_id = match identity {
            Identity::Generated => Some(shared.generated_session(id)),
            Identity::Session(s) => Some(s),
            Identity::ClientId => None,
        };
        let holder = holder_value(shared.client_id(), session_id.as_deref());
        shared.claim(&name, &holder, id)?;
        let (status_tx, status_rx) = watch::channel(Status::NotHeld(LeaseError::NoLease));
        if let Err(e) = shared.send(Cmd::Create {
            id,
            kind: kind(name.clone(), status_tx),
        }) {
            shared.unclaim(&name, &holder, id);
            return Err(e.into());
        }
        Ok(Handle {
            shared,
            id,
            name,
            session_id,
            status: StatusView::new(status_rx),
            detached: false,
        })
    }

    /// `clientId:sessionId` (the session generated or chosen) or the bare `clientId`.
    pub(crate) fn holder_value(&self) -> Bytes {
        holder_value(self.shared.client_id(), self.session_id.as_deref())
    }

    /// The core's lease options for `options`, with this connection's defaults and session.
    pub(crate) fn lease_options(&self, options: &AcquireOptions) -> LeaseOptions {
        options.to_core(self.shared.request_timeout, self.session_id.as_deref())
    }

    pub(crate) fn token(&self) -> Result<Hlc, LeaseError> {
        self.status.token()
    }

    pub(crate) fn safe_until(&self) -> Option<std::time::Instant> {
        self.status.safe_until()
    }

    pub(crate) async fn ended(&self) -> LeaseError {
        self.status.ended().await
    }

    /// A sequence number for [`Handle::guarded_call`].
    pub(crate) fn next_seq(&self) -> u64 {
        self.shared.next_id()
    }

    /// Sends `op` to the machine and waits for its answer.
    pub(crate) async fn call<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<T>) -> Op,
    ) -> Result<T, StoreError> {
        call(&self.shared, self.id, op).await
    }

    /// [`Handle::call`] for the operation `seq`, which the engine abandons (releasing what it
    /// may have taken) if this future is dropped before the answer.
    pub(crate) async fn guarded_call<T>(
        &self,
        seq: u64,
        op: impl FnOnce(oneshot::Sender<T>) -> Op,
    ) -> Result<T, StoreError> {
        let mut guard = self.abandon_guard(seq);
        let result = self.call(op).await;
        guard.disarm();
        result
    }

    /// A guard that abandons the operation `seq` when dropped armed.
    pub(crate) fn abandon_guard(&self, seq: u64) -> AbandonGuard {
        AbandonGuard::new(self.shared.clone(), self.id, seq)
    }

    /// Dropping now leaves the hold to expire instead of releasing it.
    pub(crate) fn detach(&mut self) {
        self.detached = true;
    }
}

/// The methods a [`Lease`](crate::Lease) and a [`Lock`](crate::Lock) answer alike from their
/// [`Handle`] (in the field `handle`); `$what` names the handle kind in the docs.
macro_rules! hold_methods {
    ($what:literal) => {
        #[doc = concat!("The ", $what, "'s key.")]
        pub fn name(&self) -> &bytes::Bytes {
            &self.handle.name
        }

        /// The value this handle stores as holder: `clientId:instance.handle` (generated,
        /// unique to this handle), `clientId:sessionId` (chosen) or the bare `clientId`.
        pub fn holder_value(&self) -> bytes::Bytes {
            self.handle.holder_value()
        }

        /// The current fencing token, or why there is none (`NoLease` when never held or
        /// released; `Lost` after a loss). Never returns a token past `safe_until`.
        pub fn token(&self) -> Result<leasedlock_core::hlc::Hlc, crate::error::LeaseError> {
            self.handle.token()
        }

        #[doc = concat!("Whether the ", $what, " is held now (`now < safe_until`).")]
        pub fn is_held(&self) -> bool {
            self.handle.safe_until().is_some()
        }

        /// Until when acting as the holder is safe, while held.
        pub fn safe_until(&self) -> Option<std::time::Instant> {
            self.handle.safe_until()
        }

        /// Waits until the current hold ends and returns why: `Lost(..)` (raised at
        /// `safe_until` at the latest when no renewal succeeded) or `NoLease` after a release.
        /// Returns at once when not held.
        pub async fn lost(&self) -> crate::error::LeaseError {
            self.handle.ended().await
        }

        #[doc = concat!("Gives up the handle without releasing: a held ", $what, " stops renewing")]
        /// and expires on the store by itself.
        pub fn detach(mut self) {
            self.handle.detach();
        }
    };
}
pub(crate) use hold_methods;

impl Drop for Handle {
    fn drop(&mut self) {
        // The machine's release (queued below, before anything a later handle sends) comes
        // first on the wire, so the holder value is free for a new handle at once.
        self.shared
            .unclaim(&self.name, &self.holder_value(), self.id);
        let _ = self.shared.send(Cmd::Machine {
            id: self.id,
            op: Op::Drop {
                release: !self.detached,
            },
        });
    }
}

/// The holding state a handle shares with the driver, readable without a round trip.
#[derive(Debug, Clone)]
pub(crate) struct StatusView {
    rx: watch::Receiver<Status>,
}

impl StatusView {
    pub(crate) fn new(rx: watch::Receiver<Status>) -> StatusView {
        StatusView { rx }
    }

    /// The token while `now < safe_until`: an expired hold is never reported, even if the
    /// driver has not processed the expiry yet.
    pub(crate) fn token(&self) -> Result<Hlc, LeaseError> {
        self.rx.with(|s| match s {
            Status::Held {
                token,
                safe_until,
                clock,
            } if clock.now().mono < *safe_until => Ok(token.clone()),
            Status::Held { .. } => Err(LeaseError::Lost(LostReason::Expired)),
            Status::NotHeld(e) => Err(e.clone()),
        })
    }

    pub(crate) fn safe_until(&self) -> Option<std::time::Instant> {
        self.rx.with(|s| match s {
            Status::Held {
                safe_until, clock, ..
            } if clock.now().mono < *safe_until => Some(clock.to_std(*safe_until)),
            _ => None,
        })
    }

    /// Waits until the current hold ends (at once when not held) and says why. No timer here:
    /// the machine's own `safe_until` deadline, run by the engine, ends the hold.
    pub(crate) async fn ended(&self) -> LeaseError {
        let mut rx = self.rx.clone();
        loop {
            if let Some(e) = rx.with_and_update(|s| match s {
                Status::NotHeld(e) => Some(e.clone()),
                Status::Held { .. } => None,
            }) {
                return e;
            }
            if rx.changed().await.is_err() {
                return LeaseError::Closed;
            }
        }
    }
}

/// Arms on creation; if the future owning it is dropped before the operation's answer was
/// taken, tells the driver so that nothing is left behind on the server.
#[derive(Debug)]
pub(crate) struct AbandonGuard {
    shared: Arc<Shared>,
    id: u64,
    seq: u64,
    armed: bool,
}

impl AbandonGuard {
    pub(crate) fn new(shared: Arc<Shared>, id: u64, seq: u64) -> AbandonGuard {
        AbandonGuard {
            shared,
            id,
            seq,
            armed: true,
        }
    }
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.shared.send(Cmd::Machine {
                id: self.id,
                op: Op::Abandon { seq: self.seq },
            });
        }
    }
}

/// Sends `op` to machine `id` and waits for its answer.
pub(crate) async fn call<T>(
    shared: &Shared,
    id: u64,
    op: impl FnOnce(oneshot::Sender<T>) -> Op,
) -> Result<T, StoreError> {
    let (reply, wait) = oneshot::channel();
    shared.send(Cmd::Machine { id, op: op(reply) })?;
    wait.await.map_err(|_| StoreError::Closed)
}
