//! The one MQTT transport of every adapter (feature `session`): the sans-IO MQTT 5 session of
//! `leasedlock-mqtt-session` over a byte stream (TCP with `TCP_NODELAY`, optionally TLS through
//! rustls), with reconnects, back-off, credentials read before each attempt and in-band
//! re-authentication, as the [`Link`] of the one driver loop ([`crate::driver::Driver`]).
//!
//! What it needs of a runtime is small and named by [`Runtime`]: open a TCP stream, sleep, read
//! a file off the async thread, spawn a detached task, and a re-armable [`Timer`]. The tokio
//! adapter and the async-std adapter each implement it in a few lines; everything that moves
//! bytes, and so every behaviour a user could tell apart, is here once.
//!
//! ```text
//! Driver ── Link ──► SessionLink<R> ── Mqtt<R> ── Session (sans-IO)
//!                                         └── ByteLink: R::Tcp [+ TLS] ── broker
//! ```

mod link;
mod mqtt;
mod transport;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use leasedlock_core::Now;

use crate::driver::{Link, LinkEvent, Timer};
use crate::{ConnectionOptions, LastRefusal, OptionsError, Transmit};

use mqtt::Mqtt;

/// A boxed `Send` future, as [`Runtime`] returns them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the transport needs of an async runtime.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected TCP stream, as a futures-io byte stream.
    type Tcp: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// The runtime's re-armable timer for the transport's own deadlines (keep-alive, CONNACK,
    /// reconnect, token checks). It may fire early; the transport treats that as a no-op.
    type Timer: Timer + Default + Send + 'static;

    /// Connects to `host:port` and turns Nagle's algorithm off (with it, every QoS 1
    /// request/reply waits on delayed ACKs: tens of milliseconds).
    fn connect(&self, host: String, port: u16) -> BoxFuture<io::Result<Self::Tcp>>;

    /// Resolves after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;

    /// Reads a whole (small) file without blocking the task's thread: a secret before each
    /// connection attempt, a rotated token while connected.
    fn read_file(&self, path: PathBuf) -> BoxFuture<io::Result<Vec<u8>>>;

    /// Runs `task` to completion in the background (a closing link's last writes).
    fn spawn(&self, task: BoxFuture<()>);
}

/// What [`SessionLink`] waited for (bytes, a finished attempt, a deadline), for its
/// [`Link::handle`]. Opaque.
pub struct SessionInput(mqtt::Input);

impl std::fmt::Debug for SessionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionInput(..)")
    }
}

/// The transport as the driver's [`Link`]; it also records why the broker refused the last
/// attempt, for `connect`.
pub struct SessionLink<R: Runtime> {
    mqtt: Mqtt<R>,
    last_refusal: LastRefusal,
}

impl<R: Runtime> SessionLink<R> {
    /// A disconnected link whose first connection attempt starts at once. `seed` seeds the
    /// reconnect back-off's jitter (the engine's seed, [`crate::Engine::seed`]). Fails on options
    /// only MQTT refuses (a NUL in the client id, say).
    pub fn new(
        options: &ConnectionOptions,
        seed: u64,
        clock: crate::Clock,
        runtime: R,
    ) -> Result<SessionLink<R>, OptionsError> {
        Ok(SessionLink {
            mqtt: Mqtt::new(options, seed, clock, runtime)?,
            last_refusal: LastRefusal::default(),
        })
    }

    /// Where the link records why the broker refused the last attempt.
    pub fn last_refusal(&self) -> LastRefusal {
        self.last_refusal.clone()
    }
}

impl<R: Runtime> std::fmt::Debug for SessionLink<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLink")
            .field("connected", &self.mqtt.is_connected())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Link for SessionLink<R> {
    type Input = SessionInput;

    fn wait(&mut self) -> impl Future<Output = SessionInput> + Send {
        let wait = self.mqtt.wait();
        async move { SessionInput(wait.await) }
    }

    fn handle(&mut self, input: SessionInput, now: Now) -> impl Future<Output = ()> + Send {
        self.mqtt.handle(input.0, now)
    }

    fn poll_event(&mut self) -> Option<LinkEvent> {
        Some(match self.mqtt.poll_event()? {
            mqtt::MqttEvent::Connected { session_present } => {
                self.last_refusal.set(None);
                LinkEvent::Connected { session_present }
            }
            mqtt::MqttEvent::Disconnected { text, refusal } => {
                self.last_refusal.set(refusal);
                LinkEvent::Disconnected(text)
            }
            mqtt::MqttEvent::Message(message) => LinkEvent::Message(message),
            mqtt::MqttEvent::Subscribed { filter, granted } => {
                LinkEvent::Subscribed { filter, granted }
            }
        })
    }

    fn send(&mut self, transmit: Transmit, now: Now) -> Result<(), String> {
        let sent = match &transmit {
            Transmit::Publish(message) => self.mqtt.publish(message, now),
            Transmit::Subscribe(filter) => self.mqtt.subscribe(filter, now),
            Transmit::Unsubscribe(filter) => self.mqtt.unsubscribe(filter, now),
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

#[cfg(test)]
pub(crate) mod test_runtime {
    //! A runtime for unit tests that never touches the network: connections are refused, sleeps
    //! never end, files are read at once.

    use super::*;

    /// See the module.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Offline;

    /// A timer that never fires.
    #[derive(Debug, Default)]
    pub(crate) struct Never;

    impl Timer for Never {
        fn arm(&mut self, _at: std::time::Instant) {}

        fn fired(&mut self) -> impl Future<Output = ()> + Send {
            std::future::pending()
        }
    }

    impl Runtime for Offline {
        type Tcp = futures_lite::io::Cursor<Vec<u8>>;
        type Timer = Never;

        fn connect(&self, _host: String, _port: u16) -> BoxFuture<io::Result<Self::Tcp>> {
            Box::pin(async { Err(io::ErrorKind::ConnectionRefused.into()) })
        }

        fn sleep(&self, _duration: Duration) -> BoxFuture<()> {
            Box::pin(std::future::pending())
        }

        fn read_file(&self, path: PathBuf) -> BoxFuture<io::Result<Vec<u8>>> {
            Box::pin(async move { std::fs::read(path) })
        }

        fn spawn(&self, task: BoxFuture<()>) {
            drop(task);
        }
    }
}
