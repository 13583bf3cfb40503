//! The background task: the state-store half of the connection (the core's client, the
//! waiters of requests, the observers of keys) fed by the transport half ([`Mqtt`]: session,
//! link, reconnects, credentials). One loop: wait for a command or a transport input or the
//! client's timer; feed it in with the current time; drain outputs; write bytes.

use std::collections::HashMap;
use std::sync::Weak;

use async_io::Timer;
use bytes::Bytes;
use futures_channel::oneshot;
use futures_lite::future;
use leasedlock_core::client::{
    Client, ClientConfig, Completion, Output, RequestId, RequestOptions,
};
use leasedlock_core::command::Response;
use leasedlock_core::Now;
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::connection::{Command, ConnectionState, Shared};
use crate::mqtt::{Mqtt, MqttEvent};
use crate::options::{ConnectionOptions, OptionsError};
use crate::state_store::{KeyChange, ObserveError, StoreError};

/// Loop turns between two voluntary yields to the executor.
const YIELD_EVERY: u32 = 16;

/// Why the driver could not be built.
#[derive(Debug)]
pub(crate) enum BuildError {
    Options(OptionsError),
    ClientId,
}

/// One observer of a key.
struct Observer {
    id: u64,
    tx: async_channel::Sender<Result<KeyChange, ObserveError>>,
    missed: u64,
}

impl Observer {
    /// Delivers without blocking the driver: a full buffer counts a miss, reported before the
    /// next change that fits.
    fn deliver(&mut self, change: KeyChange) {
        if self.missed > 0 {
            let lagged = Err(ObserveError::Lagged {
                missed: self.missed,
            });
            if self.tx.try_send(lagged).is_err() {
                self.missed += 1;
                return;
            }
            self.missed = 0;
        }
        if self.tx.try_send(Ok(change)).is_err() {
            self.missed += 1;
        }
    }
}

/// Who waits for a KEYNOTIFY's outcome.
type ObserveReply = oneshot::Sender<Result<(), StoreError>>;

/// Observers of one key and the state of its registration.
#[derive(Default)]
struct Observed {
    observers: Vec<Observer>,
    /// The KEYNOTIFY in flight and who waits for it; `None` once registered.
    pending: Option<(RequestId, Vec<ObserveReply>)>,
}

enum Wake {
    Command(Option<Command>),
    Mqtt(crate::mqtt::Input),
    Timer,
}

/// The driver's state.
pub(crate) struct Driver {
    clock: Clock,
    mqtt: Mqtt,
    client: Client,
    shared: Weak<Shared>,
    waiters: HashMap<RequestId, oneshot::Sender<Result<Completion, StoreError>>>,
    observed: HashMap<Bytes, Observed>,
}

impl Driver {
    pub(crate) fn new(
        options: ConnectionOptions,
        client: ClientConfig,
        seed: u64,
        shared: Weak<Shared>,
    ) -> Result<Driver, BuildError> {
        let clock = Clock::new();
        let mqtt = Mqtt::new(options, seed, clock).map_err(BuildError::Options)?;
        let client = Client::new(client).map_err(|_| BuildError::ClientId)?;
        Ok(Driver {
            clock,
            mqtt,
            client,
            shared,
            waiters: HashMap::new(),
            observed: HashMap::new(),
        })
    }

    fn publish_state(&self, state: ConnectionState) {
        if let Some(shared) = self.shared.upgrade() {
            shared.set_state(state);
        }
    }

    /// The task's body.
    pub(crate) async fn run(mut self, inbox: async_channel::Receiver<Command>) {
        let mut closing: Option<oneshot::Sender<()>> = None;
        let mut turns: u32 = 0;
        loop {
            // A wake that is always ready (a due timer, a busy socket) would otherwise keep this
            // task on its executor thread for good; async-std has only one per core, so other
            // connections' drivers, and the `Close` they wait for, would starve.
            turns = turns.wrapping_add(1);
            if turns % YIELD_EVERY == 0 {
                future::yield_now().await;
            }
            let deadline = self.client.poll_timeout().map(|t| self.clock.to_std(t));
            let wake = {
                let command = async { Wake::Command(inbox.recv().await.ok()) };
                let mqtt = async { Wake::Mqtt(self.mqtt.wait().await) };
                let timer = async {
                    match deadline {
                        Some(at) => {
                            Timer::at(at).await;
                            Wake::Timer
                        }
                        None => future::pending().await,
                    }
                };
                future::race(mqtt, future::race(command, timer)).await
            };
            let now = self.clock.now();
            match wake {
                Wake::Command(Some(Command::Close { done })) => {
                    closing = Some(done);
                    break;
                }
                Wake::Command(Some(command)) => self.command(command, now),
                // Every handle is gone.
                Wake::Command(None) => break,
                Wake::Mqtt(input) => self.mqtt.handle(input, now).await,
                Wake::Timer => self.client.handle_timeout(now),
            }
            self.process(now);
            self.mqtt.flush(now);
            self.process(now);
        }
        // Leaving: DISCONNECT with Session Expiry 0, flushed by the link before it closes.
        let now = self.clock.now();
        self.mqtt.close(now);
        self.publish_state(ConnectionState::Closed);
        // A handle may have queued a command after the `Close` (or after the last handle
        // went): refuse it now, or its caller would wait for a reply that never comes.
        inbox.close();
        while let Ok(command) = inbox.try_recv() {
            drop(command);
        }
        // Waiters see `Closed` as their senders drop with `self`.
        drop(self);
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }

    fn command(&mut self, command: Command, now: Now) {
        match command {
            Command::Request {
                request,
                options,
                reply,
            } => match self.client.request(request, options, now) {
                Ok(id) => {
                    self.waiters.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::Observe { key, id, tx, reply } => self.observe(key, id, tx, reply, now),
            Command::Unobserve { key, id } => self.unobserve(&key, id, now),
            // Handled by the loop.
            Command::Close { .. } => {}
        }
    }

    fn observe(
        &mut self,
        key: Bytes,
        id: u64,
        tx: async_channel::Sender<Result<KeyChange, ObserveError>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
        now: Now,
    ) {
        let entry = self.observed.entry(key.clone()).or_default();
        entry.observers.push(Observer { id, tx, missed: 0 });
        if let Some((_, waiting)) = entry.pending.as_mut() {
            waiting.push(reply);
            return;
        }
        if entry.observers.len() > 1 {
            let _ = reply.send(Ok(()));
            return;
        }
        match self
            .client
            .observe(key.clone(), RequestOptions::default(), now)
        {
            Ok(request) => entry.pending = Some((request, vec![reply])),
            Err(e) => {
                self.observed.remove(&key);
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn unobserve(&mut self, key: &Bytes, id: u64, now: Now) {
        let Some(entry) = self.observed.get_mut(key) else {
            return;
        };
        entry.observers.retain(|o| o.id != id);
        if entry.observers.is_empty() {
            self.observed.remove(key);
            // Fire and forget with the connection's own deadline; the completion is ignored.
            if let Err(e) = self
                .client
                .unobserve(key.clone(), RequestOptions::default(), now)
            {
                debug!(?e, "KEYNOTIFY STOP not sent");
            }
        }
    }

    /// Moves outputs between the transport, the client and the waiters until all are drained.
    fn process(&mut self, now: Now) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.mqtt.poll_event() {
                progressed = true;
                self.mqtt_event(event, now);
            }
            while let Some(output) = self.client.poll_output() {
                progressed = true;
                self.client_output(output, now);
            }
            if !progressed {
                break;
            }
        }
    }

    fn mqtt_event(&mut self, event: MqttEvent, now: Now) {
        match event {
            MqttEvent::Connected { session_present } => {
                self.client.handle_connected(session_present, now);
                self.publish_state(ConnectionState::Connected);
            }
            MqttEvent::Disconnected(reason) => {
                self.client.handle_disconnected(now);
                self.publish_state(ConnectionState::Disconnected(reason));
            }
            MqttEvent::Message(message) => self.client.handle_publish(message, now),
            MqttEvent::Subscribed { filter, granted } => {
                self.client.handle_subscribed(&filter, granted, now);
            }
        }
    }

    fn client_output(&mut self, output: Output, now: Now) {
        match output {
            Output::Publish(message) => {
                if let Err(e) = self.mqtt.publish(&message, now) {
                    // The request then ends by its own timeout.
                    warn!(error = %e, "request could not be published");
                }
            }
            Output::Subscribe(filter) => {
                if let Err(e) = self.mqtt.subscribe(&filter, now) {
                    warn!(error = %e, %filter, "cannot subscribe");
                    self.client.handle_subscribed(&filter, false, now);
                }
            }
            Output::Unsubscribe(filter) => {
                let _ = self.mqtt.unsubscribe(&filter, now);
            }
            Output::Completion(completion) => self.completion(completion),
            Output::Notification(n) => {
                if let Some(entry) = self.observed.get_mut(&n.key) {
                    for o in &mut entry.observers {
                        o.deliver(KeyChange {
                            key: n.key.clone(),
                            value: n.value.clone(),
                            version: Some(n.version.clone()),
                            resync: false,
                        });
                    }
                }
            }
            Output::Reregistered { key, result } => {
                if let Some(entry) = self.observed.get_mut(&key) {
                    if result.is_ok() {
                        for o in &mut entry.observers {
                            o.deliver(KeyChange {
                                key: key.clone(),
                                value: None,
                                version: None,
                                resync: true,
                            });
                        }
                    }
                }
            }
            // This adapter hosts no lease machines, so a drop has nobody to tell beyond the
            // connection state already published from the session event.
            _ => {}
        }
    }

    fn completion(&mut self, completion: Completion) {
        if let Some(reply) = self.waiters.remove(&completion.id) {
            let _ = reply.send(Ok(completion));
            return;
        }
        let key = self.observed.iter().find_map(|(k, o)| {
            o.pending
                .as_ref()
                .filter(|(id, _)| *id == completion.id)
                .map(|_| k.clone())
        });
        let Some(key) = key else {
            // KEYNOTIFY STOP and dropped requests: nobody waits.
            return;
        };
        let Some(entry) = self.observed.get_mut(&key) else {
            return;
        };
        let Some((_, waiting)) = entry.pending.take() else {
            return;
        };
        let result = match completion.result {
            Ok(Response::KeyNotify) => Ok(()),
            Ok(_) => Err(StoreError::BadReply),
            Err(e) => Err(StoreError::from(e)),
        };
        if result.is_err() {
            // Nobody observes a key whose registration failed; the client forgets it too.
            self.observed.remove(&key);
            let now = self.clock.now();
            let _ = self.client.unobserve(key, RequestOptions::default(), now);
        }
        for reply in waiting {
            let _ = reply.send(result.clone());
        }
    }
}
