//! The MQTT 5 envelope of the state-store RPC (docs/protocol.md §2–§5, §9.2, §11.1) as plain data.
//!
//! [`Message`] is an MQTT PUBLISH with the properties the protocol uses; adapters convert their
//! MQTT library's type to and from it. This module builds requests exactly as the official
//! clients do, parses responses and notifications with typed errors, and (for the store side)
//! parses requests and builds responses and notifications.

mod client;
mod props;
mod server;
#[cfg(test)]
mod tests;
mod topics;

use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;

use crate::resp3::Limits;

pub use client::{
    build_request, expiry_secs, parse_notification, parse_response, response_correlation,
    NotificationEnvelope, RequestEnvelope, ResponseEnvelope,
};
pub use server::{
    build_error_response, build_notification, build_response, parse_request, IncomingRequest,
    IncomingRequestError, NotificationFanout, RejectedRequest, ReplyTo, CONTENT_TYPE_HEADER,
    MESSAGE_EXPIRY,
};
pub use topics::{notification_filter, notification_topic, response_topic};

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
