//! [`Connection`]: one MQTT connection to the broker, driven by a background task, and the
//! cheap handles built on it.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use leasedlock_core::client::{Client, ClientConfig, Completion, ConfigError, RequestOptions};
use leasedlock_core::command::Request;
use leasedlock_core::hlc::DEFAULT_MAX_DRIFT_MS;
use leasedlock_core::rng::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::driver::{Command, Driver};
use crate::leader::{Leader, LeaderError};
use crate::lease::{Lease, LeaseError};
use crate::lock::{Lock, LockError};
use crate::options::{ConnectionOptions, OptionsError};
use crate::state_store::{StateStore, StoreError};
use bytes::Bytes;

/// The connection's state as the driver last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// The first connection attempt has not finished.
    Connecting,
    /// Connected to the broker.
    Connected,
    /// The connection dropped; reconnecting with back-off. The last error's text.
    Disconnected(String),
    /// Closed for good (by [`Connection::close`] or because every handle was dropped).
    Closed,
}

/// Why a connection could not be established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The options are invalid or name unusable files.
    Options(OptionsError),
    /// The client id is not usable in topics.
    BadClientId,
    /// No CONNACK within the connect timeout; the last connection error, if any.
    Timeout(Option<String>),
    /// The connection was closed while waiting.
    Closed,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Options(e) => write!(f, "{e}"),
            ConnectError::BadClientId => write!(f, "client id is not a valid topic level"),
            ConnectError::Timeout(Some(e)) => write!(f, "could not connect: {e}"),
            ConnectError::Timeout(None) => write!(f, "could not connect in time"),
            ConnectError::Closed => write!(f, "connection closed"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<OptionsError> for ConnectError {
    fn from(e: OptionsError) -> Self {
        ConnectError::Options(e)
    }
}

/// What every handle shares: the command channel to the driver and a few settings.
#[derive(Debug)]
pub(crate) struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnectionState>,
    client_id: String,
    ids: AtomicU64,
    pub(crate) notification_buffer: usize,
    pub(crate) request_timeout: std::time::Duration,
    task: tokio::task::AbortHandle,
}

impl Shared {
    /// A process-unique id for streams and handles.
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a command to the driver.
    pub(crate) fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands.send(command).map_err(|_| StoreError::Closed)
    }

    /// Runs one state-store request and waits for its completion. Dropping the future is
    /// safe: the driver discards the completion when it comes.
    pub(crate) async fn request(
        &self,
        request: Request,
        options: RequestOptions,
    ) -> Result<Completion, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.send(Command::Request {
            request,
            options,
            reply,
        })?;
        Ok(wait.await.map_err(|_| StoreError::Closed)??)
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }
}

/// A connection to the broker: one MQTT client whose event loop, timers and the core's
/// state-store client run in a background task. Clone it freely; every clone (and every
/// handle made from it) talks to the same task. The task ends when [`Connection::close`] is
/// called or the last handle is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), leasedlock_tokio::ConnectError> {
/// use leasedlock_tokio::{Connection, ConnectionOptions};
///
/// let conn = Connection::connect(ConnectionOptions::new("127.0.0.1", 1883, "worker-1")).await?;
/// assert_eq!(conn.client_id(), "worker-1");
/// conn.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one((
        std::process::id(),
        crate::clock::wall_ms(),
        std::thread::current().id(),
    ))
}

/// A UUID-shaped node id for the application's hybrid logical clock.
fn hlc_node(seed: u64) -> String {
    let mut rng = Rng::new(seed ^ 0x6c65_6173_6564_6c6b);
    let b = rng.bytes16();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Connection {
    /// Starts the connection task and returns at once; requests made before the broker
    /// answers wait (within their timeouts) for the connection. Must be called within a tokio
    /// runtime.
    pub async fn start(options: ConnectionOptions) -> Result<Connection, ConnectError> {
        let mqtt = options.to_mqtt().await?;
        let seed = options.seed.unwrap_or_else(random_seed);
        let client = Client::new(ClientConfig {
            client_id: options.client_id.clone(),
            seed,
            max_in_flight: options.max_in_flight,
            max_observed: options.max_observed,
            default_timeout: options.request_timeout,
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
            hlc_node: hlc_node(seed),
        })
        .map_err(|e| match e {
            ConfigError::ZeroCapacity => ConnectError::Options(OptionsError::Zero("capacity")),
            _ => ConnectError::BadClientId,
        })?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(ConnectionState::Connecting);
        let span = tracing::info_span!("leasedlock", client_id = %options.client_id);
        let driver = Driver::new(client, mqtt, &options, seed, command_rx, state_tx);
        let task = tokio::spawn(driver.run().instrument(span)).abort_handle();
        Ok(Connection {
            shared: Arc::new(Shared {
                commands,
                state,
                client_id: options.client_id.clone(),
                ids: AtomicU64::new(1),
                notification_buffer: options.notification_buffer,
                request_timeout: options.request_timeout,
                task,
            }),
        })
    }

    /// Starts the connection and waits for the broker to accept it (at most the connect
    /// timeout of the options, for the first attempts together).
    pub async fn connect(options: ConnectionOptions) -> Result<Connection, ConnectError> {
        let wait = options.connect_timeout;
        let conn = Connection::start(options).await?;
        match tokio::time::timeout(wait, conn.wait_connected()).await {
            Ok(result) => result.map(|()| conn),
            Err(_) => {
                let last = match conn.state() {
                    ConnectionState::Disconnected(e) => Some(e),
                    _ => None,
                };
                conn.close().await;
                Err(ConnectError::Timeout(last))
            }
        }
    }

    /// Waits until the connection is up (returns at once if it is).
    pub async fn wait_connected(&self) -> Result<(), ConnectError> {
        let mut state = self.shared.state.clone();
        loop {
            match &*state.borrow_and_update() {
                ConnectionState::Connected => return Ok(()),
                ConnectionState::Closed => return Err(ConnectError::Closed),
                _ => {}
            }
            if state.changed().await.is_err() {
                return Err(ConnectError::Closed);
            }
        }
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        if self.shared.state.has_changed().is_err() {
            // The driver is gone (closed or aborted).
            return ConnectionState::Closed;
        }
        self.shared.state.borrow().clone()
    }

    /// Stops the connection task at once, as a crash would: nothing is released or
    /// unregistered and no DISCONNECT is sent, so the broker sees the connection drop and the
    /// store lets leases expire. Meant for failover tests and fatal-error paths; prefer
    /// [`Connection::close`].
    pub fn abort(&self) {
        self.shared.task.abort();
    }

    /// The MQTT client id (also the default lease holder name).
    pub fn client_id(&self) -> &str {
        self.shared.client_id()
    }

    /// A handle for the raw state-store operations.
    pub fn state_store(&self) -> StateStore {
        StateStore::new(self.shared.clone())
    }

    /// A handle for the lease `name`, held as this client id.
    pub fn lease(&self, name: impl Into<Bytes>) -> Result<Lease, LeaseError> {
        Lease::create(self.shared.clone(), name.into(), None)
    }

    /// A handle for the lease `name`, held as `clientId:sessionId` so that several leases of
    /// one connection stay distinct.
    pub fn lease_with_session(
        &self,
        name: impl Into<Bytes>,
        session_id: impl Into<String>,
    ) -> Result<Lease, LeaseError> {
        Lease::create(self.shared.clone(), name.into(), Some(session_id.into()))
    }

    /// A handle for the lock `name`, held as this client id.
    pub fn lock(&self, name: impl Into<Bytes>) -> Result<Lock, LockError> {
        Lock::create(self.shared.clone(), name.into(), None)
    }

    /// A handle for the lock `name`, held as `clientId:sessionId`.
    pub fn lock_with_session(
        &self,
        name: impl Into<Bytes>,
        session_id: impl Into<String>,
    ) -> Result<Lock, LockError> {
        Lock::create(self.shared.clone(), name.into(), Some(session_id.into()))
    }

    /// A participant in the election `name` (call [`Leader::campaign`] to run).
    pub fn leader(&self, name: impl Into<Bytes>) -> Result<Leader, LeaderError> {
        Leader::create(self.shared.clone(), name.into())
    }

    /// Closes the connection: lets requests in flight (and pending unregistrations) finish
    /// within their timeouts, disconnects, and stops the task. Other handles then fail with
    /// `Closed`.
    pub async fn close(&self) {
        let (reply, wait) = oneshot::channel();
        if self.shared.send(Command::Close { reply }).is_ok() {
            let _ = wait.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlc_node_is_uuid_shaped_and_seeded() {
        let n = hlc_node(1);
        assert_eq!(n.len(), 36);
        assert_eq!(n.matches('-').count(), 4);
        assert_eq!(n, hlc_node(1));
        assert_ne!(n, hlc_node(2));
    }
}
