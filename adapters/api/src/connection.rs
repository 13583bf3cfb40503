//! [`Connection`]: the runtime-independent half of a connection — what every handle shares (the
//! command channel to the engine, the connection state) and the methods that make handles.
//!
//! A runtime adapter's `Connection` wraps this one: it adds `connect`/`start` (which build the
//! [`Engine`](crate::Engine) with [`Engine::new`](crate::Engine::new) and spawn the task driving
//! it) and whatever only a runtime can do (aborting the task), and forwards everything else.

use std::sync::Arc;

use bytes::Bytes;
use futures_channel::oneshot;

pub use crate::error::{ConnackRefusal, ConnectError};
pub use crate::view::ConnectionState;

use crate::clock::Clock;
use crate::engine::protocol::Cmd;
use crate::engine::{Commands, Engine};
use crate::error::{LeaderError, LeaseError, LockError};
use crate::handle::Identity;
use crate::leader::Leader;
use crate::lease::Lease;
use crate::lock::Lock;
use crate::options::ConnectionOptions;
use crate::shared::Shared;
use crate::state_store::StateStore;

/// The runtime-independent part of a connection; see the crate documentation for how an
/// adapter's `Connection` builds and wraps it. Clone it freely: every clone, and every handle
/// made from it, talks to the same engine. The engine starts closing when
/// [`Connection::close`] is called or the last clone and handle are dropped.
#[derive(Debug, Clone)]
pub struct Connection {
    pub(crate) shared: Arc<Shared>,
}

impl Connection {
    pub(crate) fn new(shared: Shared) -> Connection {
        Connection {
            shared: Arc::new(shared),
        }
    }

    /// Waits until the connection is up (returns at once if it is).
    pub async fn wait_connected(&self) -> Result<(), ConnectError> {
        let mut state = self.shared.state.clone();
        loop {
            let done = state.with_and_update(|s| match s {
                ConnectionState::Connected => Some(Ok(())),
                ConnectionState::Closed => Some(Err(ConnectError::Closed)),
                _ => None,
            });
            if let Some(done) = done {
                return done;
            }
            if state.changed().await.is_err() {
                return Err(ConnectError::Closed);
            }
        }
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        // The engine is gone (closed, or its task was aborted). Its command receiver and its
        // state sender are dropped one after the other, so either one gone means closed: a
        // handle refused with `Closed` must never see the state still read otherwise.
        if self.shared.state.is_closed() || self.shared.commands.is_closed() {
            return ConnectionState::Closed;
        }
        self.shared.state.with(Clone::clone)
    }

    /// The MQTT client id (the first part of every holder value of this connection).
    pub fn client_id(&self) -> &str {
        self.shared.client_id()
    }

    /// A handle for the raw state-store operations.
    pub fn state_store(&self) -> StateStore {
        StateStore::new(self.shared.clone())
    }

    /// A handle for the lease `name` with a holder value of its own
    /// (`clientId:instance.handle`, see the crate documentation): to every other handle, of
    /// this connection or another, it is just another client.
    pub fn lease(&self, name: impl Into<Bytes>) -> Result<Lease, LeaseError> {
        Lease::create(self.shared.clone(), name.into(), Identity::Generated)
    }

    /// A handle for the lease `name`, held as `clientId:sessionId`: a fixed holder value that
    /// another process with the same client id can use too (to release, or to take over a
    /// lease it left). While this handle lives, another handle of this connection for the
    /// same name and session is refused with [`LeaseError::HolderInUse`].
    pub fn lease_with_session(
        &self,
        name: impl Into<Bytes>,
        session_id: impl Into<String>,
    ) -> Result<Lease, LeaseError> {
        Lease::create(
            self.shared.clone(),
            name.into(),
            Identity::Session(session_id.into()),
        )
    }

    /// A handle for the lease `name`, held as the bare client id: the holder value other
    /// clients use by default, fixed across processes (what the CLI's `acquire` and
    /// `release` use). Refused like [`Connection::lease_with_session`] while another handle
    /// of this connection uses it on the same name.
    pub fn lease_as_client_id(&self, name: impl Into<Bytes>) -> Result<Lease, LeaseError> {
        Lease::create(self.shared.clone(), name.into(), Identity::ClientId)
    }

    /// A handle for the lock `name` with a holder value of its own, like
    /// [`Connection::lease`]: a second handle of this connection waits for this one's unlock.
    pub fn lock(&self, name: impl Into<Bytes>) -> Result<Lock, LockError> {
        Lock::create(self.shared.clone(), name.into(), Identity::Generated)
    }

    /// A handle for the lock `name`, held as `clientId:sessionId` (a fixed holder value, see
    /// [`Connection::lease_with_session`]; a second live handle with the same name and session
    /// is refused with `LockError::Lease(LeaseError::HolderInUse)`).
    pub fn lock_with_session(
        &self,
        name: impl Into<Bytes>,
        session_id: impl Into<String>,
    ) -> Result<Lock, LockError> {
        Lock::create(
            self.shared.clone(),
            name.into(),
            Identity::Session(session_id.into()),
        )
    }

    /// A participant in the election `name` (call [`Leader::campaign`] to run).
    pub fn leader(&self, name: impl Into<Bytes>) -> Result<Leader, LeaderError> {
        Leader::create(self.shared.clone(), name.into())
    }

    /// Closes the connection: lets requests in flight (and pending releases and
    /// unregistrations) finish within the request timeout, disconnects, and stops the engine.
    /// Other handles then fail with `Closed`.
    pub async fn close(&self) {
        let (reply, wait) = oneshot::channel();
        if self.shared.send(Cmd::Close { reply }).is_ok() {
            let _ = wait.await;
        }
    }
}

impl Engine {
    /// Validates the runtime-independent options and builds the three parts of a connection:
    /// the engine (for the adapter's task), the [`Connection`] handles are made from, and the
    /// receiving end of the handles' commands. `clock` is the one the adapter reads `now`
    /// from; the engine only uses it to turn core deadlines into [`std::time::Instant`]s for
    /// the handles.
    // Here rather than in the engine module: it hands out the `Connection` handles are made
    // from, and the engine itself never names a handle.
    pub fn new(
        options: &ConnectionOptions,
        clock: Clock,
    ) -> Result<(Engine, Connection, Commands), ConnectError> {
        let (engine, shared, commands) = Engine::build(options, clock)?;
        Ok((engine, Connection::new(shared), commands))
    }
}
