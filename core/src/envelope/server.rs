//! The store side of the envelope: parsing requests as the store sees them, and building
//! responses, error responses and notifications.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;

use super::props::{parse_version, static_bytes, user_prop};
use super::topics::notification_topic_head;
use super::{
    prop, Message, QoS, CONTENT_TYPE, NOTIFY_TOPIC_PREFIX, PROTOCOL_VERSION, REQUEST_TOPIC,
};
use crate::command::NotifyPayload;
use crate::hex;
use crate::hlc::Hlc;

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
