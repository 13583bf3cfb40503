//! The protocol between the handles and the engine: the commands a handle sends and what
//! its machine is made with. A leaf module: it names the channel types and the errors handles
//! get, and nothing of the engine's insides.

use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::edit::{EditDecision, EditEvent};
use leasedlock_core::hlc::Hlc;
use leasedlock_core::leader::LeaderOptions;
use leasedlock_core::lease::{LeaseOptions, ReleaseOutcome};
use leasedlock_core::lock::LockOptions;
use leasedlock_core::Instant;

use crate::clock::Clock;
use crate::error::{LeaderError, LeaseError, LockError, ObserveError, Reply, StoreError};
use crate::view::{Change, KeyChange, LeaderView};
use crate::watch;
use leasedlock_core::client::RequestOptions;
use leasedlock_core::command::Request;

/// What a handle's status watch shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Held until `safe_until`, on the core's suspend-aware axis: handles compare it with
    /// `clock`'s now, so a hold that ran out while the machine was suspended reads as over at
    /// once after the resume, before the engine's (monotonic, so late) timer has fired.
    Held {
        token: Hlc,
        safe_until: Instant,
        clock: Clock,
    },
    /// Not held, and why.
    NotHeld(LeaseError),
}

/// The machine a new handle wants, with the channels its events go to.
#[derive(Debug)]
pub(crate) enum MachineKind {
    Lease {
        name: Bytes,
        status: watch::Sender<Status>,
    },
    Lock {
        name: Bytes,
        status: watch::Sender<Status>,
    },
    /// An edit starts as soon as it is created.
    Edit {
        lock_name: Bytes,
        key: Bytes,
        duration: Duration,
        options: Box<LockOptions>,
        events: async_channel::Sender<EditEvent>,
    },
    Leader {
        name: Bytes,
        view: watch::Sender<LeaderView>,
    },
}

/// An operation on a handle's machine.
#[derive(Debug)]
pub(crate) enum Op {
    Acquire {
        seq: u64,
        duration: Duration,
        options: LeaseOptions,
        reply: oneshot::Sender<Result<bool, LeaseError>>,
    },
    Release {
        options: LeaseOptions,
        reply: oneshot::Sender<Result<ReleaseOutcome, LeaseError>>,
    },
    Holder {
        timeout: Option<Duration>,
        reply: oneshot::Sender<Result<Option<Bytes>, LeaseError>>,
    },
    ObserveStart {
        seq: u64,
        tx: async_channel::Sender<Result<Change, ObserveError>>,
        reply: oneshot::Sender<Result<(), LeaseError>>,
    },
    Lock {
        seq: u64,
        duration: Duration,
        options: LockOptions,
        reply: oneshot::Sender<Result<Hlc, LockError>>,
    },
    Unlock {
        options: LeaseOptions,
        reply: oneshot::Sender<Result<ReleaseOutcome, LockError>>,
    },
    EditDecide {
        decision: EditDecision,
    },
    Campaign {
        duration: Duration,
        options: LeaderOptions,
        reply: oneshot::Sender<Result<(), LeaderError>>,
    },
    /// Resign; with `drain_now` the lease is released as soon as draining starts.
    Resign {
        drain_now: bool,
        reply: oneshot::Sender<Result<(), LeaderError>>,
    },
    Drained,
    /// The future of operation `seq` (or the stream it made) was dropped unanswered.
    Abandon {
        seq: u64,
    },
    /// The handle is gone; release unless detached.
    Drop {
        release: bool,
    },
}

/// What handles ask the engine to do.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Run one state-store request.
    Request {
        request: Request,
        options: RequestOptions,
        reply: oneshot::Sender<Reply>,
    },
    /// Add an observation stream for `key`.
    Observe {
        key: Bytes,
        id: u64,
        tx: async_channel::Sender<Result<KeyChange, ObserveError>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Observation stream `id` of `key` is gone.
    Unobserve { key: Bytes, id: u64 },
    /// A handle was made: host its machine.
    Create { id: u64, kind: MachineKind },
    /// An operation on a handle's machine.
    Machine { id: u64, op: Op },
    /// Finish what is in flight, disconnect and stop.
    Close { reply: oneshot::Sender<()> },
}

/// A request from a handle to the engine. Opaque: adapters move it from [`Commands`](crate::Commands) into
/// [`Engine::handle_command`](crate::Engine::handle_command).
pub struct Command(pub(crate) Cmd);

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
