//! Conversion between rumqttc's v5 PUBLISH and the core's [`Message`].
//!
//! Every property the protocol uses crosses over: correlation data, response topic, message
//! expiry, content type, payload format indicator and the user properties in order. The
//! protocol's text fields are UTF-8; rumqttc wants `String`s on the way out, so a non-UTF-8
//! field in an outgoing message is a typed error instead of a lossy conversion.

use bytes::Bytes;
use leasedlock_core::envelope::{Message, QoS};
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS as MqttQoS;

/// A PUBLISH ready for `AsyncClient::try_publish_with_properties`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutgoingPublish {
    pub(crate) topic: String,
    pub(crate) qos: MqttQoS,
    pub(crate) retain: bool,
    pub(crate) payload: Bytes,
    pub(crate) properties: PublishProperties,
}

/// A field of an outgoing message is not valid UTF-8 (the field's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotUtf8(pub(crate) &'static str);

fn text(bytes: Bytes, field: &'static str) -> Result<String, NotUtf8> {
    String::from_utf8(Vec::from(bytes)).map_err(|_| NotUtf8(field))
}

fn to_mqtt_qos(qos: QoS) -> MqttQoS {
    match qos {
        QoS::AtMostOnce => MqttQoS::AtMostOnce,
        QoS::ExactlyOnce => MqttQoS::ExactlyOnce,
        // The protocol runs on QoS 1; any level the core may add later maps to it.
        _ => MqttQoS::AtLeastOnce,
    }
}

fn from_mqtt_qos(qos: MqttQoS) -> QoS {
    match qos {
        MqttQoS::AtMostOnce => QoS::AtMostOnce,
        MqttQoS::AtLeastOnce => QoS::AtLeastOnce,
        MqttQoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// The core's message as a rumqttc PUBLISH.
pub(crate) fn to_publish(msg: Message) -> Result<OutgoingPublish, NotUtf8> {
    let user_properties = msg
        .user_properties
        .into_iter()
        .map(|(k, v)| {
            Ok((
                text(k, "user property name")?,
                text(v, "user property value")?,
            ))
        })
        .collect::<Result<Vec<_>, NotUtf8>>()?;
    let properties = PublishProperties {
        payload_format_indicator: msg.payload_format_indicator,
        message_expiry_interval: msg.message_expiry_secs,
        topic_alias: None,
        response_topic: msg
            .response_topic
            .map(|t| text(t, "response topic"))
            .transpose()?,
        correlation_data: msg.correlation_data,
        user_properties,
        subscription_identifiers: Vec::new(),
        content_type: msg
            .content_type
            .map(|t| text(t, "content type"))
            .transpose()?,
    };
    Ok(OutgoingPublish {
        topic: text(msg.topic, "topic")?,
        qos: to_mqtt_qos(msg.qos),
        retain: msg.retain,
        payload: msg.payload,
        properties,
    })
}

/// A received rumqttc PUBLISH as the core's message. Total: anything rumqttc decoded converts.
pub(crate) fn from_publish(publish: Publish) -> Message {
    let mut msg = Message {
        topic: publish.topic,
        payload: publish.payload,
        qos: from_mqtt_qos(publish.qos),
        retain: publish.retain,
        ..Message::default()
    };
    if let Some(props) = publish.properties {
        msg.correlation_data = props.correlation_data;
        msg.response_topic = props.response_topic.map(Bytes::from);
        msg.message_expiry_secs = props.message_expiry_interval;
        msg.content_type = props.content_type.map(Bytes::from);
        msg.payload_format_indicator = props.payload_format_indicator;
        msg.user_properties = props
            .user_properties
            .into_iter()
            .map(|(k, v)| (Bytes::from(k), Bytes::from(v)))
            .collect();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Message {
        Message {
            topic: Bytes::from_static(b"statestore/v1/X/command/invoke"),
            payload: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
            qos: QoS::AtLeastOnce,
            retain: false,
            correlation_data: Some(Bytes::from_static(&[7u8; 16])),
            response_topic: Some(Bytes::from_static(b"clients/c/resp")),
            message_expiry_secs: Some(10),
            content_type: Some(Bytes::from_static(b"application/octet-stream")),
            payload_format_indicator: Some(0),
            user_properties: vec![
                (Bytes::from_static(b"__srcId"), Bytes::from_static(b"c")),
                (Bytes::from_static(b"__ts"), Bytes::from_static(b"1:0:n")),
                (Bytes::from_static(b"__srcId"), Bytes::from_static(b"dup")),
            ],
        }
    }

    fn as_incoming(out: OutgoingPublish) -> Publish {
        let mut p = Publish::new(out.topic, out.qos, out.payload, Some(out.properties));
        p.retain = out.retain;
        p
    }

    #[test]
    fn every_property_survives_a_round_trip() {
        let msg = sample();
        let back = from_publish(as_incoming(to_publish(msg.clone()).unwrap()));
        assert_eq!(back, msg);
    }

    #[test]
    fn publish_without_properties_has_none() {
        let p = Publish::new("t", MqttQoS::AtMostOnce, Bytes::from_static(b"x"), None);
        let m = from_publish(p);
        assert_eq!(m.qos, QoS::AtMostOnce);
        assert!(m.correlation_data.is_none() && m.user_properties.is_empty());
    }

    #[test]
    fn non_utf8_fields_are_typed_errors() {
        let mut m = sample();
        m.topic = Bytes::from_static(&[0xff, 0xfe]);
        assert_eq!(to_publish(m).unwrap_err(), NotUtf8("topic"));
        let mut m = sample();
        m.user_properties
            .push((Bytes::from_static(b"k"), Bytes::from_static(&[0xc3])));
        assert_eq!(to_publish(m).unwrap_err(), NotUtf8("user property value"));
    }

    proptest! {
        #[test]
        fn utf8_messages_round_trip(
            topic in "[a-z/]{1,20}",
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            corr in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
            expiry in proptest::option::of(any::<u32>()),
            props in proptest::collection::vec(("[ -~]{0,8}", "\\PC{0,8}"), 0..5),
            qos in 0u8..3,
        ) {
            let msg = Message {
                topic: Bytes::from(topic),
                payload: Bytes::from(payload),
                qos: [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(qos)],
                retain: false,
                correlation_data: corr.map(Bytes::from),
                response_topic: None,
                message_expiry_secs: expiry,
                content_type: None,
                payload_format_indicator: None,
                user_properties: props.into_iter().map(|(k, v)| (Bytes::from(k), Bytes::from(v))).collect(),
            };
            let back = from_publish(as_incoming(to_publish(msg.clone()).unwrap()));
            prop_assert_eq!(back, msg);
        }
    }
}
