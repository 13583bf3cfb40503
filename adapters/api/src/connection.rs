//! [`Connection`]: the runtime-independent half of a connection — what every handle shares (the
//! command channel to the engine, the connection state) and the methods that make handles.
//!
//! A runtime adapter's `Connection` wraps this one: it adds `connect`/`start` (which build the
//! [`Engine`](crate::Engine) with [`Engine::new`](crate::Engine::new) and spawn the task driving
//! it) and whatever only a runtime can do (aborting the task), and forwards everything else.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::client::{Completion, RequestOptions};
use leasedlock_core::command::Request;

use crate::engine::{Cmd, Command};
use crate::handle::Identity;
use crate::leader::{Leader, LeaderError};
use crate::lease::{Lease, LeaseError};
use crate::lock::{Lock, LockError};
use crate::options::OptionsError;
use crate::state_store::{StateStore, StoreError};
use crate::watch;

/// The connection's state as the engine last saw it.
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
    /// The connect wait ended with the broker refusing the last attempt in its CONNACK, for
    /// this reason (also the error's [`source`](std::error::Error::source)). An expired
    /// service-account token shows up as [`ConnackRefusal::NotAuthorized`] or
    /// [`ConnackRefusal::BadUserNameOrPassword`].
    Refused(ConnackRefusal),
}

/// The reason code of a CONNACK that refused a connection (MQTT 5; the MQTT 3 return codes map
/// to their MQTT 5 equivalents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnackRefusal {
    /// 0x80: unspecified error.
    UnspecifiedError,
    /// 0x81: malformed packet.
    MalformedPacket,
    /// 0x82: protocol error.
    ProtocolError,
    /// 0x83: implementation-specific error.
    ImplementationSpecificError,
    /// 0x84: unsupported protocol version.
    UnsupportedProtocolVersion,
    /// 0x85: client identifier not valid.
    ClientIdentifierNotValid,
    /// 0x86: bad user name or password.
    BadUserNameOrPassword,
    /// 0x87: not authorized.
    NotAuthorized,
    /// 0x88: server unavailable.
    ServerUnavailable,
    /// 0x89: server busy.
    ServerBusy,
    /// 0x8A: banned.
    Banned,
    /// 0x8C: bad authentication method.
    BadAuthenticationMethod,
    /// 0x90: topic name invalid.
    TopicNameInvalid,
    /// 0x95: packet too large.
    PacketTooLarge,
    /// 0x97: quota exceeded.
    QuotaExceeded,
    /// 0x99: payload format invalid.
    PayloadFormatInvalid,
    /// 0x9A: retain not supported.
    RetainNotSupported,
    /// 0x9B: QoS not supported.
    QosNotSupported,
    /// 0x9C: use another server.
    UseAnotherServer,
    /// 0x9D: server moved.
    ServerMoved,
    /// 0x9F: connection rate exceeded.
    ConnectionRateExceeded,
    /// Any other refusing reason code.
    Other(u8),
}

impl ConnackRefusal {
    /// Every named refusal with its MQTT 5 reason code.
    const CODES: [(ConnackRefusal, u8); 21] = [
        (ConnackRefusal::UnspecifiedError, 0x80),
        (ConnackRefusal::MalformedPacket, 0x81),
        (ConnackRefusal::ProtocolError, 0x82),
        (ConnackRefusal::ImplementationSpecificError, 0x83),
        (ConnackRefusal::UnsupportedProtocolVersion, 0x84),
        (ConnackRefusal::ClientIdentifierNotValid, 0x85),
        (ConnackRefusal::BadUserNameOrPassword, 0x86),
        (ConnackRefusal::NotAuthorized, 0x87),
        (ConnackRefusal::ServerUnavailable, 0x88),
        (ConnackRefusal::ServerBusy, 0x89),
        (ConnackRefusal::Banned, 0x8A),
        (ConnackRefusal::BadAuthenticationMethod, 0x8C),
        (ConnackRefusal::TopicNameInvalid, 0x90),
        (ConnackRefusal::PacketTooLarge, 0x95),
        (ConnackRefusal::QuotaExceeded, 0x97),
        (ConnackRefusal::PayloadFormatInvalid, 0x99),
        (ConnackRefusal::RetainNotSupported, 0x9A),
        (ConnackRefusal::QosNotSupported, 0x9B),
        (ConnackRefusal::UseAnotherServer, 0x9C),
        (ConnackRefusal::ServerMoved, 0x9D),
        (ConnackRefusal::ConnectionRateExceeded, 0x9F),
    ];

    /// The refusal of MQTT 5 reason code `code`.
    pub fn from_code(code: u8) -> ConnackRefusal {
        Self::CODES
            .iter()
            .find(|(_, c)| *c == code)
            .map_or(ConnackRefusal::Other(code), |(r, _)| *r)
    }

    /// Its MQTT 5 reason code.
    pub fn code(self) -> u8 {
        match self {
            ConnackRefusal::Other(code) => code,
            named => Self::CODES
                .iter()
                .find(|(r, _)| *r == named)
                .map_or(0x80, |(_, c)| *c),
        }
    }
}

impl std::fmt::Display for ConnackRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            ConnackRefusal::UnspecifiedError => "unspecified error",
            ConnackRefusal::MalformedPacket => "malformed packet",
            ConnackRefusal::ProtocolError => "protocol error",
            ConnackRefusal::ImplementationSpecificError => "implementation-specific error",
            ConnackRefusal::UnsupportedProtocolVersion => "unsupported protocol version",
            ConnackRefusal::ClientIdentifierNotValid => "client identifier not valid",
            ConnackRefusal::BadUserNameOrPassword => "bad user name or password",
            ConnackRefusal::NotAuthorized => "not authorized",
            ConnackRefusal::ServerUnavailable => "server unavailable",
            ConnackRefusal::ServerBusy => "server busy",
            ConnackRefusal::Banned => "banned",
            ConnackRefusal::BadAuthenticationMethod => "bad authentication method",
            ConnackRefusal::TopicNameInvalid => "topic name invalid",
            ConnackRefusal::PacketTooLarge => "packet too large",
            ConnackRefusal::QuotaExceeded => "quota exceeded",
            ConnackRefusal::PayloadFormatInvalid => "payload format invalid",
            ConnackRefusal::RetainNotSupported => "retain not supported",
            ConnackRefusal::QosNotSupported => "QoS not supported",
            ConnackRefusal::UseAnotherServer => "use another server",
            ConnackRefusal::ServerMoved => "server moved",
            ConnackRefusal::ConnectionRateExceeded => "connection rate exceeded",
            ConnackRefusal::Other(_) => "refused",
        };
        write!(f, "{text} (reason code 0x{:02X})", self.code())
    }
}

impl std::error::Error for ConnackRefusal {}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Options(e) => write!(f, "{e}"),
            ConnectError::BadClientId => write!(f, "client id is not a valid topic level"),
            ConnectError::Timeout(Some(e)) => write!(f, "could not connect: {e}"),
            ConnectError::Timeout(None) => write!(f, "could not connect in time"),
            ConnectError::Closed => write!(f, "connection closed"),
            ConnectError::Refused(_) => write!(f, "the broker refused the connection"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Only where Display leaves the cause out: a chain printer shows each part once.
        match self {
            ConnectError::Refused(reason) => Some(reason),
            _ => None,
        }
    }
}

impl From<OptionsError> for ConnectError {
    fn from(e: OptionsError) -> Self {
        ConnectError::Options(e)
    }
}

/// What every handle shares: the command channel to the engine and a few settings.
#[derive(Debug)]
pub(crate) struct Shared {
    commands: async_channel::Sender<Command>,
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

#[cfg(test)]
mod connack_refusal_tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn every_refusing_code_round_trips() {
        for code in 0x80..=0xFF_u8 {
            assert_eq!(ConnackRefusal::from_code(code).code(), code, "{code:#x}");
        }
        assert_eq!(
            ConnackRefusal::from_code(0x87),
            ConnackRefusal::NotAuthorized
        );
        assert_eq!(ConnackRefusal::from_code(0xA0), ConnackRefusal::Other(0xA0));
    }

    #[test]
    fn a_refused_connect_names_the_reason_as_its_source() {
        let e = ConnectError::Refused(ConnackRefusal::NotAuthorized);
        assert_eq!(e.to_string(), "the broker refused the connection");
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), "not authorized (reason code 0x87)");
        assert_eq!(
            source.downcast_ref::<ConnackRefusal>(),
            Some(&ConnackRefusal::NotAuthorized)
        );
    }
}
