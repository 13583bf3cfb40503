//! The driver task: the transport ([`Mqtt`]: session, link, reconnects, credentials), the
//! handles' commands and the engine's timer, all fed into the sans-IO [`Engine`] of
//! `leasedlock-api`, whose transmissions go back to the transport. One loop: wait for any
//! input, feed it in with the current time, move outputs until nothing moves, write bytes.

use leasedlock_api::{Clock, Commands, Engine, LastRefusal, Transmit, WakeCap};
use leasedlock_core::Now;
use tracing::{info, warn};

use futures_lite::future;

use crate::deadline::Deadline;
use crate::mqtt::{Input, Mqtt, MqttEvent};

/// Loop turns between two voluntary yields to the executor.
const YIELD_EVERY: u32 = 16;

enum Wake {
    Command(Option<leasedlock_api::Command>),
    Mqtt(Input),
    Timer,
}

/// The driver's state.
pub(crate) struct Driver {
    // Fields drop in order. The command receiver goes first: once it is gone the connection's
    // state reads `Closed`, so a handle whose reply is dropped with the engine (an aborted
    // driver) never sees the state still reading otherwise.
    commands: Commands,
    engine: Engine,
    clock: Clock,
    mqtt: Mqtt,
    timer: Deadline,
    /// Wakes the loop at least every second, so a deadline that passed during a system
    /// suspend is seen soon after the resume.
    wake_cap: WakeCap,
    /// Why the broker refused the last attempt, if it did (read by `Connection::connect`).
    last_refusal: LastRefusal,
}

impl Driver {
    pub(crate) fn new(engine: Engine, commands: Commands, clock: Clock, mqtt: Mqtt) -> Driver {
        Driver {
            engine,
            commands,
            clock,
            mqtt,
            timer: Deadline::default(),
            wake_cap: WakeCap::new(),
            last_refusal: LastRefusal::default(),
        }
    }

    /// Where the driver records why the broker refused the last attempt.
    pub(crate) fn last_refusal(&self) -> LastRefusal {
        self.last_refusal.clone()
    }

    /// Runs until closed.
    pub(crate) async fn run(mut self) {
        let mut commands_open = true;
        let mut turns: u32 = 0;
        loop {
            // A wake that is always ready (a due timer, a busy socket) would otherwise keep this
            // task on its executor thread for good; async-std has only one per core, so other
            // connections' drivers, and the `Close` they wait for, would starve.
            turns = turns.wrapping_add(1);
            if turns.is_multiple_of(YIELD_EVERY) {
                future::yield_now().await;
            }
            let now = self.clock.now();
            // Deadlines already due run at once, without a timer round trip.
            if self.engine.poll_timeout().is_some_and(|t| t <= now.mono) {
                self.engine.handle_timeout(now);
                self.step(now);
            }
            if self.engine.is_done(now) {
                break;
            }
            self.timer.arm(Some(
                self.wake_cap
                    .deadline(self.clock, self.engine.poll_timeout()),
            ));
            let wake = {
                let (commands, mqtt, timer) = (&self.commands, &mut self.mqtt, &mut self.timer);
                let command = async {
                    if commands_open {
                        Wake::Command(commands.recv().await)
                    } else {
                        future::pending().await
                    }
                };
                let mqtt = async { Wake::Mqtt(mqtt.wait().await) };
                let timer = async {
                    timer.fired().await;
                    Wake::Timer
                };
                future::race(mqtt, future::race(command, timer)).await
            };
            let now = self.clock.now();
            match wake {
                Wake::Command(Some(command)) => self.engine.handle_command(command, now),
                Wake::Command(None) => {
                    // Every handle is gone.
                    commands_open = false;
                    self.engine.handle_commands_closed(now);
                }
                Wake::Mqtt(input) => self.mqtt.handle(input, now).await,
                Wake::Timer => self.engine.handle_timeout(now),
            }
            self.step(now);
        }
        info!("closing connection");
        // DISCONNECT (session expiry 0: the broker forgets the session), flushed by the link
        // as it closes, within its linger.
        let now = self.clock.now();
        if self.mqtt.is_connected() {
            self.mqtt.close(now);
        }
        self.engine.finish(&self.commands);
    }

    /// Moves events and transmissions between the transport and the engine until nothing
    /// moves, then writes.
    fn step(&mut self, now: Now) {
        loop {
            let mut moved = false;
            while let Some(event) = self.mqtt.poll_event() {
                moved = true;
                self.mqtt_event(event, now);
            }
            while let Some(t) = self.engine.poll_transmit() {
                moved = true;
                self.transmit(t, now);
            }
            self.mqtt.flush(now);
            if !moved {
                break;
            }
        }
    }

    fn mqtt_event(&mut self, event: MqttEvent, now: Now) {
        match event {
            MqttEvent::Connected { session_present } => {
                self.last_refusal.set(None);
                self.engine.handle_connected(session_present, now);
            }
            MqttEvent::Disconnected { text, refusal } => {
                self.last_refusal.set(refusal);
                self.engine.handle_disconnected(text, now);
            }
            MqttEvent::Message(message) => self.engine.handle_publish(message, now),
            MqttEvent::Subscribed { filter, granted } => {
                self.engine.handle_subscribed(&filter, granted, now);
            }
        }
    }

    fn transmit(&mut self, t: Transmit, now: Now) {
        match t {
            Transmit::Publish(message) => {
                if let Err(e) = self.mqtt.publish(&message, now) {
                    // The request then ends by its own timeout.
                    warn!(error = %e, "request could not be published");
                }
            }
            Transmit::Subscribe(filter) => {
                if let Err(e) = self.mqtt.subscribe(&filter, now) {
                    warn!(error = %e, %filter, "cannot subscribe");
                    self.engine.handle_subscribed(&filter, false, now);
                }
            }
            Transmit::Unsubscribe(filter) => {
                if let Err(e) = self.mqtt.unsubscribe(&filter, now) {
                    warn!(error = %e, %filter, "cannot unsubscribe");
                }
            }
            other => warn!(transmit = ?other, "unsupported transmission dropped"),
        }
    }
}
