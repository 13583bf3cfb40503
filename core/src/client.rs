//! The state-store client machine (sans-IO).
//!
//! Owns the application HLC, a bounded in-flight table keyed by correlation id, the set of
//! observed keys and what must be re-sent after a reconnect. Every request ends in exactly one
//! [`Completion`]: a reply, a typed error, a timeout, or [`RequestError::Unknown`] (sent, then the
//! connection dropped before the reply: it may have run).
//!
//! Driving it (every adapter does the same three steps):
//! 1. feed inputs: [`Client::handle_connected`], [`Client::handle_subscribed`],
//!    [`Client::handle_publish`], [`Client::handle_disconnected`], [`Client::handle_timeout`] and
//!    user calls such as [`Client::request`], each with [`Now`];
//! 2. drain [`Client::poll_output`] until `None`;
//! 3. wait until [`Client::poll_timeout`] or the next input.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use crate::command::{self, ReplyError, Request, RequestKind, Response, ServiceError};
use crate::envelope::{self, Message, RequestEnvelope};
use crate::hlc::{Hlc, HybridClock};
use crate::resp3::Limits;
use crate::rng::Rng;
use crate::time::{Instant, Now};

/// Longest accepted client id, in bytes. It is embedded in topics, which MQTT caps at 65 535
/// bytes; this keeps every derived topic far below that.
pub const MAX_CLIENT_ID_LEN: usize = 1024;

/// Largest accepted `max_in_flight` and `max_observed`: the tables are allocated up front, so an
/// absurd capacity must be refused rather than attempted.
pub const MAX_CAPACITY: usize = 1 << 16;

/// Configuration of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// MQTT client id: `__srcId`, the response topic and the notification topic derive from it.
    pub client_id: String,
    /// Seed for correlation ids (and anything else random).
    pub seed: u64,
    /// Maximum requests in flight (sent or queued); beyond it `request` returns `Busy`.
    pub max_in_flight: usize,
    /// Maximum number of observed keys.
    pub max_observed: usize,
    /// Timeout used when a request's options give none.
    pub default_timeout: Duration,
    /// HLC drift limit in milliseconds (docs/protocol.md §6.3; default 60 000).
    pub max_drift_ms: u64,
    /// Node id of the application HLC (e.g. a UUID the adapter generates from the seed).
    pub hlc_node: String,
}

/// Per-request options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// Timeout (Message Expiry is this rounded up to seconds); `None` = the configured default.
    pub timeout: Option<Duration>,
    /// `__ft` fencing token (SET/DEL/VDEL only).
    pub fencing_token: Option<Hlc>,
    /// Ask the store to persist the key (`aio-persistence: true`, SET only).
    pub persist: bool,
}

/// Identifies one request for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Why a request did not produce a [`Response`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The store answered `-ERR`.
    Service(ServiceError),
    /// No reply before the deadline. `sent` tells whether the request ever left: if it did, it
    /// may have run.
    Timeout {
        /// Whether the request was published before the deadline.
        sent: bool,
    },
    /// The request was sent, then the connection dropped (without a surviving session) before
    /// the reply: it may or may not have run.
    Unknown,
    /// The reply had a non-200 `__stat` (protocol-level error from the executor).
    Status {
        /// The status code.
        status: u16,
        /// `__stMsg`, if any.
        message: Option<Bytes>,
    },
    /// The reply's `__ts` is too far ahead of our wall clock (or does not parse).
    ClockDrift,
    /// The reply payload is malformed or not a valid answer to this command.
    BadReply,
    /// The in-flight table is full.
    Busy,
    /// The request is invalid (empty key, fencing token on a verb that takes none, zero
    /// timeout, PX 0...).
    InvalidArgument(&'static str),
    /// The broker refused the subscription to the response topic, so no reply could ever
    /// arrive: the request was never sent. Cleared by the next [`Client::handle_connected`].
    SubscriptionRefused,
}

impl RequestError {
    /// Whether trying again later may succeed: timeouts, a dropped connection, a full
    /// in-flight table, a refused response subscription, and the RPC statuses of an overloaded
    /// or timed-out executor (408, 503). Rejections by the store, malformed or drifting
    /// replies and invalid requests are not transient. The lease machine classifies request
    /// failures the same way (a test checks that they agree).
    pub fn is_transient(&self) -> bool {
        match self {
            RequestError::Timeout { .. }
            | RequestError::Unknown
            | RequestError::Busy
            | RequestError::SubscriptionRefused => true,
            RequestError::Status { status, .. } => matches!(status, 408 | 503),
            RequestError::Service(_)
            | RequestError::ClockDrift
            | RequestError::BadReply
            | RequestError::InvalidArgument(_) => false,
        }
    }
}

/// The single outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Which request.
    pub id: RequestId,
    /// Its verb.
    pub kind: RequestKind,
    /// The monotonic time at which it was (last) published, if it was.
    pub sent_at: Option<Instant>,
    /// The typed reply, or why there is none.
    pub result: Result<Response, RequestError>,
    /// `__ts` of the reply (the key version; the fencing token for a SET), if present.
    pub version: Option<Hlc>,
}

/// A key notification delivered to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The key.
    pub key: Bytes,
    /// The new value for a SET, `None` for a DELETE.
    pub value: Option<Bytes>,
    /// Key version after the change.
    pub version: Hlc,
}

/// What the adapter must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Publish this message (QoS as given).
    Publish(Message),
    /// Subscribe to this filter at QoS 1, then call [`Client::handle_subscribed`].
    Subscribe(String),
    /// Unsubscribe from this filter.
    Unsubscribe(String),
    /// A request finished.
    Completion(Completion),
    /// A notification for an observed key arrived.
    Notification(Notification),
    /// The connection came up (echo of [`Client::handle_connected`], in order with the other
    /// outputs it causes).
    Connected {
        /// Whether the broker kept the session.
        session_present: bool,
    },
    /// The connection dropped (echo of [`Client::handle_disconnected`]).
    Disconnected,
    /// After a reconnect the client re-sent KEYNOTIFY for an observed key (the store drops
    /// registrations when a connection drops) and this is the outcome. Notifications may have
    /// been missed meanwhile, so a machine waiting on the key should re-read it with GET.
    /// Only reported while the key is still observed.
    Reregistered {
        /// The observed key.
        key: Bytes,
        /// `Ok` once the store accepted the registration again.
        result: Result<(), RequestError>,
    },
}

/// Counters for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Replies whose correlation id matched nothing in flight (late or duplicate), ignored.
    pub unmatched_replies: u64,
    /// Incoming messages that could not be parsed and were dropped (with a typed reason
    /// available through logging in the adapter).
    pub malformed_messages: u64,
    /// Notifications dropped because the key is not observed.
    pub unobserved_notifications: u64,
}

/// Why the client could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Client id empty or containing characters not allowed in a topic level.
    BadClientId,
    /// HLC node id invalid.
    BadNodeId,
    /// `max_in_flight` or `max_observed` is zero.
    ZeroCapacity,
    /// `max_in_flight` or `max_observed` exceeds [`MAX_CAPACITY`].
    CapacityTooLarge,
    /// `default_timeout` is zero.
    ZeroTimeout,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::BadClientId => {
                "client id is empty or has characters a topic level cannot carry"
            }
            ConfigError::BadNodeId => "HLC node id is invalid",
            ConfigError::ZeroCapacity => "max_in_flight and max_observed must be at least 1",
            ConfigError::CapacityTooLarge => "max_in_flight or max_observed is too large",
            ConfigError::ZeroTimeout => "default_timeout must not be zero",
        })
    }
}

impl core::error::Error for ConfigError {}

/// What a lease, lock or leader machine needs from a state-store client: a way to start
/// requests and (un)observe keys. [`Client`] implements it; machine tests may use a recording
/// fake. Completions and notifications are routed back to the machines by the driver, matching
/// [`RequestId`]s and keys.
pub trait Requester {
    /// See [`Client::request`].
    fn request(
        &mut self,
        request: Request,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError>;
    /// See [`Client::observe`].
    fn observe(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError>;
    /// See [`Client::unobserve`].
    fn unobserve(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError>;
    /// The MQTT client id (the default lease holder value).
    fn client_id(&self) -> &str;
}

/// A [`Requester`] that passes every request on to `inner` and hands the id of each one that
/// leaves to `record`: to route its completion back to whoever sent it (the client host), or to
/// check that it ends exactly once (the simulator and the fuzz targets).
pub struct Recording<'a, F> {
    inner: &'a mut dyn Requester,
    record: F,
}

impl<'a, F: FnMut(RequestId)> Recording<'a, F> {
    /// Requests go to `inner`; `record` sees the id of each one sent.
    pub fn new(inner: &'a mut dyn Requester, record: F) -> Recording<'a, F> {
        Recording { inner, record }
    }

    fn note(&mut self, sent: Result<RequestId, RequestError>) -> Result<RequestId, RequestError> {
        if let Ok(id) = sent {
            (self.record)(id);
        }
        sent
    }
}

impl<F: FnMut(RequestId)> Requester for Recording<'_, F> {
    fn request(
        &mut self,
        request: Request,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let sent = self.inner.request(request, options, now);
        self.note(sent)
    }

    fn observe(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let sent = self.inner.observe(key, options, now);
        self.note(sent)
    }

    fn unobserve(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let sent = self.inner.unobserve(key, options, now);
        self.note(sent)
    }

    fn client_id(&self) -> &str {
        self.inner.client_id()
    }
}

/// Slack on a Message Expiry bound: the broker counts it on its own clock (the lease machines
/// use the same).
const EXPIRY_SLACK: Duration = Duration::from_millis(100);

/// Who waits for the outcome of a table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A caller's request: ends in exactly one [`Output::Completion`].
    User(RequestId),
    /// A KEYNOTIFY the client re-sends by itself after a reconnect: ends in
    /// [`Output::Reregistered`] (while the key is still observed).
    Reregistration,
    /// A KEYNOTIFY STOP the client re-sends by itself because an earlier one may not have
    /// reached the store: ends silently.
    Unregistration,
}

/// One request in the in-flight table.
#[derive(Debug)]
struct Entry {
    origin: Origin,
    /// Kept until the outcome: the message is built only when it leaves, and a
    /// re-registration's outcome names its key.
    request: Request,
    fencing_token: Option<Hlc>,
    persist: bool,
    /// The local wait ends here, whether or not the request was sent.
    deadline: Instant,
    /// When it was published; `None` while queued.
    sent_at: Option<Instant>,
}

/// Correlation value of a slot whose request has not been published (or of a free slot).
/// [`Client::fresh_correlation`] never hands it out.
const NO_CORRELATION: u128 = 0;

/// The state-store client machine.
#[derive(Debug)]
pub struct Client {
    client_id: String,
    response_topic: String,
    notification_filter: String,
    clock: HybridClock,
    rng: Rng,
    limits: Limits,
    max_in_flight: usize,
    max_observed: usize,
    default_timeout: Duration,
    /// The in-flight table, allocated once: `max_in_flight` user requests plus at most one
    /// re-registration per observed key, so it never grows.
    slots: Vec<Option<Entry>>,
    /// The correlation id of each slot's published request ([`NO_CORRELATION`] otherwise). A
    /// dense array beside `slots` so that matching a reply is one tight scan.
    correlations: Vec<u128>,
    /// Each occupied slot's deadline, beside `slots` for the same reason: the earliest one is
    /// asked for after every input.
    deadlines: Vec<Option<Instant>>,
    /// Free slot indices (capacity preallocated to the table size).
    free: Vec<usize>,
    /// Slots waiting to be published, oldest first.
    queue: VecDeque<usize>,
    user_in_flight: usize,
    reregistrations: usize,
    /// Retried KEYNOTIFY STOPs in the table.
    stops_in_flight: usize,
    /// Observed keys with their reference counts.
    observed: BTreeMap<Bytes, u32>,
    /// Observed keys whose last re-registration failed, with their retry back-off.
    retries: BTreeMap<Bytes, Retry>,
    /// Keys no longer observed whose KEYNOTIFY STOP may not have reached the store (it timed
    /// out, or its outcome is unknown) on this connection, with their retry back-off: the
    /// store would otherwise keep the registration, and its notifications, until the
    /// connection ends.
    unregistrations: BTreeMap<Bytes, Retry>,
    /// Keys no longer observed for which a KEYNOTIFY this client re-sent by itself was on its
    /// way when the key was unobserved, with when that copy can no longer be applied: it may
    /// land after the STOP, so another STOP follows then, or the store keeps the registration
    /// until the connection ends.
    stale_registrations: BTreeMap<Bytes, Instant>,
    /// The monotonic time of the latest input (when a failed re-registration is retried is
    /// counted from it).
    last_now: Instant,
    outputs: VecDeque<Output>,
    next_id: u64,
    connected: bool,
    /// The broker granted the response-topic subscription, in the current session or in one
    /// that survived.
    response_subscribed: bool,
    /// The broker refused the response-topic subscription on this connection.
    refused: bool,
    stats: ClientStats,
}

/// The first delay before a failed re-registration is sent again; it doubles with every
/// failure in a row, up to [`RETRY_MAX`].
const RETRY_BASE: Duration = Duration::from_millis(250);
/// The longest delay between two attempts to re-register a key.
const RETRY_MAX: Duration = Duration::from_secs(8);

/// The back-off of one key's failed re-registration.
#[derive(Debug, Clone, Copy)]
struct Retry {
    /// Failures in a row.
    failures: u32,
    /// When to send it again; `None` while an attempt is in flight.
    due: Option<Instant>,
}

/// The delay after `failures` failures in a row: `RETRY_BASE · 2^(failures−1)` capped at
/// `RETRY_MAX`, with its upper half jittered (`random` is uniform in `[0, 1)`) so that many
/// clients failing together do not retry together.
fn retry_delay(failures: u32, random: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let full = RETRY_BASE.saturating_mul(1 << doublings).min(RETRY_MAX);
    let half = full / 2;
    half + half.mul_f64(random.clamp(0.0, 1.0))
}

fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'+' | b'#' | b'/' | b'{' | b'}'))
}

/// Checks what the store would reject or what cannot mean anything, before anything is
/// recorded.
fn validate(request: &Request, options: &RequestOptions) -> Result<(), RequestError> {
    if request.key().is_empty() {
        return Err(RequestError::InvalidArgument("empty key"));
    }
    let kind = request.kind();
    if options.fencing_token.is_some()
        && !matches!(
            kind,
            RequestKind::Set | RequestKind::Del | RequestKind::Vdel
        )
    {
        return Err(RequestError::InvalidArgument(
            "a fencing token is only allowed on SET, DEL and VDEL",
        ));
    }
    if options.persist && kind != RequestKind::Set {
        return Err(RequestError::InvalidArgument(
            "persistence is only allowed on SET",
        ));
    }
    if let Request::Set { px_ms: Some(0), .. } = request {
        return Err(RequestError::InvalidArgument("PX must be at least 1 ms"));
    }
    if options.timeout.is_some_and(|t| t.is_zero()) {
        return Err(RequestError::InvalidArgument("zero timeout"));
    }
    Ok(())
}

fn map_reply_error(error: ReplyError) -> RequestError {
    match error {
        ReplyError::Service(e) => RequestError::Service(e),
        _ => RequestError::BadReply,
    }
}

impl Client {
    /// A disconnected client.
    ///
    /// The client id goes raw into the response topic, so it must be non-empty printable ASCII
    /// without spaces or any of `+ # / { }`, at most [`MAX_CLIENT_ID_LEN`] bytes. The HLC node
    /// id must be non-empty and valid for [`Hlc`]. Capacities must be in `1..=MAX_CAPACITY`
    /// and the default timeout non-zero.
    pub fn new(config: ClientConfig) -> Result<Client, ConfigError> {
        if !valid_client_id(&config.client_id) {
            return Err(ConfigError::BadClientId);
        }
        if config.max_in_flight == 0 || config.max_observed == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        if config.max_in_flight > MAX_CAPACITY || config.max_observed > MAX_CAPACITY {
            return Err(ConfigError::CapacityTooLarge);
        }
        if config.default_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if config.hlc_node.is_empty() {
            return Err(ConfigError::BadNodeId);
        }
        let clock = HybridClock::new(
            Bytes::from(config.hlc_node.into_bytes()),
            config.max_drift_ms,
        )
        .map_err(|_| ConfigError::BadNodeId)?;
        let capacity = config.max_in_flight + config.max_observed;
        let mut slots = Vec::with_capacity(capacity);
        slots.resize_with(capacity, || None);
        Ok(Client {
            response_topic: envelope::response_topic(&config.client_id),
            notification_filter: envelope::notification_filter(&config.client_id),
            client_id: config.client_id,
            clock,
            rng: Rng::new(config.seed),
            limits: Limits::default(),
            max_in_flight: config.max_in_flight,
            max_observed: config.max_observed,
            retries: BTreeMap::new(),
            unregistrations: BTreeMap::new(),
            stale_registrations: BTreeMap::new(),
            last_now: Instant::ZERO,
            default_timeout: config.default_timeout,
            slots,
            correlations: alloc::vec![NO_CORRELATION; capacity],
            deadlines: alloc::vec![None; capacity],
            // Popped from the back: lowest slots first.
            free: (0..capacity).rev().collect(),
            queue: VecDeque::with_capacity(capacity),
            user_in_flight: 0,
            reregistrations: 0,
            stops_in_flight: 0,
            observed: BTreeMap::new(),
            outputs: VecDeque::with_capacity(2 * capacity + 8),
            next_id: 0,
            connected: false,
            response_subscribed: false,
            refused: false,
            stats: ClientStats::default(),
        })
    }

    /// Starts a request. Sent at once when connected and subscribed, otherwise queued until
    /// then (its deadline keeps running). `Busy` when the in-flight table is full.
    ///
    /// Synchronous errors (nothing is recorded, no completion follows): `InvalidArgument` for
    /// an empty key, a fencing token on GET/KEYNOTIFY, persistence on anything but SET,
    /// `PX 0` or a zero timeout; `Busy` when [`Client::in_flight`] reached `max_in_flight`.
    /// Otherwise the returned id gets exactly one [`Output::Completion`]. The local wait is
    /// the exact timeout; the Message Expiry sent is the wait remaining at publish time,
    /// rounded up to whole seconds.
    pub fn request(
        &mut self,
        request: Request,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        validate(&request, &options)?;
        self.check_capacity()?;
        Ok(self.start(request, options, now))
    }

    /// Starts observing `key`: sends KEYNOTIFY and remembers the key so that it is registered
    /// again after every reconnect. The completion reports the KEYNOTIFY reply.
    ///
    /// Observations are reference counted: only the first observer sends KEYNOTIFY; later
    /// ones complete at once with `Ok(Response::KeyNotify)`. The key stays observed until the
    /// matching [`Client::unobserve`] whatever the KEYNOTIFY's outcome (it is registered again
    /// on the next reconnect). `Busy` when `max_observed` keys are observed or the table is
    /// full.
    pub fn observe(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let request = Request::KeyNotify { key };
        validate(&request, &options)?;
        let key = request.key().clone();
        if let Some(count) = self.observed.get_mut(&key) {
            *count = count.checked_add(1).ok_or(RequestError::Busy)?;
            return Ok(self.complete_at_once(RequestKind::KeyNotify, Ok(Response::KeyNotify)));
        }
        if self.observed.len() >= self.max_observed {
            return Err(RequestError::Busy);
        }
        self.check_capacity()?;
        // Observed again: a STOP still to be retried would now unregister it.
        self.unregistrations.remove(&key);
        self.stale_registrations.remove(&key);
        self.observed.insert(key, 1);
        Ok(self.start(request, options, now))
    }

    /// Stops observing `key` (forgets it at once, then sends KEYNOTIFY STOP).
    ///
    /// With other observers left, only the count drops and the call completes at once with
    /// `Ok(Response::KeyNotifyStop(true))`. Unobserving a key that is not observed still sends
    /// STOP: the caller may be cleaning up a registration it lost track of, and the store
    /// answers `:0` (`Ok(KeyNotifyStop(false))`) if there was none.
    pub fn unobserve(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let request = Request::KeyNotifyStop { key };
        validate(&request, &options)?;
        let key = request.key().clone();
        if let Some(count) = self.observed.get_mut(&key) {
            if *count > 1 {
                *count -= 1;
                return Ok(self.complete_at_once(
                    RequestKind::KeyNotifyStop,
                    Ok(Response::KeyNotifyStop(true)),
                ));
            }
        }
        self.check_capacity()?;
        // This STOP supersedes one still to be retried.
        self.unregistrations.remove(&key);
        if self.observed.remove(&key).is_some() {
            self.retries.remove(&key);
            self.note_stale_registrations(&key, now.mono);
            self.drop_reregistrations(&key);
        }
        Ok(self.start(request, options, now))
    }

    /// The connection is up. `session_present` tells whether the broker kept our session (and
    /// with it our subscriptions and in-flight QoS 1 messages).
    ///
    /// Without a session, every sent request still waiting completes with
    /// [`RequestError::Unknown`] and both subscriptions are requested again; queued requests
    /// leave once the response subscription is granted. With a session whose response
    /// subscription was granted earlier, queued requests leave at once and sent ones keep
    /// waiting (the MQTT layer redelivers them). Either way every observed key is registered
    /// again, because the store drops registrations with the connection.
    pub fn handle_connected(&mut self, session_present: bool, now: Now) {
        self.outputs
            .push_back(Output::Connected { session_present });
        self.connected = true;
        self.refused = false;
        if !session_present {
            self.response_subscribed = false;
            for slot in 0..self.slots.len() {
                let origin = match self.slots.get(slot) {
                    Some(Some(e)) if e.sent_at.is_some() => e.origin,
                    _ => continue,
                };
                match origin {
                    Origin::User(_) => self.finish(slot, Err(RequestError::Unknown), None),
                    // Superseded by the re-registration queued below; nobody waits for it.
                    Origin::Reregistration => {
                        self.remove(slot);
                    }
                    // The store dropped the registration with the old connection.
                    Origin::Unregistration => {
                        self.remove(slot);
                    }
                }
            }
        }
        if !self.response_subscribed {
            self.outputs
                .push_back(Output::Subscribe(self.response_topic.clone()));
            self.outputs
                .push_back(Output::Subscribe(self.notification_filter.clone()));
        }
        self.last_now = now.mono;
        // Every observed key is registered again right below: earlier back-offs are moot. The
        // store dropped every registration with the old connection: nothing left to stop.
        self.retries.clear();
        self.unregistrations.clear();
        if session_present {
            // The session publishes unacknowledged copies again, each with its full Message
            // Expiry from now.
            let again = now.mono
                + Duration::from_secs(u64::from(envelope::expiry_secs(self.default_timeout)))
                + EXPIRY_SLACK;
            for until in self.stale_registrations.values_mut() {
                *until = (*until).max(again);
            }
        } else {
            self.stale_registrations.clear();
        }
        self.reregister_observed(now);
        self.flush(now);
    }

    /// The broker acknowledged a subscription from [`Output::Subscribe`].
    ///
    /// Only the response topic matters for requests: once granted, queued requests leave;
    /// if refused, every queued request completes with [`RequestError::SubscriptionRefused`],
    /// as does every new request until the next [`Client::handle_connected`]. A refused
    /// notification subscription is tolerated (the AIO broker pushes notifications into the
    /// session anyway, docs/protocol.md §9.4).
    pub fn handle_subscribed(&mut self, filter: &str, granted: bool, now: Now) {
        if filter != self.response_topic {
            return;
        }
        if granted {
            self.response_subscribed = true;
            self.refused = false;
            self.flush(now);
        } else {
            self.response_subscribed = false;
            self.refused = true;
            while let Some(slot) = self.queue.pop_front() {
                self.finish(slot, Err(RequestError::SubscriptionRefused), None);
            }
        }
    }

    /// The connection dropped.
    ///
    /// Nothing completes here: sent requests may still be answered if the session survives
    /// (decided at the next [`Client::handle_connected`]); queued ones stay queued. Deadlines
    /// keep running.
    pub fn handle_disconnected(&mut self, now: Now) {
        self.last_now = now.mono;
        self.connected = false;
        self.outputs.push_back(Output::Disconnected);
    }

    /// A PUBLISH arrived (a response or a notification).
    ///
    /// Never fails: what cannot be understood is counted in [`ClientStats`] and dropped.
    pub fn handle_publish(&mut self, message: Message, now: Now) {
        self.last_now = now.mono;
        if message.topic.as_ref() == self.response_topic.as_bytes() {
            self.handle_response(&message, now);
        } else {
            self.handle_notification(&message, now);
        }
    }

    /// Time passed; expire what is due, and send again the failed re-registrations whose
    /// back-off is over.
    pub fn handle_timeout(&mut self, now: Now) {
        self.last_now = now.mono;
        for slot in 0..self.slots.len() {
            if !matches!(self.deadlines.get(slot), Some(Some(d)) if *d <= now.mono) {
                continue;
            }
            let due = match self.slots.get(slot) {
                Some(Some(e)) if e.deadline <= now.mono => Some(e.sent_at.is_some()),
                _ => None,
            };
            if let Some(sent) = due {
                self.finish(slot, Err(RequestError::Timeout { sent }), None);
            }
        }
        // After the timeouts: one of them may have made a retry due at once (a STOP that
        // ended while its key was observed again re-registers the key).
        self.retry_reregistrations(now);
        self.retry_unregistrations(now);
    }

    /// The next output, or `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest deadline (of a request, or of a re-registration's back-off), if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let requests = self.deadlines.iter().flatten().min().copied();
        let retries = if self.connected {
            self.retries
                .values()
                .chain(self.unregistrations.values())
                .filter_map(|r| r.due)
                .chain(self.stale_registrations.values().copied())
                .min()
        } else {
            None
        };
        match (requests, retries) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Number of observed keys whose re-registration failed and is waiting for its next
    /// attempt (or has one in flight).
    pub fn reregistrations_failing(&self) -> usize {
        self.retries.len()
    }

    /// Sends again every failed re-registration whose back-off is over (while connected; a
    /// reconnect registers every observed key anyway).
    fn retry_reregistrations(&mut self, now: Now) {
        if !self.connected {
            return;
        }
        let due: Vec<Bytes> = self
            .retries
            .iter()
            .filter(|(_, r)| r.due.is_some_and(|d| d <= now.mono))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if !self.observed.contains_key(&key) {
                self.retries.remove(&key);
                continue;
            }
            if let Some(r) = self.retries.get_mut(&key) {
                r.due = None;
            }
            self.drop_reregistrations(&key);
            let deadline = now.mono + self.default_timeout;
            self.enqueue(
                Origin::Reregistration,
                Request::KeyNotify { key },
                None,
                false,
                deadline,
                now,
            );
        }
    }

    /// Keys no longer observed whose KEYNOTIFY STOP is being retried (it may not have reached
    /// the store).
    pub fn unregistrations_pending(&self) -> usize {
        self.unregistrations.len()
    }

    /// Sends again every KEYNOTIFY STOP whose back-off is over (while connected; a reconnect
    /// drops every registration anyway).
    fn retry_unregistrations(&mut self, now: Now) {
        if !self.connected {
            return;
        }
        let stale: Vec<Bytes> = self
            .stale_registrations
            .iter()
            .filter(|(_, until)| **until <= now.mono)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.stale_registrations.remove(&key);
            if !self.observed.contains_key(&key) {
                // Sent right below, and sent again like any STOP that may not have arrived.
                let retry = self.unregistrations.entry(key).or_insert(Retry {
                    failures: 0,
                    due: None,
                });
                retry.due = Some(now.mono);
            }
        }
        let due: Vec<Bytes> = self
            .unregistrations
            .iter()
            .filter(|(_, r)| r.due.is_some_and(|d| d <= now.mono))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(r) = self.unregistrations.get_mut(&key) {
                r.due = None;
            }
            let deadline = now.mono + self.default_timeout;
            self.enqueue(
                Origin::Unregistration,
                Request::KeyNotifyStop { key },
                None,
                false,
                deadline,
                now,
            );
        }
    }

    /// A KEYNOTIFY STOP of `key` ended with `result`: if it may not have reached the store
    /// while the key is no longer observed, it is sent again after a back-off.
    fn stop_ended(&mut self, key: &Bytes, result: &Result<Response, RequestError>) {
        // Not sent, or no answer: the registration may still be there. Any answer of the
        // store (even one this client cannot read) means the STOP reached it.
        let may_be_lost = match result {
            Err(
                RequestError::Timeout { .. }
                | RequestError::Unknown
                | RequestError::Busy
                | RequestError::SubscriptionRefused,
            ) => true,
            Err(RequestError::Status { status, .. }) => matches!(status, 408 | 503),
            _ => false,
        };
        if !may_be_lost || !self.connected || self.observed.contains_key(key) {
            self.unregistrations.remove(key);
            return;
        }
        let retry = self.unregistrations.entry(key.clone()).or_insert(Retry {
            failures: 0,
            due: None,
        });
        retry.failures = retry.failures.saturating_add(1);
        let delay = retry_delay(retry.failures, self.rng.unit_f64());
        retry.due = Some(self.last_now + delay);
    }

    /// Number of caller requests in flight (queued or sent); `Busy` starts at
    /// `max_in_flight`. Re-registrations are counted apart, see
    /// [`Client::reregistrations_in_flight`].
    pub fn in_flight(&self) -> usize {
        self.user_in_flight
    }

    /// Number of KEYNOTIFY re-registrations (sent by the client itself after a reconnect)
    /// still waiting for their outcome.
    pub fn reregistrations_in_flight(&self) -> usize {
        self.reregistrations
    }

    /// Whether `key` is observed (see [`Client::observe`]).
    pub fn is_observed(&self, key: &[u8]) -> bool {
        self.observed.contains_key(key)
    }

    /// Diagnostics counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Requests can leave now.
    fn ready(&self) -> bool {
        self.connected && self.response_subscribed
    }

    fn check_capacity(&self) -> Result<(), RequestError> {
        if self.user_in_flight >= self.max_in_flight {
            Err(RequestError::Busy)
        } else {
            Ok(())
        }
    }

    fn fresh_id(&mut self) -> RequestId {
        self.next_id = self.next_id.wrapping_add(1);
        RequestId(self.next_id)
    }

    /// A correlation id unique among the published requests still waiting.
    fn fresh_correlation(&mut self) -> [u8; 16] {
        loop {
            let candidate = self.rng.bytes16();
            let value = u128::from_le_bytes(candidate);
            if value != NO_CORRELATION && !self.correlations.contains(&value) {
                return candidate;
            }
        }
    }

    /// A caller request that ends without touching the table (reported through
    /// [`Client::poll_output`] like any other).
    fn complete_at_once(
        &mut self,
        kind: RequestKind,
        result: Result<Response, RequestError>,
    ) -> RequestId {
        let id = self.fresh_id();
        self.outputs.push_back(Output::Completion(Completion {
            id,
            kind,
            sent_at: None,
            result,
            version: None,
        }));
        id
    }

    /// Starts a validated caller request for which there is room.
    fn start(&mut self, request: Request, options: RequestOptions, now: Now) -> RequestId {
        if self.connected && self.refused {
            return self.complete_at_once(request.kind(), Err(RequestError::SubscriptionRefused));
        }
        let id = self.fresh_id();
        let deadline = now.mono + options.timeout.unwrap_or(self.default_timeout);
        self.enqueue(
            Origin::User(id),
            request,
            options.fencing_token,
            options.persist,
            deadline,
            now,
        );
        id
    }

    /// Records a request and sends it if requests can leave now (after anything queued
    /// before it).
    fn enqueue(
        &mut self,
        origin: Origin,
        request: Request,
        fencing_token: Option<Hlc>,
        persist: bool,
        deadline: Instant,
        now: Now,
    ) {
        let cell = match self.free.pop() {
            Some(slot) => self.slots.get_mut(slot).map(|cell| (slot, cell)),
            None => None,
        };
        let Some((slot, cell)) = cell else {
            // The table is sized so this cannot happen; should it, the request still ends.
            self.emit(origin, &request, None, Err(RequestError::Busy), None);
            return;
        };
        *cell = Some(Entry {
            origin,
            request,
            fencing_token,
            persist,
            deadline,
            sent_at: None,
        });
        if let Some(d) = self.deadlines.get_mut(slot) {
            *d = Some(deadline);
        }
        match origin {
            Origin::User(_) => self.user_in_flight += 1,
            Origin::Reregistration => self.reregistrations += 1,
            Origin::Unregistration => self.stops_in_flight += 1,
        }
        self.queue.push_back(slot);
        self.flush(now);
    }

    /// Publishes queued requests, oldest first, while requests can leave.
    fn flush(&mut self, now: Now) {
        while self.ready() {
            let Some(slot) = self.queue.pop_front() else {
                break;
            };
            self.send(slot, now);
        }
    }

    /// Builds and publishes the request in `slot` (already off the queue).
    fn send(&mut self, slot: usize, now: Now) {
        let deadline = match self.slots.get(slot) {
            Some(Some(entry)) => entry.deadline,
            _ => return,
        };
        if deadline <= now.mono {
            self.finish(slot, Err(RequestError::Timeout { sent: false }), None);
            return;
        }
        let Ok(timestamp) = self.clock.tick(now.wall_ms) else {
            self.finish(slot, Err(RequestError::ClockDrift), None);
            return;
        };
        let correlation = self.fresh_correlation();
        let Some(Some(entry)) = self.slots.get_mut(slot) else {
            return;
        };
        let mut payload = Vec::with_capacity(payload_size_hint(&entry.request));
        entry.request.encode(&mut payload);
        let message = envelope::build_request(&RequestEnvelope {
            client_id: &self.client_id,
            response_topic: &self.response_topic,
            correlation,
            timestamp: &timestamp,
            fencing_token: entry.fencing_token.as_ref(),
            persist: entry.persist,
            timeout: deadline.saturating_duration_since(now.mono),
            payload: Bytes::from(payload),
        });
        entry.sent_at = Some(now.mono);
        if let Some(c) = self.correlations.get_mut(slot) {
            *c = u128::from_le_bytes(correlation);
        }
        self.outputs.push_back(Output::Publish(message));
    }

    /// Takes the entry out of the table, keeping the bookkeeping right; reports nothing.
    fn remove(&mut self, slot: usize) -> Option<Entry> {
        let entry = self.slots.get_mut(slot).and_then(Option::take)?;
        if let Some(c) = self.correlations.get_mut(slot) {
            *c = NO_CORRELATION;
        }
        if let Some(d) = self.deadlines.get_mut(slot) {
            *d = None;
        }
        self.free.push(slot);
        if entry.sent_at.is_none() {
            self.queue.retain(|&s| s != slot);
        }
        match entry.origin {
            Origin::User(_) => self.user_in_flight = self.user_in_flight.saturating_sub(1),
            Origin::Reregistration => {
                self.reregistrations = self.reregistrations.saturating_sub(1);
            }
            Origin::Unregistration => {
                self.stops_in_flight = self.stops_in_flight.saturating_sub(1);
            }
        }
        Some(entry)
    }

    /// Ends the request in `slot` with its one outcome.
    fn finish(
        &mut self,
        slot: usize,
        result: Result<Response, RequestError>,
        version: Option<Hlc>,
    ) {
        if let Some(entry) = self.remove(slot) {
            self.emit(entry.origin, &entry.request, entry.sent_at, result, version);
        }
    }

    fn emit(
        &mut self,
        origin: Origin,
        request: &Request,
        sent_at: Option<Instant>,
        result: Result<Response, RequestError>,
        version: Option<Hlc>,
    ) {
        match origin {
            Origin::User(id) => {
                if let Request::KeyNotifyStop { key } = request {
                    self.stop_ended(key, &result);
                }
                self.outputs.push_back(Output::Completion(Completion {
                    id,
                    kind: request.kind(),
                    sent_at,
                    result,
                    version,
                }))
            }
            Origin::Unregistration => {
                let key = request.key().clone();
                if self.observed.contains_key(&key) {
                    // Observed again while this STOP was on its way: it may have unregistered
                    // the new registration, so register once more.
                    // (At once, through the re-registration retries.)
                    self.unregistrations.remove(&key);
                    self.retries.insert(
                        key,
                        Retry {
                            failures: 0,
                            due: Some(self.last_now),
                        },
                    );
                } else {
                    self.stop_ended(&key, &result);
                }
            }
            Origin::Reregistration => {
                if self.observed.contains_key(request.key()) {
                    let key = request.key().clone();
                    if result.is_ok() {
                        self.retries.remove(&key);
                    } else {
                        // Never leave an observed key unregistered: try again after a
                        // back-off, for as long as it is observed on this connection.
                        let retry = self.retries.entry(key.clone()).or_insert(Retry {
                            failures: 0,
                            due: None,
                        });
                        retry.failures = retry.failures.saturating_add(1);
                        let delay = retry_delay(retry.failures, self.rng.unit_f64());
                        retry.due = Some(self.last_now + delay);
                    }
                    self.outputs.push_back(Output::Reregistered {
                        key,
                        result: result.map(|_| ()),
                    });
                }
            }
        }
    }

    /// Queues a KEYNOTIFY for every observed key, unless one is already queued for it.
    fn reregister_observed(&mut self, now: Now) {
        if self.observed.is_empty() {
            return;
        }
        let keys: Vec<Bytes> = self.observed.keys().cloned().collect();
        for key in keys {
            let queued = self.slots.iter().flatten().any(|e| {
                e.sent_at.is_none()
                    && matches!(&e.request, Request::KeyNotify { key: k } if *k == key)
            });
            if queued {
                continue;
            }
            // A re-registration sent on an earlier connection registered nothing that lasts
            // (the store dropped it with that connection): the new one supersedes it.
            self.drop_reregistrations(&key);
            let deadline = now.mono + self.default_timeout;
            self.enqueue(
                Origin::Reregistration,
                Request::KeyNotify { key },
                None,
                false,
                deadline,
                now,
            );
        }
    }

    /// Silently forgets the re-registrations of `key`, keeping at most one per observed key.
    /// `key` is no longer observed at `now`: a re-registration of it already published may be
    /// applied after the STOP that follows, until its Message Expiry has passed.
    fn note_stale_registrations(&mut self, key: &Bytes, now: Instant) {
        let latest = self
            .slots
            .iter()
            .flatten()
            .filter(|e| matches!(e.origin, Origin::Reregistration) && e.request.key() == key)
            .filter_map(|e| {
                // Like the lease machines' bound: it reached the broker by its deadline, and
                // the broker drops it once its Message Expiry has passed.
                let sent = e.sent_at?;
                let expiry = envelope::expiry_secs(e.deadline.saturating_duration_since(sent));
                Some(e.deadline + Duration::from_secs(u64::from(expiry)) + EXPIRY_SLACK)
            })
            .max();
        if let Some(until) = latest.filter(|until| *until > now) {
            let entry = self.stale_registrations.entry(key.clone()).or_insert(until);
            *entry = (*entry).max(until);
        }
    }

    fn drop_reregistrations(&mut self, key: &Bytes) {
        // Every KEYNOTIFY STOP gets here; without a re-registration in flight (the usual case)
        // there is nothing to find in the table.
        if self.reregistrations == 0 {
            return;
        }
        for slot in 0..self.slots.len() {
            let matches = matches!(
                self.slots.get(slot),
                Some(Some(Entry { origin: Origin::Reregistration, request, .. })) if request.key() == key
            );
            if matches {
                self.remove(slot);
            }
        }
    }

    /// The slot of the published request with this correlation id, and its verb.
    fn find_sent(&self, correlation: [u8; 16]) -> Option<(usize, RequestKind)> {
        let correlation = u128::from_le_bytes(correlation);
        if correlation == NO_CORRELATION {
            return None;
        }
        let slot = self.correlations.iter().position(|&c| c == correlation)?;
        match self.slots.get(slot) {
            Some(Some(entry)) => Some((slot, entry.request.kind())),
            _ => None,
        }
    }

    fn handle_response(&mut self, message: &Message, now: Now) {
        let response = match envelope::parse_response(message) {
            Ok(response) => response,
            Err(error) => {
                self.stats.malformed_messages = self.stats.malformed_messages.saturating_add(1);
                // It is the answer to a request of ours, only unusable: say so now rather
                // than at the deadline.
                let found = envelope::response_correlation(message).and_then(|c| self.find_sent(c));
                if let Some((slot, _)) = found {
                    let reason = match error {
                        envelope::EnvelopeError::BadTimestamp(_) => RequestError::ClockDrift,
                        _ => RequestError::BadReply,
                    };
                    self.finish(slot, Err(reason), None);
                }
                return;
            }
        };
        let Some((slot, kind)) = self.find_sent(response.correlation) else {
            // Late (after a timeout or an `Unknown`), duplicate, or never ours.
            self.stats.unmatched_replies = self.stats.unmatched_replies.saturating_add(1);
            return;
        };
        let version = response.timestamp;
        let result = if response.status != 200 {
            Err(RequestError::Status {
                status: response.status,
                message: response.status_message,
            })
        } else if version
            .as_ref()
            .is_some_and(|ts| self.clock.update(ts, now.wall_ms).is_err())
        {
            Err(RequestError::ClockDrift)
        } else {
            command::decode_reply(kind, &response.payload, &self.limits).map_err(map_reply_error)
        };
        self.finish(slot, result, version);
    }

    fn handle_notification(&mut self, message: &Message, now: Now) {
        let Ok(notification) = envelope::parse_notification(message, &self.client_id) else {
            self.stats.malformed_messages = self.stats.malformed_messages.saturating_add(1);
            return;
        };
        if self
            .clock
            .update(&notification.version, now.wall_ms)
            .is_err()
        {
            self.stats.malformed_messages = self.stats.malformed_messages.saturating_add(1);
            return;
        }
        if !self.observed.contains_key(&notification.key) {
            self.stats.unobserved_notifications =
                self.stats.unobserved_notifications.saturating_add(1);
            return;
        }
        let value = match notification.payload {
            command::NotifyPayload::Set { value } => Some(value),
            command::NotifyPayload::Delete => None,
        };
        self.outputs.push_back(Output::Notification(Notification {
            key: notification.key,
            value,
            version: notification.version,
        }));
    }
}

/// Room for the RESP3 array of a request: its variable parts plus framing.
fn payload_size_hint(request: &Request) -> usize {
    let variable = match request {
        Request::Set { key, value, .. } | Request::Vdel { key, value } => key.len() + value.len(),
        Request::Get { key }
        | Request::Del { key }
        | Request::KeyNotify { key }
        | Request::KeyNotifyStop { key } => key.len(),
    };
    variable + 64
}

impl Requester for Client {
    fn request(
        &mut self,
        request: Request,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        Client::request(self, request, options, now)
    }

    fn observe(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        Client::observe(self, key, options, now)
    }

    fn unobserve(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        Client::unobserve(self, key, options, now)
    }

    fn client_id(&self) -> &str {
        Client::client_id(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{NotifyPayload, SetCondition, SetOutcome};
    use crate::envelope::prop;
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use alloc::vec;
    use proptest::prelude::*;

    const CLIENT: &str = "client-1";
    const WALL: u64 = 1_700_000_000_000;

    /// Every kind of request failure, with the RPC statuses the store uses.
    pub(crate) fn every_request_error() -> alloc::vec::Vec<RequestError> {
        let mut all = vec![
            RequestError::Service(crate::command::ServiceError::FencingTokenLowerVersion),
            RequestError::Timeout { sent: true },
            RequestError::Timeout { sent: false },
            RequestError::Unknown,
            RequestError::ClockDrift,
            RequestError::BadReply,
            RequestError::Busy,
            RequestError::InvalidArgument("x"),
            RequestError::SubscriptionRefused,
        ];
        for status in [200, 400, 404, 408, 415, 500, 503, 505] {
            all.push(RequestError::Status {
                status,
                message: None,
            });
        }
        all
    }

    #[test]
    fn request_errors_are_transient_as_the_lease_machine_says() {
        for e in every_request_error() {
            assert_eq!(
                e.is_transient(),
                crate::lease::LeaseError::Request(e.clone()).is_transient(),
                "{e:?}"
            );
        }
    }

    fn config() -> ClientConfig {
        ClientConfig {
            client_id: CLIENT.to_string(),
            seed: 7,
            max_in_flight: 4,
            max_observed: 3,
            default_timeout: Duration::from_secs(5),
            max_drift_ms: 60_000,
            hlc_node: "node-1".to_string(),
        }
    }

    fn t0() -> Now {
        Now::new(Instant::from_millis(1_000), WALL)
    }

    fn drain(c: &mut Client) -> Vec<Output> {
        core::iter::from_fn(|| c.poll_output()).collect()
    }

    fn publishes(outputs: &[Output]) -> Vec<Message> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Publish(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn completions(outputs: &[Output]) -> Vec<Completion> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Completion(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    fn only_publish(outputs: &[Output]) -> Message {
        let p = publishes(outputs);
        assert_eq!(p.len(), 1, "{outputs:?}");
        p[0].clone()
    }

    fn only_completion(outputs: &[Output]) -> Completion {
        assert_eq!(outputs.len(), 1, "{outputs:?}");
        completions(outputs).remove(0)
    }

    /// A client that is connected with its response subscription granted.
    fn ready_client(cfg: ClientConfig) -> Client {
        let mut c = Client::new(cfg).unwrap();
        c.handle_connected(false, t0());
        let out = drain(&mut c);
        assert_eq!(
            out,
            vec![
                Output::Connected {
                    session_present: false
                },
                Output::Subscribe(envelope::response_topic(CLIENT)),
                Output::Subscribe(envelope::notification_filter(CLIENT)),
            ]
        );
        c.handle_subscribed(&envelope::response_topic(CLIENT), true, t0());
        c.handle_subscribed(&envelope::notification_filter(CLIENT), true, t0());
        assert!(drain(&mut c).is_empty());
        c
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn get(key: &str) -> Request {
        Request::Get { key: b(key) }
    }

    fn set_nx(key: &str, value: &str, px: u64) -> Request {
        Request::Set {
            key: b(key),
            value: b(value),
            condition: SetCondition::NotExists,
            px_ms: Some(px),
        }
    }

    fn store_version(millis: u64, counter: u64) -> Hlc {
        Hlc::new(millis, counter, "StateStore").unwrap()
    }

    fn reply(req: &Message, payload: &[u8], version: Option<&Hlc>) -> Message {
        envelope::build_response(
            req.response_topic.clone().unwrap(),
            req.correlation_data.clone().unwrap(),
            Some(5),
            Bytes::copy_from_slice(payload),
            version,
        )
    }

    fn with_status(mut m: Message, status: &str, text: &str) -> Message {
        m.user_properties
            .retain(|(k, _)| k.as_ref() != prop::STATUS.as_bytes());
        m.user_properties.push((b(prop::STATUS), b(status)));
        m.user_properties.push((b(prop::STATUS_MESSAGE), b(text)));
        m
    }

    fn encoded(r: &Request) -> Bytes {
        let mut v = Vec::new();
        r.encode(&mut v);
        Bytes::from(v)
    }

    #[test]
    fn config_is_validated() {
        let ok = Client::new(config()).unwrap();
        assert_eq!(ok.client_id(), CLIENT);
        for bad in ["", "a b", "a+b", "a#b", "a/b", "a{b", "a}b", "é", "a\tb"] {
            let mut cfg = config();
            cfg.client_id = bad.to_string();
            assert_eq!(Client::new(cfg).unwrap_err(), ConfigError::BadClientId);
        }
        let mut cfg = config();
        cfg.client_id = "x".repeat(MAX_CLIENT_ID_LEN + 1);
        assert_eq!(Client::new(cfg).unwrap_err(), ConfigError::BadClientId);
        for bad in ["", "a:b"] {
            let mut cfg = config();
            cfg.hlc_node = bad.to_string();
            assert_eq!(Client::new(cfg).unwrap_err(), ConfigError::BadNodeId);
        }
        let mut cfg = config();
        cfg.max_in_flight = 0;
        assert_eq!(Client::new(cfg).unwrap_err(), ConfigError::ZeroCapacity);
        let mut cfg = config();
        cfg.max_observed = 0;
        assert_eq!(Client::new(cfg).unwrap_err(), ConfigError::ZeroCapacity);
        let mut cfg = config();
        cfg.max_in_flight = MAX_CAPACITY + 1;
        assert_eq!(Client::new(cfg).unwrap_err(), ConfigError::CapacityTooLarge);
        let mut cfg = config();
        cfg.default_timeout = Duration::ZERO;
        assert_eq!(Client::new(cfg).unwrap_err(), ConfigError::ZeroTimeout);
    }

    #[test]
    fn invalid_requests_are_refused_synchronously() {
        let mut c = ready_client(config());
        let now = t0();
        let token = Some(store_version(WALL, 0));
        let cases: Vec<(Request, RequestOptions)> = vec![
            (get(""), RequestOptions::default()),
            (
                get("k"),
                RequestOptions {
                    fencing_token: token.clone(),
                    ..Default::default()
                },
            ),
            (
                Request::KeyNotify { key: b("k") },
                RequestOptions {
                    fencing_token: token.clone(),
                    ..Default::default()
                },
            ),
            (
                Request::Del { key: b("k") },
                RequestOptions {
                    persist: true,
                    ..Default::default()
                },
            ),
            (set_nx("k", "v", 0), RequestOptions::default()),
            (
                get("k"),
                RequestOptions {
                    timeout: Some(Duration::ZERO),
                    ..Default::default()
                },
            ),
        ];
        for (r, o) in cases {
            assert!(matches!(
                c.request(r, o, now),
                Err(RequestError::InvalidArgument(_))
            ));
        }
        assert!(matches!(
            c.observe(Bytes::new(), RequestOptions::default(), now),
            Err(RequestError::InvalidArgument(_))
        ));
        assert!(matches!(
            c.unobserve(
                b("k"),
                RequestOptions {
                    fencing_token: token,
                    ..Default::default()
                },
                now
            ),
            Err(RequestError::InvalidArgument(_))
        ));
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.in_flight(), 0);
        assert!(!c.is_observed(b"k"));
    }

    #[test]
    fn request_publish_reply_completion() {
        let mut c = ready_client(config());
        let now = t0();
        let token = store_version(WALL - 5, 3);
        let request = Request::Set {
            key: b("lock"),
            value: b("holder"),
            condition: SetCondition::NotExistsOrEqual,
            px_ms: Some(5000),
        };
        let id = c
            .request(
                request.clone(),
                RequestOptions {
                    timeout: Some(Duration::from_millis(2500)),
                    fencing_token: Some(token.clone()),
                    persist: true,
                },
                now,
            )
            .unwrap();
        assert_eq!(c.in_flight(), 1);
        assert_eq!(
            c.poll_timeout(),
            Some(now.mono + Duration::from_millis(2500))
        );
        let msg = only_publish(&drain(&mut c));
        assert_eq!(msg.topic, b(envelope::REQUEST_TOPIC));
        assert_eq!(
            msg.response_topic,
            Some(b(&envelope::response_topic(CLIENT)))
        );
        assert_eq!(msg.correlation_data.as_ref().map(Bytes::len), Some(16));
        assert_eq!(msg.message_expiry_secs, Some(3));
        assert_eq!(msg.user_property(prop::SOURCE_ID), Some(&b(CLIENT)));
        assert_eq!(
            msg.user_property(prop::FENCING_TOKEN),
            Some(&token.to_bytes())
        );
        assert_eq!(msg.user_property(prop::PERSISTENCE), Some(&b("true")));
        let ts = Hlc::parse(msg.user_property(prop::TIMESTAMP).unwrap()).unwrap();
        assert_eq!((ts.millis, ts.counter, ts.node()), (WALL, 0, "node-1"));
        assert_eq!(
            msg.payload,
            Bytes::from_static(
                b"*6\r\n$3\r\nSET\r\n$4\r\nlock\r\n$6\r\nholder\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$4\r\n5000\r\n"
            )
        );
        assert_eq!(msg.payload, encoded(&request));

        // The reply's version is ahead of our wall clock (within the drift limit).
        let version = store_version(WALL + 40, 2);
        let later = now.advanced(Duration::from_millis(10));
        c.handle_publish(reply(&msg, b"+OK\r\n", Some(&version)), later);
        let done = only_completion(&drain(&mut c));
        assert_eq!(
            done,
            Completion {
                id,
                kind: RequestKind::Set,
                sent_at: Some(now.mono),
                result: Ok(Response::Set(SetOutcome::Applied)),
                version: Some(version.clone()),
            }
        );
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.stats(), ClientStats::default());

        // The reply's version was folded into the application HLC.
        c.request(get("lock"), RequestOptions::default(), later)
            .unwrap();
        let msg2 = only_publish(&drain(&mut c));
        let ts2 = Hlc::parse(msg2.user_property(prop::TIMESTAMP).unwrap()).unwrap();
        assert!(ts2 > version, "{ts2} <= {version}");
        assert_eq!(msg2.user_property(prop::FENCING_TOKEN), None);
        assert_eq!(msg2.user_property(prop::PERSISTENCE), None);
        assert_eq!(msg2.message_expiry_secs, Some(5));
        assert_ne!(msg2.correlation_data, msg.correlation_data);
    }

    #[test]
    fn reply_forms_map_to_results() {
        let cases: Vec<(Request, &[u8], Result<Response, RequestError>)> = vec![
            (
                get("k"),
                b"$3\r\nabc\r\n",
                Ok(Response::Get(Some(b("abc")))),
            ),
            (get("k"), b"$-1\r\n", Ok(Response::Get(None))),
            (
                set_nx("k", "v", 10),
                b":-1\r\n",
                Ok(Response::Set(SetOutcome::NotApplied)),
            ),
            (
                set_nx("k", "v", 10),
                b"-ERR syntax error\r\n",
                Err(RequestError::Service(ServiceError::SyntaxError)),
            ),
            (get("k"), b"+OK\r\n", Err(RequestError::BadReply)),
            (get("k"), b"\x00garbage", Err(RequestError::BadReply)),
            (get("k"), b"", Err(RequestError::BadReply)),
        ];
        for (request, payload, expected) in cases {
            let mut c = ready_client(config());
            let id = c.request(request, RequestOptions::default(), t0()).unwrap();
            let msg = only_publish(&drain(&mut c));
            c.handle_publish(reply(&msg, payload, None), t0());
            let done = only_completion(&drain(&mut c));
            assert_eq!((done.id, done.result, done.version), (id, expected, None));
            assert_eq!(c.in_flight(), 0);
        }
    }

    #[test]
    fn status_400_is_a_typed_error() {
        let mut c = ready_client(config());
        let id = c
            .request(get("k"), RequestOptions::default(), t0())
            .unwrap();
        let msg = only_publish(&drain(&mut c));
        let r = with_status(reply(&msg, b"", None), "400", "bad header");
        c.handle_publish(r, t0());
        let done = only_completion(&drain(&mut c));
        assert_eq!(done.id, id);
        assert_eq!(
            done.result,
            Err(RequestError::Status {
                status: 400,
                message: Some(b("bad header"))
            })
        );
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn unusable_reply_fails_its_request_at_once() {
        let mut c = ready_client(config());
        let a = c
            .request(get("a"), RequestOptions::default(), t0())
            .unwrap();
        let b_ = c
            .request(get("b"), RequestOptions::default(), t0())
            .unwrap();
        let sent = publishes(&drain(&mut c));
        let mut no_status = reply(&sent[0], b"$-1\r\n", None);
        no_status
            .user_properties
            .retain(|(k, _)| k.as_ref() != prop::STATUS.as_bytes());
        c.handle_publish(no_status, t0());
        let mut bad_ts = reply(&sent[1], b"$-1\r\n", None);
        bad_ts
            .user_properties
            .push((b(prop::TIMESTAMP), b("not-an-hlc")));
        c.handle_publish(bad_ts, t0());
        let done = completions(&drain(&mut c));
        assert_eq!(
            done.iter()
                .map(|d| (d.id, d.result.clone()))
                .collect::<Vec<_>>(),
            vec![
                (a, Err(RequestError::BadReply)),
                (b_, Err(RequestError::ClockDrift))
            ]
        );
        assert_eq!(c.stats().malformed_messages, 2);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn clock_drift_in_a_reply_fails_the_request() {
        let mut c = ready_client(config());
        let id = c
            .request(get("k"), RequestOptions::default(), t0())
            .unwrap();
        let msg = only_publish(&drain(&mut c));
        let far = store_version(WALL + 120_000, 0);
        c.handle_publish(reply(&msg, b"$-1\r\n", Some(&far)), t0());
        let done = only_completion(&drain(&mut c));
        assert_eq!((done.id, done.result), (id, Err(RequestError::ClockDrift)));
        assert_eq!(c.in_flight(), 0);
        // The clock was not moved: the next request is stamped near our wall clock.
        c.request(get("k"), RequestOptions::default(), t0())
            .unwrap();
        let msg2 = only_publish(&drain(&mut c));
        let ts = Hlc::parse(msg2.user_property(prop::TIMESTAMP).unwrap()).unwrap();
        assert_eq!(ts.millis, WALL);
    }

    #[test]
    fn tick_failure_completes_with_clock_drift() {
        let mut c = ready_client(config());
        c.request(get("k"), RequestOptions::default(), t0())
            .unwrap();
        drain(&mut c);
        // The wall clock jumps back by more than the drift limit.
        let back = Now::new(t0().mono, WALL - 61_000);
        let id = c
            .request(get("k"), RequestOptions::default(), back)
            .unwrap();
        let done = only_completion(&drain(&mut c));
        assert_eq!(
            (done.id, done.result, done.sent_at),
            (id, Err(RequestError::ClockDrift), None)
        );
        assert_eq!(c.in_flight(), 1);
    }

    #[test]
    fn late_and_duplicate_replies_are_counted_and_ignored() {
        let mut c = ready_client(config());
        let now = t0();
        let id = c
            .request(
                get("k"),
                RequestOptions {
                    timeout: Some(Duration::from_millis(1500)),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        let msg = only_publish(&drain(&mut c));
        c.handle_timeout(now.advanced(Duration::from_millis(1499)));
        assert!(drain(&mut c).is_empty());
        let late = now.advanced(Duration::from_millis(1500));
        c.handle_timeout(late);
        let done = only_completion(&drain(&mut c));
        assert_eq!(
            (done.id, done.result, done.sent_at),
            (
                id,
                Err(RequestError::Timeout { sent: true }),
                Some(now.mono)
            )
        );
        assert_eq!(c.poll_timeout(), None);
        c.handle_publish(reply(&msg, b"$-1\r\n", None), late);
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.stats().unmatched_replies, 1);

        // Duplicate: the first copy completes, the second is counted.
        let id2 = c
            .request(get("k"), RequestOptions::default(), late)
            .unwrap();
        let msg2 = only_publish(&drain(&mut c));
        let r = reply(&msg2, b"$1\r\nv\r\n", None);
        c.handle_publish(r.clone(), late);
        c.handle_publish(r, late);
        let done2 = only_completion(&drain(&mut c));
        assert_eq!(
            (done2.id, done2.result),
            (id2, Ok(Response::Get(Some(b("v")))))
        );
        assert_eq!(c.stats().unmatched_replies, 2);

        // A reply whose correlation id was never used.
        let mut stranger = reply(&msg2, b"+OK\r\n", None);
        stranger.correlation_data = Some(Bytes::from_static(&[9u8; 16]));
        c.handle_publish(stranger, late);
        assert_eq!(c.stats().unmatched_replies, 3);
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn reconnect_without_session_makes_sent_requests_unknown() {
        let mut c = ready_client(config());
        let now = t0();
        let a = c.request(get("a"), RequestOptions::default(), now).unwrap();
        let b_ = c.request(get("b"), RequestOptions::default(), now).unwrap();
        let sent = publishes(&drain(&mut c));
        assert_eq!(sent.len(), 2);
        let later = now.advanced(Duration::from_millis(100));
        c.handle_disconnected(later);
        assert_eq!(drain(&mut c), vec![Output::Disconnected]);
        assert_eq!(c.in_flight(), 2);
        // Queued while down.
        let q = c
            .request(get("q"), RequestOptions::default(), later)
            .unwrap();
        assert!(drain(&mut c).is_empty());
        c.handle_connected(false, later);
        let out = drain(&mut c);
        assert_eq!(
            out[0],
            Output::Connected {
                session_present: false
            }
        );
        let done = completions(&out);
        assert_eq!(done.len(), 2);
        for (d, id) in done.iter().zip([a, b_]) {
            assert_eq!(d.id, id);
            assert_eq!(d.result, Err(RequestError::Unknown));
            assert_eq!(d.sent_at, Some(now.mono));
        }
        assert!(out.contains(&Output::Subscribe(envelope::response_topic(CLIENT))));
        assert!(publishes(&out).is_empty());
        assert_eq!(c.in_flight(), 1);
        // Late replies to the old requests are ignored.
        c.handle_publish(reply(&sent[0], b"$-1\r\n", None), later);
        assert_eq!(c.stats().unmatched_replies, 1);
        c.handle_subscribed(&envelope::response_topic(CLIENT), true, later);
        let msg = only_publish(&drain(&mut c));
        assert_eq!(msg.payload, encoded(&get("q")));
        c.handle_publish(reply(&msg, b"$-1\r\n", None), later);
        let d = only_completion(&drain(&mut c));
        assert_eq!(
            (d.id, d.result, d.sent_at),
            (q, Ok(Response::Get(None)), Some(later.mono))
        );
    }

    #[test]
    fn stale_reply_does_not_match_a_reused_slot() {
        let mut c = ready_client(config());
        let now = t0();
        c.request(get("a"), RequestOptions::default(), now).unwrap();
        let first = only_publish(&drain(&mut c));
        let r = reply(&first, b"$-1\r\n", None);
        c.handle_publish(r.clone(), now);
        drain(&mut c);
        c.handle_disconnected(now);
        // Takes the slot the first request used; not sent.
        let queued = c.request(get("b"), RequestOptions::default(), now).unwrap();
        c.handle_publish(r, now);
        assert_eq!(drain(&mut c), vec![Output::Disconnected]);
        assert_eq!(c.stats().unmatched_replies, 1);
        assert_eq!(c.in_flight(), 1);
        c.handle_timeout(now.advanced(Duration::from_secs(5)));
        let d = only_completion(&drain(&mut c));
        assert_eq!(
            (d.id, d.result),
            (queued, Err(RequestError::Timeout { sent: false }))
        );
    }

    #[test]
    fn reconnect_with_session_keeps_waiting() {
        let mut c = ready_client(config());
        let now = t0();
        let a = c.request(get("a"), RequestOptions::default(), now).unwrap();
        let msg = only_publish(&drain(&mut c));
        c.handle_disconnected(now);
        let q = c.request(get("q"), RequestOptions::default(), now).unwrap();
        c.handle_connected(true, now);
        let out = drain(&mut c);
        assert_eq!(
            out[1],
            Output::Connected {
                session_present: true
            }
        );
        // No re-subscribe, no completion, the queued request leaves at once.
        assert!(!out.iter().any(|o| matches!(o, Output::Subscribe(_))));
        assert!(completions(&out).is_empty());
        let queued = only_publish(&out);
        assert_eq!(queued.payload, encoded(&get("q")));
        assert_eq!(c.in_flight(), 2);
        c.handle_publish(reply(&msg, b"$1\r\nx\r\n", None), now);
        c.handle_publish(reply(&queued, b"$-1\r\n", None), now);
        let done = completions(&drain(&mut c));
        assert_eq!(done.len(), 2);
        assert_eq!(
            (done[0].id, &done[0].result),
            (a, &Ok(Response::Get(Some(b("x")))))
        );
        assert_eq!((done[1].id, &done[1].result), (q, &Ok(Response::Get(None))));
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn session_present_before_any_suback_subscribes_again() {
        let mut c = Client::new(config()).unwrap();
        c.handle_connected(true, t0());
        let out = drain(&mut c);
        assert!(out.contains(&Output::Subscribe(envelope::response_topic(CLIENT))));
    }

    #[test]
    fn queued_request_leaves_after_the_response_subscription() {
        let mut c = Client::new(config()).unwrap();
        let now = t0();
        let id = c.request(get("k"), RequestOptions::default(), now).unwrap();
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), Some(now.mono + Duration::from_secs(5)));
        let later = now.advanced(Duration::from_millis(1200));
        c.handle_connected(false, later);
        assert!(publishes(&drain(&mut c)).is_empty());
        c.handle_subscribed(&envelope::notification_filter(CLIENT), true, later);
        assert!(drain(&mut c).is_empty());
        c.handle_subscribed("some/other/filter", true, later);
        assert!(drain(&mut c).is_empty());
        c.handle_subscribed(&envelope::response_topic(CLIENT), true, later);
        let msg = only_publish(&drain(&mut c));
        // Expiry is the wait remaining: 3.8 s rounds up to 4.
        assert_eq!(msg.message_expiry_secs, Some(4));
        c.handle_publish(reply(&msg, b"$-1\r\n", None), later);
        let d = only_completion(&drain(&mut c));
        assert_eq!((d.id, d.sent_at), (id, Some(later.mono)));
    }

    #[test]
    fn queued_request_times_out_unsent() {
        let mut c = Client::new(config()).unwrap();
        let now = t0();
        let id = c.request(get("k"), RequestOptions::default(), now).unwrap();
        let late = now.advanced(Duration::from_secs(5));
        // Connecting after the deadline without a timer tick: it does not leave.
        c.handle_connected(false, late);
        c.handle_subscribed(&envelope::response_topic(CLIENT), true, late);
        let out = drain(&mut c);
        assert!(publishes(&out).is_empty());
        let d = completions(&out).remove(0);
        assert_eq!(
            (d.id, d.result),
            (id, Err(RequestError::Timeout { sent: false }))
        );
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn refused_subscription_fails_queued_and_new_requests() {
        let mut c = Client::new(config()).unwrap();
        let now = t0();
        let a = c.request(get("a"), RequestOptions::default(), now).unwrap();
        c.handle_connected(false, now);
        drain(&mut c);
        c.handle_subscribed(&envelope::response_topic(CLIENT), false, now);
        let d = only_completion(&drain(&mut c));
        assert_eq!(
            (d.id, d.result),
            (a, Err(RequestError::SubscriptionRefused))
        );
        let b_ = c.request(get("b"), RequestOptions::default(), now).unwrap();
        let d = only_completion(&drain(&mut c));
        assert_eq!(
            (d.id, d.result),
            (b_, Err(RequestError::SubscriptionRefused))
        );
        assert_eq!(c.in_flight(), 0);
        // A new connection tries again.
        c.handle_disconnected(now);
        c.handle_connected(false, now);
        c.handle_subscribed(&envelope::response_topic(CLIENT), true, now);
        c.request(get("c"), RequestOptions::default(), now).unwrap();
        assert_eq!(publishes(&drain(&mut c)).len(), 1);
    }

    #[test]
    fn full_table_is_busy() {
        let mut cfg = config();
        cfg.max_in_flight = 2;
        let mut c = ready_client(cfg);
        let now = t0();
        c.request(get("a"), RequestOptions::default(), now).unwrap();
        c.request(get("b"), RequestOptions::default(), now).unwrap();
        let sent = publishes(&drain(&mut c));
        assert_eq!(
            c.request(get("c"), RequestOptions::default(), now),
            Err(RequestError::Busy)
        );
        assert_eq!(
            c.observe(b("c"), RequestOptions::default(), now),
            Err(RequestError::Busy)
        );
        assert!(!c.is_observed(b"c"));
        assert_eq!(
            c.unobserve(b("c"), RequestOptions::default(), now),
            Err(RequestError::Busy)
        );
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.in_flight(), 2);
        c.handle_publish(reply(&sent[0], b"$-1\r\n", None), now);
        drain(&mut c);
        c.request(get("c"), RequestOptions::default(), now).unwrap();
        assert_eq!(c.in_flight(), 2);
    }

    #[test]
    fn observe_is_reference_counted() {
        let mut c = ready_client(config());
        let now = t0();
        let first = c.observe(b("k"), RequestOptions::default(), now).unwrap();
        let msg = only_publish(&drain(&mut c));
        assert_eq!(msg.payload, encoded(&Request::KeyNotify { key: b("k") }));
        let second = c.observe(b("k"), RequestOptions::default(), now).unwrap();
        let d = only_completion(&drain(&mut c));
        assert_eq!(
            (d.id, d.kind, d.result, d.sent_at),
            (
                second,
                RequestKind::KeyNotify,
                Ok(Response::KeyNotify),
                None
            )
        );
        c.handle_publish(reply(&msg, b"+OK\r\n", None), now);
        let d = only_completion(&drain(&mut c));
        assert_eq!((d.id, d.result), (first, Ok(Response::KeyNotify)));

        let u1 = c.unobserve(b("k"), RequestOptions::default(), now).unwrap();
        let d = only_completion(&drain(&mut c));
        assert_eq!((d.id, d.result), (u1, Ok(Response::KeyNotifyStop(true))));
        assert!(c.is_observed(b"k"));
        let u2 = c.unobserve(b("k"), RequestOptions::default(), now).unwrap();
        assert!(!c.is_observed(b"k"));
        let stop = only_publish(&drain(&mut c));
        assert_eq!(
            stop.payload,
            encoded(&Request::KeyNotifyStop { key: b("k") })
        );
        c.handle_publish(reply(&stop, b"+OK\r\n", None), now);
        let d = only_completion(&drain(&mut c));
        assert_eq!(
            (d.id, d.kind, d.result),
            (
                u2,
                RequestKind::KeyNotifyStop,
                Ok(Response::KeyNotifyStop(true))
            )
        );

        // Unobserving a key that is not observed still sends STOP.
        let u3 = c
            .unobserve(b("never"), RequestOptions::default(), now)
            .unwrap();
        let stop = only_publish(&drain(&mut c));
        c.handle_publish(reply(&stop, b":0\r\n", None), now);
        let d = only_completion(&drain(&mut c));
        assert_eq!((d.id, d.result), (u3, Ok(Response::KeyNotifyStop(false))));

        // The observed set is bounded.
        for k in ["a", "b", "c"] {
            c.observe(b(k), RequestOptions::default(), now).unwrap();
        }
        assert_eq!(
            c.observe(b("d"), RequestOptions::default(), now),
            Err(RequestError::Busy)
        );
        // Another observer of an already observed key is fine.
        c.observe(b("a"), RequestOptions::default(), now).unwrap();
    }

    fn observed_keys_registered(c: &mut Client, keys: &[&str], now: Now) {
        for k in keys {
            c.observe(b(k), RequestOptions::default(), now).unwrap();
        }
        for m in publishes(&drain(c)) {
            c.handle_publish(reply(&m, b"+OK\r\n", None), now);
        }
        assert_eq!(completions(&drain(c)).len(), keys.len());
    }

    #[test]
    fn observed_keys_are_registered_again_after_reconnect() {
        let mut c = ready_client(config());
        let now = t0();
        observed_keys_registered(&mut c, &["a", "b"], now);

        // Session survived: KEYNOTIFY is re-sent at once anyway.
        c.handle_disconnected(now);
        c.handle_connected(true, now);
        let out = drain(&mut c);
        let sent = publishes(&out);
        let payloads: Vec<Bytes> = sent.iter().map(|m| m.payload.clone()).collect();
        assert_eq!(
            payloads,
            vec![
                encoded(&Request::KeyNotify { key: b("a") }),
                encoded(&Request::KeyNotify { key: b("b") })
            ]
        );
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.reregistrations_in_flight(), 2);
        c.handle_publish(reply(&sent[0], b"+OK\r\n", None), now);
        c.handle_publish(reply(&sent[1], b"-ERR not authorized\r\n", None), now);
        assert_eq!(
            drain(&mut c),
            vec![
                Output::Reregistered {
                    key: b("a"),
                    result: Ok(())
                },
                Output::Reregistered {
                    key: b("b"),
                    result: Err(RequestError::Service(ServiceError::NotAuthorized))
                },
            ]
        );
        assert_eq!(c.reregistrations_in_flight(), 0);

        // Session lost: after the new subscription.
        c.handle_disconnected(now);
        c.handle_connected(false, now);
        assert!(publishes(&drain(&mut c)).is_empty());
        c.handle_subscribed(&envelope::response_topic(CLIENT), true, now);
        let sent = publishes(&drain(&mut c));
        assert_eq!(sent.len(), 2);

        // Reconnecting again before the answers: one re-registration per key, not two.
        c.handle_disconnected(now);
        c.handle_connected(true, now);
        let again = publishes(&drain(&mut c));
        assert_eq!(again.len(), 2);
        assert_eq!(c.reregistrations_in_flight(), 2);
        // The superseded ones' answers are unmatched.
        c.handle_publish(reply(&sent[0], b"+OK\r\n", None), now);
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.stats().unmatched_replies, 1);

        // Unobserving drops the pending re-registration silently.
        c.unobserve(b("a"), RequestOptions::default(), now).unwrap();
        assert_eq!(c.reregistrations_in_flight(), 1);
        // Re-registrations time out like anything else.
        c.handle_timeout(now.advanced(Duration::from_secs(5)));
        let out = drain(&mut c);
        assert!(out.contains(&Output::Reregistered {
            key: b("b"),
            result: Err(RequestError::Timeout { sent: true })
        }));
        assert_eq!(c.reregistrations_in_flight(), 0);
        assert_eq!(c.in_flight(), 0);
        // "b" is still observed: its failed re-registration waits for a retry.
        assert_eq!(c.reregistrations_failing(), 1);
        c.unobserve(b("b"), RequestOptions::default(), now).unwrap();
        assert_eq!(c.reregistrations_failing(), 0);
    }

    /// A re-registration that fails (here: times out while the store is still reconnecting)
    /// is sent again after a jittered back-off that grows up to a bound, until it succeeds;
    /// it stops when the key is no longer observed.
    #[test]
    fn a_failed_reregistration_is_retried_with_back_off_until_it_succeeds() {
        let mut c = ready_client(config());
        let mut now = t0();
        observed_keys_registered(&mut c, &["k"], now);
        c.handle_disconnected(now);
        c.handle_connected(true, now);
        let mut sent = publishes(&drain(&mut c));
        assert_eq!(sent.len(), 1);
        let mut delays = Vec::new();
        for _ in 0..8 {
            // No answer: the attempt times out.
            let timeout = c.poll_timeout().expect("the attempt's deadline");
            now = now.advanced(timeout.saturating_duration_since(now.mono));
            c.handle_timeout(now);
            assert_eq!(
                drain(&mut c),
                vec![Output::Reregistered {
                    key: b("k"),
                    result: Err(RequestError::Timeout { sent: true })
                }]
            );
            let due = c.poll_timeout().expect("a retry is scheduled");
            delays.push(due.saturating_duration_since(now.mono));
            // Nothing is sent before the back-off is over.
            c.handle_timeout(Now::new(due - Duration::from_millis(1), now.wall_ms));
            assert!(publishes(&drain(&mut c)).is_empty());
            now = now.advanced(due.saturating_duration_since(now.mono));
            c.handle_timeout(now);
            sent = publishes(&drain(&mut c));
            assert_eq!(
                sent.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(),
                vec![encoded(&Request::KeyNotify { key: b("k") })],
                "the KEYNOTIFY is sent again"
            );
        }
        assert!(
            delays
                .iter()
                .all(|d| *d >= RETRY_BASE / 2 && *d <= RETRY_MAX),
            "{delays:?}"
        );
        assert!(delays[3] > delays[0], "the back-off grows: {delays:?}");
        assert!(
            delays[7] >= RETRY_MAX / 2,
            "and reaches its bound: {delays:?}"
        );
        // It succeeds: reported, and no retry is left.
        c.handle_publish(reply(&sent[0], b"+OK\r\n", None), now);
        assert_eq!(
            drain(&mut c),
            vec![Output::Reregistered {
                key: b("k"),
                result: Ok(())
            }]
        );
        assert_eq!(c.reregistrations_failing(), 0);
        assert_eq!(c.poll_timeout(), None);

        // Failing again, then unobserved before the retry: nothing more is sent.
        c.handle_disconnected(now);
        c.handle_connected(true, now);
        let sent = publishes(&drain(&mut c));
        c.handle_publish(reply(&sent[0], b"-ERR not authorized\r\n", None), now);
        drain(&mut c);
        assert!(c.poll_timeout().is_some());
        c.unobserve(b("k"), RequestOptions::default(), now).unwrap();
        let stop = publishes(&drain(&mut c));
        assert_eq!(stop.len(), 1, "only the STOP");
        c.handle_publish(reply(&stop[0], b":1\r\n", None), now);
        drain(&mut c);
        assert_eq!(c.poll_timeout(), None, "no retry of an unobserved key");
    }

    #[test]
    fn a_reregistration_on_its_way_when_the_key_is_unobserved_is_stopped_again_later() {
        // Found by the `sim_faults` fuzz target: the client's own re-registration was delayed
        // past the STOP of the key's last observer, landed after it, and the store kept the
        // registration until the connection ended.
        let mut c = ready_client(config());
        let mut now = t0();
        observed_keys_registered(&mut c, &["k"], now);
        c.handle_disconnected(now);
        c.handle_connected(true, now);
        let again = publishes(&drain(&mut c));
        assert_eq!(
            again.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(),
            vec![encoded(&Request::KeyNotify { key: b("k") })],
            "the re-registration is on its way"
        );
        c.unobserve(b("k"), RequestOptions::default(), now).unwrap();
        let stop = publishes(&drain(&mut c));
        assert_eq!(stop.len(), 1);
        c.handle_publish(reply(&stop[0], b":1\r\n", None), now);
        drain(&mut c);
        // The re-registration may still land after that STOP: one more STOP follows, once it
        // can no longer be applied (its deadline, its Message Expiry, and the slack).
        let due = c
            .poll_timeout()
            .expect("a STOP after the re-registration's expiry");
        let timeout = config().default_timeout;
        let bound = now.mono + timeout * 2 + EXPIRY_SLACK;
        assert!(due >= bound, "{due:?} before {bound:?}");
        now = now.advanced(due.saturating_duration_since(now.mono));
        c.handle_timeout(now);
        let sent = publishes(&drain(&mut c));
        assert_eq!(
            sent.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(),
            vec![encoded(&Request::KeyNotifyStop { key: b("k") })]
        );
        c.handle_publish(reply(&sent[0], b":1\r\n", None), now);
        drain(&mut c);
        assert_eq!(c.poll_timeout(), None);
        // Observing the key again before then would have cancelled it.
        observed_keys_registered(&mut c, &["k"], now);
    }

    #[test]
    fn a_stop_that_may_not_have_reached_the_store_is_sent_again() {
        // Found by the simulator: a lock wait dropped during a partition lost its STOP, and
        // the store kept the registration (and sent its notifications) until the connection
        // ended.
        let mut c = ready_client(config());
        let mut now = t0();
        observed_keys_registered(&mut c, &["k"], now);
        let id = c.unobserve(b("k"), RequestOptions::default(), now).unwrap();
        assert_eq!(publishes(&drain(&mut c)).len(), 1);
        // No answer: the STOP times out; its caller hears of it as usual.
        let timeout = c.poll_timeout().expect("the STOP's deadline");
        now = now.advanced(timeout.saturating_duration_since(now.mono));
        c.handle_timeout(now);
        let done = only_completion(&drain(&mut c));
        assert_eq!(done.id, id);
        assert_eq!(c.unregistrations_pending(), 1);
        // After the back-off the client sends it again by itself, with no output of its own.
        let due = c.poll_timeout().expect("a retry is scheduled");
        assert!(due.saturating_duration_since(now.mono) <= RETRY_MAX);
        now = now.advanced(due.saturating_duration_since(now.mono));
        c.handle_timeout(now);
        let outs = drain(&mut c);
        let again = only_publish(&outs);
        assert_eq!(
            again.payload,
            encoded(&Request::KeyNotifyStop { key: b("k") })
        );
        assert_eq!(c.in_flight(), 0, "not a caller's request");
        c.handle_publish(reply(&again, b"+OK\r\n", None), now);
        assert_eq!(drain(&mut c), vec![], "ends silently");
        assert_eq!(c.unregistrations_pending(), 0);
        assert_eq!(c.poll_timeout(), None);

        // Observing the key again cancels a pending retry; so does a reconnect.
        observed_keys_registered(&mut c, &["k"], now);
        c.unobserve(b("k"), RequestOptions::default(), now).unwrap();
        drain(&mut c);
        let timeout = c.poll_timeout().expect("the STOP's deadline");
        now = now.advanced(timeout.saturating_duration_since(now.mono));
        c.handle_timeout(now);
        drain(&mut c);
        assert_eq!(c.unregistrations_pending(), 1);
        c.observe(b("k"), RequestOptions::default(), now).unwrap();
        assert_eq!(c.unregistrations_pending(), 0);
        c.handle_disconnected(now);
        c.handle_connected(false, now);
        assert_eq!(c.unregistrations_pending(), 0);
    }

    #[test]
    fn retry_delays_are_bounded_and_jittered() {
        for failures in 0..40 {
            for random in [0.0, 0.3, 0.999_999, 1.0] {
                let d = retry_delay(failures, random);
                assert!(
                    d >= RETRY_BASE / 2 && d <= RETRY_MAX,
                    "{failures} {random}: {d:?}"
                );
            }
            assert!(retry_delay(failures, 0.0) < retry_delay(failures, 0.9));
        }
    }

    #[test]
    fn queued_observe_is_not_doubled_on_connect() {
        let mut c = Client::new(config()).unwrap();
        let now = t0();
        let id = c.observe(b("k"), RequestOptions::default(), now).unwrap();
        c.handle_connected(false, now);
        c.handle_subscribed(&envelope::response_topic(CLIENT), true, now);
        let sent = publishes(&drain(&mut c));
        assert_eq!(sent.len(), 1);
        c.handle_publish(reply(&sent[0], b"+OK\r\n", None), now);
        let d = only_completion(&drain(&mut c));
        assert_eq!(d.id, id);
    }

    fn notification(key: &[u8], version: &Hlc, payload: &NotifyPayload) -> Message {
        envelope::build_notification(CLIENT.as_bytes(), key, version, payload)
    }

    #[test]
    fn notifications_are_routed_by_key() {
        let mut c = ready_client(config());
        let now = t0();
        observed_keys_registered(&mut c, &["k"], now);
        let v = store_version(WALL, 1);
        c.handle_publish(
            notification(b"k", &v, &NotifyPayload::Set { value: b("new") }),
            now,
        );
        c.handle_publish(notification(b"k", &v, &NotifyPayload::Delete), now);
        assert_eq!(
            drain(&mut c),
            vec![
                Output::Notification(Notification {
                    key: b("k"),
                    value: Some(b("new")),
                    version: v.clone()
                }),
                Output::Notification(Notification {
                    key: b("k"),
                    value: None,
                    version: v.clone()
                }),
            ]
        );
        c.handle_publish(notification(b"other", &v, &NotifyPayload::Delete), now);
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.stats().unobserved_notifications, 1);

        // A lower-case hex key segment is malformed, not a panic.
        let mut lower = notification(b"\xab", &v, &NotifyPayload::Delete);
        let topic = core::str::from_utf8(&lower.topic).unwrap().to_string();
        assert!(topic.ends_with("/AB"), "{topic}");
        lower.topic = b(&(topic[..topic.len() - 2].to_string() + "ab"));
        c.handle_publish(lower, now);
        // Too far in the future: dropped as malformed.
        let far = store_version(WALL + 120_000, 0);
        c.handle_publish(notification(b"k", &far, &NotifyPayload::Delete), now);
        // Neither a response nor a notification topic.
        c.handle_publish(
            Message {
                topic: b("some/topic"),
                payload: b("x"),
                ..Default::default()
            },
            now,
        );
        // A response without properties.
        c.handle_publish(
            Message {
                topic: b(&envelope::response_topic(CLIENT)),
                ..Default::default()
            },
            now,
        );
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.stats().malformed_messages, 4);
    }

    // ---- every request ends in exactly one completion ----

    #[derive(Debug, Clone)]
    enum Op {
        Request { kind: u8, key: u8, timeout_ms: u64 },
        Observe(u8),
        Unobserve(u8),
        Reply { pick: usize, form: u8 },
        Duplicate(usize),
        Unknown,
        Advance(u64),
        Timeout,
        Connect(bool),
        Disconnect,
        Subscribed(bool),
        Notify(u8),
        Garbage(Vec<u8>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, 0u8..4, 0u64..3000).prop_map(|(kind, key, timeout_ms)| Op::Request { kind, key, timeout_ms }),
            2 => (0u8..4).prop_map(Op::Observe),
            2 => (0u8..4).prop_map(Op::Unobserve),
            5 => (any::<usize>(), 0u8..6).prop_map(|(pick, form)| Op::Reply { pick, form }),
            1 => any::<usize>().prop_map(Op::Duplicate),
            1 => Just(Op::Unknown),
            2 => (0u64..2000).prop_map(Op::Advance),
            2 => Just(Op::Timeout),
            2 => any::<bool>().prop_map(Op::Connect),
            2 => Just(Op::Disconnect),
            2 => proptest::bool::weighted(0.85).prop_map(Op::Subscribed),
            1 => (0u8..5).prop_map(Op::Notify),
            1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Garbage),
        ]
    }

    struct Harness {
        client: Client,
        now: Now,
        published: Vec<Message>,
        replies: Vec<Message>,
        completed: BTreeMap<RequestId, usize>,
        issued: Vec<RequestId>,
    }

    impl Harness {
        fn drain(&mut self) -> Result<(), TestCaseError> {
            while let Some(o) = self.client.poll_output() {
                match o {
                    Output::Publish(m) => self.published.push(m),
                    Output::Completion(c) => {
                        prop_assert!(
                            self.issued.contains(&c.id),
                            "completion for unknown id {:?}",
                            c.id
                        );
                        // The outcome agrees with whether the request ever left.
                        match &c.result {
                            Err(RequestError::Timeout { sent }) => {
                                prop_assert_eq!(*sent, c.sent_at.is_some());
                            }
                            Err(RequestError::SubscriptionRefused) => {
                                prop_assert!(c.sent_at.is_none());
                            }
                            Err(RequestError::ClockDrift) => {}
                            Ok(Response::KeyNotify | Response::KeyNotifyStop(true))
                                if c.sent_at.is_none() => {}
                            _ => prop_assert!(c.sent_at.is_some(), "{:?}", c),
                        }
                        let n = self.completed.entry(c.id).or_insert(0);
                        *n += 1;
                        prop_assert_eq!(*n, 1, "{:?} completed twice", c.id);
                    }
                    _ => {}
                }
            }
            prop_assert!(self.client.in_flight() <= 3);
            Ok(())
        }

        fn issue(&mut self, r: Result<RequestId, RequestError>) -> Result<(), TestCaseError> {
            match r {
                Ok(id) => {
                    prop_assert!(!self.issued.contains(&id));
                    self.issued.push(id);
                }
                Err(e) => prop_assert!(
                    matches!(e, RequestError::Busy | RequestError::InvalidArgument(_)),
                    "{:?}",
                    e
                ),
            }
            Ok(())
        }

        fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
            let keys = ["a", "b", "c", "d", "e"];
            let now = self.now;
            match op {
                Op::Request {
                    kind,
                    key,
                    timeout_ms,
                } => {
                    let key = b(keys[usize::from(key)]);
                    let request = match kind {
                        0 => Request::Get { key },
                        1 => Request::Set {
                            key,
                            value: b("v"),
                            condition: SetCondition::NotExistsOrEqual,
                            px_ms: Some(500),
                        },
                        2 => Request::Del { key },
                        _ => Request::Vdel { key, value: b("v") },
                    };
                    let options = RequestOptions {
                        timeout: Some(Duration::from_millis(timeout_ms)),
                        ..Default::default()
                    };
                    let r = self.client.request(request, options, now);
                    self.issue(r)?;
                }
                Op::Observe(k) => {
                    let r = self.client.observe(
                        b(keys[usize::from(k)]),
                        RequestOptions::default(),
                        now,
                    );
                    self.issue(r)?;
                }
                Op::Unobserve(k) => {
                    let r = self.client.unobserve(
                        b(keys[usize::from(k)]),
                        RequestOptions::default(),
                        now,
                    );
                    self.issue(r)?;
                }
                Op::Reply { pick, form } => {
                    if !self.published.is_empty() {
                        let req = self.published[pick % self.published.len()].clone();
                        let m = match form {
                            0 => reply(&req, b"+OK\r\n", Some(&store_version(now.wall_ms, 1))),
                            1 => reply(&req, b"$-1\r\n", None),
                            2 => reply(&req, b"*1\r\n:5\r\n", None),
                            3 => with_status(reply(&req, b"", None), "500", "boom"),
                            4 => reply(
                                &req,
                                b":0\r\n",
                                Some(&store_version(now.wall_ms + 100_000, 0)),
                            ),
                            _ => {
                                let mut m = reply(&req, b"+OK\r\n", None);
                                m.correlation_data = Some(Bytes::from_static(b"short"));
                                m
                            }
                        };
                        self.replies.push(m.clone());
                        self.client.handle_publish(m, now);
                    }
                }
                Op::Duplicate(pick) => {
                    if !self.replies.is_empty() {
                        let m = self.replies[pick % self.replies.len()].clone();
                        self.client.handle_publish(m, now);
                    }
                }
                Op::Unknown => {
                    let m = envelope::build_response(
                        b(&envelope::response_topic(CLIENT)),
                        Bytes::from_static(&[0x5a; 16]),
                        None,
                        b("+OK\r\n"),
                        None,
                    );
                    self.client.handle_publish(m, now);
                }
                Op::Advance(ms) => self.now = now.advanced(Duration::from_millis(ms)),
                Op::Timeout => self.client.handle_timeout(now),
                Op::Connect(session) => self.client.handle_connected(session, now),
                Op::Disconnect => self.client.handle_disconnected(now),
                Op::Subscribed(granted) => {
                    self.client
                        .handle_subscribed(&envelope::response_topic(CLIENT), granted, now)
                }
                Op::Notify(k) => {
                    let m = notification(
                        keys[usize::from(k)].as_bytes(),
                        &store_version(now.wall_ms, 2),
                        &NotifyPayload::Delete,
                    );
                    self.client.handle_publish(m, now);
                }
                Op::Garbage(bytes) => {
                    let mut m = reply(
                        self.published.first().unwrap_or(&Message {
                            response_topic: Some(b(&envelope::response_topic(CLIENT))),
                            correlation_data: Some(Bytes::from_static(&[1; 16])),
                            ..Default::default()
                        }),
                        &bytes,
                        None,
                    );
                    if bytes.first().is_some_and(|b| b % 2 == 0) {
                        m.topic = Bytes::from(bytes);
                    }
                    self.client.handle_publish(m, now);
                }
            }
            self.drain()
        }
    }

    #[test]
    fn poll_timeout_follows_requests_finishing_out_of_order() {
        let mut c = ready_client(config());
        let now = t0();
        let timeout = |ms| RequestOptions {
            timeout: Some(Duration::from_millis(ms)),
            ..RequestOptions::default()
        };
        c.request(get("a"), timeout(3000), now).unwrap();
        c.request(get("b"), timeout(1000), now).unwrap();
        c.request(get("c"), timeout(2000), now).unwrap();
        let sent = publishes(&drain(&mut c));
        assert_eq!(
            c.poll_timeout(),
            Some(now.mono + Duration::from_millis(1000))
        );
        // The earliest one answered: the next earliest is due.
        c.handle_publish(reply(&sent[1], b"$-1\r\n", None), now);
        assert_eq!(
            c.poll_timeout(),
            Some(now.mono + Duration::from_millis(2000))
        );
        // The latest one answered: unchanged.
        c.handle_publish(reply(&sent[0], b"$-1\r\n", None), now);
        assert_eq!(
            c.poll_timeout(),
            Some(now.mono + Duration::from_millis(2000))
        );
        // The last one times out: nothing is due any more.
        c.handle_timeout(now.advanced(Duration::from_millis(2000)));
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.in_flight(), 0);
    }

    proptest! {
        #[test]
        fn every_request_completes_exactly_once(start_ready in any::<bool>(), ops in proptest::collection::vec(op(), 0..60)) {
            let mut cfg = config();
            cfg.max_in_flight = 3;
            let client = if start_ready { ready_client(cfg) } else { Client::new(cfg).unwrap() };
            let mut h = Harness {
                client,
                now: t0(),
                published: Vec::new(),
                replies: Vec::new(),
                completed: BTreeMap::new(),
                issued: Vec::new(),
            };
            for op in ops {
                h.step(op)?;
                // The dense deadline array mirrors the table.
                let table = h.client.slots.iter().flatten().map(|e| e.deadline).min();
                let retries = h
                    .client
                    .retries
                    .values()
                    .chain(h.client.unregistrations.values())
                    .filter_map(|r| r.due)
                    .chain(h.client.stale_registrations.values().copied())
                    .filter(|_| h.client.connected)
                    .min();
                let expected = match (table, retries) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                prop_assert_eq!(h.client.poll_timeout(), expected);
                if let Some(deadline) = h.client.poll_timeout() {
                    // Deadlines are never further than the longest timeout or back-off, or a
                    // re-registration's Message Expiry after its deadline (plus slack).
                    let expiry = Duration::from_secs(5) + EXPIRY_SLACK;
                    prop_assert!(deadline <= h.now.mono + RETRY_MAX.max(Duration::from_secs(5)) + expiry);
                }
            }
            let end = h.now.advanced(Duration::from_secs(6));
            h.client.handle_timeout(end);
            h.drain()?;
            for id in &h.issued {
                prop_assert_eq!(h.completed.get(id), Some(&1), "{:?} never completed", id);
            }
            prop_assert_eq!(h.client.in_flight(), 0);
            // Only the retries of failed re-registrations of still observed keys are left...
            prop_assert!(h.client.reregistrations_in_flight() <= h.client.reregistrations_failing());
            prop_assert!(h.client.retries.keys().all(|k| h.client.observed.contains_key(k)));
            // And the STOPs to retry of keys no longer observed, or to send once a
            // re-registration of a key no longer observed can no longer land.
            prop_assert!(h.client.unregistrations.keys().all(|k| !h.client.observed.contains_key(k)));
            prop_assert!(h.client.stale_registrations.keys().all(|k| !h.client.observed.contains_key(k)));
            if h.client.reregistrations_failing() == 0
                && h.client.unregistrations_pending() == 0
                && h.client.stale_registrations.is_empty()
            {
                prop_assert_eq!(h.client.poll_timeout(), None);
            }
        }
    }
}
