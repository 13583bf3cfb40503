//! The MQTT 5 envelope of the state-store RPC (spec §1, §5, §8) as plain data.
//!
//! [`Message`] is an MQTT PUBLISH with the properties the protocol uses; adapters convert their
//! MQTT library's type to and from it. This module builds requests exactly as the official
//! clients do, parses responses and notifications with typed errors, and (for the store side)
//! parses requests and builds responses and notifications.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use crate::command::NotifyPayload;
use crate::hlc::Hlc;

/// The request topic every client publishes to.
pub const REQUEST_TOPIC: &str = "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke";
/// Prefix of notification topics: `{prefix}/{HEX(clientId)}/command/notify/{HEX(key)}`.
pub const NOTIFY_TOPIC_PREFIX: &str = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8";
/// The only content type the protocol uses.
pub const CONTENT_TYPE: &str = "application/octet-stream";
/// The protocol version sent in `__protVer`.
pub const PROTOCOL_VERSION: &str = "1.0";

/// User property names (spec §1.3).
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

/// The response topic this library uses for a client (the Rust SDK's form).
pub fn response_topic(client_id: &str) -> String {
    let _ = client_id;
    todo!()
}

/// The notification topic for a client and key.
pub fn notification_topic(client_id: &str, key: &[u8]) -> String {
    let _ = (client_id, key);
    todo!()
}

/// The subscription filter for all of a client's notifications (`.../command/notify/+`).
pub fn notification_filter(client_id: &str) -> String {
    let _ = client_id;
    todo!()
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

/// Builds the request PUBLISH (QoS 1, content type, properties in the official client's order).
pub fn build_request(req: &RequestEnvelope<'_>) -> Message {
    let _ = req;
    todo!()
}

/// Message Expiry for a timeout: whole seconds rounded up, at least 1, saturating at `u32::MAX`.
pub fn expiry_secs(timeout: Duration) -> u32 {
    let _ = timeout;
    todo!()
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

/// Parses a response: correlation data (16 bytes), `__stat` required, `__ts` optional but must
/// parse, content type absent or `application/octet-stream`, `__protVer` major 1 if present.
pub fn parse_response(msg: &Message) -> Result<ResponseEnvelope, EnvelopeError> {
    let _ = msg;
    todo!()
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

/// Parses a notification addressed to `client_id`: strict upper-case hex key, `__ts` required,
/// exactly the two payload shapes.
pub fn parse_notification(
    msg: &Message,
    client_id: &str,
) -> Result<NotificationEnvelope, EnvelopeError> {
    let _ = (msg, client_id);
    todo!()
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
}

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

/// Store side: parses a request PUBLISH.
pub fn parse_request(msg: &Message) -> Result<IncomingRequest, RejectedRequest> {
    let _ = msg;
    todo!()
}

/// Store side: a `__stat: 200` response with the given payload and optional `__ts` version.
pub fn build_response(
    response_topic: Bytes,
    correlation: Bytes,
    expiry_secs: Option<u32>,
    payload: Bytes,
    version: Option<&Hlc>,
) -> Message {
    let _ = (response_topic, correlation, expiry_secs, payload, version);
    todo!()
}

/// Store side: an RPC error response (400 / 505) for a request that had a response topic and
/// correlation data.
pub fn build_error_response(rejected: &RejectedRequest) -> Option<Message> {
    let _ = rejected;
    todo!()
}

/// Store side: a notification PUBLISH to `client_id` about `key` (QoS 1, `__ts` = version).
pub fn build_notification(
    client_id: &[u8],
    key: &[u8],
    version: &Hlc,
    payload: &NotifyPayload,
) -> Message {
    let _ = (client_id, key, version, payload);
    todo!()
}
