//! Packets on their way to rumqttc's request channel, handed over without ever waiting.
//!
//! The engine's loop must never block on the MQTT client, so packets go in with the `try_*`
//! calls; when rumqttc's bounded channel is full the packet stays here, in order, and is tried
//! again after the next MQTT event (the event loop empties the channel as it writes).

use std::collections::VecDeque;

use rumqttc::v5::mqttbytes::v5::{Filter, Publish};
use rumqttc::v5::mqttbytes::{valid_filter, valid_topic, QoS as MqttQoS};
use rumqttc::v5::{AsyncClient, ClientError, Request};
use tracing::{error, trace};

use crate::convert::OutgoingPublish;
use leasedlock_api::driver::HOP;

/// Something for rumqttc's request channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outbound {
    /// A PUBLISH.
    Publish(OutgoingPublish),
    /// One SUBSCRIBE carrying these filters, each at QoS 1.
    Subscribe(Vec<String>),
    /// An UNSUBSCRIBE of this filter.
    Unsubscribe(String),
    /// The acknowledgement of a received PUBLISH (for a client with manual acks).
    Ack(Publish),
}

/// Packets not yet taken by rumqttc, in order.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Outbound>,
}

impl Outbox {
    /// Queues `item` after everything already queued.
    pub(crate) fn push(&mut self, item: Outbound) {
        self.queue.push_back(item);
    }

    /// Packets still waiting for room in rumqttc's channel.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Hands queued packets to rumqttc until its channel is full. Packets rumqttc could never
    /// send (an invalid topic or filter) are dropped with an error event. `client` names the
    /// connection in trace events.
    pub(crate) fn flush(&mut self, mqtt: &AsyncClient, client: &str) {
        while let Some(item) = self.queue.pop_front() {
            let sent = match item {
                Outbound::Publish(p) => {
                    if !valid_topic(&p.topic) {
                        error!(topic = %p.topic, "invalid publish topic; dropped");
                        continue;
                    }
                    trace!(target: HOP, client = %client, topic = %p.topic, "publish out");
                    mqtt.try_publish_with_properties(
                        p.topic,
                        p.qos,
                        p.retain,
                        p.payload,
                        p.properties,
                    )
                }
                Outbound::Subscribe(filters) => {
                    if let Some(bad) = filters.iter().find(|f| !valid_filter(f)) {
                        error!(filter = %bad, "invalid filter; SUBSCRIBE dropped");
                        continue;
                    }
                    mqtt.try_subscribe_many(
                        filters
                            .into_iter()
                            .map(|f| Filter::new(f, MqttQoS::AtLeastOnce)),
                    )
                }
                Outbound::Unsubscribe(filter) => mqtt.try_unsubscribe(filter),
                Outbound::Ack(publish) => match mqtt.try_ack(&publish) {
                    Err(ClientError::TryRequest(_) | ClientError::Request(_)) => {
                        // The acknowledgement cannot be turned back into the PUBLISH it answers:
                        // keep the PUBLISH itself.
                        self.queue.push_front(Outbound::Ack(publish));
                        break;
                    }
                    _ => continue,
                },
            };
            if let Err(ClientError::TryRequest(request) | ClientError::Request(request)) = sent {
                // The channel is full: keep the packet, retry after the next event.
                if let Some(item) = requeue(request) {
                    self.queue.push_front(item);
                }
                break;
            }
        }
    }
}

/// Turns a request rumqttc handed back into an outbox entry again.
fn requeue(request: Request) -> Option<Outbound> {
    match request {
        Request::Publish(p) => Some(Outbound::Publish(OutgoingPublish {
            topic: String::from_utf8(p.topic.to_vec()).ok()?,
            qos: p.qos,
            retain: p.retain,
            payload: p.payload,
            properties: p.properties.unwrap_or_default(),
        })),
        Request::Subscribe(s) => Some(Outbound::Subscribe(
            s.filters.into_iter().map(|f| f.path).collect(),
        )),
        Request::Unsubscribe(u) => u.filters.into_iter().next().map(Outbound::Unsubscribe),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rumqttc::v5::MqttOptions;

    fn publish(topic: &str) -> Outbound {
        Outbound::Publish(OutgoingPublish {
            topic: topic.to_string(),
            qos: MqttQoS::AtLeastOnce,
            retain: false,
            payload: Bytes::from_static(b"x"),
            properties: Default::default(),
        })
    }

    /// A full channel keeps every packet, in order, and nothing is lost or duplicated when room
    /// appears (the receiving end is the event loop's channel, read directly here).
    #[test]
    fn a_full_channel_keeps_packets_in_order() {
        let (mqtt, mut event_loop) = AsyncClient::new(MqttOptions::new("c", "localhost", 1), 2);
        let mut outbox = Outbox::default();
        let items = vec![
            publish("a"),
            Outbound::Subscribe(vec!["s/1".into(), "s/2".into()]),
            Outbound::Unsubscribe("u".into()),
            publish("b"),
        ];
        for item in items.clone() {
            outbox.push(item);
        }
        outbox.flush(&mqtt, "c");
        assert_eq!(outbox.len(), 2, "two fit, two wait");
        // The event loop takes what is queued; the rest goes in on the next flush.
        event_loop.clean();
        let mut taken: Vec<Request> = event_loop.pending.drain(..).collect();
        outbox.flush(&mqtt, "c");
        assert_eq!(outbox.len(), 0);
        event_loop.clean();
        taken.extend(event_loop.pending.drain(..));
        let back: Vec<Outbound> = taken.into_iter().filter_map(requeue).collect();
        assert_eq!(back, items);
    }

    #[test]
    fn invalid_topics_and_filters_are_dropped_not_retried() {
        let (mqtt, mut event_loop) = AsyncClient::new(MqttOptions::new("c", "localhost", 1), 8);
        let mut outbox = Outbox::default();
        outbox.push(publish("bad/+/topic"));
        outbox.push(Outbound::Subscribe(vec!["ok".into(), "bad/#/x".into()]));
        outbox.push(publish("good"));
        outbox.flush(&mqtt, "c");
        assert_eq!(outbox.len(), 0);
        event_loop.clean();
        let sent: Vec<Outbound> = event_loop.pending.drain(..).filter_map(requeue).collect();
        assert_eq!(sent, vec![publish("good")]);
    }
}
