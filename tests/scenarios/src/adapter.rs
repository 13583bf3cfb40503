//! The small surface a runtime adapter implements so that the scenarios can drive it.
//!
//! It mirrors the adapters' public API (which is the same for every runtime), reduced to what
//! the scenarios need, with errors folded into [`Failure`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::command::{ServiceError, VdelOutcome};
use leasedlock_core::edit::{EditDecision, EditOutcome};
use leasedlock_core::hlc::Hlc;
use leasedlock_core::lease::ReleaseOutcome;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An adapter error as the scenarios classify it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No reply in time (`sent`: the request left).
    Timeout {
        /// Whether the request was published.
        sent: bool,
    },
    /// The connection dropped after sending; outcome unknown.
    Unknown,
    /// The store answered `-ERR`.
    Service(ServiceError),
    /// Non-200 RPC status.
    Status(u16),
    /// Malformed reply.
    BadReply,
    /// Reply timestamp too far ahead.
    ClockDrift,
    /// No lease (never acquired or released).
    NoLease,
    /// The lease was lost.
    Lost,
    /// A lock wait or similar deadline passed.
    WaitTimeout,
    /// Cancelled.
    Cancelled,
    /// Refused locally as invalid (empty key, bad configuration...).
    InvalidArgument,
    /// The connection is closed.
    Closed,
    /// Anything else (its description).
    Other(String),
}

/// How a scenario connects.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id (unique per client).
    pub client_id: String,
    /// Default request timeout.
    pub request_timeout: Duration,
    /// Reconnect back-off cap (scenarios with broker restarts want it short).
    pub reconnect_max: Duration,
}

/// Options of a raw SET.
#[derive(Debug, Clone, Default)]
pub struct SetSpec {
    /// `NX`.
    pub if_absent: bool,
    /// `NEX`.
    pub if_absent_or_equal: bool,
    /// `PX`.
    pub expiry: Option<Duration>,
    /// `__ft`.
    pub fencing_token: Option<Hlc>,
}

/// A change of an observed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// The new value (`None`: deleted).
    pub value: Option<Bytes>,
    /// Whether it was found by a read after a reconnect rather than notified.
    pub resync: bool,
}

/// A value and its version, as GET returns them.
pub type Versioned = (Bytes, Option<Hlc>);

/// A leadership term as the scenarios see it.
#[derive(Debug, Clone)]
pub struct TermInfo {
    /// Fencing token at election.
    pub token: Hlc,
    /// Term number of this handle.
    pub number: u64,
}

/// The runtime: connecting, sleeping and spawning.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The adapter's connection.
    type Conn: Conn;
    /// Connects and waits for the broker's acceptance.
    fn connect(&self, spec: ConnectSpec) -> BoxFuture<'static, Result<Self::Conn, Failure>>;
    /// Sleeps.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
    /// Runs a task in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);
}

/// A connection.
pub trait Conn: Clone + Send + Sync + 'static {
    /// Lease handle.
    type Lease: LeaseApi;
    /// Lock handle.
    type Lock: LockApi;
    /// Leader handle.
    type Leader: LeaderApi;
    /// Key observation stream.
    type KeyObs: KeyObsApi;

    /// The MQTT client id.
    fn client_id(&self) -> String;
    /// Whether the connection is up.
    fn is_connected(&self) -> bool;
    /// `SET`: `(applied, version)`.
    fn set(
        &self,
        key: Bytes,
        value: Bytes,
        spec: SetSpec,
    ) -> BoxFuture<'_, Result<(bool, Option<Hlc>), Failure>>;
    /// `GET`: value and version.
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Option<Versioned>, Failure>>;
    /// `DEL` (optionally fenced): whether a key was deleted.
    fn del(&self, key: Bytes, fencing_token: Option<Hlc>) -> BoxFuture<'_, Result<bool, Failure>>;
    /// `VDEL`.
    fn vdel(&self, key: Bytes, value: Bytes) -> BoxFuture<'_, Result<VdelOutcome, Failure>>;
    /// `KEYNOTIFY` with a stream of changes.
    fn observe(&self, key: Bytes) -> BoxFuture<'_, Result<Self::KeyObs, Failure>>;
    /// A lease handle (optionally with a session id).
    fn lease(&self, name: Bytes, session_id: Option<String>) -> Result<Self::Lease, Failure>;
    /// A lock handle.
    fn lock(&self, name: Bytes) -> Result<Self::Lock, Failure>;
    /// A leader handle.
    fn leader(&self, name: Bytes) -> Result<Self::Leader, Failure>;
    /// Closes gracefully (releasing what handles hold).
    fn close(&self) -> BoxFuture<'_, ()>;
    /// Kills the connection as a crash would (no release, no DISCONNECT).
    fn abort(&self);
}

/// A key observation.
pub trait KeyObsApi: Send + 'static {
    /// The next change (`None`: stream ended).
    fn next(&mut self) -> BoxFuture<'_, Option<KeyEvent>>;
}

/// A lease observation.
pub trait ChangeStream: Send + 'static {
    /// The next `(held, holder)` change.
    fn next(&mut self) -> BoxFuture<'_, Option<(bool, Option<Bytes>)>>;
}

/// A lease handle.
pub trait LeaseApi: Send + Sync + 'static {
    /// One attempt, optionally auto-renewed.
    fn acquire(
        &self,
        duration: Duration,
        renew: Option<Duration>,
    ) -> BoxFuture<'_, Result<bool, Failure>>;
    /// The fencing token now.
    fn token(&self) -> Result<Hlc, Failure>;
    /// Time left until `safe_until`, while held.
    fn safe_for(&self) -> Option<Duration>;
    /// Current holder.
    fn holder(&self) -> BoxFuture<'_, Result<Option<Bytes>, Failure>>;
    /// Observe changes.
    fn observe(&self) -> BoxFuture<'_, Result<Box<dyn ChangeStream>, Failure>>;
    /// Release.
    fn release(&self) -> BoxFuture<'_, Result<ReleaseOutcome, Failure>>;
    /// Resolves when the current hold ends (`Lost` or `NoLease`).
    fn lost(&self) -> BoxFuture<'_, Failure>;
    /// Drop without releasing.
    fn detach(self);
    /// The holder value this handle stores while it holds.
    fn holder_value(&self) -> Bytes;
}

/// A lock handle.
pub trait LockApi: Send + Sync + 'static {
    /// Waits for the lock; returns the fencing token.
    fn lock(
        &self,
        duration: Duration,
        wait: Option<Duration>,
        renew: Option<Duration>,
    ) -> BoxFuture<'_, Result<Hlc, Failure>>;
    /// Unlocks.
    fn unlock(&self) -> BoxFuture<'_, Result<ReleaseOutcome, Failure>>;
    /// The fencing token now.
    fn token(&self) -> Result<Hlc, Failure>;
    /// Edit `key` under the lock.
    fn edit(
        &self,
        key: Bytes,
        duration: Duration,
        decide: Box<dyn FnOnce(Option<Bytes>) -> EditDecision + Send>,
    ) -> BoxFuture<'_, Result<EditOutcome, Failure>>;
    /// The holder value this handle stores while it holds.
    fn holder_value(&self) -> Bytes;
    /// Whether the lock is held now.
    fn is_held(&self) -> bool;
}

/// A leader handle.
pub trait LeaderApi: Send + Sync + 'static {
    /// Starts campaigning with a term lease of `duration`.
    fn campaign(&self, duration: Duration) -> BoxFuture<'_, Result<(), Failure>>;
    /// Waits until elected.
    fn elected(&self) -> BoxFuture<'_, Result<TermInfo, Failure>>;
    /// Waits until the current (or next) term ends.
    fn deposed(&self) -> BoxFuture<'_, Result<(), Failure>>;
    /// Whether the current term's cancellation token is cancelled (`None`: no term).
    fn term_cancelled(&self) -> Option<bool>;
    /// The leader seen in the store.
    fn leader(&self) -> Option<Bytes>;
    /// Resigns (drain at once, release).
    fn resign(&self) -> BoxFuture<'_, Result<(), Failure>>;
    /// The holder value this participant stores while leading.
    fn holder_value(&self) -> Bytes;
    /// Whether this participant leads now.
    fn is_leader(&self) -> bool;
}
