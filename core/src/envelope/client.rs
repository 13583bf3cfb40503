//! The client side of the envelope: building requests exactly as the official clients do, and
//! parsing responses and notifications with typed errors.

use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::props::{check_content_type, check_version, parse_status, static_bytes, user_prop};
use super::topics::notification_key_segment;
use super::{
    prop, EnvelopeError, Message, QoS, CONTENT_TYPE, MAX_NOTIFY_KEY_LEN, NOTIFY_LIMITS,
    PROTOCOL_VERSION, REQUEST_TOPIC,
};
use crate::command::NotifyPayload;
use crate::hex;
use crate::hlc::Hlc;

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
