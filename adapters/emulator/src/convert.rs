//! Conversions between rumqttc's MQTT 5 PUBLISH and core's plain-data [`Message`].
//!
//! The adapter only moves bytes: everything the protocol means is decided in
//! `leasedlock_core::server`.

use bytes::Bytes;
use leasedlock_core::envelope::{Message, QoS};
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS as MqttQoS;

/// A received PUBLISH as core sees it.
pub fn to_message(p: &Publish) -> Message {
    let qos = match p.qos {
        MqttQoS::AtMostOnce => QoS::AtMostOnce,
        MqttQoS::AtLeastOnce => QoS::AtLeastOnce,
        MqttQoS::ExactlyOnce => QoS::ExactlyOnce,
    };
    let mut msg = Message {
        topic: p.topic.clone(),
        payload: p.payload.clone(),
        qos,
        retain: p.retain,
        ..Message::default()
    };
    if let Some(props) = &p.properties {
        msg.correlation_data = props.correlation_data.clone();
        msg.response_topic = props.response_topic.clone().map(Bytes::from);
        msg.message_expiry_secs = props.message_expiry_interval;
        msg.content_type = props.content_type.clone().map(Bytes::from);
        msg.payload_format_indicator = props.payload_format_indicator;
        msg.user_properties = props
            .user_properties
            .iter()
            .map(|(k, v)| (Bytes::from(k.clone()), Bytes::from(v.clone())))
            .collect();
    }
    msg
}

/// What rumqttc needs to publish `msg`: topic, QoS, payload and properties. `None` if a text
/// field is not UTF-8 (MQTT strings must be; core only builds UTF-8, so this is defensive).
pub fn to_publish(msg: Message) -> Option<(String, MqttQoS, Bytes, PublishProperties)> {
    let text = |b: Bytes| String::from_utf8(b.to_vec()).ok();
    let topic = text(msg.topic)?;
    let qos = match msg.qos {
        QoS::AtMostOnce => MqttQoS::AtMostOnce,
        QoS::ExactlyOnce => MqttQoS::ExactlyOnce,
        _ => MqttQoS::AtLeastOnce,
    };
    let mut user_properties = Vec::with_capacity(msg.user_properties.len());
    for (k, v) in msg.user_properties {
        user_properties.push((text(k)?, text(v)?));
    }
    let response_topic = match msg.response_topic {
        Some(t) => Some(text(t)?),
        None => None,
    };
    let content_type = match msg.content_type {
        Some(t) => Some(text(t)?),
        None => None,
    };
    let props = PublishProperties {
        payload_format_indicator: msg.payload_format_indicator,
        message_expiry_interval: msg.message_expiry_secs,
        topic_alias: None,
        response_topic,
        correlation_data: msg.correlation_data,
        user_properties,
        subscription_identifiers: Vec::new(),
        content_type,
    };
    Some((topic, qos, msg.payload, props))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let msg = Message {
            topic: Bytes::from_static(b"a/b"),
            payload: Bytes::from_static(b"+OK\r\n"),
            qos: QoS::AtLeastOnce,
            retain: false,
            correlation_data: Some(Bytes::from_static(&[1; 16])),
            response_topic: Some(Bytes::from_static(b"r/t")),
            message_expiry_secs: Some(7),
            content_type: Some(Bytes::from_static(b"application/octet-stream")),
            payload_format_indicator: Some(0),
            user_properties: vec![(Bytes::from_static(b"__stat"), Bytes::from_static(b"200"))],
        };
        let (topic, qos, payload, props) = to_publish(msg.clone()).unwrap();
        let mut p = Publish::new(topic, qos, payload, Some(props));
        p.retain = false;
        assert_eq!(to_message(&p), msg);
        let mut bad = msg;
        bad.user_properties
            .push((Bytes::from_static(b"x"), Bytes::from_static(b"\xff")));
        assert!(to_publish(bad).is_none());
    }
}
