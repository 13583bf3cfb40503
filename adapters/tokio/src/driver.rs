//! The driver task: owns the core [`Client`], the rumqttc event loop and every timer, and
//! turns each input into core calls followed by draining `poll_output`.
//!
//! The rumqttc `EventLoop::poll` future is never cancelled: it owns the event loop and is kept
//! alive across iterations of the driver's `select!`, so a command or a timer can never drop a
//! packet half written. When it completes, the event loop comes back with the event.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::client::{Client, Output, RequestId, RequestOptions};
use leasedlock_core::command::{Request, Response};
use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::{valid_filter, valid_topic, QoS as MqttQoS};
use rumqttc::v5::{AsyncClient, ClientError, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, trace, warn};

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::connection::ConnectionState;
use crate::convert::{self, OutgoingPublish};
use crate::fanout::{self, Action, Fanout};
use crate::host::{Hosted, MachineKind, Op};
use crate::options::{apply_credentials, Authentication, ConnectionOptions};
use crate::state_store::{Reply, StoreError};
use crate::subscriptions::{SubOp, Subscriptions};

/// What handles ask the driver to do.
#[derive(Debug)]
pub(crate) enum Command {
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
        tx: mpsc::Sender<fanout::Item>,
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

/// Something for rumqttc's request channel.
#[derive(Debug)]
enum Outbound {
    Publish(OutgoingPublish),
    Sub(SubOp),
}

type PollFuture = Pin<Box<dyn Future<Output = (EventLoop, Result<Event, ConnectionError>)> + Send>>;

/// One `EventLoop::poll`, optionally after a back-off delay and a credential refresh.
fn poll_once(
    mut el: EventLoop,
    delay: Option<Duration>,
    auth: Option<Authentication>,
) -> PollFuture {
    Box::pin(async move {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(auth) = auth {
            // Rotated passwords and service-account tokens are picked up on reconnect. A file
            // that cannot be read keeps the previous credentials.
            if let Err(e) = apply_credentials(&auth, &mut el.options).await {
                warn!(error = %e, "credential refresh failed; reconnecting with the previous ones");
            }
        }
        let result = el.poll().await;
        (el, result)
    })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The driver's state.
pub(crate) struct Driver {
    client: Client,
    mqtt: AsyncClient,
    event_loop: Option<EventLoop>,
    subs: Subscriptions,
    outbox: VecDeque<Outbound>,
    clock: Clock,
    routes: HashMap<RequestId, Route>,
    fanout: Fanout,
    machines: HashMap<u64, Hosted>,
    seed: u64,
    state: watch::Sender<ConnectionState>,
    backoff: Backoff,
    refresh_auth: Option<Authentication>,
    request_timeout: Duration,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Set once closing started: who waits for the end, and until when in-flight work may run.
    closing: Option<(Vec<oneshot::Sender<()>>, tokio::time::Instant)>,
}

impl Driver {
    pub(crate) fn new(
        client: Client,
        mqtt: MqttOptions,
        options: &ConnectionOptions,
        seed: u64,
        commands: mpsc::UnboundedReceiver<Command>,
        state: watch::Sender<ConnectionState>,
    ) -> Driver {
        // Room for every request the core may have in flight plus subscriptions; past that the
        // outbox holds the rest (the driver never blocks on rumqttc's channel).
        let capacity = options.max_in_flight.saturating_add(64);
        let (mqtt_client, event_loop) = AsyncClient::new(mqtt, capacity);
        let refresh_auth = match &options.auth {
            Authentication::None => None,
            other => Some(other.clone()),
        };
        Driver {
            client,
            mqtt: mqtt_client,
            event_loop: Some(event_loop),
            subs: Subscriptions::default(),
            outbox: VecDeque::new(),
            clock: Clock::new(),
            routes: HashMap::new(),
            fanout: Fanout::default(),
            machines: HashMap::new(),
            seed,
            state,
            backoff: Backoff::new(options.reconnect_min, options.reconnect_max, seed),
            refresh_auth,
            request_timeout: options.request_timeout,
            commands,
            closing: None,
        }
    }

    /// Runs until closed.
    pub(crate) async fn run(mut self) {
        let Some(el) = self.event_loop.take() else {
            return;
        };
        let mut poll = poll_once(el, None, None);
        let mut commands_open = true;
        loop {
            if let Some((_, until)) = &self.closing {
                let idle = self.client.in_flight() == 0 && self.machines.is_empty();
                if idle || tokio::time::Instant::now() >= *until {
                    break;
                }
            }
            self.run_due_timers();
            let deadline = self.next_deadline().map(|t| self.clock.to_tokio(t));
            let close_deadline = self.closing.as_ref().map(|(_, until)| *until);
            tokio::select! {
                (mut el, result) = &mut poll => {
                    let delay = self.on_event(&mut el, result);
                    let auth = delay.and(self.refresh_auth.clone());
                    poll = poll_once(el, delay, auth);
                }
                command = self.commands.recv(), if commands_open => match command {
                    Some(command) => self.on_command(command),
                    None => {
                        commands_open = false;
                        self.start_closing(None);
                    }
                },
                () = sleep_until(deadline) => self.on_timers(self.clock.now()),
                () = sleep_until(close_deadline) => {}
            }
            self.step();
            self.flush_outbox();
        }
        self.finish(poll).await;
    }

    fn on_timers(&mut self, now: leasedlock_core::Now) {
        self.client.handle_timeout(now);
        for m in self.machines.values_mut() {
            m.on_timeout(&mut self.client, now);
        }
    }

    /// Runs deadlines that are already due without going through tokio's timer, whose
    /// millisecond resolution would delay a zero-delay timer (a waiter's jitter of 0, a retry
    /// at once) to the next tick. Bounded, so a machine that keeps a deadline in the past
    /// cannot starve the rest of the loop.
    fn run_due_timers(&mut self) {
        for _ in 0..16 {
            let now = self.clock.now();
            match self.next_deadline() {
                Some(due) if due <= now.mono => {
                    self.on_timers(now);
                    self.step();
                    self.flush_outbox();
                }
                _ => return,
            }
        }
    }

    fn start_closing(&mut self, reply: Option<oneshot::Sender<()>>) {
        if self.closing.is_none() {
            // Closing releases what the handles hold, as dropping them would.
            let now = self.clock.now();
            for m in self.machines.values_mut() {
                m.op(
                    Op::Drop { release: true },
                    &mut self.client,
                    now,
                    self.request_timeout,
                );
            }
        }
        let grace = tokio::time::Instant::now() + self.request_timeout;
        let (waiters, _) = self.closing.get_or_insert_with(|| (Vec::new(), grace));
        waiters.extend(reply);
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
        self.state.send_replace(ConnectionState::Closed);
        // Every caller still waiting gets `Closed` when its reply sender is dropped here.
        self.routes.clear();
        if let Some((waiters, _)) = self.closing.take() {
            for w in waiters {
                let _ = w.send(());
            }
        }
        // Commands that raced with closing get `Closed` too: dropping a reply sender says so.
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Close { reply } = command {
                let _ = reply.send(());
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = self.clock.now();
        if self.closing.is_some() {
            // Closing: new work is refused (dropping the reply sender reports `Closed`), but
            // streams going away still unregister.
            match command {
                Command::Unobserve { key, id } => self.remove_stream(key, id),
                Command::Close { reply } => self.start_closing(Some(reply)),
                Command::Machine {
                    id,
                    op: op @ (Op::Drop { .. } | Op::Abandon { .. }),
                } => self.machine_op(id, op, now),
                _ => {}
            }
            return;
        }
        match command {
            Command::Request {
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
            Command::Observe { key, id, tx, reply } => {
                if self.fanout.add(key.clone(), id, tx, reply) == Action::Register {
                    debug!(key = ?key, "observe");
                    let options = RequestOptions::default();
                    match self.client.observe(key.clone(), options, now) {
                        Ok(rid) => {
                            self.routes.insert(rid, Route::Register(key));
                        }
                        Err(e) => {
                            // Nothing was sent: report the error, no STOP needed.
                            let _ = self.fanout.registered(&key, Err(e.into()));
                        }
                    }
                }
            }
            Command::Unobserve { key, id } => self.remove_stream(key, id),
            Command::Create { id, kind } => {
                let seed = self.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                if let Some(m) = Hosted::new(kind, seed, &mut self.client, now) {
                    self.machines.insert(id, m);
                }
            }
            Command::Machine { id, op } => self.machine_op(id, op, now),
            Command::Close { reply } => self.start_closing(Some(reply)),
        }
    }

    fn machine_op(&mut self, id: u64, op: Op, now: leasedlock_core::Now) {
        // A machine that is gone answers nothing: the dropped reply reports `Closed`.
        if let Some(m) = self.machines.get_mut(&id) {
            m.op(op, &mut self.client, now, self.request_timeout);
        }
    }

    /// The earliest deadline of the client and every machine.
    fn next_deadline(&mut self) -> Option<leasedlock_core::Instant> {
        let machines = self
            .machines
            .values_mut()
            .filter_map(|m| m.next_timeout())
            .min();
        match (self.client.poll_timeout(), machines) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drains the client and the machines until neither has anything left to say.
    fn step(&mut self) {
        loop {
            let outputs = self.drain();
            let events = self.pump_machines();
            if !outputs && !events {
                break;
            }
        }
    }

    /// Hands every machine's events to the waiting handles and removes finished machines.
    fn pump_machines(&mut self) -> bool {
        let now = self.clock.now();
        let mut any = false;
        for m in self.machines.values_mut() {
            any |= m.events(&mut self.client, now, self.clock, self.request_timeout);
        }
        self.machines.retain(|_, m| !m.finished(now));
        any
    }

    fn remove_stream(&mut self, key: Bytes, id: u64) {
        if self.fanout.remove(&key, id) == Action::Unregister {
            self.unregister(key);
        }
    }

    /// KEYNOTIFY STOP with its own deadline, fire and forget.
    fn unregister(&mut self, key: Bytes) {
        debug!(key = ?key, "unobserve");
        let now = self.clock.now();
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
                // Reconnections resume the session, whatever the first connection did.
                el.options.set_clean_start(false);
                self.backoff.reset();
                self.subs.on_connected();
                self.client.handle_connected(ack.session_present, now);
                // The core's own (re-)subscriptions go first; then what was deferred.
                self.step();
                for op in self.subs.take_deferred() {
                    self.outbox.push_back(Outbound::Sub(op));
                }
                self.state.send_replace(ConnectionState::Connected);
                None
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                self.client
                    .handle_publish(convert::from_publish(publish), now);
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
                    self.client.handle_subscribed(&filter, granted, now);
                }
                None
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                self.subs.on_sent(pkid);
                None
            }
            Ok(_) => None,
            Err(e) => {
                let reason = e.to_string();
                if self.subs.is_connected() {
                    warn!(error = %reason, "connection lost");
                    self.client.handle_disconnected(now);
                } else {
                    debug!(error = %reason, "connection attempt failed");
                }
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
                self.state
                    .send_replace(ConnectionState::Disconnected(reason));
                Some(self.backoff.next_delay())
            }
        }
    }

    /// After a reconnect the store had dropped the registration of `key`; the client renewed
    /// it. Read the key so that a change missed meanwhile still reaches the streams.
    fn resync(&mut self, key: Bytes) {
        if !self.fanout.is_registered(&key) {
            return;
        }
        let now = self.clock.now();
        let get = Request::Get { key: key.clone() };
        match self.client.request(get, RequestOptions::default(), now) {
            Ok(id) => {
                self.routes.insert(id, Route::Resync(key));
            }
            Err(e) => warn!(error = ?e, "resync GET could not be started"),
        }
    }

    /// Drains the core's outputs; returns whether there were any.
    fn drain(&mut self) -> bool {
        let mut any = false;
        while let Some(output) = self.client.poll_output() {
            any = true;
            let now = self.clock.now();
            match output {
                Output::Publish(message) => match convert::to_publish(message) {
                    Ok(publish) => self.outbox.push_back(Outbound::Publish(publish)),
                    Err(e) => error!(field = e.0, "core produced a non-UTF-8 field; dropped"),
                },
                Output::Subscribe(filter) => {
                    if let Some(op) = self.subs.request(SubOp::Subscribe(filter)) {
                        self.outbox.push_back(Outbound::Sub(op));
                    }
                }
                Output::Unsubscribe(filter) => {
                    if let Some(op) = self.subs.request(SubOp::Unsubscribe(filter)) {
                        self.outbox.push_back(Outbound::Sub(op));
                    }
                }
                Output::Completion(completion) => self.on_completion(completion, now),
                Output::Notification(n) => {
                    for m in self.machines.values_mut() {
                        m.on_notification(&n, &mut self.client, now);
                    }
                    if self.fanout.deliver(&n.key, n.value, n.version) == Action::Unregister {
                        self.unregister(n.key);
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
                    self.resync(key);
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

    fn on_completion(
        &mut self,
        completion: leasedlock_core::client::Completion,
        now: leasedlock_core::Now,
    ) {
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
                    self.unregister(key);
                }
            }
            Route::Resync(key) => match completion.result {
                Ok(Response::Get(value)) => self.fanout.resync(&key, value, completion.version),
                other => debug!(result = ?other, "resync GET failed"),
            },
            Route::Discard => {
                if let Err(e) = completion.result {
                    debug!(error = ?e, kind = ?completion.kind, "fire-and-forget request failed");
                }
            }
        }
    }

    /// Hands queued packets to rumqttc without ever waiting on its channel.
    fn flush_outbox(&mut self) {
        while let Some(item) = self.outbox.pop_front() {
            let sent = match item {
                Outbound::Publish(p) => {
                    if !valid_topic(&p.topic) {
                        error!(topic = %p.topic, "invalid publish topic; dropped");
                        continue;
                    }
                    self.mqtt.try_publish_with_properties(
                        p.topic,
                        p.qos,
                        p.retain,
                        p.payload,
                        p.properties,
                    )
                }
                Outbound::Sub(SubOp::Subscribe(filter)) => {
                    if !valid_filter(&filter) {
                        error!(filter = %filter, "invalid filter; dropped");
                        continue;
                    }
                    self.mqtt.try_subscribe(filter, MqttQoS::AtLeastOnce)
                }
                Outbound::Sub(SubOp::Unsubscribe(filter)) => self.mqtt.try_unsubscribe(filter),
            };
            if let Err(ClientError::TryRequest(request) | ClientError::Request(request)) = sent {
                // The channel is full: keep the packet, retry after the next event.
                if let Some(item) = requeue(request) {
                    self.outbox.push_front(item);
                }
                break;
            }
        }
    }
}

/// Turns a request rumqttc handed back into an outbox entry again.
fn requeue(request: rumqttc::v5::Request) -> Option<Outbound> {
    match request {
        rumqttc::v5::Request::Publish(p) => Some(Outbound::Publish(OutgoingPublish {
            topic: String::from_utf8(p.topic.to_vec()).ok()?,
            qos: p.qos,
            retain: p.retain,
            payload: p.payload,
            properties: p.properties.unwrap_or_default(),
        })),
        rumqttc::v5::Request::Subscribe(s) => s
            .filters
            .into_iter()
            .next()
            .map(|f| Outbound::Sub(SubOp::Subscribe(f.path))),
        rumqttc::v5::Request::Unsubscribe(u) => u
            .filters
            .into_iter()
            .next()
            .map(|f| Outbound::Sub(SubOp::Unsubscribe(f))),
        _ => None,
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("routes", &self.routes.len())
            .field("observed", &self.fanout.len())
            .finish_non_exhaustive()
    }
}
