//! The background task: owns the MQTT session, the core's state-store client, the link to the
//! broker and every waiter. One loop: wait for a command, bytes, a connection attempt or a
//! timer; feed it in with the current time; drain outputs; write bytes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_io::Timer;
use bytes::Bytes;
use futures_channel::oneshot;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use leasedlock_core::client::{
    Client, ClientConfig, Completion, Output, RequestId, RequestOptions,
};
use leasedlock_core::command::Response;
use leasedlock_core::envelope::QoS;
use leasedlock_core::Now;
use leasedlock_mqtt_session::{DisconnectReason, Event, PublishOutcome, Session, SessionConfig};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::connection::{Command, ConnectionState, Shared};
use crate::options::{Authentication, ConnectionOptions, OptionsError, K8S_SAT_METHOD};
use crate::state_store::{KeyChange, ObserveError, StoreError};
use crate::transport::{self, Transport};

/// Bytes queued for the socket beyond which the connection is presumed stuck and dropped.
const MAX_PENDING_WRITE: usize = 32 * 1024 * 1024;
/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;
/// How often a K8S-SAT token file is checked for a rotated token while connected.
const TOKEN_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How long a closing link may take to flush before its socket is shut down.
const LINGER: Duration = Duration::from_secs(1);

/// Loop turns between two voluntary yields to the executor.
const YIELD_EVERY: u32 = 16;

/// Why the driver could not be built.
#[derive(Debug)]
pub(crate) enum BuildError {
    Options(OptionsError),
    ClientId,
}

/// Secrets read before a connection attempt.
#[derive(Debug, Default)]
struct Secrets {
    password: Option<Bytes>,
    token: Option<Bytes>,
}

type Attempt = Pin<Box<dyn Future<Output = Result<(Transport, Secrets), String>> + Send>>;

/// One live connection: a reader task feeding `incoming`, a writer task draining `outgoing`.
struct Link {
    incoming: async_channel::Receiver<std::io::Result<Vec<u8>>>,
    outgoing: async_channel::Sender<Bytes>,
    pending: Arc<AtomicUsize>,
    socket: async_std::net::TcpStream,
}

impl Link {
    fn start(transport: Transport) -> Link {
        let (mut reader, mut writer) = futures_lite::io::split(transport.stream);
        let (in_tx, incoming) = async_channel::bounded(8);
        let (outgoing, out_rx) = async_channel::unbounded::<Bytes>();
        let pending = Arc::new(AtomicUsize::new(0));
        async_std::task::spawn(async move {
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                let item = match reader.read(&mut buf).await {
                    Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => Ok(buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default()),
                    Err(e) => Err(e),
                };
                let end = item.is_err();
                if in_tx.send(item).await.is_err() || end {
                    break;
                }
            }
        });
        let socket = transport.socket.clone();
        let counter = pending.clone();
        async_std::task::spawn(async move {
            while let Ok(bytes) = out_rx.recv().await {
                let ok = writer.write_all(&bytes).await.is_ok();
                counter.fetch_sub(bytes.len(), Ordering::Relaxed);
                if !ok || (out_rx.is_empty() && writer.flush().await.is_err()) {
                    break;
                }
            }
            // Drained (or failed): close both directions, which also ends the reader.
            Transport::shutdown(&socket);
        });
        Link {
            incoming,
            outgoing,
            pending,
            socket: transport.socket,
        }
    }

    /// Queues bytes; false when the writer is gone or too far behind.
    fn send(&self, bytes: Bytes) -> bool {
        let queued = self.pending.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        queued <= MAX_PENDING_WRITE && self.outgoing.try_send(bytes).is_ok()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The writer flushes what is queued (a DISCONNECT, say) and shuts the socket; if it is
        // stuck on a peer that stopped reading, the socket is shut down after a moment anyway.
        self.outgoing.close();
        let socket = self.socket.clone();
        async_std::task::spawn(async move {
            Timer::after(LINGER).await;
            Transport::shutdown(&socket);
        });
    }
}

/// One observer of a key.
struct Observer {
    id: u64,
    tx: async_channel::Sender<Result<KeyChange, ObserveError>>,
    missed: u64,
}

impl Observer {
    /// Delivers without blocking the driver: a full buffer counts a miss, reported before the
    /// next change that fits.
    fn deliver(&mut self, change: KeyChange) {
        if self.missed > 0 {
            let lagged = Err(ObserveError::Lagged {
                missed: self.missed,
            });
            if self.tx.try_send(lagged).is_err() {
                self.missed += 1;
                return;
            }
            self.missed = 0;
        }
        if self.tx.try_send(Ok(change)).is_err() {
            self.missed += 1;
        }
    }
}

/// Who waits for a KEYNOTIFY's outcome.
type ObserveReply = oneshot::Sender<Result<(), StoreError>>;

/// Observers of one key and the state of its registration.
#[derive(Default)]
struct Observed {
    observers: Vec<Observer>,
    /// The KEYNOTIFY in flight and who waits for it; `None` once registered.
    pending: Option<(RequestId, Vec<ObserveReply>)>,
}

enum Wake {
    Command(Option<Command>),
    Net(Option<std::io::Result<Vec<u8>>>),
    Attempt(Result<(Transport, Secrets), String>),
    Timer,
}

/// The driver's state.
pub(crate) struct Driver {
    options: ConnectionOptions,
    clock: Clock,
    session: Session,
    client: Client,
    shared: Weak<Shared>,
    backoff: Backoff,
    waiters: HashMap<RequestId, oneshot::Sender<Result<Completion, StoreError>>>,
    observed: HashMap<Bytes, Observed>,
    /// Last K8S-SAT token sent, to notice rotation.
    token: Option<Bytes>,
    token_check_at: Option<std::time::Instant>,
    /// The session ended the current connection; the link must go.
    link_dead: bool,
}

impl Driver {
    pub(crate) fn new(
        options: ConnectionOptions,
        client: ClientConfig,
        seed: u64,
        shared: Weak<Shared>,
    ) -> Result<Driver, BuildError> {
        let mut session = SessionConfig::new(options.client_id.clone());
        session.clean_start = options.clean_start;
        session.session_expiry_secs =
            u32::try_from(options.session_expiry.as_secs()).unwrap_or(u32::MAX);
        session.keep_alive = options.keep_alive;
        session.ping_timeout = options.connect_timeout;
        session.connect_timeout = options.connect_timeout;
        session.max_packet_size = options.max_packet_size.max(256);
        match &options.authentication {
            Authentication::UsernamePassword { username, .. } => {
                session.username = Some(username.clone());
            }
            Authentication::K8sServiceAccountToken { .. } => {
                session.auth_method = Some(K8S_SAT_METHOD.to_owned());
            }
            Authentication::None => {}
        }
        let session = Session::new(session).map_err(|e| {
            BuildError::Options(OptionsError::Tls(format!("MQTT session options: {e}")))
        })?;
        let client = Client::new(client).map_err(|_| BuildError::ClientId)?;
        Ok(Driver {
            backoff: Backoff::new(options.backoff_min, options.backoff_max, seed),
            options,
            clock: Clock::new(),
            session,
            client,
            shared,
            waiters: HashMap::new(),
            observed: HashMap::new(),
            token: None,
            token_check_at: None,
            link_dead: false,
        })
    }

    fn attempt(&self) -> Attempt {
        let options = self.options.clone();
        let timeout = options.connect_timeout;
        Box::pin(async move {
            let connect = async {
                let secrets = load_secrets(&options.authentication)
                    .await
                    .map_err(|e| e.to_string())?;
                let transport = transport::open(&options).await.map_err(|e| e.to_string())?;
                Ok((transport, secrets))
            };
            let expire = async {
                Timer::after(timeout).await;
                Err(String::from("connection attempt timed out"))
            };
            future::or(connect, expire).await
        })
    }

    fn publish_state(&self, state: ConnectionState) {
        if let Some(shared) = self.shared.upgrade() {
            shared.set_state(state);
        }
    }

    /// The task's body.
    pub(crate) async fn run(mut self, inbox: async_channel::Receiver<Command>) {
        let mut link: Option<Link> = None;
        let mut attempt: Option<Attempt> = Some(self.attempt());
        let mut retry_at: Option<std::time::Instant> = None;
        let mut closing: Option<oneshot::Sender<()>> = None;
        let mut turns: u32 = 0;
        loop {
            // A wake that is always ready (a due timer, a busy socket) would otherwise keep this
            // task on its executor thread for good; async-std has only one per core, so other
            // connections' drivers, and the `Close` they wait for, would starve.
            turns = turns.wrapping_add(1);
            if turns % YIELD_EVERY == 0 {
                future::yield_now().await;
            }
            let deadline = [
                self.next_deadline(),
                retry_at,
                self.token_check_at.filter(|_| link.is_some()),
            ]
            .into_iter()
            .flatten()
            .min();
            let wake = {
                let command = async { Wake::Command(inbox.recv().await.ok()) };
                let net = async {
                    match &link {
                        Some(l) => Wake::Net(l.incoming.recv().await.ok()),
                        None => future::pending().await,
                    }
                };
                let connecting = async {
                    match attempt.as_mut() {
                        Some(f) => Wake::Attempt(f.as_mut().await),
                        None => future::pending().await,
                    }
                };
                let timer = async {
                    match deadline {
                        Some(at) => {
                            Timer::at(at).await;
                            Wake::Timer
                        }
                        None => future::pending().await,
                    }
                };
                future::race(future::race(net, command), future::race(connecting, timer)).await
            };
            let now = self.clock.now();
            match wake {
                Wake::Command(Some(Command::Close { done })) => {
                    closing = Some(done);
                    break;
                }
                Wake::Command(Some(command)) => self.command(command, now),
                // Every handle is gone.
                Wake::Command(None) => break,
                Wake::Net(Some(Ok(bytes))) => self.session.handle_bytes_received(&bytes, now.mono),
                Wake::Net(_) => {
                    self.session.handle_connection_lost(now.mono);
                    link = None;
                }
                Wake::Attempt(Ok((transport, secrets))) => {
                    attempt = None;
                    self.apply_secrets(secrets);
                    link = Some(Link::start(transport));
                    self.link_dead = false;
                    self.session.handle_connection_opened(now.mono);
                    self.token_check_at = Some(std::time::Instant::now() + TOKEN_CHECK_INTERVAL);
                }
                Wake::Attempt(Err(error)) => {
                    attempt = None;
                    debug!(%error, "connection attempt failed");
                    self.publish_state(ConnectionState::Disconnected(error));
                }
                Wake::Timer => {
                    if retry_at.is_some_and(|at| at <= std::time::Instant::now()) {
                        retry_at = None;
                        attempt = Some(self.attempt());
                    }
                    if self
                        .token_check_at
                        .is_some_and(|at| at <= std::time::Instant::now())
                    {
                        self.token_check_at =
                            Some(std::time::Instant::now() + TOKEN_CHECK_INTERVAL);
                        self.check_token(now).await;
                    }
                    self.session.handle_timeout(now.mono);
                    self.client.handle_timeout(now);
                }
            }
            self.process(now);
            if let Some(l) = &link {
                while let Some(bytes) = self.session.poll_transmit() {
                    if !l.send(bytes) {
                        warn!("connection stalled or closed while writing");
                        self.session.handle_connection_lost(now.mono);
                        self.link_dead = true;
                    }
                }
            } else {
                // Nothing can be written without a connection.
                while self.session.poll_transmit().is_some() {}
            }
            if self.link_dead {
                self.link_dead = false;
                link = None;
                self.process(now);
            }
            if link.is_none() && attempt.is_none() && retry_at.is_none() {
                retry_at = Some(std::time::Instant::now() + self.backoff.next_delay());
            }
        }
        // Leaving: DISCONNECT with Session Expiry 0, flushed by the writer before it closes.
        let now = self.clock.now();
        self.session.disconnect(false, now.mono);
        if let Some(l) = &link {
            while let Some(bytes) = self.session.poll_transmit() {
                l.send(bytes);
            }
        }
        self.process(now);
        drop(link);
        self.publish_state(ConnectionState::Closed);
        // Waiters see `Closed` as their senders drop with `self`.
        drop(self);
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }

    fn next_deadline(&self) -> Option<std::time::Instant> {
        [self.session.poll_timeout(), self.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map(|t| self.clock.to_std(t))
    }

    fn apply_secrets(&mut self, secrets: Secrets) {
        if let Err(e) = self.session.set_password(secrets.password) {
            warn!(error = %e, "password unusable");
        }
        if let Some(token) = secrets.token {
            if let Err(e) = self.session.set_auth_data(Some(token.clone())) {
                warn!(error = %e, "token unusable");
            }
            self.token = Some(token);
        }
    }

    /// Re-authenticates in-band when the service-account token file changed.
    async fn check_token(&mut self, now: Now) {
        let Authentication::K8sServiceAccountToken { token_file } = &self.options.authentication
        else {
            return;
        };
        let Ok(token) = crate::options::Secret::File(token_file.clone())
            .load("token")
            .await
        else {
            return;
        };
        let token = Bytes::from(token);
        if self.token.as_ref() != Some(&token) && self.session.is_connected() {
            info!("service-account token rotated; re-authenticating");
            if self.session.reauthenticate(token.clone(), now.mono).is_ok() {
                self.token = Some(token);
            }
        }
    }

    fn command(&mut self, command: Command, now: Now) {
        match command {
            Command::Request {
                request,
                options,
                reply,
            } => match self.client.request(request, options, now) {
                Ok(id) => {
                    self.waiters.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::Observe { key, id, tx, reply } => self.observe(key, id, tx, reply, now),
            Command::Unobserve { key, id } => self.unobserve(&key, id, now),
            // Handled by the loop.
            Command::Close { .. } => {}
        }
    }

    fn observe(
        &mut self,
        key: Bytes,
        id: u64,
        tx: async_channel::Sender<Result<KeyChange, ObserveError>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
        now: Now,
    ) {
        let entry = self.observed.entry(key.clone()).or_default();
        entry.observers.push(Observer { id, tx, missed: 0 });
        if let Some((_, waiting)) = entry.pending.as_mut() {
            waiting.push(reply);
            return;
        }
        if entry.observers.len() > 1 {
            let _ = reply.send(Ok(()));
            return;
        }
        match self
            .client
            .observe(key.clone(), RequestOptions::default(), now)
        {
            Ok(request) => entry.pending = Some((request, vec![reply])),
            Err(e) => {
                self.observed.remove(&key);
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn unobserve(&mut self, key: &Bytes, id: u64, now: Now) {
        let Some(entry) = self.observed.get_mut(key) else {
            return;
        };
        entry.observers.retain(|o| o.id != id);
        if entry.observers.is_empty() {
            self.observed.remove(key);
            // Fire and forget with the connection's own deadline; the completion is ignored.
            if let Err(e) = self
                .client
                .unobserve(key.clone(), RequestOptions::default(), now)
            {
                debug!(?e, "KEYNOTIFY STOP not sent");
            }
        }
    }

    /// Moves outputs between the session, the client and the waiters until all are drained.
    fn process(&mut self, now: Now) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.session.poll_event() {
                progressed = true;
                self.session_event(event, now);
            }
            while let Some(output) = self.client.poll_output() {
                progressed = true;
                self.client_output(output, now);
            }
            if !progressed {
                break;
            }
        }
    }

    fn session_event(&mut self, event: Event, now: Now) {
        match event {
            Event::Connected { session_present } => {
                info!(session_present, "connected");
                self.backoff.reset();
                self.client.handle_connected(session_present, now);
                self.publish_state(ConnectionState::Connected);
            }
            Event::SessionLost => info!("broker lost the session; re-subscribing"),
            Event::Published { id, outcome } => match outcome {
                PublishOutcome::Acknowledged(code) if code.is_error() => {
                    warn!(?id, %code, "broker refused a publish");
                }
                PublishOutcome::Discarded => warn!(?id, "publish discarded"),
                _ => {}
            },
            Event::Subscribed { filter, result, .. } => {
                if let Err(code) = result {
                    warn!(%filter, %code, "subscription refused");
                }
                self.client.handle_subscribed(&filter, result.is_ok(), now);
            }
            Event::Message(message) => self.client.handle_publish(message, now),
            Event::Disconnected(reason) => {
                let text = describe(&reason);
                info!(reason = %text, "disconnected");
                self.client.handle_disconnected(now);
                self.publish_state(ConnectionState::Disconnected(text));
                self.link_dead = true;
            }
            Event::AuthContinue { .. } => {
                warn!("broker asked for an authentication exchange K8S-SAT does not have");
            }
            Event::Reauthenticated => debug!("re-authenticated"),
            other => debug!(?other, "session event"),
        }
    }

    fn client_output(&mut self, output: Output, now: Now) {
        match output {
            Output::Publish(message) => {
                if let Err(e) = self.session.publish(&message, now.mono) {
                    // The request then ends by its own timeout.
                    warn!(error = %e, "request could not be published");
                }
            }
            Output::Subscribe(filter) => {
                if let Err(e) = self.session.subscribe(&filter, QoS::AtLeastOnce, now.mono) {
                    warn!(error = %e, %filter, "cannot subscribe");
                    self.client.handle_subscribed(&filter, false, now);
                }
            }
            Output::Unsubscribe(filter) => {
                let _ = self.session.unsubscribe(&filter, now.mono);
            }
            Output::Completion(completion) => self.completion(completion),
            Output::Notification(n) => {
                if let Some(entry) = self.observed.get_mut(&n.key) {
                    for o in &mut entry.observers {
                        o.deliver(KeyChange {
                            key: n.key.clone(),
                            value: n.value.clone(),
                            version: Some(n.version.clone()),
                            resync: false,
                        });
                    }
                }
            }
            Output::Reregistered { key, result } => {
                if let Some(entry) = self.observed.get_mut(&key) {
                    if result.is_ok() {
                        for o in &mut entry.observers {
                            o.deliver(KeyChange {
                                key: key.clone(),
                                value: None,
                                version: None,
                                resync: true,
                            });
                        }
                    }
                }
            }
            // This adapter hosts no lease machines, so a drop has nobody to tell beyond the
            // connection state already published from the session event.
            _ => {}
        }
    }

    fn completion(&mut self, completion: Completion) {
        if let Some(reply) = self.waiters.remove(&completion.id) {
            let _ = reply.send(Ok(completion));
            return;
        }
        let key = self.observed.iter().find_map(|(k, o)| {
            o.pending
                .as_ref()
                .filter(|(id, _)| *id == completion.id)
                .map(|_| k.clone())
        });
        let Some(key) = key else {
            // KEYNOTIFY STOP and dropped requests: nobody waits.
            return;
        };
        let Some(entry) = self.observed.get_mut(&key) else {
            return;
        };
        let Some((_, waiting)) = entry.pending.take() else {
            return;
        };
        let result = match completion.result {
            Ok(Response::KeyNotify) => Ok(()),
            Ok(_) => Err(StoreError::BadReply),
            Err(e) => Err(StoreError::from(e)),
        };
        if result.is_err() {
            // Nobody observes a key whose registration failed; the client forgets it too.
            self.observed.remove(&key);
            let now = self.clock.now();
            let _ = self.client.unobserve(key, RequestOptions::default(), now);
        }
        for reply in waiting {
            let _ = reply.send(result.clone());
        }
    }
}

async fn load_secrets(auth: &Authentication) -> Result<Secrets, OptionsError> {
    Ok(match auth {
        Authentication::UsernamePassword { password, .. } => Secrets {
            password: Some(Bytes::from(password.load("password").await?)),
            token: None,
        },
        Authentication::K8sServiceAccountToken { token_file } => Secrets {
            password: None,
            token: Some(Bytes::from(
                crate::options::Secret::File(token_file.clone())
                    .load("token")
                    .await?,
            )),
        },
        _ => Secrets::default(),
    })
}

fn describe(reason: &DisconnectReason) -> String {
    match reason {
        DisconnectReason::Local => "closed locally".into(),
        DisconnectReason::Transport => "connection lost".into(),
        DisconnectReason::ConnackTimeout => "no CONNACK in time".into(),
        DisconnectReason::PingTimeout => "no PINGRESP in time".into(),
        DisconnectReason::Refused {
            reason,
            reason_string,
        } => format!(
            "connection refused ({reason}) {}",
            reason_string.as_deref().unwrap_or("")
        ),
        DisconnectReason::Server {
            reason,
            reason_string,
        } => format!(
            "broker disconnected ({reason}) {}",
            reason_string.as_deref().unwrap_or("")
        ),
        DisconnectReason::Decode(e) => format!("undecodable packet: {e}"),
        DisconnectReason::Protocol(v) => format!("protocol violation: {v:?}"),
        other => format!("{other:?}"),
    }
}
