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
    /// HLC drift limit in milliseconds (spec default 60 000).
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

/// Who waits for the outcome of a table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A caller's request: ends in exactly one [`Output::Completion`].
    User(RequestId),
    /// A KEYNOTIFY the client re-sends by itself after a reconnect: ends in
    /// [`Output::Reregistered`] (while the key is still observed).
    Reregistration,
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
    /// Free slot indices (capacity preallocated to the table size).
    free: Vec<usize>,
    /// Slots waiting to be published, oldest first.
    queue: VecDeque<usize>,
    user_in_flight: usize,
    reregistrations: usize,
    /// Observed keys with their reference counts.
    observed: BTreeMap<Bytes, u32>,
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
        let clock = HybridClock::new(Bytes::from(config.hlc_node.into_bytes()), config.max_drift_ms)
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
            default_timeout: config.default_timeout,
            slots,
            correlations: alloc::vec![NO_CORRELATION; capacity],
            // Popped from the back: lowest slots first.
            free: (0..capacity).rev().collect(),
            queue: VecDeque::with_capacity(capacity),
            user_in_flight: 0,
            reregistrations: 0,
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
        if self.observed.remove(&key).is_some() {
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
        self.outputs.push_back(Output::Connected { session_present });
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
                }
            }
        }
        if !self.response_subscribed {
            self.outputs
                .push_back(Output::Subscribe(self.response_topic.clone()));
            self.outputs
                .push_back(Output::Subscribe(self.notification_filter.clone()));
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
    /// session anyway, spec §5).
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
        let _ = now;
        self.connected = false;
        self.outputs.push_back(Output::Disconnected);
    }

    /// A PUBLISH arrived (a response or a notification).
    ///
    /// Never fails: what cannot be understood is counted in [`ClientStats`] and dropped.
    pub fn handle_publish(&mut self, message: Message, now: Now) {
        if message.topic.as_ref() == self.response_topic.as_bytes() {
            self.handle_response(&message, now);
        } else {
            self.handle_notification(&message, now);
        }
    }

    /// Time passed; expire what is due.
    pub fn handle_timeout(&mut self, now: Now) {
        for slot in 0..self.slots.len() {
            let due = match self.slots.get(slot) {
                Some(Some(e)) if e.deadline <= now.mono => Some(e.sent_at.is_some()),
                _ => None,
            };
            if let Some(sent) = due {
                self.finish(slot, Err(RequestError::Timeout { sent }), None);
            }
        }
    }

    /// The next output, or `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots.iter().flatten().map(|e| e.deadline).min()
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
        match origin {
            Origin::User(_) => self.user_in_flight += 1,
            Origin::Reregistration => self.reregistrations += 1,
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
        self.free.push(slot);
        if entry.sent_at.is_none() {
            self.queue.retain(|&s| s != slot);
        }
        match entry.origin {
            Origin::User(_) => self.user_in_flight = self.user_in_flight.saturating_sub(1),
            Origin::Reregistration => {
                self.reregistrations = self.reregistrations.saturating_sub(1);
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
            Origin::User(id) => self.outputs.push_back(Output::Completion(Completion {
                id,
                kind: request.kind(),
                sent_at,
                result,
                version,
            })),
            Origin::Reregistration => {
                if self.observed.contains_key(request.key()) {
                    self.outputs.push_back(Output::Reregistered {
                        key: request.key().clone(),
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
                e.sent_at.is_none() && matches!(&e.request, Request::KeyNotify { key: k } if *k == key)
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
    fn drop_reregistrations(&mut self, key: &Bytes) {
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

    fn handle_response(&mut self, message: &Message, now: Now) {
        let Ok(response) = envelope::parse_response(message) else {
            self.stats.malformed_messages = self.stats.malformed_messages.saturating_add(1);
            return;
        };
        let correlation = u128::from_le_bytes(response.correlation);
        let slot = if correlation == NO_CORRELATION {
            None
        } else {
            self.correlations.iter().position(|&c| c == correlation)
        };
        let kind = slot.and_then(|s| match self.slots.get(s) {
            Some(Some(entry)) => Some((s, entry.request.kind())),
            _ => None,
        });
        let Some((slot, kind)) = kind else {
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
