//! [`Shared`]: what every handle of one connection shares — the command channel to the engine,
//! the connection state, the holder claims, and a few settings.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::client::{Completion, RequestOptions};
use leasedlock_core::command::Request;

use crate::engine::protocol::{Cmd, Command};
use crate::error::{LeaseError, StoreError};
use crate::view::ConnectionState;
use crate::watch;

/// What every handle shares: the command channel to the engine and a few settings.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) commands: async_channel::Sender<Command>,
    pub(crate) state: watch::Receiver<ConnectionState>,
    client_id: String,
    /// Random, drawn once per connection: the first part of every generated holder session,
    /// so that a restarted process with the same client id never takes over the old one's
    /// leases by accident.
    instance: String,
    ids: AtomicU64,
    /// The `(name, holder)` pairs of the live handles and edits of this connection, with the
    /// id of the handle using each: one holder value never acts twice on one name.
    claims: Mutex<HashMap<(Bytes, Bytes), u64>>,
    pub(crate) notification_buffer: usize,
    pub(crate) request_timeout: Duration,
}

/// A fresh connection instance id: 12 hex digits from a per-process random hasher, the time
/// and a process-wide counter (never the connection's seed: two runs with one fixed seed are
/// still two instances).
fn instance_id() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let h = std::collections::hash_map::RandomState::new().hash_one((
        std::process::id(),
        crate::clock::wall_ms(),
        n,
    ));
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

impl Shared {
    pub(crate) fn new(
        commands: async_channel::Sender<Command>,
        state: watch::Receiver<ConnectionState>,
        client_id: String,
        notification_buffer: usize,
        request_timeout: Duration,
    ) -> Shared {
        Shared {
            commands,
            state,
            client_id,
            instance: instance_id(),
            ids: AtomicU64::new(1),
            claims: Mutex::new(HashMap::new()),
            notification_buffer,
            request_timeout,
        }
    }

    /// A connection-unique id for streams, handles and operations.
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a command to the engine.
    pub(crate) fn send(&self, command: Cmd) -> Result<(), StoreError> {
        self.commands
            .try_send(Command(command))
            .map_err(|_| StoreError::Closed)
    }

    /// Runs one state-store request and waits for its completion. Dropping the future is
    /// safe: the engine discards the completion when it comes.
    pub(crate) async fn request(
        &self,
        request: Request,
        options: RequestOptions,
    ) -> Result<Completion, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.send(Cmd::Request {
            request,
            options,
            reply,
        })?;
        Ok(wait.await.map_err(|_| StoreError::Closed)??)
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The session id of a generated holder for handle (or edit) `id`: `instance.id`.
    pub(crate) fn generated_session(&self, id: u64) -> String {
        format!("{}.{id}", self.instance)
    }

    /// Claims `holder` on `name` for handle `id`; refused while another live handle of this
    /// connection has it.
    pub(crate) fn claim(&self, name: &Bytes, holder: &Bytes, id: u64) -> Result<(), LeaseError> {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        match claims.entry((name.clone(), holder.clone())) {
            std::collections::hash_map::Entry::Occupied(_) => Err(LeaseError::HolderInUse),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
                Ok(())
            }
        }
    }

    /// Gives up the claim of handle `id` (if it still has it).
    pub(crate) fn unclaim(&self, name: &Bytes, holder: &Bytes, id: u64) {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let key = (name.clone(), holder.clone());
        if claims.get(&key) == Some(&id) {
            claims.remove(&key);
        }
    }
}
