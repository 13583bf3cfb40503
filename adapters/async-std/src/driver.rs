//! The async-std adapter's pieces of the one driver loop of `leasedlock-api`
//! ([`leasedlock_api::driver::Driver`]): the transport ([`Mqtt`]: the sans-IO session over a
//! futures-io stream, with reconnects and credentials) as its [`Link`], and an `async-io`
//! timer ([`Deadline`]) as its [`Timer`].

use std::future::Future;

use leasedlock_api::driver::{Link, LinkEvent, Timer};
use leasedlock_api::Transmit;
use leasedlock_core::Now;

use crate::deadline::Deadline;
use crate::mqtt::{Input, Mqtt, MqttEvent};

impl Link for Mqtt {
    type Input = Input;

    fn wait(&mut self) -> impl Future<Output = Input> + Send {
        Mqtt::wait(self)
    }

    fn handle(&mut self, input: Input, now: Now) -> impl Future<Output = ()> + Send {
        Mqtt::handle(self, input, now)
    }

    fn poll_event(&mut self) -> Option<LinkEvent> {
        Mqtt::poll_event(self).map(|event| match event {
            MqttEvent::Connected { session_present } => LinkEvent::Connected { session_present },
            MqttEvent::Disconnected(reason) => LinkEvent::Disconnected(reason),
            MqttEvent::Message(message) => LinkEvent::Message(message),
            MqttEvent::Subscribed { filter, granted } => LinkEvent::Subscribed { filter, granted },
        })
    }

    fn send(&mut self, transmit: Transmit, now: Now) -> Result<(), String> {
        let sent = match &transmit {
            Transmit::Publish(message) => self.publish(message, now),
            Transmit::Subscribe(filter) => self.subscribe(filter, now),
            Transmit::Unsubscribe(filter) => self.unsubscribe(filter, now),
            other => return Err(format!("unsupported transmission {other:?}")),
        };
        sent.map_err(|e| e.to_string())
    }

    fn flush(&mut self, now: Now) {
        Mqtt::flush(self, now);
    }

    fn is_connected(&self) -> bool {
        Mqtt::is_connected(self)
    }

    async fn close(&mut self, now: Now) {
        // DISCONNECT (session expiry 0: the broker forgets the session), flushed by the link
        // as it drops, within its linger.
        Mqtt::close(self, now);
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
