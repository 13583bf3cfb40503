//! The async-std adapter's pieces of the one driver loop of `leasedlock-api`
//! ([`leasedlock_api::driver::Driver`]): the transport ([`Mqtt`]: the sans-IO session over a
//! futures-io stream, with reconnects and credentials) as its [`Link`], and an `async-io`
//! timer ([`Deadline`]) as its [`Timer`]. The link also records why the broker refused the
//! last attempt, for `connect`.

use std::future::Future;

use leasedlock_api::driver::{Link, LinkEvent, Timer};
use leasedlock_api::{LastRefusal, Transmit};
use leasedlock_core::Now;

use crate::deadline::Deadline;
use crate::mqtt::{Input, Mqtt, MqttEvent};

/// The transport as the driver's [`Link`].
pub(crate) struct MqttLink {
    mqtt: Mqtt,
    last_refusal: LastRefusal,
}

impl MqttLink {
    pub(crate) fn new(mqtt: Mqtt) -> MqttLink {
        MqttLink {
            mqtt,
            last_refusal: LastRefusal::default(),
        }
    }

    /// Where the link records why the broker refused the last attempt.
    pub(crate) fn last_refusal(&self) -> LastRefusal {
        self.last_refusal.clone()
    }
}

impl Link for MqttLink {
    type Input = Input;

    fn wait(&mut self) -> impl Future<Output = Input> + Send {
        self.mqtt.wait()
    }

    fn handle(&mut self, input: Input, now: Now) -> impl Future<Output = ()> + Send {
        self.mqtt.handle(input, now)
    }

    fn poll_event(&mut self) -> Option<LinkEvent> {
        Some(match self.mqtt.poll_event()? {
            MqttEvent::Connected { session_present } => {
                self.last_refusal.set(None);
                LinkEvent::Connected { session_present }
            }
            MqttEvent::Disconnected { text, refusal } => {
                self.last_refusal.set(refusal);
                LinkEvent::Disconnected(text)
            }
            MqttEvent::Message(message) => LinkEvent::Message(message),
            MqttEvent::Subscribed { filter, granted } => LinkEvent::Subscribed { filter, granted },
        })
    }

    fn send(&mut self, transmit: Transmit, now: Now) -> Result<(), String> {
        let sent = match &transmit {
            Transmit::Publish(message) => self.mqtt.publish(message, now),
            Transmit::Subscribe(filter) => self.mqtt.subscribe(filter, now),
            Transmit::Unsubscribe(filter) => self.mqtt.unsubscribe(filter, now),
            other => return Err(format!("unsupported transmission {other:?}")),
        };
        sent.map_err(|e| e.to_string())
    }

    fn flush(&mut self, now: Now) {
        self.mqtt.flush(now);
    }

    fn is_connected(&self) -> bool {
        self.mqtt.is_connected()
    }

    async fn close(&mut self, now: Now) {
        // DISCONNECT (session expiry 0: the broker forgets the session), flushed by the link
        // as it drops, within its linger.
        self.mqtt.close(now);
    }
}

impl Timer for Deadline {
    fn arm(&mut self, at: std::time::Instant) {
        Deadline::arm(self, Some(at));
    }

    fn fired(&mut self) -> impl Future<Output = ()> + Send {
        Deadline::fired(self)
    }
}
