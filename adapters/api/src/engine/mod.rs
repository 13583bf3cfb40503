//! The sans-IO [`Engine`]: everything a connection does except I/O and time.
//!
//! It owns the core [`Client`], the machines behind the lease, lock, edit and leader handles,
//! the fan-out of key notifications to observation streams (with the re-read after a
//! reconnect), the routes of request completions back to the waiting futures, and the
//! close/drain logic. It never blocks, never reads a clock and never touches a socket: a
//! runtime adapter feeds it commands from the handles ([`Commands`]), MQTT events and the
//! current time, and carries out what it asks for ([`Engine::poll_transmit`],
//! [`Engine::poll_timeout`]). See the crate documentation for the loop an adapter runs.

pub(crate) mod fanout;
mod host;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::client::{
    Client, ClientConfig, Completion, ConfigError, Output, RequestId, RequestOptions,
};
use leasedlock_core::command::{Request, Response};
use leasedlock_core::envelope::Message;
use leasedlock_core::hlc::DEFAULT_MAX_DRIFT_MS;
use leasedlock_core::rng::Rng;
use leasedlock_core::{Instant, Now};
use tracing::{debug, trace, warn};

use crate::clock::{wall_ms, Clock};
use crate::connection::{ConnectError, Connection, ConnectionState, Shared};
use crate::options::{ConnectionOptions, OptionsError};
use crate::state_store::{Reply, StoreError};
use crate::watch;
use fanout::{Action, Fanout};
use host::Hosted;

pub(crate) use host::{MachineKind, Op, Status};

/// A request from a handle to the engine. Opaque: adapters move it from [`Commands`] into
/// [`Engine::handle_command`].
pub struct Command(pub(crate) Cmd);

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
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
        tx: async_channel::Sender<fanout::Item>,
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

/// The receiving end of the handles' commands, for the adapter's event loop. When every
/// handle is gone, [`Commands::recv`] returns `None`: tell the engine with
/// [`Engine::handle_commands_closed`].
#[derive(Debug)]
pub struct Commands {
    rx: async_channel::Receiver<Command>,
}

impl Commands {
    /// The next command; `None` once every handle (and connection clone) is dropped.
    /// Cancel-safe: a command is only taken when this resolves.
    pub async fn recv(&self) -> Option<Command> {
        self.rx.recv().await.ok()
    }

    /// A command if one is queued, without waiting.
    pub fn try_recv(&self) -> Option<Command> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Commands {
    /// The driver is gone (finished, or its task aborted): refuse what is still queued. The
    /// channel outlives its receiver while handles hold senders, and with it the reply senders
    /// of queued commands, whose callers would otherwise wait forever.
    fn drop(&mut self) {
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
    }
}

/// Something the engine wants sent to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transmit {
    /// PUBLISH this message (with its properties) at its QoS.
    Publish(Message),
    /// SUBSCRIBE to this filter at QoS 1; report the SUBACK with [`Engine::handle_subscribed`].
    /// While disconnected the adapter keeps it for the next connection.
    Subscribe(String),
    /// UNSUBSCRIBE from this filter.
    Unsubscribe(String),
}

/// Where a completion goes.
#[derive(Debug)]
enum Route {
    /// A caller awaiting it.
    Caller(oneshot::Sender<Reply>),
    /// The KEYNOTIFY of an observed key.
    Register(Bytes),
    /// The GET that re-reads an observed key after a reconnect.
    Resync(Bytes),
    /// Fire and forget (KEYNOTIFY STOP of a dropped stream).
    Discard,
}

/// Closing: who waits for the end, and until when in-flight work may run.
#[derive(Debug)]
struct Closing {
    waiters: Vec<oneshot::Sender<()>>,
    until: Instant,
}

/// The sans-IO connection engine; see the module documentation.
pub struct Engine {
    client: Client,
    clock: Clock,
    routes: HashMap<RequestId, Route>,
    fanout: Fanout,
    machines: HashMap<u64, Hosted>,
    seed: u64,
    state: watch::Sender<ConnectionState>,
    connected: bool,
    request_timeout: Duration,
    transmit: VecDeque<Transmit>,
    closing: Option<Closing>,
    finished: bool,
    /// The earliest deadline of the client and the machines, once computed since the last
    /// input: the client's is a scan over all its request slots, and adapters ask for it on
    /// every turn of their loop, far more often than anything changes.
    deadline: Option<Option<Instant>>,
}

impl Drop for Engine {
    /// The engine is gone (finished, or its task aborted): the state reads `Closed` before any
    /// waiting caller is refused (the refusals come from dropping `routes` and `machines`
    /// right after this), so a caller that got `Closed` never sees the state read otherwise.
    fn drop(&mut self) {
        self.state.send_replace(ConnectionState::Closed);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("connected", &self.connected)
            .field("routes", &self.routes.len())
            .field("observed", &self.fanout.len())
            .field("machines", &self.machines.len())
            .field("closing", &self.closing.is_some())
            .finish_non_exhaustive()
    }
}

fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one((
        std::process::id(),
        wall_ms(),
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
        hex.get(0..8).unwrap_or_default(),
        hex.get(8..12).unwrap_or_default(),
        hex.get(12..16).unwrap_or_default(),
        hex.get(16..20).unwrap_or_default(),
        hex.get(20..32).unwrap_or_default()
    )
}

impl Engine {
    /// Validates the runtime-independent options and builds the three parts of a connection:
    /// the engine (for the adapter's task), the [`Connection`] handles are made from, and the
    /// receiving end of the handles' commands. `clock` is the one the adapter reads `now`
    /// from; the engine only uses it to turn core deadlines into [`std::time::Instant`]s for
    /// the handles.
    pub fn new(
        options: &ConnectionOptions,
        clock: Clock,
    ) -> Result<(Engine, Connection, Commands), ConnectError> {
        options.validate()?;
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
        let (commands, rx) = async_channel::unbounded();
        let (state, state_rx) = watch::channel(ConnectionState::Connecting);
        let connection = Connection::new(Shared::new(
            commands,
            state_rx,
            options.client_id.clone(),
            options.notification_buffer,
            options.request_timeout,
        ));
        let engine = Engine {
            client,
            clock,
            routes: HashMap::new(),
            fanout: Fanout::default(),
            machines: HashMap::new(),
            seed,
            state,
            connected: false,
            request_timeout: options.request_timeout,
            transmit: VecDeque::new(),
            closing: None,
            finished: false,
            deadline: None,
        };
        Ok((engine, connection, Commands { rx }))
    }

    /// A command from a handle.
    pub fn handle_command(&mut self, command: Command, now: Now) {
        if self.finished {
            // Dropping it answers `Closed` to whoever waits.
            if let Cmd::Close { reply } = command.0 {
                let _ = reply.send(());
            }
            return;
        }
        self.on_command(command.0, now);
        self.step(now);
    }

    /// Every handle is gone ([`Commands::recv`] returned `None`): close.
    pub fn handle_commands_closed(&mut self, now: Now) {
        if self.finished {
            return;
        }
        self.start_closing(None, now);
        self.step(now);
    }

    /// The broker accepted the connection (CONNACK).
    pub fn handle_connected(&mut self, session_present: bool, now: Now) {
        debug!(session_present, "connected");
        self.connected = true;
        self.client.handle_connected(session_present, now);
        self.step(now);
        self.state.send_replace(ConnectionState::Connected);
    }

    /// The connection dropped, or a connection attempt failed (`reason`: the error's text).
    pub fn handle_disconnected(&mut self, reason: String, now: Now) {
        if self.connected {
            warn!(error = %reason, "connection lost");
            self.connected = false;
            self.client.handle_disconnected(now);
            self.step(now);
        } else {
            debug!(error = %reason, "connection attempt failed");
        }
        if !self.finished {
            self.state
                .send_replace(ConnectionState::Disconnected(reason));
        }
    }

    /// A PUBLISH arrived (replies and notifications; anything else is counted and dropped by
    /// the core).
    pub fn handle_publish(&mut self, message: Message, now: Now) {
        self.client.handle_publish(message, now);
        self.step(now);
    }

    /// The SUBACK of a [`Transmit::Subscribe`] of `filter`: `granted` unless refused.
    pub fn handle_subscribed(&mut self, filter: &str, granted: bool, now: Now) {
        self.client.handle_subscribed(filter, granted, now);
        self.step(now);
    }

    /// Time passed: runs every deadline due at `now`. Call it when [`Engine::poll_timeout`]
    /// is reached (calling it early or often is harmless).
    pub fn handle_timeout(&mut self, now: Now) {
        // Bounded, so a machine that keeps a deadline in the past cannot starve the adapter's
        // loop.
        for round in 0..16 {
            let due = self.next_deadline().is_some_and(|t| t <= now.mono);
            if round > 0 && !due {
                break;
            }
            self.client.handle_timeout(now);
            for m in self.machines.values_mut() {
                m.on_timeout(&mut self.client, now);
            }
            self.step(now);
        }
    }

    /// The next thing to send, in order.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    /// When [`Engine::handle_timeout`] is due next (including the end of the closing grace
    /// period).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let close = self.closing.as_ref().map(|c| c.until);
        match (self.next_deadline(), close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The seed of this connection's randomness (from the options, or random): adapters seed
    /// their reconnect back-off's jitter with it, so a fixed seed makes a run reproducible.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether the engine considers the connection up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether closing started (by [`Connection::close`] or because every handle is gone).
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// Whether the adapter should stop now: closing started and either nothing is in flight
    /// any more or the grace period (the request timeout) is over. Then the adapter sends
    /// DISCONNECT if connected and calls [`Engine::finish`].
    pub fn is_done(&self, now: Now) -> bool {
        match &self.closing {
            Some(closing) => {
                let idle = self.client.in_flight() == 0 && self.machines.is_empty();
                idle || now.mono >= closing.until
            }
            None => false,
        }
    }

    /// Ends the connection: the state becomes `Closed`, every future still waiting gets
    /// `Closed`, `close()` callers return, streams end, and commands still queued in
    /// `commands` are refused.
    pub fn finish(&mut self, commands: &Commands) {
        self.finished = true;
        self.state.send_replace(ConnectionState::Closed);
        self.routes.clear();
        self.machines.clear();
        self.deadline = None;
        self.fanout = Fanout::default();
        self.transmit.clear();
        if let Some(closing) = self.closing.take() {
            for w in closing.waiters {
                let _ = w.send(());
            }
        }
        commands.rx.close();
        while let Some(command) = commands.try_recv() {
            if let Cmd::Close { reply } = command.0 {
                let _ = reply.send(());
            }
        }
    }

    fn start_closing(&mut self, reply: Option<oneshot::Sender<()>>, now: Now) {
        if self.closing.is_none() {
            // Closing releases what the handles hold, as dropping them would.
            for m in self.machines.values_mut() {
                m.op(
                    Op::Drop { release: true },
                    &mut self.client,
                    now,
                    self.request_timeout,
                );
            }
        }
        let grace = now.mono.saturating_add(self.request_timeout);
        let closing = self.closing.get_or_insert_with(|| Closing {
            waiters: Vec::new(),
            until: grace,
        });
        closing.waiters.extend(reply);
    }

    fn on_command(&mut self, command: Cmd, now: Now) {
        if self.closing.is_some() {
            // Closing: new work is refused (dropping the reply sender reports `Closed`), but
            // streams going away still unregister.
            match command {
                Cmd::Unobserve { key, id } => self.remove_stream(key, id, now),
                Cmd::Close { reply } => self.start_closing(Some(reply), now),
                Cmd::Machine {
                    id,
                    op: op @ (Op::Drop { .. } | Op::Abandon { .. }),
                } => self.machine_op(id, op, now),
                _ => {}
            }
            return;
        }
        match command {
            Cmd::Request {
                request,
                options,
                reply,
            } => {
                trace!(kind = ?request.kind(), "request");
                match self.client.request(request, options, now) {
                    Ok(id) => {
                        self.routes.insert(id, Route::Caller(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Cmd::Observe { key, id, tx, reply } => {
                if self.fanout.add(key.clone(), id, tx, reply) == Action::Register {
                    debug!(key = ?key, "observe");
                    match self
                        .client
                        .observe(key.clone(), RequestOptions::default(), now)
                    {
                        Ok(rid) => {
                            self.routes.insert(rid, Route::Register(key));
                        }
                        Err(e) => {
                            // Nothing was sent: report the error, no STOP needed.
                            let _ = self.fanout.not_started(&key, e.into());
                        }
                    }
                }
            }
            Cmd::Unobserve { key, id } => self.remove_stream(key, id, now),
            Cmd::Create { id, kind } => {
                let seed = self.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                if let Some(m) = Hosted::new(kind, seed, &mut self.client, now) {
                    self.machines.insert(id, m);
                }
            }
            Cmd::Machine { id, op } => self.machine_op(id, op, now),
            Cmd::Close { reply } => self.start_closing(Some(reply), now),
        }
    }

    fn machine_op(&mut self, id: u64, op: Op, now: Now) {
        // A machine that is gone answers nothing: the dropped reply reports `Closed`.
        if let Some(m) = self.machines.get_mut(&id) {
            m.op(op, &mut self.client, now, self.request_timeout);
        }
    }

    /// The earliest deadline of the client and every machine (cached until the next `step`).
    fn next_deadline(&mut self) -> Option<Instant> {
        if let Some(cached) = self.deadline {
            return cached;
        }
        let machines = self
            .machines
            .values_mut()
            .filter_map(|m| m.next_timeout())
            .min();
        let next = match (self.client.poll_timeout(), machines) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.deadline = Some(next);
        next
    }

    /// Drains the client and the machines until neither has anything left to say. Every input
    /// that reaches the client or a machine ends here.
    fn step(&mut self, now: Now) {
        self.deadline = None;
        loop {
            let outputs = self.drain(now);
            let events = self.pump_machines(now);
            if !outputs && !events {
                break;
            }
        }
    }

    /// Hands every machine's events to the waiting handles and removes finished machines.
    fn pump_machines(&mut self, now: Now) -> bool {
        let mut any = false;
        for m in self.machines.values_mut() {
            any |= m.events(&mut self.client, now, self.clock, self.request_timeout);
        }
        self.machines.retain(|_, m| !m.finished(now));
        any
    }

    fn remove_stream(&mut self, key: Bytes, id: u64, now: Now) {
        if self.fanout.remove(&key, id) == Action::Unregister {
            self.unregister(key, now);
        }
    }

    /// KEYNOTIFY STOP with its own deadline, fire and forget.
    fn unregister(&mut self, key: Bytes, now: Now) {
        debug!(key = ?key, "unobserve");
        let options = RequestOptions {
            timeout: Some(self.request_timeout),
            ..RequestOptions::default()
        };
        match self.client.unobserve(key, options, now) {
            Ok(id) => {
                self.routes.insert(id, Route::Discard);
            }
            Err(e) => warn!(error = ?e, "KEYNOTIFY STOP could not be started"),
        }
    }

    /// After a reconnect the store had dropped the registration of `key`; the client renewed
    /// it. Read the key so that a change missed meanwhile still reaches the streams.
    fn resync(&mut self, key: Bytes, now: Now) {
        let get = Request::Get { key: key.clone() };
        let options = RequestOptions {
            timeout: Some(self.request_timeout),
            ..RequestOptions::default()
        };
        match self.client.request(get, options, now) {
            Ok(id) => {
                self.routes.insert(id, Route::Resync(key));
            }
            Err(e) => warn!(error = ?e, "resync GET could not be started"),
        }
    }

    /// Drains the core's outputs; returns whether there were any.
    fn drain(&mut self, now: Now) -> bool {
        let mut any = false;
        while let Some(output) = self.client.poll_output() {
            any = true;
            match output {
                Output::Publish(message) => self.transmit.push_back(Transmit::Publish(message)),
                Output::Subscribe(filter) => self.transmit.push_back(Transmit::Subscribe(filter)),
                Output::Unsubscribe(filter) => {
                    self.transmit.push_back(Transmit::Unsubscribe(filter))
                }
                Output::Completion(completion) => self.on_completion(completion, now),
                Output::Notification(n) => {
                    for m in self.machines.values_mut() {
                        m.on_notification(&n, &mut self.client, now);
                    }
                    if self.fanout.deliver(&n.key, n.value, n.version) == Action::Unregister {
                        self.unregister(n.key, now);
                    }
                }
                Output::Connected { .. } => {
                    for m in self.machines.values_mut() {
                        m.on_connected(&mut self.client, now);
                    }
                }
                Output::Reregistered { key, result } => {
                    let ok = result.is_ok();
                    if !ok {
                        warn!(key = ?key, error = ?result, "re-registration failed");
                    }
                    for m in self.machines.values_mut() {
                        m.on_reregistered(&key, ok, &mut self.client, now);
                    }
                    if self.fanout.reregistered(&key, ok) == Action::Resync {
                        self.resync(key, now);
                    }
                }
                Output::Disconnected => {
                    for m in self.machines.values_mut() {
                        m.on_disconnected(now);
                    }
                }
                other => debug!(output = ?other, "unhandled core output"),
            }
        }
        any
    }

    fn on_completion(&mut self, completion: Completion, now: Now) {
        let Some(route) = self.routes.remove(&completion.id) else {
            // Not a direct caller's: one of the machines' (or nobody's, e.g. a late reply).
            for m in self.machines.values_mut() {
                if m.on_completion(&completion, &mut self.client, now) {
                    break;
                }
            }
            return;
        };
        match route {
            Route::Caller(reply) => {
                // A dropped caller simply does not get it.
                let _ = reply.send(Ok(completion));
            }
            Route::Register(key) => {
                let result = match completion.result {
                    Ok(_) => Ok(()),
                    Err(e) => Err(StoreError::from(e)),
                };
                if self.fanout.registered(&key, result) == Action::Unregister {
                    self.unregister(key, now);
                }
            }
            Route::Resync(key) => match completion.result {
                Ok(Response::Get(value)) => {
                    if self.fanout.resync(&key, value, completion.version) == Action::Unregister {
                        self.unregister(key, now);
                    }
                }
                other => debug!(result = ?other, "resync GET failed"),
            },
            Route::Discard => {
                if let Err(e) = completion.result {
                    debug!(error = ?e, kind = ?completion.kind, "fire-and-forget request failed");
                }
            }
        }
    }
}
