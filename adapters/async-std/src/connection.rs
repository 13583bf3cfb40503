//! [`Connection`]: one MQTT connection to the broker, driven by a background task, and the
//! cheap handles built on it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use event_listener::Event;
use futures_channel::oneshot;
use leasedlock_core::client::{ClientConfig, Completion, RequestOptions};
use leasedlock_core::command::Request;
use leasedlock_core::rng::Rng;

use crate::driver::{self, Driver};
use crate::options::{ConnectionOptions, OptionsError};
use crate::state_store::{KeyChange, ObserveError, StateStore, StoreError};

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
            ConnectError::BadClientId => f.write_str("client id is not a valid topic level"),
            ConnectError::Timeout(Some(e)) => write!(f, "could not connect: {e}"),
            ConnectError::Timeout(None) => f.write_str("could not connect in time"),
            ConnectError::Closed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<OptionsError> for ConnectError {
    fn from(e: OptionsError) -> Self {
        ConnectError::Options(e)
    }
}

/// What a handle asks the driver to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Run one state-store request.
    Request {
        request: Request,
        options: RequestOptions,
        reply: oneshot::Sender<Result<Completion, StoreError>>,
    },
    /// Add an observer of `key` (KEYNOTIFY when it is the first).
    Observe {
        key: Bytes,
        id: u64,
        tx: async_channel::Sender<Result<KeyChange, ObserveError>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Remove an observer (KEYNOTIFY STOP when it was the last).
    Unobserve { key: Bytes, id: u64 },
    /// Leave: DISCONNECT with session expiry 0, then stop.
    Close { done: oneshot::Sender<()> },
}

/// What every handle shares: the command channel to the driver and the published state.
#[derive(Debug)]
pub(crate) struct Shared {
    commands: async_channel::Sender<Command>,
    state: Mutex<ConnectionState>,
    state_changed: Event,
    client_id: String,
    ids: AtomicU64,
    pub(crate) notification_buffer: usize,
}

impl Shared {
    /// A process-unique id for streams and handles.
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a command to the driver.
    pub(crate) fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands
            .try_send(command)
            .map_err(|_| StoreError::Closed)
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
        wait.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) fn state(&self) -> ConnectionState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_state(&self, state: ConnectionState) {
        let mut current = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *current != ConnectionState::Closed && *current != state {
            *current = state;
            drop(current);
            self.state_changed.notify(usize::MAX);
        }
    }

    /// Waits until connected or closed.
    async fn wait_connected(&self) -> Result<(), ConnectError> {
        loop {
            let listener = self.state_changed.listen();
            match self.state() {
                ConnectionState::Connected => return Ok(()),
                ConnectionState::Closed => return Err(ConnectError::Closed),
                _ => listener.await,
            }
        }
    }
}

/// A connection to the broker: a sans-IO MQTT session, the core's state-store client and
/// the lease machines, driven by one background task over async-std (or smol) I/O. Clone it
/// freely; every clone (and every handle made from it) talks to the same task. The task ends
/// when [`Connection::close`] is called or the last handle is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), leasedlock_async_std::ConnectError> {
/// use leasedlock_async_std::{Connection, ConnectionOptions};
///
/// let conn = Connection::connect(ConnectionOptions::new("127.0.0.1", 1883, "worker-1")).await?;
/// assert_eq!(conn.client_id(), "worker-1");
/// conn.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    connect_timeout: Duration,
}

impl Connection {
    /// Starts the driver and returns at once; the first connection attempt runs in the
    /// background (see [`Connection::wait_connected`]). Requests made before the connection is
    /// up wait for it (their timeouts keep running).
    pub async fn start(options: ConnectionOptions) -> Result<Connection, ConnectError> {
        options.validate()?;
        let seed = options.seed.unwrap_or_else(random_seed);
        let client = ClientConfig {
            client_id: options.client_id.clone(),
            seed,
            max_in_flight: options.max_in_flight,
            max_observed: options.max_observed,
            default_timeout: options.request_timeout,
            max_drift_ms: 60_000,
            hlc_node: node_id(seed),
        };
        let (commands, inbox) = async_channel::unbounded();
        let shared = Arc::new(Shared {
            commands,
            state: Mutex::new(ConnectionState::Connecting),
            state_changed: Event::new(),
            client_id: options.client_id.clone(),
            ids: AtomicU64::new(0),
            notification_buffer: options.notification_buffer,
        });
        let connect_timeout = options.connect_timeout;
        let driver =
            Driver::new(options, client, seed, Arc::downgrade(&shared)).map_err(|e| match e {
                driver::BuildError::Options(o) => ConnectError::Options(o),
                driver::BuildError::ClientId => ConnectError::BadClientId,
            })?;
        async_std::task::spawn(driver.run(inbox));
        Ok(Connection {
            shared,
            connect_timeout,
        })
    }

    /// Starts the driver and waits for the first CONNACK (up to the connect timeout).
    pub async fn connect(options: ConnectionOptions) -> Result<Connection, ConnectError> {
        let conn = Connection::start(options).await?;
        conn.wait_connected().await?;
        Ok(conn)
    }

    /// Waits until the connection is up, at most the connect timeout.
    pub async fn wait_connected(&self) -> Result<(), ConnectError> {
        let timeout = async {
            async_io::Timer::after(self.connect_timeout).await;
            Err(match self.shared.state() {
                ConnectionState::Disconnected(e) => ConnectError::Timeout(Some(e)),
                _ => ConnectError::Timeout(None),
            })
        };
        futures_lite::future::or(self.shared.wait_connected(), timeout).await
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.shared.state()
    }

    /// The MQTT client id.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// A handle for raw state-store operations.
    pub fn state_store(&self) -> StateStore {
        StateStore::new(self.shared.clone())
    }

    /// Leaves: releases nothing by itself (handles do that when dropped), sends DISCONNECT with
    /// Session Expiry 0 so the broker forgets the session, and stops the driver. Requests still
    /// waiting end with [`StoreError::Closed`].
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.shared.send(Command::Close { done }).is_ok() {
            let _ = wait.await;
        }
    }
}

/// A seed from the OS-seeded hasher keys, mixed with the time.
fn random_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A UUID-shaped HLC node id derived from the seed.
fn node_id(seed: u64) -> String {
    let b = Rng::new(seed ^ 0x9E37_79B9_7F4A_7C15).bytes16();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_uuid_shaped_and_seeded() {
        let a = node_id(1);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_eq!(a, node_id(1));
        assert_ne!(a, node_id(2));
    }

    #[async_std::test]
    async fn invalid_options_fail_before_spawning() {
        let err = Connection::start(ConnectionOptions::new("h", 1, "a/b"))
            .await
            .unwrap_err();
        assert_eq!(err, ConnectError::Options(OptionsError::BadClientId));
    }

    #[async_std::test]
    async fn connect_times_out_with_the_last_error() {
        let options = ConnectionOptions::new("127.0.0.1", 1, "c1")
            .connect_timeout(Duration::from_millis(300))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50));
        let err = Connection::connect(options).await.unwrap_err();
        assert!(matches!(err, ConnectError::Timeout(Some(_))), "{err:?}");
    }
}
