#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Writes one line to stderr; a closed stderr is ignored (`eprintln!` would panic).
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "leasedlock-emulator: {}", format_args!($($arg)*));
    }};
}

pub mod convert;
pub mod persist;

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use leasedlock_core::envelope::REQUEST_TOPIC;
use leasedlock_core::server::{Store, StoreConfig, StoreError, StoreOutput, StoreStats};
use leasedlock_core::{Instant as CoreInstant, Now};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{
    AsyncClient, ClientError, ConnectionError, Event, EventLoop, MqttOptions, Request,
};
use rumqttc::NetworkOptions;
#[cfg(feature = "tls")]
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use persist::Durable;

/// `tracing` target of the per-hop TRACE events (request in, served, publish), for latency
/// breakdowns.
pub const HOP: &str = "leasedlock::hop";

/// TLS settings for the broker connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with the CA certificate(s) to trust; `None` uses the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Everything the emulator needs.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id of the emulator's own connection.
    pub client_id: String,
    /// Username and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// TLS, if the broker wants it.
    pub tls: Option<TlsOptions>,
    /// Keep, in this directory across restarts, keys written with `aio-persistence: true` and
    /// every key with an expiry (leases), so a restart never frees a held lease.
    pub data_dir: Option<PathBuf>,
    /// MQTT keep-alive of the emulator's connection.
    pub keep_alive: Duration,
    /// Replies and notifications waiting for room in the MQTT client's channel before new
    /// requests are shed.
    pub queue_len: usize,
    /// Payload bytes of replies and notifications waiting for room in the MQTT client's
    /// channel before new requests are shed.
    pub queue_bytes: usize,
    /// The store model's configuration (node id, bounds).
    pub store: StoreConfig,
    /// Log connection events and dropped requests to stderr.
    pub verbose: bool,
}

impl EmulatorConfig {
    /// Defaults for a broker at `host:port`, with a random hash seed.
    pub fn new(host: impl Into<String>, port: u16) -> EmulatorConfig {
        EmulatorConfig {
            host: host.into(),
            port,
            client_id: format!("leasedlock-emulator-{}", std::process::id()),
            credentials: None,
            tls: None,
            data_dir: None,
            keep_alive: Duration::from_secs(30),
            queue_len: 10_000,
            queue_bytes: 64 << 20,
            store: StoreConfig {
                node_id: Bytes::from_static(b"leasedlock-emulator"),
                hash_seed: random_seed(),
                ..StoreConfig::default()
            },
            verbose: false,
        }
    }
}

/// A seed nobody outside this process can predict (std's per-process SipHash keys).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// Why the emulator could not start or stopped with an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The store configuration is invalid.
    Store(StoreError),
    /// The data directory could not be opened or read.
    Persist(persist::PersistError),
    /// A TLS file could not be read.
    Tls(std::io::Error),
    /// TLS was asked for, but this build has no TLS (the `tls` feature is off).
    TlsUnavailable,
    /// The broker did not accept the connection and subscription in time.
    NotReady(String),
}

impl std::fmt::Display for EmulatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmulatorError::Store(e) => write!(f, "store configuration: {e}"),
            EmulatorError::Persist(e) => write!(f, "data directory: {e}"),
            EmulatorError::Tls(e) => write!(f, "TLS files: {e}"),
            EmulatorError::TlsUnavailable => {
                f.write_str("TLS to the broker needs the emulator built with its `tls` feature")
            }
            EmulatorError::NotReady(e) => write!(f, "broker connection: {e}"),
        }
    }
}

impl std::error::Error for EmulatorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EmulatorError::Store(e) => Some(e),
            EmulatorError::Persist(e) => Some(e),
            EmulatorError::Tls(e) => Some(e),
            EmulatorError::TlsUnavailable | EmulatorError::NotReady(_) => None,
        }
    }
}

/// A snapshot of the running store, for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The store's counters.
    pub stats: StoreStats,
    /// Stored keys.
    pub keys: usize,
    /// KEYNOTIFY registrations.
    pub registrations: usize,
    /// Requests shed because the replies waiting for the MQTT client were over their bounds.
    pub shed: u64,
}

/// A running emulator.
pub struct Emulator {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    ctx: Arc<Ctx>,
}

/// How long [`Emulator::start`] waits for the broker to accept the subscription.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl Emulator {
    /// Connects to the broker, restores persisted keys, subscribes to the request topic and
    /// returns once the subscription is acknowledged, so requests sent afterwards are served.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let mut store_config = config.store.clone();
        // With durable storage, leases (keys with an expiry) are kept across a restart: a
        // restarted store that forgot a held lease would grant it to a newcomer while its
        // holder still, rightly by its own clock, believes it holds it.
        store_config.persist_expiring |= config.data_dir.is_some();
        let mut store = Store::new(store_config).map_err(EmulatorError::Store)?;
        let clock = Clock::new();
        let durable = match &config.data_dir {
            Some(dir) => {
                let d = Durable::open(dir).map_err(EmulatorError::Persist)?;
                restore(&d, &mut store, clock.now(), config.verbose)?;
                Some(d)
            }
            None => None,
        };
        let mut options = mqtt_options(&config)?;
        let mut net_opts = NetworkOptions::new();
        // One reply per round trip: Nagle would hold each back ~40 ms.
        net_opts.set_tcp_nodelay(true);
        options.set_network_options(net_opts);
        let (client, eventloop) = AsyncClient::new(options, 1024);

        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = oneshot::channel();
        let ctx = Arc::new(Ctx {
            snapshot: Mutex::new(Snapshot::default()),
            verbose: config.verbose,
        });
        let server = Server {
            store,
            clock,
            durable,
            client,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            acks: VecDeque::new(),
            ctx: ctx.clone(),
        };
        let task = tokio::spawn(serve(
            eventloop,
            server,
            ready_tx,
            stop_rx,
            (config.queue_len.max(1), config.queue_bytes),
        ));
        let emulator = Emulator {
            stop: stop_tx,
            task,
            ctx,
        };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(())) => Ok(emulator),
            Ok(Err(_)) => {
                emulator.shutdown().await;
                Err(EmulatorError::NotReady("network task ended".into()))
            }
            Err(_) => {
                emulator.shutdown().await;
                Err(EmulatorError::NotReady(format!(
                    "no SUBACK from {}:{} within {READY_TIMEOUT:?}",
                    config.host, config.port
                )))
            }
        }
    }

    /// The store's counters and sizes as of the last handled event.
    pub fn snapshot(&self) -> Snapshot {
        self.ctx.snapshot.lock().map(|s| *s).unwrap_or_default()
    }

    /// Stops serving: the store task ends, the connection is closed with a DISCONNECT.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// Monotonic and wall time for core.
#[derive(Clone, Copy)]
struct Clock {
    base: tokio::time::Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            base: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> Now {
        let mono = self.base.elapsed().as_nanos();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Now::new(
            CoreInstant::from_nanos(u64::try_from(mono).unwrap_or(u64::MAX)),
            u64::try_from(wall).unwrap_or(u64::MAX),
        )
    }

    fn deadline(&self, at: CoreInstant) -> tokio::time::Instant {
        self.base + Duration::from_nanos(at.as_nanos())
    }
}

fn restore(d: &Durable, store: &mut Store, now: Now, verbose: bool) -> Result<(), EmulatorError> {
    for rec in d.load().map_err(EmulatorError::Persist)? {
        match rec {
            Ok(rec) => match store.restore(&rec, now) {
                Ok(true) => {}
                Ok(false) => d.remove(&rec.key).map_err(EmulatorError::Persist)?,
                Err(e) => {
                    if verbose {
                        log!("not restoring a key: {e}");
                    }
                }
            },
            Err(key) => {
                log!("dropping an unreadable record");
                d.remove(&key).map_err(EmulatorError::Persist)?;
            }
        }
    }
    Ok(())
}

fn mqtt_options(config: &EmulatorConfig) -> Result<MqttOptions, EmulatorError> {
    let mut o = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    o.set_keep_alive(config.keep_alive);
    o.set_clean_start(true);
    // rumqttc would write the PUBACK of a request before handing the request over, a write on
    // the path of every round trip; acked by hand, it follows the reply instead.
    o.set_manual_acks(true);
    // The broker drops larger packets for us instead of sending them: no request can be bigger
    // than the largest key and value the store accepts, plus room for properties.
    let largest = config
        .store
        .max_value_len
        .saturating_add(config.store.max_key_len)
        .saturating_add(1 << 20);
    o.set_max_packet_size(Some(u32::try_from(largest).unwrap_or(u32::MAX)));
    if let Some((user, pass)) = &config.credentials {
        o.set_credentials(user.clone(), pass.clone());
    }
    if let Some(tls) = &config.tls {
        tls_transport(&mut o, tls)?;
    }
    Ok(o)
}

/// Without the `tls` feature there is no TLS transport.
#[cfg(not(feature = "tls"))]
fn tls_transport(_o: &mut MqttOptions, _tls: &TlsOptions) -> Result<(), EmulatorError> {
    Err(EmulatorError::TlsUnavailable)
}

/// rumqttc's TLS transport (feature `tls`).
#[cfg(feature = "tls")]
fn tls_transport(o: &mut MqttOptions, tls: &TlsOptions) -> Result<(), EmulatorError> {
    {
        let transport = match &tls.ca_file {
            None => Transport::tls_with_default_config(),
            Some(ca) => {
                let ca = std::fs::read(ca).map_err(EmulatorError::Tls)?;
                let client_auth = match &tls.client_cert {
                    Some((cert, key)) => Some((
                        std::fs::read(cert).map_err(EmulatorError::Tls)?,
                        std::fs::read(key).map_err(EmulatorError::Tls)?,
                    )),
                    None => None,
                };
                Transport::tls_with_config(TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth,
                })
            }
        };
        o.set_transport(transport);
    }
    Ok(())
}

type PollFuture = Pin<Box<dyn Future<Output = (EventLoop, Result<Event, ConnectionError>)> + Send>>;

/// One `EventLoop::poll`, optionally after a back-off delay. The future owns the event loop, so
/// the serving task can wait for its timer or a stop at the same time without ever cancelling
/// a poll halfway through writing a packet.
fn poll_once(mut eventloop: EventLoop, delay: Option<Duration>) -> PollFuture {
    Box::pin(async move {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let result = eventloop.poll().await;
        (eventloop, result)
    })
}

/// A PUBLISH waiting for room in rumqttc's request channel.
type Outgoing = (String, QoS, Bytes, PublishProperties);

/// Everything the serving task owns besides the connection.
struct Server {
    store: Store,
    clock: Clock,
    durable: Option<Durable>,
    client: AsyncClient,
    /// Replies and notifications rumqttc's channel had no room for yet, in order.
    outbox: VecDeque<Outgoing>,
    outbox_bytes: usize,
    /// Received requests whose PUBACK is not in rumqttc's channel yet (only their packet id
    /// and QoS: see [`ack_of`]). Acked after the replies, shed requests included.
    acks: VecDeque<Publish>,
    ctx: Arc<Ctx>,
}

/// What [`AsyncClient::try_ack`] needs of a received PUBLISH (its QoS and packet id), without
/// holding on to its payload.
fn ack_of(p: &Publish) -> Publish {
    Publish {
        qos: p.qos,
        pkid: p.pkid,
        ..Publish::default()
    }
}

/// Serves the store on the MQTT connection, all in one task: (re)subscribes on every CONNACK,
/// hands every request PUBLISH to the store as it arrives and publishes the replies and
/// notifications at once, fires the store's expiry timer, and reconnects after errors.
///
/// One task, so a request costs no task hop (no wake of another task, possibly on another
/// thread) between receiving it, serving it and writing the reply: the reply goes into
/// rumqttc's channel and the same task's event loop writes it on its next turn. When rumqttc's
/// channel is full the outputs wait in the outbox; while the outbox is over its bounds, new
/// requests are shed (the caller times out, the emulator keeps serving).
async fn serve(
    eventloop: EventLoop,
    mut server: Server,
    ready: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
    config: (usize, usize),
) {
    let (max_len, max_bytes) = config;
    let verbose = server.ctx.verbose;
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    let mut poll = poll_once(eventloop, None);
    // One timer re-armed in place: a fresh `sleep_until` per request would register and remove
    // a timer-wheel entry every time while any key has an expiry, though that rarely moves.
    let mut timer = Box::pin(tokio::time::sleep_until(tokio::time::Instant::now()));
    let mut armed = None;
    loop {
        let deadline = server
            .store
            .poll_timeout()
            .map(|at| server.clock.deadline(at));
        if deadline != armed {
            if let Some(at) = deadline {
                timer.as_mut().reset(at);
            }
            armed = deadline;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => {
                let _ = server.client.try_disconnect();
                // Let the DISCONNECT go out.
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    loop {
                        let (eventloop, result) = (&mut poll).await;
                        if result.is_err() {
                            break;
                        }
                        poll = poll_once(eventloop, None);
                    }
                })
                .await;
                return;
            }
            (eventloop, event) = &mut poll => {
                let delay = match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(50);
                        if verbose {
                            log!("connected; subscribing to {REQUEST_TOPIC}");
                        }
                        // rumqttc never resubscribes by itself.
                        if let Err(e) = server.client.try_subscribe(REQUEST_TOPIC, QoS::AtLeastOnce) {
                            log!("subscribe failed: {e}");
                        }
                        None
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                        None
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        tracing::trace!(target: HOP, topic = ?p.topic, "emulator request in");
                        server.acks.push_back(ack_of(&p));
                        if server.outbox.len() < max_len && server.outbox_bytes <= max_bytes {
                            let msg = convert::to_message(&p);
                            server.store.handle_request(&msg, server.clock.now());
                        } else if let Ok(mut s) = server.ctx.snapshot.lock() {
                            s.shed += 1;
                        }
                        None
                    }
                    Ok(_) => None,
                    Err(e) => {
                        if verbose {
                            log!("connection error: {e}; retrying in {backoff:?}");
                        }
                        // Their packet ids belong to the lost session (every connection starts
                        // clean).
                        server.acks.clear();
                        let delay = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        Some(delay)
                    }
                };
                poll = poll_once(eventloop, delay);
            }
            _ = timer.as_mut(), if armed.is_some() => {
                // Fired: re-armed next turn even if the store names the same instant again.
                armed = None;
                server.store.handle_timeout(server.clock.now());
            }
        }
        // Reply first; the acks and the snapshot are bookkeeping.
        server.carry_out();
        server.flush();
        server.flush_acks();
        if let Ok(mut s) = server.ctx.snapshot.lock() {
            s.stats = server.store.stats();
            s.keys = server.store.len();
            s.registrations = server.store.registration_count();
        }
    }
}

impl Server {
    /// Carries out the store's outputs in order: durable writes at once (before the reply that
    /// follows them is handed to rumqttc), publishes into the outbox.
    fn carry_out(&mut self) {
        while let Some(out) = self.store.poll_output() {
            match out {
                StoreOutput::Publish(msg) => {
                    if let Some(publish) = convert::to_publish(msg) {
                        tracing::trace!(target: HOP, topic = %publish.0, "emulator publish");
                        self.outbox_bytes = self.outbox_bytes.saturating_add(publish.2.len());
                        self.outbox.push_back(publish);
                    }
                }
                StoreOutput::Persist(rec) => {
                    if let Some(d) = &self.durable {
                        if let Err(e) = d.put(&rec) {
                            log!("persisting a key failed: {e}");
                        }
                    }
                }
                StoreOutput::Forget(key) => {
                    if let Some(d) = &self.durable {
                        if let Err(e) = d.remove(&key) {
                            log!("forgetting a key failed: {e}");
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Hands the pending PUBACKs to rumqttc without waiting on its channel; what does not fit
    /// waits for the next event.
    fn flush_acks(&mut self) {
        while let Some(ack) = self.acks.front() {
            match self.client.try_ack(ack) {
                Err(ClientError::TryRequest(_)) => return,
                // Sent, or the client is closed (shutting down): either way done with it.
                _ => {
                    self.acks.pop_front();
                }
            }
        }
    }

    /// Hands the outbox to rumqttc without waiting on its channel.
    fn flush(&mut self) {
        while let Some((topic, qos, payload, props)) = self.outbox.pop_front() {
            let len = payload.len();
            match self
                .client
                .try_publish_with_properties(topic, qos, false, payload, props)
            {
                Ok(()) => self.outbox_bytes = self.outbox_bytes.saturating_sub(len),
                Err(ClientError::TryRequest(Request::Publish(p))) => {
                    // Full: keep it (first in line) for after the next event.
                    match String::from_utf8(p.topic.to_vec()) {
                        Ok(topic) => self.outbox.push_front((
                            topic,
                            p.qos,
                            p.payload,
                            p.properties.unwrap_or_default(),
                        )),
                        Err(_) => self.outbox_bytes = self.outbox_bytes.saturating_sub(len),
                    }
                    return;
                }
                // An invalid topic from a hostile client (rumqttc refuses it) or a closed
                // client during shutdown. Neither may stop the store.
                Err(e) => {
                    self.outbox_bytes = self.outbox_bytes.saturating_sub(len);
                    if self.ctx.verbose {
                        log!("publish refused: {e}");
                    }
                }
            }
        }
    }
}

/// State the serving task shares with the [`Emulator`] handle.
struct Ctx {
    snapshot: Mutex<Snapshot>,
    verbose: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the `tls` feature, asking for TLS is an error before any connection, never a
    /// plain-text connection to a broker that was meant to be reached over TLS.
    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn tls_without_the_feature_is_refused_not_downgraded() {
        let mut config = EmulatorConfig::new("127.0.0.1", 1);
        config.tls = Some(TlsOptions::default());
        let err = Emulator::start(config).await.err();
        assert!(
            matches!(err, Some(EmulatorError::TlsUnavailable)),
            "{err:?}"
        );
    }

    /// With it, the TLS files are read when the emulator starts: a missing CA file is a typed
    /// error that keeps its cause.
    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn a_missing_ca_file_is_a_typed_error() {
        let mut config = EmulatorConfig::new("127.0.0.1", 1);
        config.tls = Some(TlsOptions {
            ca_file: Some("/nonexistent/leasedlock-ca.pem".into()),
            ..TlsOptions::default()
        });
        let err = Emulator::start(config).await.err();
        let Some(EmulatorError::Tls(cause)) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(cause.kind(), std::io::ErrorKind::NotFound);
        assert!(std::error::Error::source(err.as_ref().unwrap()).is_some());
    }
}
