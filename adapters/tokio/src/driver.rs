//! The driver task: the rumqttc event loop, tokio's timer and the handles' commands, all fed
//! into the sans-IO [`Engine`], whose transmissions go back to rumqttc.
//!
//! The rumqttc `EventLoop::poll` future is never cancelled: it owns the event loop and is kept
//! alive across iterations of the driver's `select!`, so a command or a timer can never drop a
//! packet half written. When it completes, the event loop comes back with the event.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use leasedlock_api::{
    Authentication, Backoff, Clock, Commands, ConnectionOptions, Engine, LastRefusal, TlsOptions,
    Transmit, WakeCap,
};
use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use tracing::{error, info, trace, warn};

use crate::convert;
use crate::options::{apply_credentials, tls_transport};
use crate::outbox::{Outbound, Outbox};
use crate::subscriptions::{SubOp, Subscriptions};
use crate::timer::Timer;

/// `tracing` target of the per-hop TRACE events (publish in/out, timer, command), for latency
/// breakdowns: `RUST_LOG`-style filters can select just these.
pub(crate) const HOP: &str = "leasedlock::hop";

type PollFuture = Pin<Box<dyn Future<Output = (EventLoop, Result<Event, ConnectionError>)> + Send>>;

/// What is read again from files before every reconnection attempt.
#[derive(Debug, Clone, Default)]
struct Refresh {
    /// Passwords and service-account tokens rotate.
    auth: Option<Authentication>,
    /// A mounted CA bundle (or client certificate) is replaced when it rotates.
    tls: Option<TlsOptions>,
}

/// One `EventLoop::poll`, optionally after a back-off delay and a refresh of what was read from
/// files.
fn poll_once(mut el: EventLoop, delay: Option<Duration>, refresh: Option<Refresh>) -> PollFuture {
    Box::pin(async move {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let refresh = refresh.unwrap_or_default();
        if let Some(auth) = refresh.auth {
            // A file that cannot be read keeps the previous credentials.
            if let Err(e) = apply_credentials(&auth, &mut el.options).await {
                warn!(error = %e, "credential refresh failed; reconnecting with the previous ones");
            }
        }
        if let Some(tls) = refresh.tls {
            // rustls reads the PEM files with blocking calls: off the runtime's threads. Files
            // that cannot be read or parsed keep the previous TLS configuration.
            match tokio::task::spawn_blocking(move || tls_transport(&tls)).await {
                Ok(Ok(transport)) => {
                    el.options.set_transport(transport);
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "TLS refresh failed; reconnecting with the previous files")
                }
                Err(e) => warn!(error = %e, "TLS refresh did not run"),
            }
        }
        let result = el.poll().await;
        (el, result)
    })
}

/// The driver's state.
pub(crate) struct Driver {
    engine: Engine,
    commands: Commands,
    clock: Clock,
    mqtt: AsyncClient,
    event_loop: Option<EventLoop>,
    subs: Subscriptions,
    outbox: Outbox,
    backoff: Backoff,
    refresh: Refresh,
    /// The MQTT client id, to tell connections apart in trace events.
    id: String,
    /// Why the broker refused the last connection attempt, if it did.
    last_refusal: LastRefusal,
}

impl Driver {
    pub(crate) fn new(
        engine: Engine,
        commands: Commands,
        clock: Clock,
        mqtt: MqttOptions,
        options: &ConnectionOptions,
    ) -> Driver {
        // Room for every request the core may have in flight plus subscriptions; past that the
        // outbox holds the rest (the driver never blocks on rumqttc's channel).
        let capacity = options.get_max_in_flight().saturating_add(64);
        let id = mqtt.client_id();
        let (mqtt_client, event_loop) = AsyncClient::new(mqtt, capacity);
        let refresh = Refresh {
            auth: match options.get_authentication() {
                Authentication::None => None,
                other => Some(other.clone()),
            },
            tls: options.get_tls().cloned(),
        };
        let (reconnect_min, reconnect_max) = options.get_reconnect_backoff();
        let seed = engine.seed();
        Driver {
            engine,
            commands,
            clock,
            mqtt: mqtt_client,
            event_loop: Some(event_loop),
            subs: Subscriptions::default(),
            outbox: Outbox::default(),
            backoff: Backoff::new(reconnect_min, reconnect_max, seed),
            refresh,
            id,
            last_refusal: LastRefusal::default(),
        }
    }

    /// Where the driver records why the broker refused the last attempt.
    pub(crate) fn last_refusal(&self) -> LastRefusal {
        self.last_refusal.clone()
    }

    /// Runs until closed.
    pub(crate) async fn run(mut self) {
        let Some(el) = self.event_loop.take() else {
            return;
        };
        let mut poll = poll_once(el, None, None);
        let mut commands_open = true;
        let mut timer = Timer::new();
        let mut wake_cap = WakeCap::new();
        loop {
            let now = self.clock.now();
            // Deadlines already due run without going through tokio's timer, whose millisecond
            // resolution would delay a zero-delay timer (a waiter's jitter of 0, a retry at
            // once) to the next tick.
            if self.engine.poll_timeout().is_some_and(|t| t <= now.mono) {
                trace!(target: HOP, client = %self.id, "deadline due");
                self.engine.handle_timeout(now);
                self.transmit();
            }
            if self.engine.is_done(now) {
                break;
            }
            timer.set(Some(tokio::time::Instant::from_std(
                wake_cap.deadline(self.clock, self.engine.poll_timeout()),
            )));
            tokio::select! {
                (mut el, result) = &mut poll => {
                    let delay = self.on_event(&mut el, result);
                    let refresh = delay.map(|_| self.refresh.clone());
                    poll = poll_once(el, delay, refresh);
                }
                command = self.commands.recv(), if commands_open => match command {
                    Some(command) => {
                        trace!(target: HOP, client = %self.id, "command");
                        self.engine.handle_command(command, self.clock.now());
                        trace!(target: HOP, client = %self.id, "command handled");
                    }
                    None => {
                        commands_open = false;
                        self.engine.handle_commands_closed(self.clock.now());
                    }
                },
                () = timer.fired() => {
                    trace!(target: HOP, client = %self.id, "timer fired");
                    self.engine.handle_timeout(self.clock.now());
                }
            }
            self.transmit();
        }
        self.finish(poll).await;
    }

    /// Disconnects and tells everyone the connection is closed.
    async fn finish(mut self, mut poll: PollFuture) {
        info!("closing connection");
        if self.subs.is_connected() {
            let _ = self.mqtt.try_disconnect();
            // Give rumqttc a moment to write the DISCONNECT.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    let (el, result) = (&mut poll).await;
                    match result {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => poll = poll_once(el, None, None),
                    }
                }
            })
            .await;
        }
        drop(poll);
        self.engine.finish(&self.commands);
    }

    /// Handles what the event loop produced; returns the back-off delay before the next poll
    /// when the connection failed.
    fn on_event(
        &mut self,
        el: &mut EventLoop,
        result: Result<Event, ConnectionError>,
    ) -> Option<Duration> {
        let now = self.clock.now();
        match result {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(session_present = ack.session_present, "connected");
                self.last_refusal.set(None);
                // Reconnections resume the session, whatever the first connection did.
                el.options.set_clean_start(false);
                self.backoff.reset();
                self.subs.on_connected();
                self.engine.handle_connected(ack.session_present, now);
                // The core's own (re-)subscriptions go first; then what was deferred.
                self.transmit();
                for op in self.subs.take_deferred() {
                    self.outbox.push(op.into());
                }
                None
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                trace!(target: HOP, client = %self.id, topic = ?publish.topic, "publish in");
                self.engine
                    .handle_publish(convert::from_publish(publish), now);
                trace!(target: HOP, client = %self.id, "publish handled");
                None
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if let Some(filter) = self.subs.on_acked(ack.pkid) {
                    let granted = ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                    if !granted {
                        warn!(filter = %filter, codes = ?ack.return_codes, "subscription refused");
                    }
                    self.engine.handle_subscribed(&filter, granted, now);
                }
                None
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                self.subs.on_sent(pkid);
                None
            }
            Ok(_) => None,
            Err(e) => {
                self.last_refusal.set(match &e {
                    ConnectionError::ConnectionRefused(code) => Some(convert::refusal(*code)),
                    _ => None,
                });
                self.engine.handle_disconnected(e.to_string(), now);
                // rumqttc replays queued requests after a reconnect, but forgets subscriptions
                // it already wrote and drops the whole queue when the session is gone: take
                // subscription requests out and redo them ourselves after the next CONNACK.
                el.clean();
                let mut unsubscribes = Vec::new();
                el.pending.retain(|r| match r {
                    rumqttc::v5::Request::Subscribe(_) => false,
                    rumqttc::v5::Request::Unsubscribe(u) => {
                        unsubscribes.extend(u.filters.iter().cloned());
                        false
                    }
                    _ => true,
                });
                self.subs.on_disconnected(unsubscribes);
                Some(self.backoff.next_delay())
            }
        }
    }

    /// Moves what the engine wants sent into the outbox, then hands the outbox to rumqttc.
    fn transmit(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            match t {
                Transmit::Publish(message) => match convert::to_publish(message) {
                    Ok(publish) => self.outbox.push(Outbound::Publish(publish)),
                    Err(e) => error!(field = e.0, "core produced a non-UTF-8 field; dropped"),
                },
                Transmit::Subscribe(filter) => {
                    if let Some(op) = self.subs.request(SubOp::Subscribe(filter)) {
                        self.outbox.push(op.into());
                    }
                }
                Transmit::Unsubscribe(filter) => {
                    if let Some(op) = self.subs.request(SubOp::Unsubscribe(filter)) {
                        self.outbox.push(op.into());
                    }
                }
                other => warn!(transmit = ?other, "unsupported transmission dropped"),
            }
        }
        self.flush_outbox();
    }

    /// Hands queued packets to rumqttc without ever waiting on its channel.
    fn flush_outbox(&mut self) {
        self.outbox.flush(&self.mqtt, &self.id);
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("engine", &self.engine)
            .field("outbox", &self.outbox.len())
            .finish_non_exhaustive()
    }
}
