//! A structure-aware MQTT message for the envelope and client targets.
//!
//! [`FuzzMessage`] derives `Arbitrary` (core itself never depends on `arbitrary`). Every field
//! chooses between the values the protocol uses (topics built by core's own topic functions,
//! known property names, HLC texts, status codes, RESP3 payloads from core's encoders) and raw
//! bytes, so the fuzzer reaches the deep branches without seed files and still tries garbage.

use arbitrary::Arbitrary;
use bytes::Bytes;
use leasedlock_core::command::{NotifyPayload, ServiceError};
use leasedlock_core::envelope::{self, prop, Message, QoS};
use leasedlock_core::hlc::Hlc;
use leasedlock_core::resp3::Value;

use crate::codec::ArbValue;

/// The client id the targets parse notifications for.
pub const CLIENT_ID: &str = "client-id1";

/// A key from a small alphabet (so different steps hit the same keys) or raw bytes.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbKey {
    /// One of a few fixed keys.
    Fixed(u8),
    /// Any bytes.
    Raw(Vec<u8>),
}

impl ArbKey {
    /// The key bytes.
    pub fn bytes(&self) -> Bytes {
        match self {
            ArbKey::Fixed(n) => Bytes::from(format!("key{}", n % 4)),
            ArbKey::Raw(raw) => Bytes::from(raw.clone()),
        }
    }
}

/// A topic.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbTopic {
    /// The request topic.
    Request,
    /// Our response topic.
    Response,
    /// The response topic of another client.
    OtherResponse,
    /// A notification topic for us (or, with `other_client`, for someone else).
    Notify {
        /// The key.
        key: ArbKey,
        /// Address another client.
        other_client: bool,
        /// Lower-case the hex (the official Rust client panics on that; we must not).
        lower: bool,
        /// Append an extra level.
        extra_level: bool,
    },
    /// The notification filter itself (contains `+`).
    Filter,
    /// Any bytes.
    Raw(Vec<u8>),
}

impl ArbTopic {
    /// The topic bytes.
    pub fn bytes(&self) -> Bytes {
        match self {
            ArbTopic::Request => Bytes::from_static(envelope::REQUEST_TOPIC.as_bytes()),
            ArbTopic::Response => Bytes::from(envelope::response_topic(CLIENT_ID)),
            ArbTopic::OtherResponse => Bytes::from(envelope::response_topic("other")),
            ArbTopic::Notify {
                key,
                other_client,
                lower,
                extra_level,
            } => {
                let client = if *other_client { "other" } else { CLIENT_ID };
                let mut topic = envelope::notification_topic(client, &key.bytes());
                if *lower {
                    topic = topic.to_lowercase();
                }
                if *extra_level {
                    topic.push_str("/x");
                }
                Bytes::from(topic)
            }
            ArbTopic::Filter => Bytes::from(envelope::notification_filter(CLIENT_ID)),
            ArbTopic::Raw(raw) => Bytes::from(raw.clone()),
        }
    }
}

/// An HLC text.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbHlc {
    /// Canonical form of a valid value with a node from a small set.
    Valid {
        /// Milliseconds.
        millis: u64,
        /// Counter.
        counter: u64,
        /// Node selector.
        node: u8,
    },
    /// Unpadded form.
    Unpadded {
        /// Milliseconds.
        millis: u64,
        /// Counter.
        counter: u64,
    },
    /// Any bytes.
    Raw(Vec<u8>),
}

impl ArbHlc {
    /// The text.
    pub fn bytes(&self) -> Bytes {
        match self {
            ArbHlc::Valid {
                millis,
                counter,
                node,
            } => Hlc::new(*millis, *counter, format!("node{}", node % 3))
                .map(|h| h.to_bytes())
                .unwrap_or_default(),
            ArbHlc::Unpadded { millis, counter } => {
                Bytes::from(format!("{millis}:{counter}:StateStore"))
            }
            ArbHlc::Raw(raw) => Bytes::from(raw.clone()),
        }
    }
}

/// A user property name.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbPropName {
    /// `__srcId`
    SourceId,
    /// `__ts`
    Timestamp,
    /// `__ft`
    FencingToken,
    /// `__protVer`
    ProtocolVersion,
    /// `__stat`
    Status,
    /// `__stMsg`
    StatusMessage,
    /// `__apErr`
    ApplicationError,
    /// `aio-persistence`
    Persistence,
    /// `$partition`
    Partition,
    /// Any bytes.
    Raw(Vec<u8>),
}

impl ArbPropName {
    /// The name bytes.
    pub fn bytes(&self) -> Bytes {
        let name = match self {
            ArbPropName::SourceId => prop::SOURCE_ID,
            ArbPropName::Timestamp => prop::TIMESTAMP,
            ArbPropName::FencingToken => prop::FENCING_TOKEN,
            ArbPropName::ProtocolVersion => prop::PROTOCOL_VERSION,
            ArbPropName::Status => prop::STATUS,
            ArbPropName::StatusMessage => prop::STATUS_MESSAGE,
            ArbPropName::ApplicationError => prop::APPLICATION_ERROR,
            ArbPropName::Persistence => prop::PERSISTENCE,
            ArbPropName::Partition => prop::PARTITION,
            ArbPropName::Raw(raw) => return Bytes::from(raw.clone()),
        };
        Bytes::from_static(name.as_bytes())
    }
}

/// A user property value.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbPropValue {
    /// An HLC text.
    Hlc(ArbHlc),
    /// A decimal status code.
    Status(u16),
    /// `major.minor`.
    Version(u8, u8),
    /// `true`.
    True,
    /// Our client id.
    ClientId,
    /// Any bytes.
    Raw(Vec<u8>),
}

impl ArbPropValue {
    /// The value bytes.
    pub fn bytes(&self) -> Bytes {
        match self {
            ArbPropValue::Hlc(h) => h.bytes(),
            ArbPropValue::Status(s) => Bytes::from(s.to_string()),
            ArbPropValue::Version(major, minor) => Bytes::from(format!("{major}.{minor}")),
            ArbPropValue::True => Bytes::from_static(b"true"),
            ArbPropValue::ClientId => Bytes::from_static(CLIENT_ID.as_bytes()),
            ArbPropValue::Raw(raw) => Bytes::from(raw.clone()),
        }
    }
}

/// A payload.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbPayload {
    /// A reply form the store sends.
    Reply(ArbReply),
    /// A notification payload from core's encoder.
    NotifySet(Vec<u8>),
    /// The DELETE notification.
    NotifyDelete,
    /// Any RESP3 value.
    Value(ArbValue),
    /// Any bytes.
    Raw(Vec<u8>),
}

/// A store reply.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbReply {
    /// `+OK`
    Ok,
    /// `:n`
    Integer(i8),
    /// `$-1`
    Nil,
    /// `$n value`
    Blob(Vec<u8>),
    /// `-ERR` with a known text (index) or any text.
    Error(u8),
}

impl ArbPayload {
    /// The payload bytes.
    pub fn bytes(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            ArbPayload::Reply(reply) => match reply {
                ArbReply::Ok => out.extend_from_slice(b"+OK\r\n"),
                ArbReply::Integer(n) => Value::Integer(i64::from(*n)).encode(&mut out),
                ArbReply::Nil => out.extend_from_slice(b"$-1\r\n"),
                ArbReply::Blob(v) => Value::Blob(Bytes::from(v.clone())).encode(&mut out),
                ArbReply::Error(i) => {
                    let errors = crate::seeds::service_errors();
                    let err = errors
                        .get(usize::from(*i) % errors.len())
                        .cloned()
                        .unwrap_or(ServiceError::SyntaxError);
                    err.encode_reply(&mut out);
                }
            },
            ArbPayload::NotifySet(value) => NotifyPayload::Set {
                value: Bytes::from(value.clone()),
            }
            .encode(&mut out),
            ArbPayload::NotifyDelete => NotifyPayload::Delete.encode(&mut out),
            ArbPayload::Value(ArbValue(v)) => v.encode(&mut out),
            ArbPayload::Raw(raw) => out.extend_from_slice(raw),
        }
        Bytes::from(out)
    }
}

/// Correlation data.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbCorrelation {
    /// 16 bytes.
    Sixteen([u8; 16]),
    /// Any length.
    Raw(Vec<u8>),
}

/// A content type.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbContentType {
    /// `application/octet-stream`
    OctetStream,
    /// Any bytes.
    Raw(Vec<u8>),
}

/// An MQTT PUBLISH, field by field.
#[derive(Debug, Clone, Arbitrary)]
pub struct FuzzMessage {
    /// Topic.
    pub topic: ArbTopic,
    /// Payload.
    pub payload: ArbPayload,
    /// QoS selector.
    pub qos: u8,
    /// Retain.
    pub retain: bool,
    /// Correlation data.
    pub correlation: Option<ArbCorrelation>,
    /// Response topic.
    pub response_topic: Option<ArbTopic>,
    /// Message expiry.
    pub expiry: Option<u32>,
    /// Content type.
    pub content_type: Option<ArbContentType>,
    /// Payload format indicator.
    pub payload_format: Option<u8>,
    /// User properties, in order.
    pub properties: Vec<(ArbPropName, ArbPropValue)>,
}

impl FuzzMessage {
    /// The message as core's adapters would hand it over.
    pub fn to_message(&self) -> Message {
        Message {
            topic: self.topic.bytes(),
            payload: self.payload.bytes(),
            qos: match self.qos % 3 {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            },
            retain: self.retain,
            correlation_data: self.correlation.as_ref().map(|c| match c {
                ArbCorrelation::Sixteen(b) => Bytes::copy_from_slice(b),
                ArbCorrelation::Raw(raw) => Bytes::from(raw.clone()),
            }),
            response_topic: self.response_topic.as_ref().map(ArbTopic::bytes),
            message_expiry_secs: self.expiry,
            content_type: self.content_type.as_ref().map(|c| match c {
                ArbContentType::OctetStream => {
                    Bytes::from_static(envelope::CONTENT_TYPE.as_bytes())
                }
                ArbContentType::Raw(raw) => Bytes::from(raw.clone()),
            }),
            payload_format_indicator: self.payload_format,
            user_properties: self
                .properties
                .iter()
                .map(|(n, v)| (n.bytes(), v.bytes()))
                .collect(),
        }
    }
}
