//! The tokio adapter's [`Link`]: rumqttc's v5 event loop. The one driver loop of
//! `leasedlock-api` runs it with tokio's timer ([`crate::timer::Timer`]).
//!
//! The rumqttc `EventLoop::poll` future is never cancelled: it owns the event loop and lives in
//! the link across the driver's waits, so a command or a timer can never drop a packet half
//! written. When it completes, the event loop comes back with the event.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use leasedlock_api::driver::{Link, LinkEvent};
use leasedlock_api::{
    Authentication, Backoff, ConnectionOptions, LastRefusal, TlsOptions, Transmit,
};
use leasedlock_core::Now;
use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use tracing::{info, trace, warn};

use crate::convert;
use crate::options::{apply_credentials, tls_transport};
use crate::outbox::{Outbound, Outbox};
use crate::subscriptions::{SubOp, Subscriptions};

use leasedlock_api::driver::HOP;

type PollFuture = Pin<Box<dyn Future<Output = (EventLoop, Result<Event, ConnectionError>)> + Send>>;

/// What is read again from files before every reconnection attempt.
#[derive(Debug, Clone, Default)]
struct Refresh {
    /// Passwords and service-account tokens rotate.
    auth: Option<Authentication>,
    /// A mounted CA bundle (or client certificate) is replaced when it rotates.
    tls: Option<TlsOptions>,
}

/// One `EventLoop::poll`, optionally after a back-off delay and a refresh of what was read from
/// files.
fn poll_once(mut el: EventLoop, delay: Option<Duration>, refresh: Option<Refresh>) -> PollFuture {
    Box::pin(async move {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let refresh = refresh.unwrap_or_default();
        if let Some(auth) = refresh.auth {
            // A file that cannot be read keeps the previous credentials.
            if let Err(e) = apply_credentials(&auth, &mut el.options).await {
                warn!(error = %e, "credential refresh failed; reconnecting with the previous ones");
            }
        }
        if let Some(tls) = refresh.tls {
            // rustls reads the PEM files with blocking calls: off the runtime's threads. Files
            // that cannot be read or parsed keep the previous TLS configuration.
            match tokio::task::spawn_blocking(move || tls_transport(&tls)).await {
                Ok(Ok(transport)) => {
                    el.options.set_transport(transport);
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "TLS refresh failed; reconnecting with the previous files")
                }
                Err(e) => warn!(error = %e, "TLS refresh did not run"),
            }
        }
        let result = el.poll().await;
        (el, result)
    })
}

/// rumqttc as a [`Link`].
pub(crate) struct RumqttcLink {
    mqtt: AsyncClient,
    /// The event loop's poll in progress (taken only while the link closes).
    poll: Option<PollFuture>,
    events: VecDeque<LinkEvent>,
    subs: Subscriptions,
    outbox: Outbox,
    /// Subscriptions deferred while disconnected: sent after the core's own (re-)subscriptions
    /// of the next connection, at the first flush after its CONNACK.
    deferred: Vec<SubOp>,
    backoff: Backoff,
    refresh: Refresh,
    /// The MQTT client id, to tell connections apart in trace events.
    id: String,
    /// Why the broker refused the last connection attempt, if it did.
    last_refusal: LastRefusal,
}

impl RumqttcLink {
    pub(crate) fn new(mqtt: MqttOptions, options: &ConnectionOptions, seed: u64) -> RumqttcLink {
        // Room for every request the core may have in flight plus subscriptions; past that the
        // outbox holds the rest (the driver never blocks on rumqttc's channel).
        let capacity = options.get_max_in_flight().saturating_add(64);
        let id = mqtt.client_id();
        let (mqtt_client, event_loop) = AsyncClient::new(mqtt, capacity);
        let refresh = Refresh {
            auth: match options.get_authentication() {
                Authentication::None => None,
                other => Some(other.clone()),
            },
            tls: options.get_tls().cloned(),
        };
        let (reconnect_min, reconnect_max) = options.get_reconnect_backoff();
        RumqttcLink {
            mqtt: mqtt_client,
            poll: Some(poll_once(event_loop, None, None)),
            events: VecDeque::new(),
            subs: Subscriptions::default(),
            outbox: Outbox::default(),
            deferred: Vec::new(),
            backoff: Backoff::new(reconnect_min, reconnect_max, seed),
            refresh,
            id,
            last_refusal: LastRefusal::default(),
        }
    }

    /// Where the link records why the broker refused the last attempt (for `connect`).
    pub(crate) fn last_refusal(&self) -> LastRefusal {
        self.last_refusal.clone()
    }

    /// The MQTT client id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Takes in what the event loop produced; returns the back-off delay before the next poll
    /// when the connection failed.
    fn on_event(
        &mut self,
        el: &mut EventLoop,
        result: Result<Event, ConnectionError>,
    ) -> Option<Duration> {
        match result {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(session_present = ack.session_present, "connected");
                self.last_refusal.set(None);
                // Reconnections resume the session, whatever the first connection did.
                el.options.set_clean_start(false);
                self.backoff.reset();
                self.subs.on_connected();
                self.deferred = self.subs.take_deferred();
                self.events.push_back(LinkEvent::Connected {
                    session_present: ack.session_present,
                });
                None
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                trace!(target: HOP, client = %self.id, topic = ?publish.topic, "publish in");
                self.events
                    .push_back(LinkEvent::Message(convert::from_publish(publish)));
                None
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if let Some(filter) = self.subs.on_acked(ack.pkid) {
                    let granted = ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                    if !granted {
                        warn!(filter = %filter, codes = ?ack.return_codes, "subscription refused");
                    }
                    self.events
                        .push_back(LinkEvent::Subscribed { filter, granted });
                }
                None
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                self.subs.on_sent(pkid);
                None
            }
            Ok(_) => None,
            Err(e) => {
                self.last_refusal.set(match &e {
                    ConnectionError::ConnectionRefused(code) => Some(convert::refusal(*code)),
                    _ => None,
                });
                self.events
                    .push_back(LinkEvent::Disconnected(e.to_string()));
                // rumqttc replays queued requests after a reconnect, but forgets subscriptions
                // it already wrote and drops the whole queue when the session is gone: take
                // subscription requests out and redo them ourselves after the next CONNACK.
                el.clean();
                let mut unsubscribes = Vec::new();
                el.pending.retain(|r| match r {
                    rumqttc::v5::Request::Subscribe(_) => false,
                    rumqttc::v5::Request::Unsubscribe(u) => {
                        unsubscribes.extend(u.filters.iter().cloned());
                        false
                    }
                    _ => true,
                });
                self.subs.on_disconnected(unsubscribes);
                Some(self.backoff.next_delay())
            }
        }
    }
}

impl Link for RumqttcLink {
    type Input = (EventLoop, Result<Event, ConnectionError>);

    async fn wait(&mut self) -> Self::Input {
        match self.poll.as_mut() {
            // The poll future stays in the link when this wait is dropped.
            Some(poll) => poll.await,
            None => std::future::pending().await,
        }
    }

    async fn handle(&mut self, (mut el, result): Self::Input, _now: Now) {
        let delay = self.on_event(&mut el, result);
        let refresh = delay.map(|_| self.refresh.clone());
        self.poll = Some(poll_once(el, delay, refresh));
    }

    fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    fn send(&mut self, transmit: Transmit, _now: Now) -> Result<(), String> {
        match transmit {
            Transmit::Publish(message) => {
                let publish = convert::to_publish(message)
                    .map_err(|e| format!("non-UTF-8 {} in a request", e.0))?;
                self.outbox.push(Outbound::Publish(publish));
            }
            Transmit::Subscribe(filter) => {
                if let Some(op) = self.subs.request(SubOp::Subscribe(filter)) {
                    self.outbox.push(op.into());
                }
            }
            Transmit::Unsubscribe(filter) => {
                if let Some(op) = self.subs.request(SubOp::Unsubscribe(filter)) {
                    self.outbox.push(op.into());
                }
            }
            other => return Err(format!("unsupported transmission {other:?}")),
        }
        Ok(())
    }

    fn flush(&mut self, _now: Now) {
        // The core's own (re-)subscriptions of a new connection went first; then what was
        // deferred while disconnected.
        for op in self.deferred.drain(..) {
            self.outbox.push(op.into());
        }
        self.outbox.flush(&self.mqtt, &self.id);
    }

    fn is_connected(&self) -> bool {
        self.subs.is_connected()
    }

    async fn close(&mut self, _now: Now) {
        let _ = self.mqtt.try_disconnect();
        let Some(mut poll) = self.poll.take() else {
            return;
        };
        // Give rumqttc a moment to write the DISCONNECT.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                let (el, result) = (&mut poll).await;
                match result {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => poll = poll_once(el, None, None),
                }
            }
        })
        .await;
    }
}

impl std::fmt::Debug for RumqttcLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RumqttcLink")
            .field("id", &self.id)
            .field("outbox", &self.outbox.len())
            .finish_non_exhaustive()
    }
}
