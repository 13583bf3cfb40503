//! The MQTT 5 envelope of the state-store RPC (docs/protocol.md §2–§5, §9.2, §11.1) as plain data.
//!
//! [`Message`] is an MQTT PUBLISH with the properties the protocol uses; adapters convert their
//! MQTT library's type to and from it. This module builds requests exactly as the official
//! clients do, parses responses and notifications with typed errors, and (for the store side)
//! parses requests and builds responses and notifications.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;
use core::time::Duration;

use crate::command::NotifyPayload;
use crate::hex;
use crate::hlc::Hlc;
use crate::resp3::Limits;

/// The request topic every client publishes to.
pub const REQUEST_TOPIC: &str = "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke";
/// Prefix of notification topics: `{prefix}/{HEX(clientId)}/command/notify/{HEX(key)}`.
pub const NOTIFY_TOPIC_PREFIX: &str = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8";
/// The only content type the protocol uses.
pub const CONTENT_TYPE: &str = "application/octet-stream";
/// The protocol version sent in `__protVer`.
pub const PROTOCOL_VERSION: &str = "1.0";

/// User property names (docs/protocol.md §3.2).
pub mod prop {
    /// Sender client id.
    pub const SOURCE_ID: &str = "__srcId";
    /// HLC timestamp (request) or key version (response / notification).
    pub const TIMESTAMP: &str = "__ts";
    /// Fencing token.
    pub const FENCING_TOKEN: &str = "__ft";
    /// Protocol version.
    pub const PROTOCOL_VERSION: &str = "__protVer";
    /// Response status.
    pub const STATUS: &str = "__stat";
    /// Response status message.
    pub const STATUS_MESSAGE: &str = "__stMsg";
    /// Application error flag.
    pub const APPLICATION_ERROR: &str = "__apErr";
    /// Offending property name.
    pub const PROPERTY_NAME: &str = "__propName";
    /// Offending property value.
    pub const PROPERTY_VALUE: &str = "__propVal";
    /// Supported major protocol versions (with 505).
    pub const SUPPORTED_MAJOR_VERSIONS: &str = "__supProtMajVer";
    /// The rejected request protocol version (with 505).
    pub const REQUEST_PROTOCOL_VERSION: &str = "__requestProtVer";
    /// Persistence request on SET.
    pub const PERSISTENCE: &str = "aio-persistence";
    /// Broker routing hint (ignored by the store).
    pub const PARTITION: &str = "$partition";
}

/// MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QoS {
    /// QoS 0.
    AtMostOnce,
    /// QoS 1.
    #[default]
    AtLeastOnce,
    /// QoS 2.
    ExactlyOnce,
}

/// An MQTT 5 PUBLISH as plain data. Text fields are UTF-8 held in `Bytes` so adapters can pass
/// buffers through without copying.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Topic name.
    pub topic: Bytes,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Correlation Data property.
    pub correlation_data: Option<Bytes>,
    /// Response Topic property.
    pub response_topic: Option<Bytes>,
    /// Message Expiry Interval property, in seconds.
    pub message_expiry_secs: Option<u32>,
    /// Content Type property.
    pub content_type: Option<Bytes>,
    /// Payload Format Indicator property.
    pub payload_format_indicator: Option<u8>,
    /// User properties, in order.
    pub user_properties: Vec<(Bytes, Bytes)>,
}

impl Message {
    /// The first user property named `name`.
    pub fn user_property(&self, name: &str) -> Option<&Bytes> {
        self.user_properties
            .iter()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// Longest key, in bytes, accepted in a notification topic. A key this long already makes the
/// topic longer than MQTT allows, so the bound only stops a hostile topic from costing memory.
pub const MAX_NOTIFY_KEY_LEN: usize = 64 * 1024;

/// Decoder limits for notification payloads: one flat array of at most four elements whose
/// blobs (the value of a SET) may be a few MiB.
pub const NOTIFY_LIMITS: Limits = Limits {
    max_array_len: 4,
    max_blob_len: 8 * 1024 * 1024,
    max_depth: 1,
};

/// The service path shared by the request, response and notification topics.
const SERVICE_PATH: &str = "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8";
/// What follows the hex client id in a notification topic.
const NOTIFY_MIDDLE: &str = "/command/notify/";

/// Why an incoming message could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// A required property is missing (its name).
    MissingProperty(&'static str),
    /// A property has an invalid value (its name).
    InvalidProperty(&'static str),
    /// Correlation data is not 16 bytes.
    BadCorrelationData,
    /// The topic is not one this message type can arrive on.
    WrongTopic,
    /// The key segment of a notification topic is not strict upper-case hex.
    BadKeyHex(crate::hex::HexError),
    /// Content type is present and not `application/octet-stream`.
    BadContentType,
    /// `__ts` or `__ft` does not parse.
    BadTimestamp(crate::hlc::HlcError),
    /// The notification payload is neither accepted shape.
    BadNotifyPayload(crate::command::NotifyPayloadError),
    /// `__protVer` has a major version other than 1.
    UnsupportedVersion,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::MissingProperty(name) => write!(f, "missing property {name}"),
            EnvelopeError::InvalidProperty(name) => write!(f, "invalid value for property {name}"),
            EnvelopeError::BadCorrelationData => f.write_str("correlation data is not 16 bytes"),
            EnvelopeError::WrongTopic => f.write_str("message arrived on an unexpected topic"),
            EnvelopeError::BadKeyHex(e) => write!(f, "notification key segment: {e}"),
            EnvelopeError::BadContentType => {
                write!(f, "content type is not {CONTENT_TYPE}")
            }
            EnvelopeError::BadTimestamp(e) => write!(f, "bad timestamp: {e}"),
            // Debug, not Display: the payload error's own formatting lives in `command`.
            EnvelopeError::BadNotifyPayload(e) => write!(f, "bad notification payload: {e:?}"),
            EnvelopeError::UnsupportedVersion => f.write_str("unsupported protocol version"),
        }
    }
}

impl core::error::Error for EnvelopeError {}

/// The response topic this library uses for a client (the Rust SDK's form).
pub fn response_topic(client_id: &str) -> String {
    let mut topic = String::with_capacity(
        "clients/".len() + client_id.len() + "/services/".len() + SERVICE_PATH.len() + 25,
    );
    topic.push_str("clients/");
    topic.push_str(client_id);
    topic.push_str("/services/");
    topic.push_str(SERVICE_PATH);
    topic.push_str("/command/invoke/response");
    topic
}

/// `{prefix}/{HEX(client_id)}/command/notify/` as bytes.
fn notification_topic_head(client_id: &[u8], extra: usize) -> Vec<u8> {
    let mut topic = Vec::with_capacity(
        NOTIFY_TOPIC_PREFIX.len() + 1 + 2 * client_id.len() + NOTIFY_MIDDLE.len() + extra,
    );
    topic.extend_from_slice(NOTIFY_TOPIC_PREFIX.as_bytes());
    topic.push(b'/');
    hex::encode_upper_into(client_id, &mut topic);
    topic.extend_from_slice(NOTIFY_MIDDLE.as_bytes());
    topic
}

fn notification_topic_bytes(client_id: &[u8], key: &[u8]) -> Vec<u8> {
    let mut topic = notification_topic_head(client_id, 2 * key.len());
    hex::encode_upper_into(key, &mut topic);
    topic
}

/// Only ASCII was written into these topics, so the conversion cannot fail.
fn ascii_to_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// The notification topic for a client and key.
pub fn notification_topic(client_id: &str, key: &[u8]) -> String {
    ascii_to_string(notification_topic_bytes(client_id.as_bytes(), key))
}

/// The subscription filter for all of a client's notifications (`.../command/notify/+`).
pub fn notification_filter(client_id: &str) -> String {
    let mut filter = notification_topic_head(client_id.as_bytes(), 1);
    filter.push(b'+');
    ascii_to_string(filter)
}

/// Everything needed to build a request PUBLISH.
#[derive(Debug, Clone)]
pub struct RequestEnvelope<'a> {
    /// MQTT client id (`__srcId`).
    pub client_id: &'a str,
    /// Response topic.
    pub response_topic: &'a str,
    /// 16-byte correlation id.
    pub correlation: [u8; 16],
    /// The client's HLC after ticking (`__ts`).
    pub timestamp: &'a Hlc,
    /// Fencing token (`__ft`), SET/DEL/VDEL only.
    pub fencing_token: Option<&'a Hlc>,
    /// Send `aio-persistence: true`.
    pub persist: bool,
    /// Request timeout; Message Expiry is this rounded up to whole seconds (at least 1).
    pub timeout: Duration,
    /// RESP3 payload.
    pub payload: Bytes,
}

fn static_bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn user_prop(name: &'static str, value: Bytes) -> (Bytes, Bytes) {
    (static_bytes(name), value)
}

/// Builds the request PUBLISH (QoS 1, content type, properties in the official client's order).
pub fn build_request(req: &RequestEnvelope<'_>) -> Message {
    // The small per-request fields share one buffer: two allocations instead of one per field,
    // and the receiver's copies of them (`parse_request`, `Hlc::parse`) are reference counts.
    let hlc_len = |h: &Hlc| 15 + 1 + 5 + 1 + h.node_bytes().len();
    let mut text = Vec::with_capacity(
        req.client_id.len()
            + req.correlation.len()
            + req.response_topic.len()
            + hlc_len(req.timestamp)
            + req.fencing_token.map_or(0, hlc_len),
    );
    text.extend_from_slice(req.client_id.as_bytes());
    let client_id = 0..text.len();
    text.extend_from_slice(&req.correlation);
    let correlation = client_id.end..text.len();
    text.extend_from_slice(req.response_topic.as_bytes());
    let response_topic = correlation.end..text.len();
    req.timestamp.write_to(&mut text);
    let timestamp = response_topic.end..text.len();
    let token = req.fencing_token.map(|token| {
        token.write_to(&mut text);
        timestamp.end..text.len()
    });
    let text = Bytes::from(text);
    let client_id = text.slice(client_id);
    let mut props = Vec::with_capacity(6);
    if let Some(token) = token {
        props.push(user_prop(prop::FENCING_TOKEN, text.slice(token)));
    }
    if req.persist {
        props.push(user_prop(prop::PERSISTENCE, static_bytes("true")));
    }
    props.push(user_prop(prop::SOURCE_ID, client_id.clone()));
    props.push(user_prop(prop::TIMESTAMP, text.slice(timestamp)));
    props.push(user_prop(
        prop::PROTOCOL_VERSION,
        static_bytes(PROTOCOL_VERSION),
    ));
    props.push(user_prop(prop::PARTITION, client_id));
    // The official clients also send `$high_priority`, which tells the broker to let the request
    // bypass its back-pressure. We deliberately leave it out: a lease renewal storm must be
    // throttled by the broker like any other traffic.
    Message {
        topic: static_bytes(REQUEST_TOPIC),
        payload: req.payload.clone(),
        qos: QoS::AtLeastOnce,
        retain: false,
        correlation_data: Some(text.slice(correlation)),
        response_topic: Some(text.slice(response_topic)),
        message_expiry_secs: Some(expiry_secs(req.timeout)),
        content_type: Some(static_bytes(CONTENT_TYPE)),
        payload_format_indicator: Some(0),
        user_properties: props,
    }
}

/// Message Expiry for a timeout: whole seconds rounded up, at least 1, saturating at `u32::MAX`.
pub fn expiry_secs(timeout: Duration) -> u32 {
    let whole = timeout.as_secs();
    let rounded = if timeout.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    };
    u32::try_from(rounded.max(1)).unwrap_or(u32::MAX)
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseEnvelope {
    /// Correlation id.
    pub correlation: [u8; 16],
    /// `__stat`.
    pub status: u16,
    /// `__stMsg`, if any.
    pub status_message: Option<Bytes>,
    /// `__ts` (the key version), if present.
    pub timestamp: Option<Hlc>,
    /// RESP3 payload.
    pub payload: Bytes,
}

/// The 16-byte correlation id of a response, if it has one. Lets a client fail the matching
/// in-flight request at once when [`parse_response`] rejects the rest of the message, instead of
/// leaving it to time out.
pub fn response_correlation(msg: &Message) -> Option<[u8; 16]> {
    msg.correlation_data
        .as_deref()
        .and_then(|c| <[u8; 16]>::try_from(c).ok())
}

/// A decimal `u16` with no sign, spaces or empty text.
fn parse_status(text: &[u8]) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u16, |acc, &c| {
        acc.checked_mul(10)?.checked_add(u16::from(c - b'0'))
    })
}

/// A decimal `u32` with no sign, spaces or empty text.
fn parse_u32(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u32, |acc, &c| {
        acc.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })
}

/// `major.minor`, both decimal.
fn parse_version(text: &[u8]) -> Option<(u32, u32)> {
    let dot = text.iter().position(|&c| c == b'.')?;
    let (major, minor) = text.split_at(dot);
    Some((parse_u32(major)?, parse_u32(minor.get(1..)?)?))
}

/// Client side: `__protVer` is absent (meaning 1.0) or `1.<minor>`.
fn check_version(msg: &Message) -> Result<(), EnvelopeError> {
    match msg.user_property(prop::PROTOCOL_VERSION) {
        None => Ok(()),
        Some(v) => match parse_version(v) {
            Some((1, _)) => Ok(()),
            _ => Err(EnvelopeError::UnsupportedVersion),
        },
    }
}

/// Client side: content type absent or exactly `application/octet-stream`.
fn check_content_type(msg: &Message) -> Result<(), EnvelopeError> {
    match &msg.content_type {
        Some(ct) if ct.as_ref() != CONTENT_TYPE.as_bytes() => Err(EnvelopeError::BadContentType),
        _ => Ok(()),
    }
}

/// Parses a response: correlation data (16 bytes), `__stat` required, `__ts` optional but must
/// parse, content type absent or `application/octet-stream`, `__protVer` major 1 if present.
pub fn parse_response(msg: &Message) -> Result<ResponseEnvelope, EnvelopeError> {
    let correlation = response_correlation(msg).ok_or(EnvelopeError::BadCorrelationData)?;
    let status = msg
        .user_property(prop::STATUS)
        .ok_or(EnvelopeError::MissingProperty(prop::STATUS))?;
    let status = parse_status(status).ok_or(EnvelopeError::InvalidProperty(prop::STATUS))?;
    check_version(msg)?;
    check_content_type(msg)?;
    let timestamp = msg
        .user_property(prop::TIMESTAMP)
        .map(Hlc::parse)
        .transpose()
        .map_err(EnvelopeError::BadTimestamp)?;
    Ok(ResponseEnvelope {
        correlation,
        status,
        status_message: msg.user_property(prop::STATUS_MESSAGE).cloned(),
        timestamp,
        payload: msg.payload.clone(),
    })
}

/// A parsed key notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationEnvelope {
    /// The key (decoded from the topic).
    pub key: Bytes,
    /// `__ts`: the key version after the change (required).
    pub version: Hlc,
    /// SET with value, or DELETE.
    pub payload: NotifyPayload,
}

fn upper_digit(nibble: u8) -> u8 {
    if nibble < 10 {
        b'0' + nibble
    } else {
        b'A' + (nibble - 10)
    }
}

/// Whether `text` is exactly the upper-case hex form of `bytes` (no allocation).
fn is_upper_hex_of(text: &[u8], bytes: &[u8]) -> bool {
    text.len() == 2 * bytes.len()
        && text.chunks_exact(2).zip(bytes).all(|(pair, &b)| {
            matches!(pair, [hi, lo] if *hi == upper_digit(b >> 4) && *lo == upper_digit(b & 0x0F))
        })
}

/// The key hex segment of `topic` if it is a notification topic for `client_id`.
fn notification_key_segment<'t>(topic: &'t [u8], client_id: &str) -> Option<&'t [u8]> {
    let rest = topic.strip_prefix(NOTIFY_TOPIC_PREFIX.as_bytes())?;
    let rest = rest.strip_prefix(b"/")?;
    let client_len = 2 * client_id.len();
    let (client_hex, rest) = (rest.get(..client_len)?, rest.get(client_len..)?);
    if !is_upper_hex_of(client_hex, client_id.as_bytes()) {
        return None;
    }
    let key_hex = rest.strip_prefix(NOTIFY_MIDDLE.as_bytes())?;
    // An extra level below the key is not a notification; an empty key segment names no key
    // the store can hold.
    if key_hex.is_empty() || key_hex.contains(&b'/') {
        return None;
    }
    Some(key_hex)
}

/// Parses a notification addressed to `client_id`: strict upper-case hex key, `__ts` required,
/// exactly the two payload shapes.
///
/// QoS 0 notifications are accepted, as the Rust SDK accepts them. A `__protVer` property, if
/// present, must be `1.x` as on responses.
pub fn parse_notification(
    msg: &Message,
    client_id: &str,
) -> Result<NotificationEnvelope, EnvelopeError> {
    let key_hex =
        notification_key_segment(&msg.topic, client_id).ok_or(EnvelopeError::WrongTopic)?;
    let key = hex::decode_upper(key_hex, MAX_NOTIFY_KEY_LEN).map_err(EnvelopeError::BadKeyHex)?;
    let version = msg
        .user_property(prop::TIMESTAMP)
        .ok_or(EnvelopeError::MissingProperty(prop::TIMESTAMP))?;
    let version = Hlc::parse(version).map_err(EnvelopeError::BadTimestamp)?;
    check_version(msg)?;
    check_content_type(msg)?;
    let payload = NotifyPayload::parse(&msg.payload, &NOTIFY_LIMITS)
        .map_err(EnvelopeError::BadNotifyPayload)?;
    Ok(NotificationEnvelope {
        key: Bytes::from(key),
        version,
        payload,
    })
}

/// Store side: a request as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// `__srcId`.
    pub source_id: Bytes,
    /// Correlation data, echoed in the response.
    pub correlation: Bytes,
    /// Response topic.
    pub response_topic: Bytes,
    /// Message Expiry in seconds.
    pub expiry_secs: u32,
    /// Raw `__ts` (parsing and skew are the store's business: they map to `-ERR` replies).
    pub timestamp: Option<Bytes>,
    /// Raw `__ft`.
    pub fencing_token: Option<Bytes>,
    /// `aio-persistence: true`.
    pub persist: bool,
    /// RESP3 payload.
    pub payload: Bytes,
}

/// Store side: why a request gets an RPC-level error status instead of a store reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IncomingRequestError {
    /// No reply is possible (no response topic or no correlation data): acknowledge and drop.
    Unanswerable,
    /// 400 with `__propName` (and `__propVal` when a value was present).
    BadHeader {
        /// The offending header name.
        name: &'static str,
        /// Its value, if any.
        value: Option<Bytes>,
    },
    /// 505: unsupported major version; carries the request's `__protVer`.
    UnsupportedVersion(Bytes),
    /// The response topic is forbidden (equals the request topic or lies under the
    /// notification prefix); the real broker disconnects such clients. Dropped.
    ForbiddenResponseTopic,
    /// 415: the Content Type is present and not `application/octet-stream`; carries it.
    UnsupportedContentType(Bytes),
}

impl IncomingRequestError {
    /// The RPC status this error is answered with, or `None` when it is dropped unanswered.
    pub fn status(&self) -> Option<u16> {
        match self {
            IncomingRequestError::Unanswerable | IncomingRequestError::ForbiddenResponseTopic => {
                None
            }
            IncomingRequestError::BadHeader { .. } => Some(400),
            IncomingRequestError::UnsupportedContentType(_) => Some(415),
            IncomingRequestError::UnsupportedVersion(_) => Some(505),
        }
    }
}

impl fmt::Display for IncomingRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IncomingRequestError::Unanswerable => {
                f.write_str("request has no usable response topic or correlation data")
            }
            IncomingRequestError::BadHeader { name, .. } => {
                write!(f, "missing or invalid header {name}")
            }
            IncomingRequestError::UnsupportedVersion(v) => write!(
                f,
                "unsupported protocol version {}",
                String::from_utf8_lossy(v)
            ),
            IncomingRequestError::ForbiddenResponseTopic => {
                f.write_str("response topic is reserved by the state store")
            }
            IncomingRequestError::UnsupportedContentType(ct) => write!(
                f,
                "unsupported content type {}",
                String::from_utf8_lossy(ct)
            ),
        }
    }
}

impl core::error::Error for IncomingRequestError {}

/// Where a reply to a rejected request goes, when it can go anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The request's response topic.
    pub topic: Bytes,
    /// The request's correlation data.
    pub correlation: Bytes,
}

/// Store side: a request that cannot be executed, and where (if anywhere) to say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRequest {
    /// `None` when no reply is possible.
    pub reply_to: Option<ReplyTo>,
    /// Why.
    pub error: IncomingRequestError,
}

impl fmt::Display for RejectedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl core::error::Error for RejectedRequest {}

/// A response topic nobody can publish to: empty, not UTF-8, or containing a wildcard or NUL
/// (MQTT forbids these in topic names; publishing there would fail or get us disconnected).
fn unpublishable_topic(topic: &[u8]) -> bool {
    topic.is_empty()
        || topic.iter().any(|&c| matches!(c, b'+' | b'#' | 0))
        || core::str::from_utf8(topic).is_err()
}

/// Store side: parses a request PUBLISH.
///
/// Checks run in this order: a place to reply (else dropped unanswered), a response topic outside
/// the store's own namespace (else dropped), `__protVer` (400 / 505), Message Expiry (400),
/// `__srcId` (400), Content Type (415).
pub fn parse_request(msg: &Message) -> Result<IncomingRequest, RejectedRequest> {
    let drop = |error| RejectedRequest {
        reply_to: None,
        error,
    };
    let (response_topic, correlation) = match (&msg.response_topic, &msg.correlation_data) {
        (Some(t), Some(c)) if !c.is_empty() && !unpublishable_topic(t) => (t.clone(), c.clone()),
        _ => return Err(drop(IncomingRequestError::Unanswerable)),
    };
    if response_topic.as_ref() == REQUEST_TOPIC.as_bytes()
        || response_topic.starts_with(NOTIFY_TOPIC_PREFIX.as_bytes())
    {
        return Err(drop(IncomingRequestError::ForbiddenResponseTopic));
    }
    let reject = |error| RejectedRequest {
        reply_to: Some(ReplyTo {
            topic: response_topic.clone(),
            correlation: correlation.clone(),
        }),
        error,
    };
    if let Some(version) = msg.user_property(prop::PROTOCOL_VERSION) {
        match parse_version(version) {
            Some((1, _)) => {}
            Some(_) => {
                return Err(reject(IncomingRequestError::UnsupportedVersion(
                    version.clone(),
                )))
            }
            None => {
                return Err(reject(IncomingRequestError::BadHeader {
                    name: prop::PROTOCOL_VERSION,
                    value: Some(version.clone()),
                }))
            }
        }
    }
    let Some(expiry_secs) = msg.message_expiry_secs else {
        return Err(reject(IncomingRequestError::BadHeader {
            name: MESSAGE_EXPIRY,
            value: None,
        }));
    };
    let source_id = match msg.user_property(prop::SOURCE_ID) {
        Some(id) if !id.is_empty() => id.clone(),
        other => {
            return Err(reject(IncomingRequestError::BadHeader {
                name: prop::SOURCE_ID,
                value: other.cloned(),
            }))
        }
    };
    if let Some(ct) = &msg.content_type {
        if ct.as_ref() != CONTENT_TYPE.as_bytes() {
            return Err(reject(IncomingRequestError::UnsupportedContentType(
                ct.clone(),
            )));
        }
    }
    Ok(IncomingRequest {
        source_id,
        correlation,
        response_topic,
        expiry_secs,
        timestamp: msg.user_property(prop::TIMESTAMP).cloned(),
        fencing_token: msg.user_property(prop::FENCING_TOKEN).cloned(),
        persist: msg
            .user_property(prop::PERSISTENCE)
            .is_some_and(|v| v.as_ref() == b"true"),
        payload: msg.payload.clone(),
    })
}

/// The header name reported in `__propName` for a missing Message Expiry (docs/protocol.md §4.2).
pub const MESSAGE_EXPIRY: &str = "Message Expiry";
/// The header name reported in `__propName` with a 415.
pub const CONTENT_TYPE_HEADER: &str = "Content Type";

/// A store → client PUBLISH skeleton: QoS 1, octet-stream, PFI 0.
fn reply_message(
    topic: Bytes,
    correlation: Bytes,
    expiry_secs: Option<u32>,
    payload: Bytes,
    user_properties: Vec<(Bytes, Bytes)>,
) -> Message {
    Message {
        topic,
        payload,
        qos: QoS::AtLeastOnce,
        retain: false,
        correlation_data: Some(correlation),
        response_topic: None,
        message_expiry_secs: expiry_secs,
        content_type: Some(static_bytes(CONTENT_TYPE)),
        payload_format_indicator: Some(0),
        user_properties,
    }
}

/// Store side: a `__stat: 200` response with the given payload and optional `__ts` version.
pub fn build_response(
    response_topic: Bytes,
    correlation: Bytes,
    expiry_secs: Option<u32>,
    payload: Bytes,
    version: Option<&Hlc>,
) -> Message {
    let mut props = Vec::with_capacity(3);
    props.push(user_prop(prop::STATUS, static_bytes("200")));
    props.push(user_prop(
        prop::PROTOCOL_VERSION,
        static_bytes(PROTOCOL_VERSION),
    ));
    if let Some(v) = version {
        props.push(user_prop(prop::TIMESTAMP, v.to_bytes()));
    }
    reply_message(response_topic, correlation, expiry_secs, payload, props)
}

/// Store side: an RPC error response (400 / 415 / 505) for a request that had a response topic
/// and correlation data. `None` when the request must be dropped unanswered. The payload is
/// empty.
pub fn build_error_response(rejected: &RejectedRequest) -> Option<Message> {
    let reply_to = rejected.reply_to.as_ref()?;
    let mut props = Vec::with_capacity(6);
    let mut header = |status: &'static str, message: &'static str| {
        props.push(user_prop(prop::STATUS, static_bytes(status)));
        props.push(user_prop(prop::STATUS_MESSAGE, static_bytes(message)));
    };
    match &rejected.error {
        IncomingRequestError::Unanswerable | IncomingRequestError::ForbiddenResponseTopic => {
            return None
        }
        IncomingRequestError::BadHeader { name, value } => {
            header("400", "missing or invalid header");
            props.push(user_prop(prop::PROPERTY_NAME, static_bytes(name)));
            if let Some(v) = value {
                props.push(user_prop(prop::PROPERTY_VALUE, v.clone()));
            }
        }
        IncomingRequestError::UnsupportedContentType(ct) => {
            header("415", "unsupported content type");
            props.push(user_prop(
                prop::PROPERTY_NAME,
                static_bytes(CONTENT_TYPE_HEADER),
            ));
            props.push(user_prop(prop::PROPERTY_VALUE, ct.clone()));
        }
        IncomingRequestError::UnsupportedVersion(requested) => {
            header("505", "unsupported protocol version");
            props.push(user_prop(prop::SUPPORTED_MAJOR_VERSIONS, static_bytes("1")));
            props.push(user_prop(prop::REQUEST_PROTOCOL_VERSION, requested.clone()));
        }
    }
    props.push(user_prop(
        prop::PROTOCOL_VERSION,
        static_bytes(PROTOCOL_VERSION),
    ));
    Some(reply_message(
        reply_to.topic.clone(),
        reply_to.correlation.clone(),
        None,
        Bytes::new(),
        props,
    ))
}

/// Store side: a notification PUBLISH to `client_id` about `key` (QoS 1, `__ts` = version).
pub fn build_notification(
    client_id: &[u8],
    key: &[u8],
    version: &Hlc,
    payload: &NotifyPayload,
) -> Message {
    NotificationFanout::new(key, version, payload).message_for(client_id)
}

/// Store side: one change of one key, told to each of its watchers.
///
/// A change fans out to every client registered for the key; only the topic differs between
/// the copies, so the payload, `__ts` and the key's hex form are built once and the copies share
/// them. Each [`NotificationFanout::message_for`] equals [`build_notification`] with the same
/// arguments.
#[derive(Debug, Clone)]
pub struct NotificationFanout {
    key_hex: Vec<u8>,
    version: Bytes,
    payload: Bytes,
}

impl NotificationFanout {
    /// Encodes the change once.
    pub fn new(key: &[u8], version: &Hlc, payload: &NotifyPayload) -> NotificationFanout {
        let mut body = Vec::new();
        payload.encode(&mut body);
        let mut key_hex = Vec::with_capacity(2 * key.len());
        hex::encode_upper_into(key, &mut key_hex);
        NotificationFanout {
            key_hex,
            version: version.to_bytes(),
            payload: Bytes::from(body),
        }
    }

    /// The notification PUBLISH to `client_id`.
    pub fn message_for(&self, client_id: &[u8]) -> Message {
        let mut topic = notification_topic_head(client_id, self.key_hex.len());
        topic.extend_from_slice(&self.key_hex);
        Message {
            topic: Bytes::from(topic),
            payload: self.payload.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
            correlation_data: None,
            response_topic: None,
            message_expiry_secs: None,
            content_type: Some(static_bytes(CONTENT_TYPE)),
            payload_format_indicator: Some(0),
            user_properties: alloc::vec![
                user_prop(prop::TIMESTAMP, self.version.clone()),
                user_prop(prop::PROTOCOL_VERSION, static_bytes(PROTOCOL_VERSION)),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::NotifyPayloadError;
    use crate::hex::HexError;
    use crate::hlc::HlcError;
    use alloc::vec;
    use proptest::prelude::*;

    const SPEC_NOTIFY_TOPIC: &str = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559";
    const SPEC_SET_PAYLOAD: &[u8] =
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n";
    const SPEC_DELETE_PAYLOAD: &[u8] = b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n";
    const CORR: [u8; 16] = [7; 16];

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn hlc(ms: u64, c: u64, node: &str) -> Hlc {
        Hlc::new(ms, c, b(node)).unwrap()
    }

    fn props(list: &[(&str, &str)]) -> Vec<(Bytes, Bytes)> {
        list.iter().map(|(k, v)| (b(k), b(v))).collect()
    }

    fn set_prop(msg: &mut Message, name: &str, value: Option<&str>) {
        msg.user_properties
            .retain(|(k, _)| k.as_ref() != name.as_bytes());
        if let Some(v) = value {
            msg.user_properties.push((b(name), b(v)));
        }
    }

    fn sample_request(ft: Option<&Hlc>, persist: bool) -> Message {
        let ts = hlc(1_696_374_425_000, 3, "node-a");
        build_request(&RequestEnvelope {
            client_id: "client-id1",
            response_topic: &response_topic("client-id1"),
            correlation: CORR,
            timestamp: &ts,
            fencing_token: ft,
            persist,
            timeout: Duration::from_millis(1500),
            payload: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n"),
        })
    }

    fn valid_response() -> Message {
        build_response(
            b(&response_topic("client-id1")),
            Bytes::copy_from_slice(&CORR),
            Some(10),
            Bytes::from_static(b"+OK\r\n"),
            Some(&hlc(1_696_374_425_000, 1, "StateStore")),
        )
    }

    /// A notification for `client-id1` / `SOMEKEY` (docs/protocol.md §13 row 34) with literal
    /// payload bytes.
    fn valid_notification() -> Message {
        Message {
            topic: b(SPEC_NOTIFY_TOPIC),
            payload: Bytes::from_static(SPEC_SET_PAYLOAD),
            qos: QoS::AtLeastOnce,
            content_type: Some(b(CONTENT_TYPE)),
            payload_format_indicator: Some(0),
            user_properties: props(&[("__ts", "1696374425000:1:StateStore"), ("__protVer", "1.0")]),
            ..Message::default()
        }
    }

    fn with_topic(topic: &str) -> Message {
        Message {
            topic: b(topic),
            ..valid_notification()
        }
    }

    // ---- topics ----

    #[test]
    fn topics_match_spec_examples() {
        assert_eq!(
            response_topic("client-id1"),
            "clients/client-id1/services/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke/response"
        );
        assert_eq!(
            notification_topic("client-id1", b"SOMEKEY"),
            SPEC_NOTIFY_TOPIC
        );
        assert_eq!(
            notification_filter("client-id1"),
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/+"
        );
        assert!(REQUEST_TOPIC.starts_with(SERVICE_PATH));
        assert!(NOTIFY_TOPIC_PREFIX.ends_with(SERVICE_PATH));
    }

    #[test]
    fn notification_topic_uses_upper_case_for_binary_keys() {
        assert_eq!(
            notification_topic("c", &[0x00, 0xab, 0xff]),
            alloc::format!("{NOTIFY_TOPIC_PREFIX}/63/command/notify/00ABFF")
        );
    }

    // ---- expiry ----

    #[test]
    fn expiry_rounds_up_with_floor_and_ceiling() {
        assert_eq!(expiry_secs(Duration::from_millis(1500)), 2);
        assert_eq!(expiry_secs(Duration::ZERO), 1);
        assert_eq!(expiry_secs(Duration::from_nanos(1)), 1);
        assert_eq!(expiry_secs(Duration::from_secs(1)), 1);
        assert_eq!(expiry_secs(Duration::from_secs(10)), 10);
        assert_eq!(expiry_secs(Duration::new(10, 1)), 11);
        assert_eq!(
            expiry_secs(Duration::from_secs(u64::from(u32::MAX))),
            u32::MAX
        );
        assert_eq!(
            expiry_secs(Duration::new(u64::from(u32::MAX) - 1, 1)),
            u32::MAX
        );
        assert_eq!(expiry_secs(Duration::new(u64::from(u32::MAX), 1)), u32::MAX);
        assert_eq!(expiry_secs(Duration::MAX), u32::MAX);
    }

    // ---- build_request ----

    #[test]
    fn request_has_exact_properties_in_official_order() {
        let ft = hlc(1_795_998_708_162, 0, "stub-responder");
        let msg = sample_request(Some(&ft), true);
        assert_eq!(msg.topic, b(REQUEST_TOPIC));
        assert_eq!(msg.qos, QoS::AtLeastOnce);
        assert!(!msg.retain);
        assert_eq!(msg.message_expiry_secs, Some(2));
        assert_eq!(msg.response_topic, Some(b(&response_topic("client-id1"))));
        assert_eq!(msg.correlation_data.as_deref(), Some(&CORR[..]));
        assert_eq!(msg.content_type, Some(b("application/octet-stream")));
        assert_eq!(msg.payload_format_indicator, Some(0));
        assert_eq!(msg.payload.as_ref(), b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n");
        assert_eq!(
            msg.user_properties,
            props(&[
                ("__ft", "001795998708162:00000:stub-responder"),
                ("aio-persistence", "true"),
                ("__srcId", "client-id1"),
                ("__ts", "001696374425000:00003:node-a"),
                ("__protVer", "1.0"),
                ("$partition", "client-id1"),
            ])
        );
    }

    #[test]
    fn request_omits_optional_properties() {
        let msg = sample_request(None, false);
        assert_eq!(
            msg.user_properties,
            props(&[
                ("__srcId", "client-id1"),
                ("__ts", "001696374425000:00003:node-a"),
                ("__protVer", "1.0"),
                ("$partition", "client-id1"),
            ])
        );
        assert!(msg.user_property("$high_priority").is_none());
    }

    // ---- parse_response ----

    #[test]
    fn response_parses() {
        let mut msg = valid_response();
        msg.user_properties.push((b("__stMsg"), b("fine")));
        let r = parse_response(&msg).unwrap();
        assert_eq!(r.correlation, CORR);
        assert_eq!(r.status, 200);
        assert_eq!(r.status_message, Some(b("fine")));
        assert_eq!(r.timestamp, Some(hlc(1_696_374_425_000, 1, "StateStore")));
        assert_eq!(r.payload.as_ref(), b"+OK\r\n");
    }

    #[test]
    fn response_accepts_minimal_form() {
        // No content type, no version, no timestamp: all optional.
        let msg = Message {
            correlation_data: Some(Bytes::copy_from_slice(&CORR)),
            user_properties: props(&[("__stat", "400")]),
            ..Message::default()
        };
        let r = parse_response(&msg).unwrap();
        assert_eq!((r.status, r.timestamp, r.status_message), (400, None, None));
    }

    #[test]
    fn response_without_correlation_is_rejected() {
        let mut msg = valid_response();
        msg.correlation_data = None;
        assert_eq!(parse_response(&msg), Err(EnvelopeError::BadCorrelationData));
        assert_eq!(response_correlation(&msg), None);
    }

    #[test]
    fn response_with_short_correlation_is_rejected() {
        let mut msg = valid_response();
        msg.correlation_data = Some(Bytes::from_static(&[1; 15]));
        assert_eq!(parse_response(&msg), Err(EnvelopeError::BadCorrelationData));
    }

    #[test]
    fn response_with_long_correlation_is_rejected() {
        let mut msg = valid_response();
        msg.correlation_data = Some(Bytes::from_static(&[1; 17]));
        assert_eq!(parse_response(&msg), Err(EnvelopeError::BadCorrelationData));
    }

    #[test]
    fn response_without_status_is_rejected() {
        let mut msg = valid_response();
        set_prop(&mut msg, "__stat", None);
        assert_eq!(
            parse_response(&msg),
            Err(EnvelopeError::MissingProperty("__stat"))
        );
        // The correlation is still available so the caller can fail the request at once.
        assert_eq!(response_correlation(&msg), Some(CORR));
    }

    #[test]
    fn response_with_non_decimal_status_is_rejected() {
        for bad in ["", "abc", "+200", " 200", "200 ", "70000", "2000000", "-1"] {
            let mut msg = valid_response();
            set_prop(&mut msg, "__stat", Some(bad));
            assert_eq!(
                parse_response(&msg),
                Err(EnvelopeError::InvalidProperty("__stat")),
                "{bad:?}"
            );
        }
        let mut msg = valid_response();
        set_prop(&mut msg, "__stat", Some("65535"));
        assert_eq!(parse_response(&msg).unwrap().status, 65535);
    }

    #[test]
    fn response_with_bad_timestamp_is_rejected() {
        let mut msg = valid_response();
        set_prop(&mut msg, "__ts", Some("abc"));
        assert_eq!(
            parse_response(&msg),
            Err(EnvelopeError::BadTimestamp(HlcError::WrongSegmentCount))
        );
    }

    #[test]
    fn response_with_text_plain_is_rejected() {
        let mut msg = valid_response();
        msg.content_type = Some(b("text/plain"));
        assert_eq!(parse_response(&msg), Err(EnvelopeError::BadContentType));
    }

    #[test]
    fn response_with_empty_content_type_is_rejected() {
        let mut msg = valid_response();
        msg.content_type = Some(Bytes::new());
        assert_eq!(parse_response(&msg), Err(EnvelopeError::BadContentType));
    }

    #[test]
    fn response_with_version_2_is_rejected() {
        let mut msg = valid_response();
        set_prop(&mut msg, "__protVer", Some("2.0"));
        assert_eq!(parse_response(&msg), Err(EnvelopeError::UnsupportedVersion));
    }

    #[test]
    fn response_with_non_numeric_minor_is_rejected() {
        for bad in ["1.x", "1", "1.", ".0", "1.0.0", "", "one.zero"] {
            let mut msg = valid_response();
            set_prop(&mut msg, "__protVer", Some(bad));
            assert_eq!(
                parse_response(&msg),
                Err(EnvelopeError::UnsupportedVersion),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn response_accepts_any_1_minor() {
        let mut msg = valid_response();
        set_prop(&mut msg, "__protVer", Some("1.7"));
        assert!(parse_response(&msg).is_ok());
    }

    // ---- parse_notification: errors detected before the payload is looked at ----

    #[test]
    fn notification_on_other_client_is_wrong_topic() {
        let msg = valid_notification();
        assert_eq!(
            parse_notification(&msg, "client-id2"),
            Err(EnvelopeError::WrongTopic)
        );
        assert_eq!(
            parse_notification(&msg, "client-id"),
            Err(EnvelopeError::WrongTopic)
        );
    }

    #[test]
    fn notification_with_lower_case_client_segment_is_wrong_topic() {
        let msg = with_topic(
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636c69656e742d696431/command/notify/534F4D454B4559",
        );
        assert_eq!(
            parse_notification(&msg, "client-id1"),
            Err(EnvelopeError::WrongTopic)
        );
    }

    #[test]
    fn notification_with_extra_level_is_wrong_topic() {
        let msg = with_topic(&alloc::format!("{SPEC_NOTIFY_TOPIC}/00"));
        assert_eq!(
            parse_notification(&msg, "client-id1"),
            Err(EnvelopeError::WrongTopic)
        );
    }

    #[test]
    fn notification_with_wrong_prefix_is_wrong_topic() {
        for topic in [
            "clients/statestore/v2/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559",
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify",
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notifyX534F",
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8636C69656E742D696431/command/notify/534F",
            "",
        ] {
            assert_eq!(
                parse_notification(&with_topic(topic), "client-id1"),
                Err(EnvelopeError::WrongTopic),
                "{topic}"
            );
        }
    }

    #[test]
    fn notification_with_empty_key_is_wrong_topic() {
        let msg = with_topic(&notification_topic("client-id1", b""));
        assert_eq!(
            parse_notification(&msg, "client-id1"),
            Err(EnvelopeError::WrongTopic)
        );
    }

    #[test]
    fn notification_with_lower_case_key_hex_is_a_typed_error() {
        let msg = with_topic(&alloc::format!(
            "{NOTIFY_TOPIC_PREFIX}/636C69656E742D696431/command/notify/7a7a"
        ));
        assert_eq!(
            parse_notification(&msg, "client-id1"),
            Err(EnvelopeError::BadKeyHex(HexError::InvalidDigit {
                index: 1
            }))
        );
    }

    #[test]
    fn notification_with_odd_key_hex_is_a_typed_error() {
        let msg = with_topic(&alloc::format!(
            "{NOTIFY_TOPIC_PREFIX}/636C69656E742D696431/command/notify/ABC"
        ));
        assert_eq!(
            parse_notification(&msg, "client-id1"),
            Err(EnvelopeError::BadKeyHex(HexError::OddLength))
        );
    }

    #[test]
    fn notification_with_oversized_key_is_a_typed_error() {
        let key = vec![0x41; MAX_NOTIFY_KEY_LEN + 1];
        let msg = with_topic(&notification_topic("client-id1", &key));
        assert_eq!(
            parse_notification(&msg, "client-id1"),
            Err(EnvelopeError::BadKeyHex(HexError::TooLong))
        );
    }

    #[test]
    fn notification_without_timestamp_is_rejected() {
        let mut msg = valid_notification();
        set_prop(&mut msg, "__ts", None);
        assert_eq!(
            parse_notification(&msg, "client-id1"),
            Err(EnvelopeError::MissingProperty("__ts"))
        );
    }

    #[test]
    fn notification_with_bad_timestamp_is_rejected() {
        let mut msg = valid_notification();
        set_prop(&mut msg, "__ts", Some("1:2"));
        assert_eq!(
            parse_notification(&msg, "client-id1"),
            Err(EnvelopeError::BadTimestamp(HlcError::WrongSegmentCount))
        );
    }

    #[test]
    fn notification_with_text_plain_is_rejected() {
        let mut msg = valid_notification();
        msg.content_type = Some(b("text/plain"));
        assert_eq!(
            parse_notification(&msg, "client-id1"),
            Err(EnvelopeError::BadContentType)
        );
    }

    #[test]
    fn notification_with_version_2_is_rejected() {
        let mut msg = valid_notification();
        set_prop(&mut msg, "__protVer", Some("2.0"));
        assert_eq!(
            parse_notification(&msg, "client-id1"),
            Err(EnvelopeError::UnsupportedVersion)
        );
    }

    // ---- parse_notification / build_notification with the payload codec ----

    #[test]
    fn notification_parses_spec_row_34() {
        let n = parse_notification(&valid_notification(), "client-id1").unwrap();
        assert_eq!(n.key.as_ref(), b"SOMEKEY");
        assert_eq!(n.version, hlc(1_696_374_425_000, 1, "StateStore"));
        assert_eq!(n.payload, NotifyPayload::Set { value: b("abc") });
    }

    #[test]
    fn notification_delete_at_qos0_without_content_type_parses() {
        let msg = Message {
            qos: QoS::AtMostOnce,
            content_type: None,
            payload: Bytes::from_static(SPEC_DELETE_PAYLOAD),
            ..valid_notification()
        };
        let n = parse_notification(&msg, "client-id1").unwrap();
        assert_eq!(n.payload, NotifyPayload::Delete);
    }

    #[test]
    fn notification_with_other_payload_is_rejected() {
        for payload in [
            &b"+OK\r\n"[..],
            b"*3\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n",
            b"*2\r\n$6\r\nNOTIFY\r\n$6\r\ndelete\r\n",
            b"",
        ] {
            let msg = Message {
                payload: Bytes::from_static(payload),
                ..valid_notification()
            };
            assert!(
                matches!(
                    parse_notification(&msg, "client-id1"),
                    Err(EnvelopeError::BadNotifyPayload(_))
                ),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn build_notification_matches_spec_row_34() {
        let version = hlc(1_696_374_425_000, 1, "StateStore");
        let msg = build_notification(
            b"client-id1",
            b"SOMEKEY",
            &version,
            &NotifyPayload::Set { value: b("abc") },
        );
        assert_eq!(msg.topic, b(SPEC_NOTIFY_TOPIC));
        assert_eq!(msg.payload.as_ref(), SPEC_SET_PAYLOAD);
        assert_eq!(msg.qos, QoS::AtLeastOnce);
        assert!(!msg.retain);
        assert_eq!(msg.content_type, Some(b(CONTENT_TYPE)));
        assert_eq!(msg.payload_format_indicator, Some(0));
        assert_eq!(
            msg.user_properties,
            props(&[
                ("__ts", "001696374425000:00001:StateStore"),
                ("__protVer", "1.0")
            ])
        );
        let del = build_notification(b"client-id1", b"SOMEKEY", &version, &NotifyPayload::Delete);
        assert_eq!(del.payload.as_ref(), SPEC_DELETE_PAYLOAD);
    }

    // ---- parse_request ----

    fn rejected(msg: &Message) -> RejectedRequest {
        parse_request(msg).unwrap_err()
    }

    fn reply_to_sample() -> Option<ReplyTo> {
        Some(ReplyTo {
            topic: b(&response_topic("client-id1")),
            correlation: Bytes::copy_from_slice(&CORR),
        })
    }

    #[test]
    fn request_round_trips_through_parse_request() {
        let ft = hlc(5, 6, "holder");
        let r = parse_request(&sample_request(Some(&ft), true)).unwrap();
        assert_eq!(
            r,
            IncomingRequest {
                source_id: b("client-id1"),
                correlation: Bytes::copy_from_slice(&CORR),
                response_topic: b(&response_topic("client-id1")),
                expiry_secs: 2,
                timestamp: Some(b("001696374425000:00003:node-a")),
                fencing_token: Some(b("000000000000005:00006:holder")),
                persist: true,
                payload: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n"),
            }
        );
        let plain = parse_request(&sample_request(None, false)).unwrap();
        assert_eq!((plain.fencing_token, plain.persist), (None, false));
    }

    #[test]
    fn request_without_response_topic_is_unanswerable() {
        let mut msg = sample_request(None, false);
        msg.response_topic = None;
        let r = rejected(&msg);
        assert_eq!(
            (r.reply_to, r.error),
            (None, IncomingRequestError::Unanswerable)
        );
    }

    #[test]
    fn request_without_correlation_is_unanswerable() {
        let mut msg = sample_request(None, false);
        msg.correlation_data = None;
        assert_eq!(
            rejected(&msg),
            RejectedRequest {
                reply_to: None,
                error: IncomingRequestError::Unanswerable
            }
        );
    }

    #[test]
    fn request_with_empty_correlation_is_unanswerable() {
        let mut msg = sample_request(None, false);
        msg.correlation_data = Some(Bytes::new());
        assert_eq!(rejected(&msg).error, IncomingRequestError::Unanswerable);
    }

    #[test]
    fn request_with_unpublishable_response_topic_is_unanswerable() {
        for topic in [&b""[..], b"a/+/b", b"a/#", b"a\0b", b"\xff\xfe"] {
            let mut msg = sample_request(None, false);
            msg.response_topic = Some(Bytes::copy_from_slice(topic));
            assert_eq!(
                rejected(&msg),
                RejectedRequest {
                    reply_to: None,
                    error: IncomingRequestError::Unanswerable
                },
                "{topic:?}"
            );
        }
    }

    #[test]
    fn request_replying_to_request_topic_is_forbidden() {
        let mut msg = sample_request(None, false);
        msg.response_topic = Some(b(REQUEST_TOPIC));
        assert_eq!(
            rejected(&msg),
            RejectedRequest {
                reply_to: None,
                error: IncomingRequestError::ForbiddenResponseTopic
            }
        );
    }

    #[test]
    fn request_replying_under_notify_prefix_is_forbidden() {
        let mut msg = sample_request(None, false);
        msg.response_topic = Some(b(&notification_topic("client-id1", b"k")));
        assert_eq!(
            rejected(&msg),
            RejectedRequest {
                reply_to: None,
                error: IncomingRequestError::ForbiddenResponseTopic
            }
        );
    }

    #[test]
    fn request_without_message_expiry_is_400() {
        let mut msg = sample_request(None, false);
        msg.message_expiry_secs = None;
        assert_eq!(
            rejected(&msg),
            RejectedRequest {
                reply_to: reply_to_sample(),
                error: IncomingRequestError::BadHeader {
                    name: "Message Expiry",
                    value: None
                }
            }
        );
    }

    #[test]
    fn request_without_source_id_is_400() {
        let mut msg = sample_request(None, false);
        set_prop(&mut msg, "__srcId", None);
        assert_eq!(
            rejected(&msg),
            RejectedRequest {
                reply_to: reply_to_sample(),
                error: IncomingRequestError::BadHeader {
                    name: "__srcId",
                    value: None
                }
            }
        );
    }

    #[test]
    fn request_with_empty_source_id_is_400() {
        let mut msg = sample_request(None, false);
        set_prop(&mut msg, "__srcId", Some(""));
        assert_eq!(
            rejected(&msg).error,
            IncomingRequestError::BadHeader {
                name: "__srcId",
                value: Some(Bytes::new())
            }
        );
    }

    #[test]
    fn request_with_version_2_is_505() {
        let mut msg = sample_request(None, false);
        set_prop(&mut msg, "__protVer", Some("2.0"));
        assert_eq!(
            rejected(&msg),
            RejectedRequest {
                reply_to: reply_to_sample(),
                error: IncomingRequestError::UnsupportedVersion(b("2.0"))
            }
        );
    }

    #[test]
    fn request_with_unparsable_version_is_400() {
        for bad in ["1.x", "abc", "1", "", "1.0.0", "99999999999.0"] {
            let mut msg = sample_request(None, false);
            set_prop(&mut msg, "__protVer", Some(bad));
            assert_eq!(
                rejected(&msg).error,
                IncomingRequestError::BadHeader {
                    name: "__protVer",
                    value: Some(b(bad))
                },
                "{bad:?}"
            );
        }
    }

    #[test]
    fn request_without_version_means_1_0() {
        let mut msg = sample_request(None, false);
        set_prop(&mut msg, "__protVer", None);
        assert!(parse_request(&msg).is_ok());
        set_prop(&mut msg, "__protVer", Some("1.9"));
        assert!(parse_request(&msg).is_ok());
    }

    #[test]
    fn request_with_text_plain_is_415() {
        let mut msg = sample_request(None, false);
        msg.content_type = Some(b("text/plain"));
        assert_eq!(
            rejected(&msg),
            RejectedRequest {
                reply_to: reply_to_sample(),
                error: IncomingRequestError::UnsupportedContentType(b("text/plain"))
            }
        );
    }

    #[test]
    fn request_without_content_type_is_accepted() {
        let mut msg = sample_request(None, false);
        msg.content_type = None;
        assert!(parse_request(&msg).is_ok());
    }

    #[test]
    fn request_passes_timestamps_raw_and_persist_only_for_true() {
        let mut msg = sample_request(None, false);
        set_prop(&mut msg, "__ts", Some("abc"));
        set_prop(&mut msg, "__ft", Some("1:2"));
        set_prop(&mut msg, "aio-persistence", Some("TRUE"));
        let r = parse_request(&msg).unwrap();
        assert_eq!(r.timestamp, Some(b("abc")));
        assert_eq!(r.fencing_token, Some(b("1:2")));
        assert!(!r.persist);
        set_prop(&mut msg, "__ts", None);
        assert_eq!(parse_request(&msg).unwrap().timestamp, None);
    }

    #[test]
    fn request_correlation_of_any_length_is_echoed() {
        let mut msg = sample_request(None, false);
        msg.correlation_data = Some(Bytes::from_static(b"xyz"));
        assert_eq!(parse_request(&msg).unwrap().correlation.as_ref(), b"xyz");
    }

    // ---- build_response / build_error_response ----

    #[test]
    fn response_round_trips() {
        let msg = valid_response();
        assert_eq!(msg.qos, QoS::AtLeastOnce);
        assert_eq!(msg.message_expiry_secs, Some(10));
        assert_eq!(msg.content_type, Some(b(CONTENT_TYPE)));
        assert_eq!(msg.payload_format_indicator, Some(0));
        assert_eq!(
            msg.user_properties,
            props(&[
                ("__stat", "200"),
                ("__protVer", "1.0"),
                ("__ts", "001696374425000:00001:StateStore"),
            ])
        );
        let r = parse_response(&msg).unwrap();
        assert_eq!(
            r,
            ResponseEnvelope {
                correlation: CORR,
                status: 200,
                status_message: None,
                timestamp: Some(hlc(1_696_374_425_000, 1, "StateStore")),
                payload: Bytes::from_static(b"+OK\r\n"),
            }
        );
        let bare = build_response(
            b("t"),
            Bytes::copy_from_slice(&CORR),
            None,
            Bytes::new(),
            None,
        );
        assert_eq!(bare.message_expiry_secs, None);
        assert_eq!(parse_response(&bare).unwrap().timestamp, None);
    }

    #[test]
    fn error_response_400_with_value() {
        let rej = RejectedRequest {
            reply_to: reply_to_sample(),
            error: IncomingRequestError::BadHeader {
                name: "__protVer",
                value: Some(b("abc")),
            },
        };
        let msg = build_error_response(&rej).unwrap();
        assert_eq!(msg.topic, b(&response_topic("client-id1")));
        assert_eq!(msg.correlation_data.as_deref(), Some(&CORR[..]));
        assert_eq!(msg.qos, QoS::AtLeastOnce);
        assert!(msg.payload.is_empty());
        assert_eq!(msg.user_property("__stat"), Some(&b("400")));
        assert!(msg.user_property("__stMsg").is_some());
        assert_eq!(msg.user_property("__propName"), Some(&b("__protVer")));
        assert_eq!(msg.user_property("__propVal"), Some(&b("abc")));
        let r = parse_response(&msg).unwrap();
        assert_eq!(r.status, 400);
        assert!(r.status_message.is_some());
    }

    #[test]
    fn error_response_400_without_value() {
        let rej = RejectedRequest {
            reply_to: reply_to_sample(),
            error: IncomingRequestError::BadHeader {
                name: MESSAGE_EXPIRY,
                value: None,
            },
        };
        let msg = build_error_response(&rej).unwrap();
        assert_eq!(msg.user_property("__propName"), Some(&b("Message Expiry")));
        assert_eq!(msg.user_property("__propVal"), None);
    }

    #[test]
    fn error_response_415() {
        let rej = RejectedRequest {
            reply_to: reply_to_sample(),
            error: IncomingRequestError::UnsupportedContentType(b("text/plain")),
        };
        let msg = build_error_response(&rej).unwrap();
        assert_eq!(msg.user_property("__stat"), Some(&b("415")));
        assert_eq!(msg.user_property("__propName"), Some(&b("Content Type")));
        assert_eq!(msg.user_property("__propVal"), Some(&b("text/plain")));
        assert!(msg.payload.is_empty());
        assert_eq!(rej.error.status(), Some(415));
    }

    #[test]
    fn error_response_505_matches_spec_row_36() {
        let mut req = sample_request(None, false);
        set_prop(&mut req, "__protVer", Some("2.0"));
        let msg = build_error_response(&rejected(&req)).unwrap();
        assert_eq!(msg.user_property("__stat"), Some(&b("505")));
        assert_eq!(msg.user_property("__supProtMajVer"), Some(&b("1")));
        assert_eq!(msg.user_property("__requestProtVer"), Some(&b("2.0")));
        assert!(msg.payload.is_empty());
        assert_eq!(parse_response(&msg).unwrap().status, 505);
    }

    #[test]
    fn unanswerable_and_forbidden_get_no_response() {
        for error in [
            IncomingRequestError::Unanswerable,
            IncomingRequestError::ForbiddenResponseTopic,
        ] {
            assert_eq!(error.status(), None);
            // Even if a caller attached a destination, these are never answered.
            let rej = RejectedRequest {
                reply_to: reply_to_sample(),
                error,
            };
            assert_eq!(build_error_response(&rej), None);
        }
        let no_dest = RejectedRequest {
            reply_to: None,
            error: IncomingRequestError::BadHeader {
                name: "__srcId",
                value: None,
            },
        };
        assert_eq!(build_error_response(&no_dest), None);
    }

    #[test]
    fn errors_display() {
        use alloc::string::ToString;
        assert_eq!(
            EnvelopeError::MissingProperty("__ts").to_string(),
            "missing property __ts"
        );
        assert!(
            EnvelopeError::BadNotifyPayload(NotifyPayloadError::UnexpectedShape)
                .to_string()
                .contains("UnexpectedShape")
        );
        assert!(IncomingRequestError::UnsupportedVersion(b("2.0"))
            .to_string()
            .contains("2.0"));
        let e: &dyn core::error::Error = &EnvelopeError::WrongTopic;
        assert!(!e.to_string().is_empty());
    }

    // ---- property tests ----

    const NAMES: &[&str] = &[
        "__srcId",
        "__ts",
        "__ft",
        "__protVer",
        "__stat",
        "__stMsg",
        "aio-persistence",
        "$partition",
        "x",
    ];

    fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    /// Values that are sometimes meaningful (versions, statuses, HLCs) and sometimes garbage.
    fn arb_value() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            arb_bytes(24),
            "[0-9]{0,6}".prop_map(|s| b(&s)),
            "[0-9]{1,3}\\.[0-9x]{0,3}".prop_map(|s| b(&s)),
            "[0-9]{1,16}:[0-9]{1,6}:[a-z:]{0,8}".prop_map(|s| b(&s)),
            Just(b("true")),
            Just(b(CONTENT_TYPE)),
        ]
    }

    fn arb_name() -> impl Strategy<Value = Bytes> {
        prop_oneof![proptest::sample::select(NAMES).prop_map(b), arb_bytes(8),]
    }

    /// Random topics, including near-misses of a notification topic for `client-id1`.
    fn arb_topic() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            arb_bytes(48),
            "[0-9A-Fa-f/+#]{0,12}".prop_map(|k| b(&alloc::format!(
                "{NOTIFY_TOPIC_PREFIX}/636C69656E742D696431/command/notify/{k}"
            ))),
            "[0-9A-F]{0,24}".prop_map(|c| b(&alloc::format!(
                "{NOTIFY_TOPIC_PREFIX}/{c}/command/notify/41"
            ))),
            Just(b(REQUEST_TOPIC)),
        ]
    }

    fn arb_qos() -> impl Strategy<Value = QoS> {
        prop_oneof![
            Just(QoS::AtMostOnce),
            Just(QoS::AtLeastOnce),
            Just(QoS::ExactlyOnce)
        ]
    }

    prop_compose! {
        fn arb_message()(
            topic in arb_topic(),
            payload in arb_bytes(64),
            qos in arb_qos(),
            retain in any::<bool>(),
            correlation_data in proptest::option::of(arb_bytes(20)),
            response_topic in proptest::option::of(prop_oneof![arb_topic(), Just(b("resp/x"))]),
            message_expiry_secs in proptest::option::of(any::<u32>()),
            content_type in proptest::option::of(prop_oneof![arb_bytes(8), Just(b(CONTENT_TYPE))]),
            payload_format_indicator in proptest::option::of(any::<u8>()),
            user_properties in proptest::collection::vec((arb_name(), arb_value()), 0..10),
        ) -> Message {
            Message {
                topic, payload, qos, retain, correlation_data, response_topic,
                message_expiry_secs, content_type, payload_format_indicator, user_properties,
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        RemoveProp(usize),
        SetPropValue(usize, Bytes),
        InsertProp(usize, Bytes, Bytes),
        Correlation(Option<Bytes>),
        ContentType(Option<Bytes>),
        ResponseTopic(Option<Bytes>),
        Expiry(Option<u32>),
        TopicByte(usize, u8),
        TruncateTopic(usize),
        Payload(Bytes),
    }

    fn arb_mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            any::<usize>().prop_map(Mutation::RemoveProp),
            (any::<usize>(), arb_value()).prop_map(|(i, v)| Mutation::SetPropValue(i, v)),
            (any::<usize>(), arb_name(), arb_value())
                .prop_map(|(i, k, v)| Mutation::InsertProp(i, k, v)),
            proptest::option::of(arb_bytes(20)).prop_map(Mutation::Correlation),
            proptest::option::of(arb_bytes(8)).prop_map(Mutation::ContentType),
            proptest::option::of(arb_topic()).prop_map(Mutation::ResponseTopic),
            proptest::option::of(any::<u32>()).prop_map(Mutation::Expiry),
            (any::<usize>(), any::<u8>()).prop_map(|(i, c)| Mutation::TopicByte(i, c)),
            any::<usize>().prop_map(Mutation::TruncateTopic),
            arb_bytes(32).prop_map(Mutation::Payload),
        ]
    }

    fn mutate(msg: &mut Message, m: Mutation) {
        let n = msg.user_properties.len();
        match m {
            Mutation::RemoveProp(i) if n > 0 => {
                msg.user_properties.remove(i % n);
            }
            Mutation::SetPropValue(i, v) if n > 0 => msg.user_properties[i % n].1 = v,
            Mutation::InsertProp(i, k, v) => msg.user_properties.insert(i % (n + 1), (k, v)),
            Mutation::Correlation(c) => msg.correlation_data = c,
            Mutation::ContentType(c) => msg.content_type = c,
            Mutation::ResponseTopic(t) => msg.response_topic = t,
            Mutation::Expiry(e) => msg.message_expiry_secs = e,
            Mutation::TopicByte(i, c) if !msg.topic.is_empty() => {
                let mut t = msg.topic.to_vec();
                let len = t.len();
                t[i % len] = c;
                msg.topic = Bytes::from(t);
            }
            Mutation::TruncateTopic(i) => {
                let keep = i % (msg.topic.len() + 1);
                msg.topic.truncate(keep);
            }
            Mutation::Payload(p) => msg.payload = p,
            _ => {}
        }
    }

    fn without_timestamps(msg: &Message) -> Message {
        let mut m = msg.clone();
        m.user_properties.retain(|(k, _)| k.as_ref() != b"__ts");
        m
    }

    proptest! {
        #[test]
        fn random_messages_never_panic(msg in arb_message()) {
            let _ = parse_response(&msg);
            let _ = parse_request(&msg);
            // Without `__ts` the notification parser stops before the payload codec, so this runs
            // on every branch; the full path is covered by `random_notifications_never_panic`.
            let n = parse_notification(&without_timestamps(&msg), "client-id1");
            prop_assert!(n.is_err());
            if let Ok(r) = parse_request(&msg) {
                prop_assert!(msg.response_topic.is_some() && msg.message_expiry_secs.is_some());
                prop_assert_eq!(r.payload, msg.payload.clone());
            }
            if let Err(rej) = parse_request(&msg) {
                let _ = build_error_response(&rej);
            }
        }

        #[test]
        fn mutated_responses_never_panic(muts in proptest::collection::vec(arb_mutation(), 0..6)) {
            let mut msg = valid_response();
            let untouched = muts.is_empty();
            for m in muts {
                mutate(&mut msg, m);
            }
            let r = parse_response(&msg);
            if untouched {
                prop_assert!(r.is_ok());
            }
            if let Ok(r) = r {
                prop_assert_eq!(msg.correlation_data.as_deref(), Some(&r.correlation[..]));
            }
        }

        #[test]
        fn mutated_requests_never_panic(
            muts in proptest::collection::vec(arb_mutation(), 0..6),
            ft in any::<bool>(),
            persist in any::<bool>(),
        ) {
            let token = hlc(1, 2, "n");
            let mut msg = sample_request(ft.then_some(&token), persist);
            let untouched = muts.is_empty();
            for m in muts {
                mutate(&mut msg, m);
            }
            match parse_request(&msg) {
                Ok(r) => prop_assert_eq!(msg.correlation_data.as_ref(), Some(&r.correlation)),
                Err(rej) => {
                    prop_assert!(!untouched);
                    if let Some(reply) = build_error_response(&rej) {
                        prop_assert!(parse_response(&reply).is_ok() || reply.correlation_data.as_ref().map(|c| c.len()) != Some(16));
                    }
                }
            }
        }

        #[test]
        fn mutated_notifications_before_payload_never_panic(
            muts in proptest::collection::vec(arb_mutation(), 0..6),
        ) {
            let mut msg = valid_notification();
            for m in muts {
                mutate(&mut msg, m);
            }
            prop_assert!(parse_notification(&without_timestamps(&msg), "client-id1").is_err());
        }

        #[test]
        fn notification_topic_round_trips(
            client in "\\PC{0,12}",
            key in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let topic = notification_topic(&client, &key);
            let segment = notification_key_segment(topic.as_bytes(), &client);
            prop_assert!(segment.is_some());
            let decoded = hex::decode_upper(segment.unwrap_or_default(), MAX_NOTIFY_KEY_LEN);
            prop_assert_eq!(decoded, Ok(key.clone()));
            let filter = notification_filter(&client);
            prop_assert!(filter.ends_with("/+"));
            prop_assert!(topic.starts_with(filter.trim_end_matches('+')));
            // The same topic is not addressed to anyone else.
            let other = alloc::format!("{client}x");
            prop_assert!(notification_key_segment(topic.as_bytes(), &other).is_none());
        }

        #[test]
        fn request_round_trips(
            client in "[ -~]{1,16}",
            corr in any::<[u8; 16]>(),
            ms in 0u64..=u64::MAX,
            counter in any::<u64>(),
            timeout_ms in any::<u64>(),
            persist in any::<bool>(),
            payload in arb_bytes(64),
        ) {
            let ts = hlc(ms, counter, "node");
            let resp = response_topic(&client);
            let msg = build_request(&RequestEnvelope {
                client_id: &client,
                response_topic: &resp,
                correlation: corr,
                timestamp: &ts,
                fencing_token: Some(&ts),
                persist,
                timeout: Duration::from_millis(timeout_ms),
                payload: payload.clone(),
            });
            // Client ids with wildcards make an unpublishable response topic; those are dropped.
            if client.contains(['+', '#']) {
                prop_assert_eq!(parse_request(&msg).unwrap_err().error, IncomingRequestError::Unanswerable);
            } else {
                let r = parse_request(&msg);
                prop_assert!(r.is_ok());
                let r = r.unwrap_or_else(|_| unreachable!());
                prop_assert_eq!(r.source_id, b(&client));
                prop_assert_eq!(r.correlation.as_ref(), &corr[..]);
                prop_assert_eq!(r.expiry_secs, expiry_secs(Duration::from_millis(timeout_ms)));
                prop_assert_eq!(r.persist, persist);
                prop_assert_eq!(r.timestamp.clone().map(|t| Hlc::parse(&t)), Some(Ok(ts.clone())));
                prop_assert_eq!(r.payload, payload);
            }
        }

        #[test]
        fn response_round_trips_prop(
            corr in any::<[u8; 16]>(),
            expiry in proptest::option::of(any::<u32>()),
            payload in arb_bytes(64),
            version in proptest::option::of((any::<u64>(), any::<u64>(), "[a-zA-Z0-9-]{0,36}")),
        ) {
            let version = version.map(|(ms, c, node)| hlc(ms, c, &node));
            let msg = build_response(b("resp"), Bytes::copy_from_slice(&corr), expiry, payload.clone(), version.as_ref());
            let r = parse_response(&msg);
            prop_assert_eq!(r, Ok(ResponseEnvelope {
                correlation: corr,
                status: 200,
                status_message: None,
                timestamp: version,
                payload,
            }));
        }
    }

    proptest! {
        #[test]
        fn random_notifications_never_panic(msg in arb_message()) {
            let _ = parse_notification(&msg, "client-id1");
        }

        #[test]
        fn mutated_notifications_never_panic(muts in proptest::collection::vec(arb_mutation(), 0..6)) {
            let mut msg = valid_notification();
            let untouched = muts.is_empty();
            for m in muts {
                mutate(&mut msg, m);
            }
            let r = parse_notification(&msg, "client-id1");
            if untouched {
                prop_assert!(r.is_ok());
            }
        }

        #[test]
        fn notification_round_trips(
            client in "\\PC{0,12}",
            key in proptest::collection::vec(any::<u8>(), 1..64),
            value in proptest::option::of(arb_bytes(64)),
            ms in any::<u64>(),
            counter in any::<u64>(),
        ) {
            let payload = match value {
                Some(value) => NotifyPayload::Set { value },
                None => NotifyPayload::Delete,
            };
            let version = hlc(ms, counter, "StateStore");
            let msg = build_notification(client.as_bytes(), &key, &version, &payload);
            let expected_topic = notification_topic(&client, &key);
            prop_assert_eq!(msg.topic.as_ref(), expected_topic.as_bytes());
            let n = parse_notification(&msg, &client);
            prop_assert_eq!(n, Ok(NotificationEnvelope { key: Bytes::from(key), version, payload }));
        }
    }
}
