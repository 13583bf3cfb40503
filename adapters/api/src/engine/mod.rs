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
mod handles;
pub(crate) mod protocol;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use futures_channel::oneshot;
use leasedlock_core::client::{Client, ClientConfig, ConfigError, Output};
use leasedlock_core::envelope::Message;
use leasedlock_core::hlc::DEFAULT_MAX_DRIFT_MS;
use leasedlock_core::host::{CallId, HandleId, Host, HostConfig, HostOutput, Refused, StreamId};
use leasedlock_core::rng::Rng;
use leasedlock_core::{Instant, Now};
use tracing::{debug, trace, warn};

use crate::clock::{wall_ms, Clock};
use crate::error::{ConnectError, Reply};
use crate::options::{ConnectionOptions, OptionsError};
use crate::shared::Shared;
use crate::view::ConnectionState;
use crate::watch;
use fanout::Fanout;
use handles::Handles;
pub use protocol::Command;
pub(crate) use protocol::{Cmd, MachineKind, Op};

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

/// The sans-IO connection engine; see the module documentation.
pub struct Engine {
    client: Client,
    host: Host,
    clock: Clock,
    handles: Handles,
    fanout: Fanout,
    /// Direct requests waiting for their reply.
    replies: HashMap<CallId, oneshot::Sender<Reply>>,
    /// Ids of the engine's own calls (direct requests, and handle calls without a sequence
    /// number of their own); the handles' sequence numbers never reach this high bit.
    next_call: u64,
    seed: u64,
    state: watch::Sender<ConnectionState>,
    connected: bool,
    transmit: VecDeque<Transmit>,
    /// `close()` callers waiting for the end.
    close_waiters: Vec<oneshot::Sender<()>>,
    finished: bool,
    /// The earliest deadline of the client and the host, once computed since the last input:
    /// the client's is a scan over all its request slots, and adapters ask for it on every
    /// turn of their loop, far more often than anything changes.
    deadline: Option<Option<Instant>>,
}

impl Drop for Engine {
    /// The engine is gone (finished, or its task aborted): the state reads `Closed` before any
    /// waiting caller is refused (the refusals come from dropping the waiters right after
    /// this), so a caller that got `Closed` never sees the state read otherwise.
    fn drop(&mut self) {
        self.state.send_replace(ConnectionState::Closed);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("connected", &self.connected)
            .field("observed", &self.host.observed_keys())
            .field("machines", &self.host.machines())
            .field("closing", &self.host.is_closing())
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
    /// The engine, the handles' shared end of it and the receiving end of their commands
    /// (see [`Engine::new`], which wraps the shared end into the [`Connection`](crate::Connection)).
    pub(crate) fn build(
        options: &ConnectionOptions,
        clock: Clock,
    ) -> Result<(Engine, Shared, Commands), ConnectError> {
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
        let shared = Shared::new(
            commands,
            state_rx,
            options.client_id.clone(),
            options.notification_buffer,
            options.request_timeout,
        );
        let host = Host::new(HostConfig {
            seed,
            request_timeout: options.request_timeout,
        });
        let engine = Engine {
            client,
            host,
            clock,
            handles: Handles::default(),
            fanout: Fanout::default(),
            replies: HashMap::new(),
            next_call: 1 << 63,
            seed,
            state,
            connected: false,
            transmit: VecDeque::new(),
            close_waiters: Vec::new(),
            finished: false,
            deadline: None,
        };
        Ok((engine, shared, Commands { rx }))
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
        self.host.close(&mut self.client, now);
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
            self.host.handle_timeout(&mut self.client, now);
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
        self.next_deadline()
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

    /// Whether closing started (by [`Connection::close`](crate::Connection::close) or because every handle is gone).
    pub fn is_closing(&self) -> bool {
        self.host.is_closing()
    }

    /// Whether the adapter should stop now: closing started and either nothing is in flight
    /// any more or the grace period (the request timeout) is over. Then the adapter sends
    /// DISCONNECT if connected and calls [`Engine::finish`].
    pub fn is_done(&self, now: Now) -> bool {
        let idle = self.host.is_idle() && self.client.in_flight() == 0;
        self.host.is_closing() && (idle || self.host.grace_over(now))
    }

    /// Ends the connection: the state becomes `Closed`, every future still waiting gets
    /// `Closed`, `close()` callers return, streams end, and commands still queued in
    /// `commands` are refused.
    pub fn finish(&mut self, commands: &Commands) {
        self.finished = true;
        self.state.send_replace(ConnectionState::Closed);
        // Whatever the host still held is abandoned with the connection.
        self.host = Host::new(*self.host.config());
        self.handles = Handles::default();
        self.fanout = Fanout::default();
        self.replies.clear();
        self.deadline = None;
        self.transmit.clear();
        for w in self.close_waiters.drain(..) {
            let _ = w.send(());
        }
        commands.rx.close();
        while let Some(command) = commands.try_recv() {
            if let Cmd::Close { reply } = command.0 {
                let _ = reply.send(());
            }
        }
    }

    fn call_id(&mut self) -> CallId {
        self.next_call = self.next_call.wrapping_add(1) | (1 << 63);
        CallId(self.next_call)
    }

    fn on_command(&mut self, command: Cmd, now: Now) {
        let r = &mut self.client;
        match command {
            Cmd::Request {
                request,
                options,
                reply,
            } => {
                trace!(kind = ?request.kind(), "request");
                let call = self.call_id();
                self.replies.insert(call, reply);
                self.host
                    .request(call, request, options, &mut self.client, now);
            }
            Cmd::Observe { key, id, tx, reply } => {
                let stream = StreamId(id);
                self.fanout.add(stream, key.clone(), tx, reply);
                self.host.observe(stream, key, r, now);
            }
            Cmd::Unobserve { key, id } => {
                self.fanout.remove(StreamId(id));
                self.host.unobserve(StreamId(id), &key, r, now);
            }
            Cmd::Create { id, kind } => {
                let (create, sink) = handles::split_kind(kind);
                self.handles.created(HandleId(id), sink);
                self.host.create(HandleId(id), create, r, now);
            }
            Cmd::Machine { id, op } => self.machine_op(HandleId(id), op, now),
            Cmd::Close { reply } => {
                self.close_waiters.push(reply);
                self.host.close(&mut self.client, now);
            }
        }
    }

    fn machine_op(&mut self, handle: HandleId, op: Op, now: Now) {
        let seq = match &op {
            Op::Abandon { seq } => {
                self.handles.abandoned(handle, CallId(*seq));
                self.host
                    .abandon(handle, CallId(*seq), &mut self.client, now);
                return;
            }
            Op::Drop { release } => {
                self.host
                    .drop_handle(handle, *release, &mut self.client, now);
                return;
            }
            Op::Acquire { seq, .. } | Op::Lock { seq, .. } | Op::ObserveStart { seq, .. } => {
                Some(*seq)
            }
            _ => None,
        };
        let call = match seq {
            Some(seq) => CallId(seq),
            None => self.call_id(),
        };
        let Some((op, waiter)) = handles::split_op(op) else {
            return;
        };
        if let Some(waiter) = waiter {
            self.handles.wait(handle, call, waiter);
        }
        self.host.op(handle, call, op, &mut self.client, now);
    }

    /// The earliest deadline of the client and the host (cached until the next `step`).
    fn next_deadline(&mut self) -> Option<Instant> {
        if let Some(cached) = self.deadline {
            return cached;
        }
        let next = match (self.client.poll_timeout(), self.host.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.deadline = Some(next);
        next
    }

    /// Moves the client's outputs to the transport and the host, and the host's outputs to
    /// the handles' channels, until neither has anything left to say. Every input ends here.
    fn step(&mut self, now: Now) {
        self.deadline = None;
        loop {
            let mut any = false;
            while let Some(output) = self.client.poll_output() {
                any = true;
                match output {
                    Output::Publish(message) => self.transmit.push_back(Transmit::Publish(message)),
                    Output::Subscribe(filter) => {
                        self.transmit.push_back(Transmit::Subscribe(filter))
                    }
                    Output::Unsubscribe(filter) => {
                        self.transmit.push_back(Transmit::Unsubscribe(filter))
                    }
                    Output::Reregistered { key, result } => {
                        if let Err(e) = &result {
                            warn!(key = ?key, error = ?e, "re-registration failed");
                        }
                        let output = Output::Reregistered { key, result };
                        self.host.handle_output(output, &mut self.client, now);
                    }
                    other => self.host.handle_output(other, &mut self.client, now),
                }
            }
            while let Some(output) = self.host.poll_output() {
                any = true;
                self.deliver(output, now);
            }
            if !any {
                break;
            }
        }
    }

    /// Hands one host output to the channels; a caller or stream found gone is reported back.
    fn deliver(&mut self, output: HostOutput, now: Now) {
        let r = &mut self.client;
        match output {
            HostOutput::Answer {
                handle,
                call,
                answer,
            } => {
                if !self.handles.answer(handle, call, answer) {
                    // The caller is gone: what was taken for it is given back.
                    self.host.abandon(handle, call, r, now);
                }
            }
            HostOutput::Status { handle, status } => {
                self.handles.status(handle, status, self.clock)
            }
            HostOutput::LeaseChange {
                handle,
                call,
                change,
            } => {
                if !self.handles.lease_change(handle, call, change) {
                    self.host.abandon(handle, call, r, now);
                }
            }
            HostOutput::Edit { handle, event } => self.handles.edit(handle, event),
            HostOutput::Leader { handle, event } => self.handles.leader(handle, event, self.clock),
            HostOutput::Gone { handle } => self.handles.gone(handle),
            HostOutput::Refused(refused) => match refused {
                Refused::Create(handle) => self.handles.gone(handle),
                Refused::Op(handle, call) => self.handles.refused(handle, call),
                Refused::Request(call) => {
                    self.replies.remove(&call);
                }
                Refused::Observe(stream) => self.fanout.refused(stream),
                other => debug!(?other, "refusal of an unknown kind"),
            },
            HostOutput::Reply { call, result } => {
                if let Some(reply) = self.replies.remove(&call) {
                    // A dropped caller simply does not get it.
                    let _ = reply.send(result);
                }
            }
            HostOutput::Observed { stream, result } => {
                if let Some(key) = self.fanout.observed(stream, result) {
                    self.host.unobserve(stream, &key, r, now);
                }
            }
            HostOutput::KeyChange {
                stream,
                key,
                change,
            } => {
                if let Some(key) = self.fanout.change(stream, key, change) {
                    self.host.unobserve(stream, &key, r, now);
                }
            }
            HostOutput::KeyMayHaveMissed { stream, .. } => {
                if let Some(key) = self.fanout.may_have_missed(stream) {
                    self.host.unobserve(stream, &key, r, now);
                }
            }
            other => debug!(?other, "host output of an unknown kind"),
        }
    }
}
