//! The one driver loop every runtime adapter runs: wait for any input (the MQTT link, a
//! handle's command, the engine's timer), feed it to the [`Engine`] with the current time, move
//! events and transmissions between the link and the engine until nothing moves, and stop once
//! the engine is done closing.
//!
//! A runtime adapter provides two small pieces: a [`Link`] (its MQTT transport: both adapters use
//! `session::SessionLink`, the sans-IO session over the runtime's sockets; the tokio adapter's
//! `attach` rides an application's rumqttc client) and a [`Timer`] (its runtime's timer). Everything else — when deadlines run, how the timer is capped across a
//! suspend ([`WakeCap`]), the order of events and transmissions, the bounded close — is written
//! once, here.

use std::future::Future;

use futures_lite::future;
use leasedlock_core::envelope::Message;
use leasedlock_core::Now;
use tracing::{info, trace, warn};

use crate::clock::{Clock, WakeCap};
use crate::engine::{Commands, Engine, Transmit};

/// `tracing` target of the per-hop TRACE events (input woken, command, timer), for latency
/// breakdowns: `RUST_LOG`-style filters can select just these.
pub const HOP: &str = "leasedlock::hop";

/// Loop turns between two voluntary yields to the executor: a wake that is always ready (a due
/// timer, a busy socket) would otherwise keep the driver on its executor thread for good, and
/// other connections' drivers (and the `Close` they wait for) would starve.
const YIELD_EVERY: u32 = 16;

/// What a link reports to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// The broker accepted the connection (CONNACK).
    Connected {
        /// The broker kept the session.
        session_present: bool,
    },
    /// The connection dropped, or an attempt failed; the error's text.
    Disconnected(String),
    /// A PUBLISH arrived.
    Message(Message),
    /// The SUBACK of a subscription the engine asked for.
    Subscribed {
        /// The filter.
        filter: String,
        /// Granted, or refused.
        granted: bool,
    },
}

/// An MQTT 5 transport as the driver uses it: it connects and reconnects by itself (with
/// back-off and credential refresh), reports what happens as [`LinkEvent`]s, and sends what the
/// engine asks for.
pub trait Link: Send {
    /// What one wait produced (a packet, bytes, a finished connection attempt, a back-off
    /// timer...), to be handed back to [`Link::handle`].
    type Input: Send;

    /// Waits for the transport. Cancel-safe: the driver drops it whenever a command or the
    /// timer comes first, and nothing may be lost then.
    fn wait(&mut self) -> impl Future<Output = Self::Input> + Send;

    /// Takes in what [`Link::wait`] produced; events follow from [`Link::poll_event`].
    fn handle(&mut self, input: Self::Input, now: Now) -> impl Future<Output = ()> + Send;

    /// The next event, in order.
    fn poll_event(&mut self) -> Option<LinkEvent>;

    /// Sends (or queues) one transmission of the engine. An error is the reason it cannot
    /// go; the driver reports a subscription that cannot go as refused.
    fn send(&mut self, transmit: Transmit, now: Now) -> Result<(), String>;

    /// Writes what was queued. Called after every batch of transmissions.
    fn flush(&mut self, now: Now);

    /// Whether the broker connection is up (a DISCONNECT is worth sending).
    fn is_connected(&self) -> bool;

    /// Sends DISCONNECT and gives it a bounded time to leave.
    fn close(&mut self, now: Now) -> impl Future<Output = ()> + Send;
}

/// The runtime's timer, armed for at most one deadline at a time.
pub trait Timer: Send {
    /// Arms it for `at` (re-arming in place; a runtime may skip work when `at` is unchanged).
    fn arm(&mut self, at: std::time::Instant);

    /// Resolves once the armed deadline has passed. Cancel-safe.
    fn fired(&mut self) -> impl Future<Output = ()> + Send;
}

// Short-lived (one per turn of the loop), so the size of a command inside is no concern.
#[allow(clippy::large_enum_variant)]
enum Wake<I> {
    Command(Option<crate::engine::Command>),
    Link(I),
    Timer,
}

/// The driver of one connection: see the module documentation.
pub struct Driver<L, T> {
    // Fields drop in order. The command receiver goes first: once it is gone the connection's
    // state reads `Closed`, so a handle whose reply is dropped with the engine (an aborted
    // driver) never sees the state still reading otherwise.
    commands: Commands,
    engine: Engine,
    clock: Clock,
    link: L,
    timer: T,
    /// Wakes the loop at least every second, so a deadline that passed during a system
    /// suspend is seen soon after the resume.
    wake_cap: WakeCap,
    /// A label for trace events (the client id).
    id: String,
}

impl<L: Link, T: Timer> Driver<L, T> {
    /// A driver of `engine` (made with `Engine::new`, whose `Commands` it takes) over `link`,
    /// with `timer`; `clock` is the one the engine's deadlines are on.
    pub fn new(
        engine: Engine,
        commands: Commands,
        clock: Clock,
        link: L,
        timer: T,
        id: String,
    ) -> Driver<L, T> {
        Driver {
            commands,
            engine,
            clock,
            link,
            timer,
            wake_cap: WakeCap::new(),
            id,
        }
    }

    /// Runs until the connection is closed (by `close()` or because every handle is gone),
    /// then sends DISCONNECT if connected and ends every waiting future.
    pub async fn run(mut self) {
        let mut commands_open = true;
        let mut turns: u32 = 0;
        loop {
            turns = turns.wrapping_add(1);
            if turns.is_multiple_of(YIELD_EVERY) {
                future::yield_now().await;
            }
            let now = self.clock.now();
            // Deadlines already due run at once, without a timer round trip (a runtime timer's
            // resolution would delay a zero-delay deadline: a waiter's jitter of 0, a retry at
            // once).
            if self.engine.poll_timeout().is_some_and(|t| t <= now.mono) {
                trace!(target: HOP, client = %self.id, "deadline due");
                self.engine.handle_timeout(now);
                self.step(now);
            }
            if self.engine.is_done(now) {
                break;
            }
            let at = self
                .wake_cap
                .deadline(self.clock, self.engine.poll_timeout());
            self.timer.arm(at);
            let wake = {
                let (commands, link, timer) = (&self.commands, &mut self.link, &mut self.timer);
                let command = async {
                    if commands_open {
                        Wake::Command(commands.recv().await)
                    } else {
                        future::pending().await
                    }
                };
                let link = async { Wake::Link(link.wait().await) };
                let timer = async {
                    timer.fired().await;
                    Wake::Timer
                };
                future::race(link, future::race(command, timer)).await
            };
            let now = self.clock.now();
            match wake {
                Wake::Command(Some(command)) => {
                    trace!(target: HOP, client = %self.id, "command");
                    self.engine.handle_command(command, now);
                }
                Wake::Command(None) => {
                    // Every handle is gone.
                    commands_open = false;
                    self.engine.handle_commands_closed(now);
                }
                Wake::Link(input) => self.link.handle(input, now).await,
                Wake::Timer => {
                    trace!(target: HOP, client = %self.id, "timer fired");
                    self.engine.handle_timeout(now);
                }
            }
            self.step(now);
        }
        info!(client = %self.id, "closing connection");
        let now = self.clock.now();
        if self.link.is_connected() {
            self.link.close(now).await;
        }
        self.engine.finish(&self.commands);
    }

    /// Moves events and transmissions between the link and the engine until nothing moves,
    /// then writes.
    fn step(&mut self, now: Now) {
        loop {
            let mut moved = false;
            while let Some(event) = self.link.poll_event() {
                moved = true;
                self.on_link_event(event, now);
            }
            while let Some(t) = self.engine.poll_transmit() {
                moved = true;
                let subscribe = match &t {
                    Transmit::Subscribe(filter) => Some(filter.clone()),
                    _ => None,
                };
                if let Err(e) = self.link.send(t, now) {
                    match subscribe {
                        Some(filter) => {
                            warn!(error = %e, %filter, "cannot subscribe");
                            self.engine.handle_subscribed(&filter, false, now);
                        }
                        // A request that cannot go ends by its own timeout.
                        None => warn!(error = %e, "transmission could not be sent"),
                    }
                }
            }
            self.link.flush(now);
            if !moved {
                break;
            }
        }
    }

    fn on_link_event(&mut self, event: LinkEvent, now: Now) {
        match event {
            LinkEvent::Connected { session_present } => {
                self.engine.handle_connected(session_present, now);
            }
            LinkEvent::Disconnected(reason) => self.engine.handle_disconnected(reason, now),
            LinkEvent::Message(message) => {
                trace!(target: HOP, client = %self.id, topic = ?message.topic, "publish in");
                self.engine.handle_publish(message, now);
            }
            LinkEvent::Subscribed { filter, granted } => {
                self.engine.handle_subscribed(&filter, granted, now);
            }
        }
    }
}

impl<L, T> std::fmt::Debug for Driver<L, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("engine", &self.engine)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
