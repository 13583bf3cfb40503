//! [`attach`]: leasedlock over an MQTT 5 connection the application already runs and polls.
//!
//! The application keeps its rumqttc `AsyncClient` and `EventLoop` and its own loop over
//! `EventLoop::poll`. It hands every polled result to [`Attached`], which feeds leasedlock's
//! engine synchronously (no channel, nothing buffered per event) and answers whether the event
//! was leasedlock's own. A tokio task spawned by [`attach`] runs the rest: the handles'
//! commands and the engine's timers. Both ends put packets into the application's client with
//! its non-blocking `try_*` calls; what does not fit into rumqttc's channel waits in an outbox
//! that is retried on the next polled event (the event loop empties the channel as it writes).
//!
//! The engine sits behind one mutex shared by the application's loop and the task, held only
//! for the engine's bookkeeping (microseconds, never across an await).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use leasedlock_api::{Clock, Commands, ConnectError, ConnectionOptions, Engine, Transmit, WakeCap};
use leasedlock_core::envelope;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS as MqttQoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event};
use rumqttc::Outgoing;
use tokio::sync::Notify;
use tracing::{error, info, Instrument};

use crate::connection::Connection;
use crate::convert;
use crate::outbox::{Outbound, Outbox};
use crate::shared_subscriptions::SharedSubscriptions;
use crate::timer::Timer;

/// The options of an attached connection: the MQTT client id of the application's connection
/// and the engine's limits. Everything about the connection itself (address, TLS, credentials,
/// keep-alive, session) is the application's, set on its own `MqttOptions`.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// The engine's options. An attached engine dials nothing, so their host, port, TLS and
    /// credentials are never used; the host names what the connection is only because the
    /// shared options insist on one.
    engine: ConnectionOptions,
    manual_acks: bool,
}

impl AttachOptions {
    /// Options for the application's connection with MQTT client id `client_id`: it must be
    /// exactly the client id of that connection (see [`attach`]).
    pub fn new(client_id: impl Into<String>) -> AttachOptions {
        AttachOptions {
            engine: ConnectionOptions::new("attached", 0, client_id),
            manual_acks: false,
        }
    }

    /// The client id the holder values and leasedlock's topics are made from.
    pub fn client_id(&self) -> &str {
        self.engine.client_id()
    }

    /// The default per-request timeout (default 10 s), as `ConnectionOptions::request_timeout`.
    pub fn request_timeout(mut self, timeout: Duration) -> AttachOptions {
        self.engine = self.engine.request_timeout(timeout);
        self
    }

    /// The most requests in flight at once, as `ConnectionOptions::max_in_flight`.
    pub fn max_in_flight(mut self, max: usize) -> AttachOptions {
        self.engine = self.engine.max_in_flight(max);
        self
    }

    /// The most keys observed at once, as `ConnectionOptions::max_observed`.
    pub fn max_observed(mut self, max: usize) -> AttachOptions {
        self.engine = self.engine.max_observed(max);
        self
    }

    /// Changes buffered per observation stream, as `ConnectionOptions::notification_buffer`.
    pub fn notification_buffer(mut self, len: usize) -> AttachOptions {
        self.engine = self.engine.notification_buffer(len);
        self
    }

    /// A fixed seed for the connection's randomness (holder instance ids, jitter), for
    /// reproducible runs.
    pub fn seed(mut self, seed: u64) -> AttachOptions {
        self.engine = self.engine.seed(seed);
        self
    }

    /// Set this when the application's `MqttOptions` use `set_manual_acks(true)`: leasedlock
    /// then acknowledges the PUBLISHes it consumes itself (the application acknowledges the
    /// rest, as before). Default `false`: rumqttc acknowledges everything.
    pub fn manual_acks(mut self, manual: bool) -> AttachOptions {
        self.manual_acks = manual;
        self
    }
}

/// The engine and what goes with it, behind the shared mutex.
struct State {
    /// `None` once the connection ended (closed, or its task gone).
    engine: Option<Engine>,
    subs: SharedSubscriptions,
    outbox: Outbox,
}

/// What the application's loop and the task share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the task after the application's loop fed the engine (its next deadline may have
    /// moved) or dropped its [`Attached`].
    wake: Notify,
    detached: AtomicBool,
    mqtt: AsyncClient,
    clock: Clock,
    client_id: String,
    response_topic: String,
    notification_filter: String,
    manual_acks: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: every update is a plain call.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a PUBLISH on `topic` is leasedlock's: a reply on the response topic or a key
    /// notification.
    fn is_ours(&self, topic: &[u8]) -> bool {
        let prefix = self
            .notification_filter
            .strip_suffix('+')
            .unwrap_or(&self.notification_filter);
        topic == self.response_topic.as_bytes()
            || (topic.starts_with(prefix.as_bytes()) && topic.len() > prefix.len())
    }

    /// Moves what the engine wants sent into the outbox (consecutive SUBSCRIBEs as one packet)
    /// and hands the outbox to rumqttc.
    fn transmit(&self, st: &mut State) {
        let State {
            engine,
            subs,
            outbox,
            ..
        } = st;
        let mut filters: Vec<String> = Vec::new();
        if let Some(engine) = engine.as_mut() {
            while let Some(t) = engine.poll_transmit() {
                if !matches!(t, Transmit::Subscribe(_)) {
                    queue_subscribe(subs, outbox, &mut filters);
                }
                match t {
                    Transmit::Publish(message) => match convert::to_publish(message) {
                        Ok(publish) => outbox.push(Outbound::Publish(publish)),
                        Err(e) => error!(field = e.0, "core produced a non-UTF-8 field; dropped"),
                    },
                    Transmit::Subscribe(filter) => filters.push(filter),
                    Transmit::Unsubscribe(filter) => outbox.push(Outbound::Unsubscribe(filter)),
                    other => error!(transmit = ?other, "unsupported transmission dropped"),
                }
            }
        }
        queue_subscribe(subs, outbox, &mut filters);
        outbox.flush(&self.mqtt, &self.client_id);
    }

    fn connected(&self, st: &mut State, session_present: bool) {
        st.subs.on_connected();
        if let Some(engine) = st.engine.as_mut() {
            engine.handle_connected(session_present, self.clock.now());
        }
        // The engine's own (re-)subscriptions go first, then what an earlier connection lost.
        self.transmit(st);
        let mut lost = st.subs.take_lost();
        queue_subscribe(&mut st.subs, &mut st.outbox, &mut lost);
        st.outbox.flush(&self.mqtt, &self.client_id);
    }

    fn disconnected(&self, st: &mut State, reason: String) {
        st.subs.on_disconnected();
        if let Some(engine) = st.engine.as_mut() {
            engine.handle_disconnected(reason, self.clock.now());
        }
        self.transmit(st);
    }

    fn publish(&self, st: &mut State, publish: &Publish) {
        if let Some(engine) = st.engine.as_mut() {
            engine.handle_publish(convert::from_publish(publish.clone()), self.clock.now());
        }
        if self.manual_acks && publish.qos != MqttQoS::AtMostOnce {
            st.outbox.push(Outbound::Ack(publish.clone()));
        }
        self.transmit(st);
    }
}

/// Queues one SUBSCRIBE for `filters` (emptied) if there are any and the connection is up.
fn queue_subscribe(subs: &mut SharedSubscriptions, outbox: &mut Outbox, filters: &mut Vec<String>) {
    if subs.queue(filters) {
        outbox.push(Outbound::Subscribe(std::mem::take(filters)));
    }
    filters.clear();
}

/// The application's end of an attached connection: hand it everything your loop polls from
/// the rumqttc `EventLoop`. Dropping it ends the connection (every handle then gets `Closed`);
/// the MQTT connection itself stays the application's. `Send + Sync`: share it by reference
/// or in an `Arc`.
pub struct Attached {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("client_id", &self.shared.client_id)
            .finish_non_exhaustive()
    }
}

impl Attached {
    /// Feeds one event polled from the application's `EventLoop`. Returns `true` when the
    /// event was leasedlock's own (a reply on its response topic, a key notification, the
    /// SUBACK of its SUBSCRIBE), which the application should then ignore; connection events
    /// (CONNACK, DISCONNECT) and everything else return `false` and are the application's too.
    /// Never blocks: call it right in the loop, before the application's own handling.
    pub fn handle_event(&self, event: &Event) -> bool {
        let shared = &self.shared;
        let mut st = shared.lock();
        // (leasedlock's own event, the engine was fed)
        let (ours, fed) = match event {
            Event::Incoming(Packet::Publish(publish)) => {
                let ours = shared.is_ours(&publish.topic);
                if ours {
                    shared.publish(&mut st, publish);
                }
                (ours, ours)
            }
            Event::Incoming(Packet::ConnAck(ack)) => {
                info!(session_present = ack.session_present, "connected");
                shared.connected(&mut st, ack.session_present);
                (false, true)
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                match st.subs.on_suback(ack.pkid, &ack.return_codes) {
                    Some(filters) => {
                        let now = shared.clock.now();
                        if let Some(engine) = st.engine.as_mut() {
                            for (filter, granted) in filters {
                                engine.handle_subscribed(&filter, granted, now);
                            }
                        }
                        shared.transmit(&mut st);
                        (true, true)
                    }
                    None => (false, false),
                }
            }
            Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                st.subs.on_written(*pkid);
                (false, false)
            }
            Event::Outgoing(Outgoing::Disconnect) => {
                shared.disconnected(&mut st, "the application disconnected".to_string());
                (false, true)
            }
            _ => (false, false),
        };
        // Every event may have freed room in rumqttc's channel.
        if st.outbox.len() > 0 {
            st.outbox.flush(&shared.mqtt, &shared.client_id);
        }
        drop(st);
        if fed {
            // The engine's next deadline may have moved.
            shared.wake.notify_one();
        }
        ours
    }

    /// Feeds a connection error polled from the application's `EventLoop`: the connection is
    /// down until the next CONNACK (rumqttc reconnects when the loop polls again).
    pub fn handle_error(&self, error: &ConnectionError) {
        let shared = &self.shared;
        let mut st = shared.lock();
        shared.disconnected(&mut st, error.to_string());
        drop(st);
        shared.wake.notify_one();
    }

    /// Feeds one result of `EventLoop::poll`: [`Attached::handle_event`] or
    /// [`Attached::handle_error`]. Returns whether it was leasedlock's own event.
    pub fn handle(&self, polled: &Result<Event, ConnectionError>) -> bool {
        match polled {
            Ok(event) => self.handle_event(event),
            Err(error) => {
                self.handle_error(error);
                false
            }
        }
    }

    /// Tells leasedlock that the connection is already up: for attaching after the CONNACK was
    /// polled. Without it requests wait for the next CONNACK.
    pub fn mark_connected(&self) {
        let shared = &self.shared;
        let mut st = shared.lock();
        shared.connected(&mut st, false);
        drop(st);
        shared.wake.notify_one();
    }

    /// The topic the store's replies come back on, `clients/{clientId}/services/...`: the
    /// application's connection must be allowed to subscribe to it.
    pub fn response_topic(&self) -> &str {
        &self.shared.response_topic
    }

    /// The filter of the key notifications, `clients/statestore/v1/.../{HEX(clientId)}/command/notify/+`.
    pub fn notification_filter(&self) -> &str {
        &self.shared.notification_filter
    }
}

impl Drop for Attached {
    /// No more events will come: the task ends the connection.
    fn drop(&mut self) {
        self.shared.detached.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// Attaches leasedlock to the application's rumqttc MQTT 5 client. Returns the [`Connection`]
/// that handles are made from, as with `Connection::start`, and the [`Attached`] end that the
/// application's loop feeds every `EventLoop::poll` result into. No second MQTT connection is
/// made: requests, SUBSCRIBEs and acknowledgements go out through `client`.
///
/// Call it before the application's first poll, or call [`Attached::mark_connected`] when the
/// CONNACK was already polled. Must be called within a tokio runtime: it spawns the task that
/// runs the handles' commands and the engine's timers.
///
/// # Requirements on the application's connection
///
/// - **MQTT 5** (`rumqttc::v5`): the store protocol lives in MQTT 5 properties.
/// - **The client id**: `options.client_id()` must be exactly the MQTT client id of the
///   connection. Every holder value is made from it (`clientId:instance.handle`, or the bare
///   client id with `Connection::lease_as_client_id`), replies come back on
///   `clients/{clientId}/...`, and the AIO state store addresses key notifications to the
///   connection's real client id. A different id there means no notifications (and, under
///   AIO authorization policies, replies refused to the connection). The emulator takes the id
///   from each request instead and cannot catch the mistake.
/// - **Topics**: the connection subscribes (QoS 1) to [`Attached::response_topic`] and
///   [`Attached::notification_filter`]; under an authorization policy it must be allowed to,
///   and to publish to the store's request topic.
/// - **Sessions**: with clean start on every connection each reconnect loses the session, so
///   requests in flight at the drop fail with `Unknown` and leasedlock subscribes again. Prefer
///   `set_clean_start(false)` once connected and a session expiry longer than a reconnect: in
///   flight requests then complete across it.
/// - **Latency**: set `NetworkOptions::set_tcp_nodelay(true)`, otherwise every request waits
///   on Nagle's algorithm (tens of milliseconds on Linux).
/// - **No incoming topic aliases** (rumqttc's default): leasedlock recognises its PUBLISHes by
///   topic.
/// - **Manual acks**: say so with [`AttachOptions::manual_acks`].
/// - **Channel capacity**: `AsyncClient::new(options, cap)`; leasedlock never waits on a full
///   channel, it queues and retries on the next event, so any capacity works; a small one
///   adds latency under load.
///
/// # Reconnects
///
/// rumqttc reconnects when the application polls again after an error. On the next CONNACK
/// leasedlock subscribes again when the session is new (and redoes any SUBSCRIBE of its own
/// that was not acknowledged), re-registers every observed key with the store and reads it
/// again, and its lease, lock and leader machines re-check what they hold; requests wait in the
/// engine (within their timeouts) meanwhile. A lease whose renewal could not reach the store
/// in time is reported lost no later than its `safe_until`, as on a connection of its own.
///
/// # Ending
///
/// `Connection::close` releases what the handles hold (bounded by the request timeout),
/// unsubscribes leasedlock's topics and ends the task; `Connection::abort` ends it at once.
/// Neither disconnects the application's connection. Dropping [`Attached`] ends it too.
pub async fn attach(
    client: AsyncClient,
    options: AttachOptions,
) -> Result<(Connection, Attached), ConnectError> {
    let clock = Clock::new();
    let (engine, inner, commands) = Engine::new(&options.engine, clock)?;
    let client_id = options.client_id().to_string();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            engine: Some(engine),
            subs: SharedSubscriptions::default(),
            outbox: Outbox::default(),
        }),
        wake: Notify::new(),
        detached: AtomicBool::new(false),
        mqtt: client,
        clock,
        response_topic: envelope::response_topic(&client_id),
        notification_filter: envelope::notification_filter(&client_id),
        manual_acks: options.manual_acks,
        client_id,
    });
    let span = tracing::info_span!("leasedlock", client_id = %shared.client_id, attached = true);
    let task = tokio::spawn(run(shared.clone(), commands).instrument(span)).abort_handle();
    Ok((Connection::from_parts(inner, task), Attached { shared }))
}

/// Ends the engine when the task ends, however it ends (finished, or aborted): the state
/// becomes `Closed` and every waiting future is answered.
struct EndEngine(Arc<Shared>);

impl Drop for EndEngine {
    fn drop(&mut self) {
        let engine = self.0.lock().engine.take();
        // Dropped outside the lock: it answers every waiting future.
        drop(engine);
    }
}

/// The task: the handles' commands and the engine's timers.
async fn run(shared: Arc<Shared>, commands: Commands) {
    let end = EndEngine(shared.clone());
    let mut timer = Timer::new();
    let mut wake_cap = WakeCap::new();
    let mut commands_open = true;
    loop {
        let next = {
            let mut st = shared.lock();
            let now = shared.clock.now();
            let Some(engine) = st.engine.as_mut() else {
                return;
            };
            if engine.poll_timeout().is_some_and(|t| t <= now.mono) {
                engine.handle_timeout(now);
                shared.transmit(&mut st);
            }
            let Some(engine) = st.engine.as_mut() else {
                return;
            };
            if shared.detached.load(Ordering::Acquire) {
                engine.handle_disconnected("the application dropped its Attached".into(), now);
                break;
            }
            if engine.is_done(now) {
                break;
            }
            engine.poll_timeout()
        };
        timer.set(Some(tokio::time::Instant::from_std(
            wake_cap.deadline(shared.clock, next),
        )));
        tokio::select! {
            command = commands.recv(), if commands_open => {
                let mut st = shared.lock();
                if let Some(engine) = st.engine.as_mut() {
                    match command {
                        Some(command) => engine.handle_command(command, shared.clock.now()),
                        None => {
                            commands_open = false;
                            engine.handle_commands_closed(shared.clock.now());
                        }
                    }
                }
                shared.transmit(&mut st);
            }
            () = timer.fired() => {
                let mut st = shared.lock();
                if let Some(engine) = st.engine.as_mut() {
                    engine.handle_timeout(shared.clock.now());
                }
                shared.transmit(&mut st);
            }
            () = shared.wake.notified() => {}
        }
    }
    finish(&shared, &commands);
    drop(end);
}

/// Closing: leasedlock's subscriptions leave the application's session, then every handle is
/// answered.
fn finish(shared: &Shared, commands: &Commands) {
    info!("closing attached connection");
    let mut st = shared.lock();
    if st.subs.is_connected() && !shared.detached.load(Ordering::Acquire) {
        st.outbox
            .push(Outbound::Unsubscribe(shared.response_topic.clone()));
        st.outbox
            .push(Outbound::Unsubscribe(shared.notification_filter.clone()));
        st.outbox.flush(&shared.mqtt, &shared.client_id);
    }
    if let Some(engine) = st.engine.as_mut() {
        engine.finish(commands);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use leasedlock_api::{ConnectionState, SetOptions};
    use rumqttc::v5::mqttbytes::v5::{ConnAck, ConnectReturnCode, SubAck, SubscribeReasonCode};
    use rumqttc::v5::Request;

    const ID: &str = "app-7";

    /// rumqttc's request channel, read by the test instead of an event loop.
    type Requests = flume::Receiver<Request>;

    /// An attached engine on a client with no event loop: the test reads what goes into its
    /// request channel and feeds events by hand.
    async fn attached(manual_acks: bool) -> (Connection, Attached, Requests) {
        let (tx, rx) = flume::bounded(64);
        let client = AsyncClient::from_senders(tx);
        let (conn, attached) = attach(client, AttachOptions::new(ID).manual_acks(manual_acks))
            .await
            .expect("attach");
        (conn, attached, rx)
    }

    /// What the attached engine put into rumqttc's channel since the last call.
    fn sent(requests: &mut Requests) -> Vec<Request> {
        requests.drain().collect()
    }

    fn connack() -> Event {
        Event::Incoming(Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::Success,
            properties: None,
        }))
    }

    fn suback(pkid: u16, codes: usize) -> Event {
        Event::Incoming(Packet::SubAck(SubAck {
            pkid,
            return_codes: vec![SubscribeReasonCode::Success(MqttQoS::AtLeastOnce); codes],
            properties: None,
        }))
    }

    fn incoming(topic: &str, pkid: u16) -> Event {
        let mut p = Publish::new(topic, MqttQoS::AtLeastOnce, Bytes::from_static(b"x"), None);
        p.pkid = pkid;
        Event::Incoming(Packet::Publish(p))
    }

    /// Connects the attached engine and acknowledges its SUBSCRIBE (packet id 1).
    fn connect(attached: &Attached, requests: &mut Requests) {
        assert!(
            !attached.handle_event(&connack()),
            "CONNACK is the application's too"
        );
        let subscribes: Vec<Vec<String>> = sent(requests)
            .into_iter()
            .filter_map(|r| match r {
                Request::Subscribe(s) => Some(s.filters.into_iter().map(|f| f.path).collect()),
                _ => None,
            })
            .collect();
        assert_eq!(
            subscribes,
            vec![vec![
                attached.response_topic().to_string(),
                attached.notification_filter().to_string()
            ]],
            "one SUBSCRIBE with both of leasedlock's filters"
        );
        assert!(!attached.handle_event(&Event::Outgoing(Outgoing::Subscribe(1))));
        assert!(attached.handle_event(&suback(1, 2)), "our SUBACK is ours");
    }

    #[tokio::test]
    async fn only_leasedlocks_publishes_and_subacks_are_reported_as_its_own() {
        let (conn, attached, mut requests) = attached(false).await;
        assert_eq!(
            attached.response_topic(),
            envelope::response_topic(ID).as_str()
        );
        connect(&attached, &mut requests);
        // The application's one-filter SUBSCRIBE and its SUBACK.
        assert!(!attached.handle_event(&Event::Outgoing(Outgoing::Subscribe(2))));
        assert!(!attached.handle_event(&suback(2, 1)));

        let notification = envelope::notification_topic(ID, b"some-key");
        assert!(attached.handle_event(&incoming(&notification, 3)));
        let reply = attached.response_topic().to_string();
        assert!(attached.handle_event(&incoming(&reply, 4)));
        assert!(!attached.handle_event(&incoming("app/in", 5)));
        // Another client's notifications and the bare notification prefix are not ours.
        let other = envelope::notification_topic("app-8", b"some-key");
        assert!(!attached.handle_event(&incoming(&other, 6)));
        let filter = attached.notification_filter().to_string();
        let prefix = filter.trim_end_matches('+');
        assert!(!attached.handle_event(&incoming(prefix, 7)));
        // rumqttc acknowledges everything itself: nothing of ours in the channel.
        assert!(sent(&mut requests)
            .iter()
            .all(|r| !matches!(r, Request::PubAck(_))));
        conn.abort();
    }

    #[tokio::test]
    async fn with_manual_acks_leasedlock_acknowledges_only_its_own_publishes() {
        let (conn, attached, mut requests) = attached(true).await;
        connect(&attached, &mut requests);
        let reply = attached.response_topic().to_string();
        assert!(attached.handle_event(&incoming(&reply, 11)));
        assert!(!attached.handle_event(&incoming("app/in", 12)));
        let acked: Vec<u16> = sent(&mut requests)
            .into_iter()
            .filter_map(|r| match r {
                Request::PubAck(a) => Some(a.pkid),
                _ => None,
            })
            .collect();
        assert_eq!(acked, vec![11]);
        conn.abort();
    }

    #[tokio::test]
    async fn requests_go_out_through_the_applications_client_once_subscribed() {
        let (conn, attached, mut requests) = attached(false).await;
        let store = conn.state_store();
        let options = SetOptions::new();
        let mut set = Box::pin(store.set("k", "v", &options));
        // Not connected: the request waits in the engine.
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut set)
            .await
            .is_err());
        assert!(sent(&mut requests).is_empty());
        connect(&attached, &mut requests);
        let mut published = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), async {
            while published.is_empty() {
                published = sent(&mut requests)
                    .into_iter()
                    .filter_map(|r| match r {
                        Request::Publish(p) => Some(p.topic),
                        _ => None,
                    })
                    .collect();
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the request is published");
        assert_eq!(published, vec![Bytes::from(envelope::REQUEST_TOPIC)]);
        conn.abort();
    }

    #[tokio::test]
    async fn connection_state_follows_the_applications_events() {
        let (conn, attached, mut requests) = attached(false).await;
        assert_eq!(conn.state(), ConnectionState::Connecting);
        connect(&attached, &mut requests);
        conn.wait_connected().await.expect("connected");
        attached.handle_error(&ConnectionError::RequestsDone);
        assert!(matches!(conn.state(), ConnectionState::Disconnected(_)));
        attached.mark_connected();
        assert_eq!(conn.state(), ConnectionState::Connected);
        assert!(!attached.handle_event(&Event::Outgoing(Outgoing::Disconnect)));
        assert!(matches!(conn.state(), ConnectionState::Disconnected(_)));
        conn.abort();
    }

    #[tokio::test]
    async fn closing_unsubscribes_and_leaves_the_applications_connection_alone() {
        let (conn, attached, mut requests) = attached(false).await;
        connect(&attached, &mut requests);
        tokio::time::timeout(Duration::from_secs(5), conn.close())
            .await
            .expect("closes in time");
        assert_eq!(conn.state(), ConnectionState::Closed);
        let requests = sent(&mut requests);
        let unsubscribed: Vec<String> = requests
            .iter()
            .filter_map(|r| match r {
                Request::Unsubscribe(u) => Some(u.filters.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            unsubscribed,
            vec![
                attached.response_topic().to_string(),
                attached.notification_filter().to_string()
            ]
        );
        assert!(!requests.iter().any(|r| matches!(r, Request::Disconnect)));
        // Its publishes are still recognised (and dropped) after the end.
        let reply = attached.response_topic().to_string();
        assert!(attached.handle_event(&incoming(&reply, 9)));
    }

    #[tokio::test]
    async fn dropping_attached_ends_the_connection() {
        let (conn, attached, mut requests) = attached(false).await;
        connect(&attached, &mut requests);
        drop(attached);
        tokio::time::timeout(Duration::from_secs(5), async {
            while conn.state() != ConnectionState::Closed {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("closed once the application's end is gone");
        let store = conn.state_store();
        let r = store.get("k", None).await;
        assert!(r.is_err(), "{r:?}");
    }
}
