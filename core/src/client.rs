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

use alloc::string::String;
use bytes::Bytes;
use core::time::Duration;

use crate::command::{Request, RequestKind, Response, ServiceError};
use crate::envelope::Message;
use crate::hlc::Hlc;
use crate::time::{Instant, Now};

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

/// The state-store client machine.
#[derive(Debug)]
pub struct Client {
    _private: (),
}

impl Client {
    /// A disconnected client.
    pub fn new(config: ClientConfig) -> Result<Client, ConfigError> {
        let _ = config;
        todo!()
    }

    /// Starts a request. Sent at once when connected and subscribed, otherwise queued until
    /// then (its deadline keeps running). `Busy` when the in-flight table is full.
    pub fn request(
        &mut self,
        request: Request,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let _ = (request, options, now);
        todo!()
    }

    /// Starts observing `key`: sends KEYNOTIFY and remembers the key so that it is registered
    /// again after every reconnect. The completion reports the KEYNOTIFY reply.
    pub fn observe(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let _ = (key, options, now);
        todo!()
    }

    /// Stops observing `key` (forgets it at once, then sends KEYNOTIFY STOP).
    pub fn unobserve(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let _ = (key, options, now);
        todo!()
    }

    /// The connection is up. `session_present` tells whether the broker kept our session (and
    /// with it our subscriptions and in-flight QoS 1 messages).
    pub fn handle_connected(&mut self, session_present: bool, now: Now) {
        let _ = (session_present, now);
        todo!()
    }

    /// The broker acknowledged a subscription from [`Output::Subscribe`].
    pub fn handle_subscribed(&mut self, filter: &str, granted: bool, now: Now) {
        let _ = (filter, granted, now);
        todo!()
    }

    /// The connection dropped.
    pub fn handle_disconnected(&mut self, now: Now) {
        let _ = now;
        todo!()
    }

    /// A PUBLISH arrived (a response or a notification).
    pub fn handle_publish(&mut self, message: Message, now: Now) {
        let _ = (message, now);
        todo!()
    }

    /// Time passed; expire what is due.
    pub fn handle_timeout(&mut self, now: Now) {
        let _ = now;
        todo!()
    }

    /// The next output, or `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!()
    }

    /// The earliest deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Number of requests in flight (queued or sent).
    pub fn in_flight(&self) -> usize {
        todo!()
    }

    /// Diagnostics counters.
    pub fn stats(&self) -> ClientStats {
        todo!()
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        todo!()
    }
}
