//! Conversion between the core's plain-data [`Message`] and the codec's PUBLISH packet, with
//! every property the envelope uses.

use alloc::string::String;
use bytes::Bytes;
use core::fmt;
use leasedlock_core::envelope::{Message, QoS};
use mqtt5_protocol::packet::publish::PublishPacket;
use mqtt5_protocol::{Properties, PropertyId, PropertyValue};

/// Longest MQTT string or binary field.
const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// A field of a PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// Topic name.
    Topic,
    /// Response Topic property.
    ResponseTopic,
    /// Content Type property.
    ContentType,
    /// Correlation Data property.
    CorrelationData,
    /// Payload Format Indicator property.
    PayloadFormatIndicator,
    /// A user property name.
    UserPropertyName,
    /// A user property value.
    UserPropertyValue,
    /// Topic Alias property.
    TopicAlias,
}

/// Why a message cannot be carried by (or taken from) a PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConvertError {
    /// A text field is not UTF-8.
    InvalidUtf8(Field),
    /// A text field contains U+0000.
    NulCharacter(Field),
    /// A field is longer than 65 535 bytes.
    TooLong(Field),
    /// The topic name is empty.
    EmptyTopic,
    /// A topic name (or Response Topic) contains `+` or `#`.
    Wildcard(Field),
    /// A property has a value MQTT does not allow (e.g. a Payload Format Indicator above 1).
    InvalidValue(Field),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::InvalidUtf8(field) => write!(f, "{field:?} is not UTF-8"),
            ConvertError::NulCharacter(field) => write!(f, "{field:?} contains NUL"),
            ConvertError::TooLong(field) => write!(f, "{field:?} is longer than 65535 bytes"),
            ConvertError::EmptyTopic => f.write_str("empty topic name"),
            ConvertError::Wildcard(field) => write!(f, "{field:?} contains a wildcard"),
            ConvertError::InvalidValue(field) => write!(f, "invalid value for {field:?}"),
        }
    }
}

impl core::error::Error for ConvertError {}

/// An MQTT UTF-8 string field from bytes.
fn text(bytes: &[u8], field: Field) -> Result<String, ConvertError> {
    if bytes.len() > MAX_FIELD_LEN {
        return Err(ConvertError::TooLong(field));
    }
    let s = core::str::from_utf8(bytes).map_err(|_| ConvertError::InvalidUtf8(field))?;
    if s.contains('\0') {
        return Err(ConvertError::NulCharacter(field));
    }
    Ok(String::from(s))
}

/// A topic name: non-empty, no wildcards.
fn topic_name(bytes: &[u8], field: Field) -> Result<String, ConvertError> {
    let topic = text(bytes, field)?;
    check_topic_name(&topic, field)?;
    Ok(topic)
}

fn check_topic_name(topic: &str, field: Field) -> Result<(), ConvertError> {
    if topic.is_empty() {
        return Err(ConvertError::EmptyTopic);
    }
    if topic.contains(['+', '#']) {
        return Err(ConvertError::Wildcard(field));
    }
    Ok(())
}

fn add(props: &mut Properties, id: PropertyId, value: PropertyValue) {
    // Each id is added once (user properties may repeat) with the type the codec expects, so
    // `add` cannot fail here.
    let _ = props.add(id, value);
}

/// The PUBLISH for a message (QoS 2 is carried as given; the session refuses to send it). The
/// packet id is left unset; the session assigns one when it sends the packet.
pub(crate) fn to_publish(msg: &Message) -> Result<PublishPacket, ConvertError> {
    let topic = topic_name(&msg.topic, Field::Topic)?;
    let qos = match msg.qos {
        QoS::AtMostOnce => mqtt5_protocol::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqtt5_protocol::QoS::AtLeastOnce,
        _ => mqtt5_protocol::QoS::ExactlyOnce,
    };
    let mut props = Properties::new();
    if let Some(pfi) = msg.payload_format_indicator {
        if pfi > 1 {
            return Err(ConvertError::InvalidValue(Field::PayloadFormatIndicator));
        }
        add(
            &mut props,
            PropertyId::PayloadFormatIndicator,
            PropertyValue::Byte(pfi),
        );
    }
    if let Some(expiry) = msg.message_expiry_secs {
        add(
            &mut props,
            PropertyId::MessageExpiryInterval,
            PropertyValue::FourByteInteger(expiry),
        );
    }
    if let Some(rt) = &msg.response_topic {
        let rt = topic_name(rt, Field::ResponseTopic)?;
        add(
            &mut props,
            PropertyId::ResponseTopic,
            PropertyValue::Utf8String(rt),
        );
    }
    if let Some(cd) = &msg.correlation_data {
        if cd.len() > MAX_FIELD_LEN {
            return Err(ConvertError::TooLong(Field::CorrelationData));
        }
        add(
            &mut props,
            PropertyId::CorrelationData,
            PropertyValue::BinaryData(cd.clone()),
        );
    }
    if let Some(ct) = &msg.content_type {
        let ct = text(ct, Field::ContentType)?;
        add(
            &mut props,
            PropertyId::ContentType,
            PropertyValue::Utf8String(ct),
        );
    }
    for (name, value) in &msg.user_properties {
        let name = text(name, Field::UserPropertyName)?;
        let value = text(value, Field::UserPropertyValue)?;
        add(
            &mut props,
            PropertyId::UserProperty,
            PropertyValue::Utf8StringPair(name, value),
        );
    }
    let mut packet = PublishPacket::new(topic, msg.payload.clone(), qos).with_retain(msg.retain);
    packet.properties = props;
    Ok(packet)
}

/// The message carried by an incoming PUBLISH. Subscription identifiers are dropped (we never
/// ask for them); a Topic Alias is an error because we announce a Topic Alias Maximum of 0.
pub(crate) fn from_publish(packet: PublishPacket) -> Result<Message, ConvertError> {
    check_topic_name(&packet.topic_name, Field::Topic)?;
    let qos = match packet.qos {
        mqtt5_protocol::QoS::AtMostOnce => QoS::AtMostOnce,
        mqtt5_protocol::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqtt5_protocol::QoS::ExactlyOnce => QoS::ExactlyOnce,
    };
    let mut msg = Message {
        topic: Bytes::from(packet.topic_name),
        payload: packet.payload,
        qos,
        retain: packet.retain,
        ..Message::default()
    };
    let props = packet.properties;
    if props.contains(PropertyId::TopicAlias) {
        return Err(ConvertError::InvalidValue(Field::TopicAlias));
    }
    if let Some(PropertyValue::Byte(pfi)) = props.get(PropertyId::PayloadFormatIndicator) {
        if *pfi > 1 {
            return Err(ConvertError::InvalidValue(Field::PayloadFormatIndicator));
        }
        msg.payload_format_indicator = Some(*pfi);
    }
    if let Some(PropertyValue::FourByteInteger(expiry)) =
        props.get(PropertyId::MessageExpiryInterval)
    {
        msg.message_expiry_secs = Some(*expiry);
    }
    if let Some(PropertyValue::Utf8String(rt)) = props.get(PropertyId::ResponseTopic) {
        check_topic_name(rt, Field::ResponseTopic)?;
        msg.response_topic = Some(Bytes::from(rt.clone()));
    }
    if let Some(PropertyValue::BinaryData(cd)) = props.get(PropertyId::CorrelationData) {
        msg.correlation_data = Some(cd.clone());
    }
    if let Some(PropertyValue::Utf8String(ct)) = props.get(PropertyId::ContentType) {
        msg.content_type = Some(Bytes::from(ct.clone()));
    }
    if let Some(pairs) = props.get_all(PropertyId::UserProperty) {
        msg.user_properties.reserve(pairs.len());
        for pair in pairs {
            if let PropertyValue::Utf8StringPair(k, v) = pair {
                msg.user_properties
                    .push((Bytes::from(k.clone()), Bytes::from(v.clone())));
            }
        }
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode_packet, encode};
    use alloc::vec;
    use alloc::vec::Vec;
    use bytes::BytesMut;
    use mqtt5_protocol::Packet;
    use proptest::prelude::*;

    fn sample() -> Message {
        Message {
            topic: Bytes::from_static(b"statestore/v1/x/command/invoke"),
            payload: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
            qos: QoS::AtLeastOnce,
            retain: false,
            correlation_data: Some(Bytes::from_static(&[7; 16])),
            response_topic: Some(Bytes::from_static(b"clients/c1/response")),
            message_expiry_secs: Some(10),
            content_type: Some(Bytes::from_static(b"application/octet-stream")),
            payload_format_indicator: Some(0),
            user_properties: vec![
                (Bytes::from_static(b"__srcId"), Bytes::from_static(b"c1")),
                (Bytes::from_static(b"__ts"), Bytes::from_static(b"1:0:n")),
                (Bytes::from_static(b"__srcId"), Bytes::from_static(b"dup")),
            ],
        }
    }

    /// Message -> PUBLISH -> bytes -> PUBLISH -> Message.
    fn through_the_wire(msg: &Message) -> Message {
        let mut packet = to_publish(msg).unwrap();
        if packet.qos != mqtt5_protocol::QoS::AtMostOnce {
            packet.packet_id = Some(1);
        }
        let mut out = BytesMut::new();
        encode(&packet, &mut out).unwrap();
        let Some(Packet::Publish(back)) = decode_packet(&mut out, u32::MAX).unwrap() else {
            panic!("not a publish");
        };
        from_publish(back).unwrap()
    }

    #[test]
    fn all_properties_round_trip_in_order() {
        let msg = sample();
        assert_eq!(through_the_wire(&msg), msg);
    }

    #[test]
    fn minimal_message_round_trips() {
        let msg = Message {
            topic: Bytes::from_static(b"t"),
            qos: QoS::AtMostOnce,
            retain: true,
            ..Message::default()
        };
        assert_eq!(through_the_wire(&msg), msg);
    }

    #[test]
    fn bad_outgoing_fields_are_typed_errors() {
        let mut m = sample();
        m.topic = Bytes::new();
        assert_eq!(to_publish(&m).unwrap_err(), ConvertError::EmptyTopic);
        let mut m = sample();
        m.topic = Bytes::from_static(b"a/+");
        assert_eq!(
            to_publish(&m).unwrap_err(),
            ConvertError::Wildcard(Field::Topic)
        );
        let mut m = sample();
        m.content_type = Some(Bytes::from_static(&[0xFF, 0xFE]));
        assert_eq!(
            to_publish(&m).unwrap_err(),
            ConvertError::InvalidUtf8(Field::ContentType)
        );
        let mut m = sample();
        m.user_properties
            .push((Bytes::from_static(b"a\0"), Bytes::new()));
        assert_eq!(
            to_publish(&m).unwrap_err(),
            ConvertError::NulCharacter(Field::UserPropertyName)
        );
        let mut m = sample();
        m.correlation_data = Some(Bytes::from(vec![0u8; 70_000]));
        assert_eq!(
            to_publish(&m).unwrap_err(),
            ConvertError::TooLong(Field::CorrelationData)
        );
        let mut m = sample();
        m.payload_format_indicator = Some(2);
        assert_eq!(
            to_publish(&m).unwrap_err(),
            ConvertError::InvalidValue(Field::PayloadFormatIndicator)
        );
    }

    #[test]
    fn incoming_topic_alias_is_rejected() {
        let p =
            PublishPacket::new("t", &b""[..], mqtt5_protocol::QoS::AtMostOnce).with_topic_alias(3);
        assert_eq!(
            from_publish(p).unwrap_err(),
            ConvertError::InvalidValue(Field::TopicAlias)
        );
    }

    fn bytes_strategy() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
    }

    fn text_strategy() -> impl Strategy<Value = Bytes> {
        "[a-zA-Z0-9_/ .:-]{0,24}".prop_map(Bytes::from)
    }

    fn topic_strategy() -> impl Strategy<Value = Bytes> {
        "[a-zA-Z0-9_/.-]{1,24}".prop_map(Bytes::from)
    }

    prop_compose! {
        fn message()(
            topic in topic_strategy(),
            payload in bytes_strategy(),
            qos in prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)],
            retain in any::<bool>(),
            correlation_data in proptest::option::of(bytes_strategy()),
            response_topic in proptest::option::of(topic_strategy()),
            message_expiry_secs in proptest::option::of(any::<u32>()),
            content_type in proptest::option::of(text_strategy()),
            payload_format_indicator in proptest::option::of(0u8..=1),
            user_properties in proptest::collection::vec((text_strategy(), text_strategy()), 0..5),
        ) -> Message {
            Message {
                topic, payload, qos, retain, correlation_data, response_topic,
                message_expiry_secs, content_type, payload_format_indicator, user_properties,
            }
        }
    }

    proptest! {
        #[test]
        fn messages_round_trip(msg in message()) {
            prop_assert_eq!(through_the_wire(&msg), msg);
        }

        #[test]
        fn arbitrary_fields_never_panic(
            topic in bytes_strategy(),
            props in proptest::collection::vec((bytes_strategy(), bytes_strategy()), 0..3),
            ct in proptest::option::of(bytes_strategy()),
        ) {
            let msg = Message {
                topic,
                content_type: ct,
                user_properties: props,
                ..Message::default()
            };
            let _ = to_publish(&msg);
        }
    }

    #[test]
    fn user_property_order_is_kept() {
        let mut m = sample();
        m.user_properties = (0..20)
            .map(|i| {
                (
                    Bytes::from(alloc::format!("k{}", 19 - i)),
                    Bytes::from(alloc::format!("{i}")),
                )
            })
            .collect::<Vec<_>>();
        assert_eq!(through_the_wire(&m), m);
    }
}
