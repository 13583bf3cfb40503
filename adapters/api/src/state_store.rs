//! The state-store operations: SET, GET, DEL, VDEL and key observation.
//!
//! Most users want [`Lease`](crate::Lease), [`Lock`](crate::Lock) or
//! [`Leader`](crate::Leader); these are the raw operations underneath, for applications that
//! keep their own data in the store (for example values fenced by a lock's token).
//!
//! ```no_run
//! # async fn demo(conn: leasedlock_api::Connection) -> Result<(), Box<dyn std::error::Error>> {
//! use leasedlock_api::SetOptions;
//!
//! let store = conn.state_store();
//! store.set("greeting", "hello", &SetOptions::new()).await?;
//! let value = store.get("greeting", None).await?;
//! assert_eq!(value.map(|v| v.value), Some("hello".into()));
//! store.del("greeting", &Default::default()).await?;
//! # Ok(()) }
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::client::RequestOptions;
use leasedlock_core::command::{Request, Response, SetCondition};
use leasedlock_core::hlc::Hlc;

pub use leasedlock_core::command::VdelOutcome;

pub use crate::error::{ObserveError, StoreError};
pub use crate::view::KeyChange;

use crate::engine::{fanout, Cmd};
use crate::shared::Shared;

/// Options of a SET.
///
/// ```
/// use std::time::Duration;
/// use leasedlock_api::SetOptions;
///
/// // Create the key only if absent, expiring after 30 s.
/// let options = SetOptions::new().if_absent().expiry(Duration::from_secs(30));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOptions {
    pub(crate) condition: SetCondition,
    pub(crate) expiry: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) fencing_token: Option<Hlc>,
    pub(crate) persist: bool,
}

impl SetOptions {
    /// Unconditional SET without expiry, default timeout.
    pub fn new() -> SetOptions {
        SetOptions::default()
    }
    /// `NX`: only if the key is absent.
    pub fn if_absent(mut self) -> SetOptions {
        self.condition = SetCondition::NotExists;
        self
    }
    /// `NEX`: only if the key is absent or already holds this value.
    pub fn if_absent_or_equal(mut self) -> SetOptions {
        self.condition = SetCondition::NotExistsOrEqual;
        self
    }
    /// `PX`: the key expires after this long (millisecond precision, at least 1 ms).
    pub fn expiry(mut self, expiry: Duration) -> SetOptions {
        self.expiry = Some(expiry);
        self
    }
    /// Request timeout instead of the connection's default.
    pub fn timeout(mut self, timeout: Duration) -> SetOptions {
        self.timeout = Some(timeout);
        self
    }
    /// Fence the write with a lock's token (`__ft`).
    pub fn fencing_token(mut self, token: Hlc) -> SetOptions {
        self.fencing_token = Some(token);
        self
    }
    /// Ask the store to persist the key (`aio-persistence`).
    pub fn persist(mut self) -> SetOptions {
        self.persist = true;
        self
    }
}

/// Options of a DEL or VDEL.
///
/// ```no_run
/// # async fn demo(lock: leasedlock_api::Lock, store: leasedlock_api::StateStore) -> Result<(), Box<dyn std::error::Error>> {
/// use leasedlock_api::DelOptions;
///
/// // Delete a key protected by the lock's fencing token.
/// store.del("orders/42", &DelOptions::new().fencing_token(lock.token()?)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) fencing_token: Option<Hlc>,
}

impl DelOptions {
    /// Default timeout, no fencing token.
    pub fn new() -> DelOptions {
        DelOptions::default()
    }
    /// Request timeout instead of the connection's default.
    pub fn timeout(mut self, timeout: Duration) -> DelOptions {
        self.timeout = Some(timeout);
        self
    }
    /// Fence the delete with a lock's token (`__ft`).
    pub fn fencing_token(mut self, token: Hlc) -> DelOptions {
        self.fencing_token = Some(token);
        self
    }
}

/// The outcome of a SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetResult {
    /// `false` when an NX/NEX condition failed.
    pub applied: bool,
    /// The key's version after the SET (the new one when applied, the stored one otherwise).
    /// For a lease SET this is the fencing token.
    pub version: Option<Hlc>,
}

/// A value read with GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Bytes,
    /// Its version.
    pub version: Option<Hlc>,
}

/// Handle for state-store operations; cheap to clone, `Send + Sync`.
///
/// ```no_run
/// # async fn demo(conn: leasedlock_api::Connection) -> Result<(), leasedlock_api::StoreError> {
/// use leasedlock_api::{SetOptions, VdelOutcome};
///
/// let store = conn.state_store();
/// store.set("session/7", "alice", &SetOptions::new()).await?;
/// assert_eq!(store.vdel("session/7", "bob", &Default::default()).await?, VdelOutcome::Mismatch);
/// assert_eq!(store.vdel("session/7", "alice", &Default::default()).await?, VdelOutcome::Deleted);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StateStore {
    shared: Arc<Shared>,
}

fn request_options(
    timeout: Option<Duration>,
    fencing_token: Option<Hlc>,
    persist: bool,
) -> RequestOptions {
    RequestOptions {
        timeout,
        fencing_token,
        persist,
    }
}

fn px_ms(expiry: Duration) -> u64 {
    u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX)
}

impl StateStore {
    pub(crate) fn new(shared: Arc<Shared>) -> StateStore {
        StateStore { shared }
    }

    /// `SET key value` with the given condition, expiry, fencing token and persistence.
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
        let opts = request_options(
            options.timeout,
            options.fencing_token.clone(),
            options.persist,
        );
        let done = self.shared.request(request, opts).await?;
        match done.result? {
            Response::Set(outcome) => Ok(SetResult {
                applied: outcome == leasedlock_core::command::SetOutcome::Applied,
                version: done.version,
            }),
            _ => Err(StoreError::BadReply),
        }
    }

    /// `GET key`: the value and its version, or `None` when the key does not exist.
    pub async fn get(
        &self,
        key: impl Into<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<Option<Versioned>, StoreError> {
        let request = Request::Get { key: key.into() };
        let done = self
            .shared
            .request(request, request_options(timeout, None, false))
            .await?;
        match done.result? {
            Response::Get(value) => Ok(value.map(|value| Versioned {
                value,
                version: done.version,
            })),
            _ => Err(StoreError::BadReply),
        }
    }

    /// `DEL key`: `true` when a key was deleted.
    pub async fn del(
        &self,
        key: impl Into<Bytes>,
        options: &DelOptions,
    ) -> Result<bool, StoreError> {
        let request = Request::Del { key: key.into() };
        let opts = request_options(options.timeout, options.fencing_token.clone(), false);
        match self.shared.request(request, opts).await?.result? {
            Response::Del(n) => Ok(n > 0),
            _ => Err(StoreError::BadReply),
        }
    }

    /// `VDEL key value`: delete only if the key holds `value`.
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
        let opts = request_options(options.timeout, options.fencing_token.clone(), false);
        match self.shared.request(request, opts).await?.result? {
            Response::Vdel(outcome) => Ok(outcome),
            _ => Err(StoreError::BadReply),
        }
    }

    /// Starts observing `key` (KEYNOTIFY) and returns the stream of its changes.
    ///
    /// Several streams may observe one key; the store sees one registration. Dropping the last
    /// stream of a key unregisters it (KEYNOTIFY STOP, sent by the connection with its own
    /// timeout). After a reconnect the registration is renewed and the key read again, so a
    /// change missed in between arrives as a [`KeyChange`] with `resync` set.
    pub async fn observe(&self, key: impl Into<Bytes>) -> Result<Observation, StoreError> {
        let key = key.into();
        let id = self.shared.next_id();
        let (tx, rx) = async_channel::bounded(self.shared.notification_buffer);
        let (reply, wait) = oneshot::channel();
        // The guard exists before the command is sent: if this future is dropped while the
        // KEYNOTIFY is in flight, the driver learns that the stream is gone.
        let guard = ObserveGuard {
            shared: self.shared.clone(),
            key: key.clone(),
            id,
        };
        self.shared.send(Cmd::Observe {
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

/// Tells the driver that an observation stream is gone.
#[derive(Debug)]
struct ObserveGuard {
    shared: Arc<Shared>,
    key: Bytes,
    id: u64,
}

impl Drop for ObserveGuard {
    fn drop(&mut self) {
        // Fire and forget: the driver sends KEYNOTIFY STOP with its own deadline. If the
        // connection is already gone there is nothing left to unregister.
        let _ = self.shared.send(Cmd::Unobserve {
            key: self.key.clone(),
            id: self.id,
        });
    }
}

/// A stream of changes of one observed key. Drop it to stop observing.
///
/// ```no_run
/// # async fn demo(store: leasedlock_api::StateStore) -> Result<(), leasedlock_api::StoreError> {
/// let mut changes = store.observe("config/feature-x").await?;
/// while let Some(change) = changes.next().await {
///     match change {
///         Ok(c) => println!("now {:?} (resync: {})", c.value, c.resync),
///         Err(lag) => println!("{lag}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Observation {
    key: Bytes,
    // Boxed: the receiver is `!Unpin`, the stream should not be.
    rx: Pin<Box<async_channel::Receiver<fanout::Item>>>,
    _guard: ObserveGuard,
}

impl Observation {
    /// The observed key.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The next change; `None` when the connection closed.
    pub async fn next(&mut self) -> Option<Result<KeyChange, ObserveError>> {
        self.rx.recv().await.ok()
    }
}

impl Stream for Observation {
    type Item = Result<KeyChange, ObserveError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.as_mut().poll_next(cx)
    }
}
