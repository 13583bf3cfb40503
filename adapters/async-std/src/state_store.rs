//! [`StateStore`]: the raw state-store operations (SET, GET, DEL, VDEL, KEYNOTIFY) for users
//! who need them beside leases and locks.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::client::{RequestError, RequestOptions};
use leasedlock_core::command::{Request, Response, ServiceError, SetCondition, SetOutcome};
use leasedlock_core::hlc::Hlc;

pub use leasedlock_core::command::VdelOutcome;

use crate::connection::{Command, Shared};

/// Why a state-store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store answered with an error (`-ERR ...`), e.g. a fencing-token rejection.
    Service(ServiceError),
    /// No reply in time. If `sent`, the request left and may have run.
    Timeout {
        /// Whether the request was published before the deadline.
        sent: bool,
    },
    /// The connection dropped after the request was sent: it may or may not have run.
    Unknown,
    /// The reply carried a non-200 RPC status.
    Status {
        /// The status code.
        status: u16,
        /// The status message, if any.
        message: Option<String>,
    },
    /// The reply's timestamp is too far ahead of our clock (or malformed).
    ClockDrift,
    /// The reply is not a valid answer to the request.
    BadReply,
    /// Too many requests in flight.
    Busy,
    /// The request is invalid (the rule it breaks).
    InvalidArgument(&'static str),
    /// The broker refused the subscription to the response topic; the request was not sent.
    SubscriptionRefused,
    /// The connection was closed.
    Closed,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Service(e) => write!(f, "state store error: {e:?}"),
            StoreError::Timeout { sent: true } => {
                f.write_str("request timed out (it may have run)")
            }
            StoreError::Timeout { sent: false } => {
                f.write_str("request timed out before it was sent")
            }
            StoreError::Unknown => f.write_str("connection lost after sending; outcome unknown"),
            StoreError::Status { status, message } => {
                write!(f, "RPC status {status}")?;
                if let Some(m) = message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            StoreError::ClockDrift => {
                f.write_str("reply timestamp too far ahead of the local clock")
            }
            StoreError::BadReply => f.write_str("malformed reply"),
            StoreError::Busy => f.write_str("too many requests in flight"),
            StoreError::InvalidArgument(rule) => write!(f, "invalid argument: {rule}"),
            StoreError::SubscriptionRefused => {
                f.write_str("the broker refused the response-topic subscription")
            }
            StoreError::Closed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<RequestError> for StoreError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Service(s) => StoreError::Service(s),
            RequestError::Timeout { sent } => StoreError::Timeout { sent },
            RequestError::Unknown => StoreError::Unknown,
            RequestError::Status { status, message } => StoreError::Status {
                status,
                message: message.map(|m| String::from_utf8_lossy(&m).into_owned()),
            },
            RequestError::ClockDrift => StoreError::ClockDrift,
            RequestError::Busy => StoreError::Busy,
            RequestError::InvalidArgument(rule) => StoreError::InvalidArgument(rule),
            RequestError::SubscriptionRefused => StoreError::SubscriptionRefused,
            // BadReply and anything a later core adds: the reply could not be used.
            _ => StoreError::BadReply,
        }
    }
}

/// Options of a SET.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOptions {
    pub(crate) condition: SetCondition,
    pub(crate) expiry: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) fencing_token: Option<Hlc>,
    pub(crate) persist: bool,
}

impl SetOptions {
    /// An unconditional SET without expiry.
    pub fn new() -> SetOptions {
        SetOptions::default()
    }

    /// Only if the key does not exist (NX).
    pub fn if_absent(mut self) -> SetOptions {
        self.condition = SetCondition::NotExists;
        self
    }

    /// Only if the key does not exist or already holds this value (NEX).
    pub fn if_absent_or_equal(mut self) -> SetOptions {
        self.condition = SetCondition::NotExistsOrEqual;
        self
    }

    /// Expire the key after this long (PX, milliseconds).
    pub fn expiry(mut self, expiry: Duration) -> SetOptions {
        self.expiry = Some(expiry);
        self
    }

    /// Per-request timeout instead of the connection's default.
    pub fn timeout(mut self, timeout: Duration) -> SetOptions {
        self.timeout = Some(timeout);
        self
    }

    /// Fence the write with this token (`__ft`).
    pub fn fencing_token(mut self, token: Hlc) -> SetOptions {
        self.fencing_token = Some(token);
        self
    }

    /// Ask the store to persist the key.
    pub fn persist(mut self) -> SetOptions {
        self.persist = true;
        self
    }
}

/// Options of a DEL or VDEL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) fencing_token: Option<Hlc>,
}

impl DelOptions {
    /// No timeout override, no fencing.
    pub fn new() -> DelOptions {
        DelOptions::default()
    }

    /// Per-request timeout instead of the connection's default.
    pub fn timeout(mut self, timeout: Duration) -> DelOptions {
        self.timeout = Some(timeout);
        self
    }

    /// Fence the delete with this token (`__ft`).
    pub fn fencing_token(mut self, token: Hlc) -> DelOptions {
        self.fencing_token = Some(token);
        self
    }
}

/// The result of a SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetResult {
    /// Whether the store wrote the value (false: a condition did not hold).
    pub applied: bool,
    /// The key's new version (`__ts`): the fencing token for leases.
    pub version: Option<Hlc>,
}

/// A value with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Bytes,
    /// Its version, if the store sent one.
    pub version: Option<Hlc>,
}

/// One change of an observed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// The key.
    pub key: Bytes,
    /// The new value, `None` when deleted.
    pub value: Option<Bytes>,
    /// The version after the change (absent on a resync marker).
    pub version: Option<Hlc>,
    /// Changes may have been missed (the connection dropped and the key was registered again):
    /// re-read the key. `value` is `None` and meaningless then.
    pub resync: bool,
}

/// Why an observation yielded no change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObserveError {
    /// The reader was too slow; this many changes were dropped.
    Lagged {
        /// How many.
        missed: u64,
    },
}

impl std::fmt::Display for ObserveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObserveError::Lagged { missed } => write!(f, "{missed} changes dropped (slow reader)"),
        }
    }
}

impl std::error::Error for ObserveError {}

/// Raw state-store operations. Cheap to clone; every future is cancel-safe (a dropped request's
/// reply is discarded when it comes).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use leasedlock_async_std::{Connection, ConnectionOptions, SetOptions};
///
/// let conn = Connection::connect(ConnectionOptions::new("127.0.0.1", 1883, "app-1")).await?;
/// let store = conn.state_store();
/// store.set("config", "v1", &SetOptions::new()).await?;
/// let got = store.get("config", None).await?;
/// assert_eq!(got.map(|v| v.value), Some("v1".into()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StateStore {
    shared: Arc<Shared>,
}

fn px_ms(expiry: Duration) -> u64 {
    u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX)
}

impl StateStore {
    pub(crate) fn new(shared: Arc<Shared>) -> StateStore {
        StateStore { shared }
    }

    /// SET `key` to `value`.
    pub async fn set(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        options: &SetOptions,
    ) -> Result<SetResult, StoreError> {
        let request = Request::Set {
            key: key.into(),
            value: value.into(),
            condition: options.condition,
            px_ms: options.expiry.map(px_ms),
        };
        let opts = RequestOptions {
            timeout: options.timeout,
            fencing_token: options.fencing_token.clone(),
            persist: options.persist,
        };
        let done = self.shared.request(request, opts).await?;
        match done.result? {
            Response::Set(outcome) => Ok(SetResult {
                applied: outcome == SetOutcome::Applied,
                version: done.version,
            }),
            _ => Err(StoreError::BadReply),
        }
    }

    /// GET `key`; `None` if absent.
    pub async fn get(
        &self,
        key: impl Into<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<Option<Versioned>, StoreError> {
        let opts = RequestOptions {
            timeout,
            ..RequestOptions::default()
        };
        let done = self
            .shared
            .request(Request::Get { key: key.into() }, opts)
            .await?;
        match done.result? {
            Response::Get(value) => Ok(value.map(|value| Versioned {
                value,
                version: done.version,
            })),
            _ => Err(StoreError::BadReply),
        }
    }

    /// DEL `key`; whether it existed.
    pub async fn del(
        &self,
        key: impl Into<Bytes>,
        options: &DelOptions,
    ) -> Result<bool, StoreError> {
        let opts = RequestOptions {
            timeout: options.timeout,
            fencing_token: options.fencing_token.clone(),
            persist: false,
        };
        match self
            .shared
            .request(Request::Del { key: key.into() }, opts)
            .await?
            .result?
        {
            Response::Del(n) => Ok(n > 0),
            _ => Err(StoreError::BadReply),
        }
    }

    /// VDEL: delete `key` only if it holds `value`.
    pub async fn vdel(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        options: &DelOptions,
    ) -> Result<VdelOutcome, StoreError> {
        let request = Request::Vdel {
            key: key.into(),
            value: value.into(),
        };
        let opts = RequestOptions {
            timeout: options.timeout,
            fencing_token: options.fencing_token.clone(),
            persist: false,
        };
        match self.shared.request(request, opts).await?.result? {
            Response::Vdel(outcome) => Ok(outcome),
            _ => Err(StoreError::BadReply),
        }
    }

    /// Observes `key` (KEYNOTIFY). The registration is renewed after reconnects; dropping the
    /// [`Observation`] (or this future) unregisters it with KEYNOTIFY STOP when it was the
    /// last observer of the key.
    pub async fn observe(&self, key: impl Into<Bytes>) -> Result<Observation, StoreError> {
        let key = key.into();
        let id = self.shared.next_id();
        let (tx, rx) = async_channel::bounded(self.shared.notification_buffer);
        let (reply, wait) = futures_channel::oneshot::channel();
        // The guard exists before the command is sent: if this future is dropped while the
        // KEYNOTIFY is in flight, the driver still learns that the stream is gone.
        let guard = ObserveGuard {
            shared: self.shared.clone(),
            key: key.clone(),
            id,
        };
        self.shared.send(Command::Observe {
            key: key.clone(),
            id,
            tx,
            reply,
        })?;
        wait.await.map_err(|_| StoreError::Closed)??;
        Ok(Observation {
            key,
            rx: Box::pin(rx),
            _guard: guard,
        })
    }
}

#[derive(Debug)]
struct ObserveGuard {
    shared: Arc<Shared>,
    key: Bytes,
    id: u64,
}

impl Drop for ObserveGuard {
    fn drop(&mut self) {
        // Fire and forget: the driver sends KEYNOTIFY STOP with its own deadline; this never
        // depends on the dropped caller. A closed connection has nothing left to unregister.
        let _ = self.shared.send(Command::Unobserve {
            key: self.key.clone(),
            id: self.id,
        });
    }
}

/// The changes of one observed key, as a [`futures_core::Stream`].
#[derive(Debug)]
pub struct Observation {
    key: Bytes,
    rx: Pin<Box<async_channel::Receiver<Result<KeyChange, ObserveError>>>>,
    _guard: ObserveGuard,
}

impl Observation {
    /// The observed key.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The next change; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Result<KeyChange, ObserveError>> {
        futures_lite::StreamExt::next(&mut self.rx).await
    }
}

impl futures_core::Stream for Observation {
    type Item = Result<KeyChange, ObserveError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.as_mut().poll_next(cx)
    }
}
