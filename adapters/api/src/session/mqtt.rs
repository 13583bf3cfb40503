//! The byte-moving half of the driver: the sans-IO MQTT session of `leasedlock-mqtt-session`
//! over a [`ByteLink`], connection attempts (TCP/TLS, secrets read before each), reconnect
//! back-off, in-band re-authentication when a K8S-SAT token file rotates, and the session's
//! timers. It knows nothing of the state store: what it reports is [`MqttEvent`]s, and what it
//! is given is messages to publish and filters to (un)subscribe.
//!
//! The driver loop uses it as: `let input = mqtt.wait().await` (cancel-safe, so it can race
//! with the driver's other inputs), then `mqtt.handle(input, now).await`, then drain
//! [`Mqtt::poll_event`], then hand over what to send and call [`Mqtt::flush`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use leasedlock_core::envelope::{Message, QoS};
use leasedlock_core::Now;
use leasedlock_mqtt_session::{
    ConfigError, DisconnectReason, Event, PublishOutcome, Session, SessionConfig, SessionError,
};
use tracing::{debug, info, warn};

use super::link::ByteLink;
use super::transport::{self, Transport};
use super::Runtime;
use crate::driver::Timer as _;
use crate::{
    Authentication, Backoff, Clock, ConnackRefusal, ConnectionOptions, OptionsError, Secret,
    K8S_SAT_METHOD,
};

/// How often a K8S-SAT token file is checked for a rotated token while connected.
const TOKEN_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// What the transport reports to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MqttEvent {
    /// CONNACK accepted a connection.
    Connected {
        /// Whether the broker kept the session (subscriptions, in-flight QoS 1 messages).
        session_present: bool,
    },
    /// The connection ended, or an attempt failed.
    Disconnected {
        /// The reason, for the connection state.
        text: String,
        /// The broker refused the attempt in its CONNACK, for this reason.
        refusal: Option<ConnackRefusal>,
    },
    /// A PUBLISH arrived.
    Message(Message),
    /// The SUBACK of a [`Mqtt::subscribe`]: whether the broker granted it.
    Subscribed {
        /// The filter.
        filter: String,
        /// Granted (any QoS) rather than refused.
        granted: bool,
    },
}

/// Something [`Mqtt::wait`] saw; hand it to [`Mqtt::handle`].
pub(crate) enum Input {
    /// Bytes from the broker, or the error (or end) of the stream.
    Net(std::io::Result<Vec<u8>>),
    /// Everything queued was written, or writing failed.
    Written(std::io::Result<()>),
    /// A connection attempt finished.
    Attempt(Result<(Transport, Secrets), String>),
    /// One of the transport's own deadlines passed.
    Timer,
}

/// Secrets read before a connection attempt.
#[derive(Debug, Default)]
pub(crate) struct Secrets {
    password: Option<Bytes>,
    token: Option<Bytes>,
}

type Attempt = Pin<Box<dyn Future<Output = Result<(Transport, Secrets), String>> + Send>>;

/// The MQTT client: session, link, attempts, back-off and credentials.
pub(crate) struct Mqtt<R: Runtime> {
    options: ConnectionOptions,
    clock: Clock,
    session: Session,
    link: Option<ByteLink<R>>,
    attempt: Option<Attempt>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Last K8S-SAT token sent, to notice rotation.
    token: Option<Bytes>,
    token_check_at: Option<Instant>,
    events: VecDeque<MqttEvent>,
    timer: R::Timer,
    /// The I/O error that ended the link, kept for the `Disconnected` text it causes (a TLS
    /// alert from the broker, say, is the only word on why it dropped us).
    link_error: Option<String>,
    /// Connects, sleeps, reads secrets, runs a closing link's last writes.
    runtime: R,
}

/// The session's configuration for these options.
fn session_config(options: &ConnectionOptions) -> SessionConfig {
    let mut config = SessionConfig::new(options.client_id());
    config.clean_start = options.is_clean_start();
    config.session_expiry_secs =
        u32::try_from(options.get_session_expiry().as_secs()).unwrap_or(u32::MAX);
    // MQTT's keep-alive is whole seconds.
    config.keep_alive = Duration::from_secs(options.get_keep_alive().as_secs());
    config.ping_timeout = options.get_connect_timeout();
    config.connect_timeout = options.get_connect_timeout();
    config.max_packet_size = options.get_max_packet_size().max(256);
    match options.get_authentication() {
        Authentication::UsernamePassword { username, .. } => {
            config.username = Some(username.clone());
        }
        Authentication::K8sServiceAccountToken { .. } => {
            config.auth_method = Some(K8S_SAT_METHOD.to_owned());
        }
        _ => {}
    }
    config
}

impl<R: Runtime> Mqtt<R> {
    /// A disconnected client whose first attempt starts at once. `seed` seeds the back-off
    /// jitter.
    pub(crate) fn new(
        options: &ConnectionOptions,
        seed: u64,
        clock: Clock,
        runtime: R,
    ) -> Result<Mqtt<R>, OptionsError> {
        // The options passed the api's validation (which already refuses an unusable
        // username); what is left is what only MQTT refuses (a NUL in the client id, say).
        let session = Session::new(session_config(options)).map_err(|e| match e {
            SessionError::Config(
                ConfigError::NulCharacter("client_id") | ConfigError::TooLong("client_id"),
            ) => OptionsError::BadClientId,
            SessionError::Config(
                ConfigError::NulCharacter(field) | ConfigError::TooLong(field),
            ) => OptionsError::Unencodable(field),
            // Ruled out by the api's validation and `session_config`; still a typed error.
            _ => OptionsError::Unencodable("CONNECT"),
        })?;
        let (reconnect_min, reconnect_max) = options.get_reconnect_backoff();
        let mut mqtt = Mqtt {
            backoff: Backoff::new(reconnect_min, reconnect_max, seed),
            options: options.clone(),
            clock,
            session,
            link: None,
            attempt: None,
            retry_at: None,
            token: None,
            token_check_at: None,
            events: VecDeque::new(),
            link_error: None,
            timer: R::Timer::default(),
            runtime,
        };
        mqtt.attempt = Some(mqtt.start_attempt());
        Ok(mqtt)
    }

    fn start_attempt(&self) -> Attempt {
        let options = self.options.clone();
        let runtime = self.runtime.clone();
        let expired = self.runtime.sleep(options.get_connect_timeout());
        Box::pin(async move {
            let connect = async {
                let secrets = load_secrets(options.get_authentication(), &runtime)
                    .await
                    .map_err(|e| e.to_string())?;
                let transport = transport::open(&options, &runtime)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((transport, secrets))
            };
            let expire = async {
                expired.await;
                Err(String::from("connection attempt timed out"))
            };
            future::or(connect, expire).await
        })
    }

    /// The transport's next own deadline: the session's (CONNACK, keep-alive, PINGRESP), the
    /// next reconnect attempt, the next token check.
    fn deadline(&self) -> Option<Instant> {
        [
            self.session.poll_timeout().map(|t| self.clock.to_std(t)),
            self.retry_at,
            self.token_check_at.filter(|_| self.link.is_some()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Waits for the next input: bytes or the end of the stream, a finished connection
    /// attempt, or a deadline. Cancel-safe: nothing is lost when the future is dropped.
    pub(crate) async fn wait(&mut self) -> Input {
        if let Some(at) = self.deadline() {
            self.timer.arm(at);
        }
        let (link, attempt, timer) = (&mut self.link, &mut self.attempt, &mut self.timer);
        let (reader, writer) = match link {
            Some(l) => (Some(&mut l.reader), Some(&mut l.writer)),
            None => (None, None),
        };
        let net = async {
            match reader {
                Some(r) => Input::Net(r.recv().await),
                None => future::pending().await,
            }
        };
        let write = async {
            match writer {
                Some(w) if w.has_pending() => Input::Written(w.drain().await),
                _ => future::pending().await,
            }
        };
        let connecting = async {
            match attempt.as_mut() {
                Some(f) => Input::Attempt(f.as_mut().await),
                None => future::pending().await,
            }
        };
        let timer = async {
            timer.fired().await;
            Input::Timer
        };
        future::race(future::race(net, write), future::race(connecting, timer)).await
    }

    /// Feeds what [`Mqtt::wait`] returned into the session.
    pub(crate) async fn handle(&mut self, input: Input, now: Now) {
        match input {
            Input::Net(Ok(bytes)) => self.session.handle_bytes_received(&bytes, now.mono),
            Input::Written(Ok(())) => {}
            Input::Net(Err(e)) | Input::Written(Err(e)) => {
                self.link_error = Some(e.to_string());
                self.session.handle_connection_lost(now.mono);
                self.link = None;
            }
            Input::Attempt(Ok((transport, secrets))) => {
                self.attempt = None;
                self.apply_secrets(secrets);
                self.link = Some(ByteLink::start(transport, self.runtime.clone()));
                self.link_error = None;
                self.session.handle_connection_opened(now.mono);
                self.token_check_at = Some(Instant::now() + TOKEN_CHECK_INTERVAL);
            }
            Input::Attempt(Err(error)) => {
                self.attempt = None;
                debug!(%error, "connection attempt failed");
                self.events.push_back(MqttEvent::Disconnected {
                    text: error,
                    refusal: None,
                });
            }
            Input::Timer => {
                if self.retry_at.is_some_and(|at| at <= Instant::now()) {
                    self.retry_at = None;
                    self.attempt = Some(self.start_attempt());
                }
                if self.token_check_at.is_some_and(|at| at <= Instant::now()) {
                    self.token_check_at = Some(Instant::now() + TOKEN_CHECK_INTERVAL);
                    self.check_token(now).await;
                }
                self.session.handle_timeout(now.mono);
            }
        }
        self.drain_session();
    }

    /// The next event for the driver.
    pub(crate) fn poll_event(&mut self) -> Option<MqttEvent> {
        self.events.pop_front()
    }

    /// Publishes a message (queued by the session while disconnected).
    pub(crate) fn publish(&mut self, message: &Message, now: Now) -> Result<(), SessionError> {
        self.session.publish(message, now.mono)?;
        self.drain_session();
        Ok(())
    }

    /// Subscribes at QoS 1; the SUBACK comes back as [`MqttEvent::Subscribed`]. Requested while
    /// disconnected, or unanswered when the connection drops, it is sent after the next CONNACK.
    pub(crate) fn subscribe(&mut self, filter: &str, now: Now) -> Result<(), SessionError> {
        self.session.subscribe(filter, QoS::AtLeastOnce, now.mono)?;
        Ok(())
    }

    /// Unsubscribes (the UNSUBACK is not reported).
    pub(crate) fn unsubscribe(&mut self, filter: &str, now: Now) -> Result<(), SessionError> {
        self.session.unsubscribe(filter, now.mono)?;
        Ok(())
    }

    /// Writes what the session produced; a stalled or dead link ends the connection. With no
    /// link and no attempt running, schedules the next attempt after a back-off. Call after
    /// every batch of inputs.
    pub(crate) fn flush(&mut self, now: Now) {
        if let Some(link) = &mut self.link {
            while let Some(bytes) = self.session.poll_transmit() {
                if !link.writer.send(&bytes) {
                    warn!("connection stalled or closed while writing");
                    self.link_error = Some("stalled or closed while writing".into());
                    // Reported as `Disconnected` by the session, which drops the link below.
                    self.session.handle_connection_lost(now.mono);
                }
            }
        } else {
            // Nothing can be written without a connection.
            while self.session.poll_transmit().is_some() {}
        }
        self.drain_session();
        if self.link.is_none() && self.attempt.is_none() && self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff.next_delay());
        }
    }

    /// Whether a CONNACK accepted the current connection.
    pub(crate) fn is_connected(&self) -> bool {
        self.session.is_connected()
    }

    /// Leaves for good: DISCONNECT with Session Expiry 0, flushed by the link as it drops
    /// (bounded by its linger).
    pub(crate) fn close(&mut self, now: Now) {
        self.session.disconnect(false, now.mono);
        if let Some(link) = &mut self.link {
            while let Some(bytes) = self.session.poll_transmit() {
                link.writer.send(&bytes);
            }
        }
        self.drain_session();
        self.events.clear();
        self.link = None;
        self.attempt = None;
        self.retry_at = None;
    }

    /// Turns session events into driver events.
    fn drain_session(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Connected { session_present } => {
                    info!(session_present, "connected");
                    self.backoff.reset();
                    self.events
                        .push_back(MqttEvent::Connected { session_present });
                }
                Event::SessionLost => info!("broker lost the session"),
                Event::Published { id, outcome } => match outcome {
                    PublishOutcome::Acknowledged(code) if code.is_error() => {
                        warn!(?id, %code, "broker refused a publish");
                    }
                    PublishOutcome::Discarded => warn!(?id, "publish discarded"),
                    _ => {}
                },
                Event::Subscribed { filter, result, .. } => {
                    if let Err(code) = result {
                        warn!(%filter, %code, "subscription refused");
                    }
                    self.events.push_back(MqttEvent::Subscribed {
                        filter,
                        granted: result.is_ok(),
                    });
                }
                Event::Message(message) => self.events.push_back(MqttEvent::Message(message)),
                Event::Disconnected(reason) => {
                    let text = describe(&reason, self.link_error.take().as_deref());
                    info!(reason = %text, "disconnected");
                    // The link goes at the next flush, after writing what the session queued
                    // (a DISCONNECT with the reason, say).
                    self.link_ended();
                    let refusal = match &reason {
                        DisconnectReason::Refused { reason, .. } => {
                            Some(ConnackRefusal::from_code(reason.0))
                        }
                        _ => None,
                    };
                    self.events
                        .push_back(MqttEvent::Disconnected { text, refusal });
                }
                Event::AuthContinue { .. } => {
                    warn!("broker asked for an authentication exchange K8S-SAT does not have");
                }
                Event::Reauthenticated => debug!("re-authenticated"),
                other => debug!(?other, "session event"),
            }
        }
    }

    /// The session ended the connection: write its last bytes, then drop the link.
    fn link_ended(&mut self) {
        if let Some(mut link) = self.link.take() {
            while let Some(bytes) = self.session.poll_transmit() {
                link.writer.send(&bytes);
            }
        }
    }

    fn apply_secrets(&mut self, secrets: Secrets) {
        if let Err(e) = self.session.set_password(secrets.password) {
            warn!(error = %e, "password unusable");
        }
        if let Some(token) = secrets.token {
            if let Err(e) = self.session.set_auth_data(Some(token.clone())) {
                warn!(error = %e, "token unusable");
            }
            self.token = Some(token);
        }
    }

    /// Re-authenticates in-band when the service-account token file changed.
    async fn check_token(&mut self, now: Now) {
        let Authentication::K8sServiceAccountToken { token_file } =
            self.options.get_authentication()
        else {
            return;
        };
        let Ok(token) =
            read_secret(&Secret::File(token_file.clone()), "token", &self.runtime).await
        else {
            return;
        };
        let token = Bytes::from(token);
        if self.token.as_ref() != Some(&token) && self.session.is_connected() {
            info!("service-account token rotated; re-authenticating");
            if self.session.reauthenticate(token.clone(), now.mono).is_ok() {
                self.token = Some(token);
            }
        }
    }
}

/// A secret's text, read by the runtime off the driver's thread, so the driver never waits
/// on the file system.
async fn read_secret<R: Runtime>(
    secret: &Secret,
    what: &'static str,
    runtime: &R,
) -> Result<String, OptionsError> {
    secret
        .load(what, |path| runtime.read_file(path.to_path_buf()))
        .await
}

/// The longest binary field MQTT can carry (password, authentication data).
const MQTT_MAX_BINARY: usize = u16::MAX as usize;

/// The secrets the next attempt presents. A file whose content MQTT cannot carry fails the
/// attempt with a typed error (the api validates only inline secrets: files are read here), so
/// a connection never goes out without the credentials it was configured with.
async fn load_secrets<R: Runtime>(
    auth: &Authentication,
    runtime: &R,
) -> Result<Secrets, OptionsError> {
    let secrets = read_secrets(auth, runtime).await?;
    for (field, value) in [("password", &secrets.password), ("token", &secrets.token)] {
        if value.as_ref().is_some_and(|v| v.len() > MQTT_MAX_BINARY) {
            return Err(OptionsError::Unencodable(field));
        }
    }
    Ok(secrets)
}

async fn read_secrets<R: Runtime>(
    auth: &Authentication,
    runtime: &R,
) -> Result<Secrets, OptionsError> {
    Ok(match auth {
        Authentication::UsernamePassword { password, .. } => Secrets {
            password: Some(Bytes::from(
                read_secret(password, "password", runtime).await?,
            )),
            token: None,
        },
        Authentication::K8sServiceAccountToken { token_file } => Secrets {
            password: None,
            token: Some(Bytes::from(
                read_secret(&Secret::File(token_file.clone()), "token", runtime).await?,
            )),
        },
        _ => Secrets::default(),
    })
}

/// Why the connection ended, in words; `link_error` is the I/O error that ended the link, if
/// one did.
fn describe(reason: &DisconnectReason, link_error: Option<&str>) -> String {
    match reason {
        DisconnectReason::Local => "closed locally".into(),
        DisconnectReason::Transport => match link_error {
            Some(e) => format!("connection lost: {e}"),
            None => "connection lost".into(),
        },
        DisconnectReason::ConnackTimeout => "no CONNACK in time".into(),
        DisconnectReason::PingTimeout => "no PINGRESP in time".into(),
        DisconnectReason::Refused {
            reason,
            reason_string,
        } => format!(
            "connection refused ({reason}) {}",
            reason_string.as_deref().unwrap_or("")
        ),
        DisconnectReason::Server {
            reason,
            reason_string,
        } => format!(
            "broker disconnected ({reason}) {}",
            reason_string.as_deref().unwrap_or("")
        ),
        DisconnectReason::Decode(e) => format!("undecodable packet: {e}"),
        DisconnectReason::Protocol(v) => format!("protocol violation: {v:?}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_runtime::Offline;

    /// Was `OptionsError::Tls("MQTT CONNECT cannot carry …")`, a TLS error for a username.
    #[test]
    fn a_username_mqtt_cannot_carry_is_unencodable_not_tls() {
        // `Mqtt::new` does not rely on the api's validation having run.
        let options = ConnectionOptions::new("h", 1, "c1").credentials("a\0b", "pw");
        let err = Mqtt::new(&options, 1, Clock::new(), Offline).err();
        assert_eq!(err, Some(OptionsError::Unencodable("username")));
        let options = ConnectionOptions::new("h", 1, "c1").credentials("u".repeat(65_536), "pw");
        let err = Mqtt::new(&options, 1, Clock::new(), Offline).err();
        assert_eq!(err, Some(OptionsError::Unencodable("username")));
    }

    #[test]
    fn session_config_follows_the_options() {
        let options = ConnectionOptions::new("h", 1883, "c1")
            .keep_alive(Duration::from_millis(30_500))
            .session_expiry(Duration::from_secs(u64::from(u32::MAX) + 5))
            .connect_timeout(Duration::from_secs(3))
            .clean_start(true)
            .max_packet_size(10)
            .credentials("user", "pw");
        let c = session_config(&options);
        assert_eq!(c.client_id, "c1");
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, Duration::from_secs(30), "whole seconds");
        assert_eq!(c.session_expiry_secs, u32::MAX, "saturates");
        assert_eq!(c.ping_timeout, Duration::from_secs(3));
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.max_packet_size, 256, "raised to the session's minimum");
        assert_eq!(c.username.as_deref(), Some("user"));
        // The password is read before each attempt, not baked into the configuration.
        assert_eq!(c.password, None);
        assert_eq!(c.auth_method, None);

        let sat = options.authentication(Authentication::K8sServiceAccountToken {
            token_file: "/nonexistent/token".into(),
        });
        let c = session_config(&sat);
        assert_eq!(c.auth_method.as_deref(), Some(K8S_SAT_METHOD));
        assert_eq!(c.username, None);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn an_unreadable_secret_fails_the_attempt_not_the_driver() {
        futures_lite::future::block_on(
            an_unreadable_secret_fails_the_attempt_not_the_driver_async(),
        );
    }

    async fn an_unreadable_secret_fails_the_attempt_not_the_driver_async() {
        let auth = Authentication::K8sServiceAccountToken {
            token_file: "/nonexistent/leasedlock-token".into(),
        };
        let err = load_secrets(&auth, &Offline).await.unwrap_err();
        assert!(
            matches!(err, OptionsError::ReadFile { what: "token", .. }),
            "{err:?}"
        );
        let clock = Clock::new();
        let mut mqtt = Mqtt::new(
            &ConnectionOptions::new("127.0.0.1", 1, "c1").authentication(auth),
            7,
            clock,
            Offline,
        )
        .unwrap();
        let input = mqtt.wait().await;
        mqtt.handle(input, clock.now()).await;
        assert!(
            matches!(mqtt.poll_event(), Some(MqttEvent::Disconnected { text, .. }) if text.contains("token"))
        );
        // The next attempt is scheduled after a back-off.
        mqtt.flush(clock.now());
        assert!(mqtt.retry_at.is_some());
        assert!(mqtt.attempt.is_none());
    }

    #[test]
    fn secret_files_mqtt_cannot_carry_fail_the_attempt() {
        let dir = std::env::temp_dir().join(format!("leasedlock-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big");
        std::fs::write(&big, "x".repeat(MQTT_MAX_BINARY + 1)).unwrap();
        let fits = dir.join("fits");
        std::fs::write(&fits, "x".repeat(MQTT_MAX_BINARY)).unwrap();
        let load = |auth| futures_lite::future::block_on(load_secrets(&auth, &Offline));
        let password = |path: &std::path::Path| Authentication::UsernamePassword {
            username: "u".into(),
            password: Secret::File(path.to_path_buf()),
        };
        assert_eq!(
            load(password(&big)).err(),
            Some(OptionsError::Unencodable("password"))
        );
        assert_eq!(
            load(Authentication::K8sServiceAccountToken {
                token_file: big.clone()
            })
            .err(),
            Some(OptionsError::Unencodable("token"))
        );
        let loaded = load(password(&fits)).unwrap();
        assert_eq!(loaded.password.map(|p| p.len()), Some(MQTT_MAX_BINARY));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        /// Whatever options pass the api's validation, the transport is built or refuses them
        /// with a typed error; it never panics, and what it builds the session accepts.
        #[test]
        fn any_valid_options_build_or_fail_typed(
            client_id in "\\PC{0,40}|[a-z\\x00/#+]{1,8}",
            username in proptest::option::of("\\PC{0,20}|a\\x00b"),
            keep_alive_ms in 0u64..70_000_000,
            expiry in 0u64..5_000_000_000,
            max_packet in 0u32..100_000,
        ) {
            let mut options = ConnectionOptions::new("h", 1, client_id)
                .keep_alive(Duration::from_millis(keep_alive_ms))
                .session_expiry(Duration::from_secs(expiry))
                .max_packet_size(max_packet);
            if let Some(user) = username {
                options = options.credentials(user, "pw");
            }
            if options.validate().is_err() {
                return Ok(());
            }
            let nul_in_id = options.client_id().contains('\0');
            match Mqtt::new(&options, 1, Clock::new(), Offline) {
                Ok(mqtt) => {
                    proptest::prop_assert!(session_config(&options).validate().is_ok());
                    proptest::prop_assert!(mqtt.attempt.is_some(), "the first attempt starts at once");
                }
                Err(OptionsError::BadClientId) => proptest::prop_assert!(nul_in_id),
                Err(OptionsError::Unencodable(_)) => proptest::prop_assert!(!nul_in_id),
                Err(other) => proptest::prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    #[test]
    fn disconnect_reasons_read_well() {
        assert_eq!(
            describe(&DisconnectReason::PingTimeout, None),
            "no PINGRESP in time"
        );
        // The I/O error that ended the link is the cause of a transport loss.
        assert_eq!(
            describe(
                &DisconnectReason::Transport,
                Some("received fatal alert: CertificateRequired")
            ),
            "connection lost: received fatal alert: CertificateRequired"
        );
        assert_eq!(
            describe(&DisconnectReason::Transport, None),
            "connection lost"
        );
        let refused = DisconnectReason::Refused {
            reason: leasedlock_mqtt_session::ReasonCode::NOT_AUTHORIZED,
            reason_string: Some("bad token".into()),
        };
        assert_eq!(
            describe(&refused, None),
            "connection refused (0x87) bad token"
        );
    }
}
