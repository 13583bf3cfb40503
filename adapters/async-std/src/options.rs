//! How to reach the broker and how the client behaves: [`ConnectionOptions`].
//!
//! Everything is validated when the connection starts, so nothing later can fail on an option.
//! Files (password, token, CA, client certificate) are read before every connection attempt,
//! so rotated secrets are picked up.

use std::path::PathBuf;
use std::time::Duration;

use leasedlock_core::envelope::response_topic;

/// The MQTT 5 enhanced-authentication method of the AIO broker's Kubernetes service-account
/// tokens.
pub const K8S_SAT_METHOD: &str = "K8S-SAT";

/// Why options were rejected or a file they name could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    /// The broker host is empty.
    EmptyHost,
    /// The client id is empty or has characters that cannot appear in a topic level.
    BadClientId,
    /// Keep-alive must be whole seconds between 1 s and 65 535 s.
    KeepAlive,
    /// The session expiry does not fit the protocol's 32-bit seconds.
    SessionExpiry,
    /// A timeout or capacity that must be positive is zero.
    Zero(&'static str),
    /// A file named in the options could not be read.
    ReadFile {
        /// What the file was for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error's text.
        error: String,
    },
    /// The TLS material is unusable (the reason).
    Tls(String),
}

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionsError::EmptyHost => f.write_str("broker host is empty"),
            OptionsError::BadClientId => {
                f.write_str("client id is empty or not a valid topic level")
            }
            OptionsError::KeepAlive => f.write_str("keep-alive must be whole seconds in 1..=65535"),
            OptionsError::SessionExpiry => f.write_str("session expiry exceeds u32::MAX seconds"),
            OptionsError::Zero(what) => write!(f, "{what} must not be zero"),
            OptionsError::ReadFile { what, path, error } => {
                write!(f, "cannot read {what} file {}: {error}", path.display())
            }
            OptionsError::Tls(reason) => write!(f, "TLS configuration: {reason}"),
        }
    }
}

impl std::error::Error for OptionsError {}

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Secret {
    /// The value itself.
    Inline(String),
    /// A file holding it, read again before every connection attempt (trailing newlines are
    /// trimmed).
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret::Inline(<redacted>)"),
            Secret::File(p) => write!(f, "Secret::File({})", p.display()),
        }
    }
}

impl Secret {
    /// The secret's bytes (a file's content without trailing line breaks).
    pub(crate) async fn load(&self, what: &'static str) -> Result<Vec<u8>, OptionsError> {
        match self {
            Secret::Inline(s) => Ok(s.as_bytes().to_vec()),
            Secret::File(path) => {
                let mut bytes = read_file(what, path).await?;
                while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                    bytes.pop();
                }
                Ok(bytes)
            }
        }
    }
}

pub(crate) async fn read_file(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, OptionsError> {
    async_std::fs::read(path)
        .await
        .map_err(|e| OptionsError::ReadFile {
            what,
            path: path.clone(),
            error: e.to_string(),
        })
}

/// How the client authenticates to the broker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Authentication {
    /// No credentials (or only the TLS client certificate).
    #[default]
    None,
    /// MQTT username and password.
    UsernamePassword {
        /// The username.
        username: String,
        /// The password.
        password: Secret,
    },
    /// Kubernetes service-account token (`K8S-SAT` enhanced authentication). The token file is
    /// read before every connection attempt, and when its content changes while connected the
    /// new token is sent in an AUTH re-authentication, as the official SDKs do.
    K8sServiceAccountToken {
        /// The projected token file.
        token_file: PathBuf,
    },
}

/// TLS settings: rustls with the platform's roots or a custom CA, and an optional client
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// TLS trusting the platform's root certificates.
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Trust only the CA certificates in this PEM file.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> TlsOptions {
        self.ca_file = Some(path.into());
        self
    }

    /// Present this client certificate chain and key (PEM files).
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsOptions {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }
}

/// Everything a [`crate::Connection`] needs. Defaults follow the official SDK: Clean Start 0,
/// Session Expiry 3600 s, Keep Alive 60 s; plus a 10 s request timeout.
///
/// ```
/// use std::time::Duration;
/// use leasedlock_async_std::ConnectionOptions;
///
/// let options = ConnectionOptions::new("127.0.0.1", 1883, "worker-1")
///     .keep_alive(Duration::from_secs(30))
///     .request_timeout(Duration::from_secs(5));
/// assert_eq!(options.client_id(), "worker-1");
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) client_id: String,
    pub(crate) clean_start: bool,
    pub(crate) session_expiry: Duration,
    pub(crate) keep_alive: Duration,
    pub(crate) tls: Option<TlsOptions>,
    pub(crate) authentication: Authentication,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_observed: usize,
    pub(crate) max_packet_size: u32,
    pub(crate) notification_buffer: usize,
    pub(crate) seed: Option<u64>,
}

impl ConnectionOptions {
    /// Options for `host:port` with this MQTT client id.
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> Self {
        ConnectionOptions {
            host: host.into(),
            port,
            client_id: client_id.into(),
            clean_start: false,
            session_expiry: Duration::from_secs(3600),
            keep_alive: Duration::from_secs(60),
            tls: None,
            authentication: Authentication::None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            max_in_flight: 1024,
            max_observed: 1024,
            max_packet_size: leasedlock_mqtt_session::DEFAULT_MAX_PACKET_SIZE,
            notification_buffer: 64,
            seed: None,
        }
    }

    /// The MQTT client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Clean Start on the first connection (later ones always try to resume).
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }

    /// Session Expiry Interval (whole seconds).
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.session_expiry = expiry;
        self
    }

    /// Keep Alive (whole seconds, 1..=65535).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Connect over TLS.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Username and password.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.authentication = Authentication::UsernamePassword {
            username: username.into(),
            password: Secret::Inline(password.into()),
        };
        self
    }

    /// Username, and a password read from a file before every connection attempt.
    pub fn credentials_from_file(
        mut self,
        username: impl Into<String>,
        password_file: impl Into<PathBuf>,
    ) -> Self {
        self.authentication = Authentication::UsernamePassword {
            username: username.into(),
            password: Secret::File(password_file.into()),
        };
        self
    }

    /// Any [`Authentication`].
    pub fn authentication(mut self, auth: Authentication) -> Self {
        self.authentication = auth;
        self
    }

    /// Default per-request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long [`crate::Connection::connect`] waits for the first CONNACK, and one connection
    /// attempt (TCP, TLS and CONNACK) may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Reconnect back-off: doubles from `min` up to `max`, with jitter.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// Maximum state-store requests in flight.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Maximum observed keys.
    pub fn max_observed(mut self, max: usize) -> Self {
        self.max_observed = max;
        self
    }

    /// Largest MQTT packet accepted from the broker.
    pub fn max_packet_size(mut self, bytes: u32) -> Self {
        self.max_packet_size = bytes;
        self
    }

    /// Buffered notifications per observation before the oldest are dropped (the observer is
    /// then told to resynchronise).
    pub fn notification_buffer(mut self, len: usize) -> Self {
        self.notification_buffer = len;
        self
    }

    /// Seed for correlation ids and jitter (tests); random by default.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks every option that does not need a file.
    pub(crate) fn validate(&self) -> Result<(), OptionsError> {
        if self.host.is_empty() {
            return Err(OptionsError::EmptyHost);
        }
        let id_ok = !self.client_id.is_empty()
            && !self.client_id.contains(['/', '+', '#', '\0'])
            && response_topic(&self.client_id).len() <= usize::from(u16::MAX);
        if !id_ok {
            return Err(OptionsError::BadClientId);
        }
        let ka = self.keep_alive;
        if ka.subsec_nanos() != 0 || ka.as_secs() == 0 || ka.as_secs() > u64::from(u16::MAX) {
            return Err(OptionsError::KeepAlive);
        }
        if self.session_expiry.as_secs() > u64::from(u32::MAX) {
            return Err(OptionsError::SessionExpiry);
        }
        for (what, zero) in [
            ("request timeout", self.request_timeout.is_zero()),
            ("connect timeout", self.connect_timeout.is_zero()),
            ("reconnect back-off", self.backoff_min.is_zero()),
            ("max in flight", self.max_in_flight == 0),
            ("max observed", self.max_observed == 0),
            ("max packet size", self.max_packet_size == 0),
            ("notification buffer", self.notification_buffer == 0),
        ] {
            if zero {
                return Err(OptionsError::Zero(what));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert_eq!(ConnectionOptions::new("h", 1883, "c").validate(), Ok(()));
    }

    #[test]
    fn bad_options_are_typed() {
        let base = ConnectionOptions::new("h", 1883, "c");
        assert_eq!(
            ConnectionOptions::new("", 1, "c").validate(),
            Err(OptionsError::EmptyHost)
        );
        for id in ["", "a/b", "a+", "#", "a\0"] {
            assert_eq!(
                ConnectionOptions::new("h", 1, id).validate(),
                Err(OptionsError::BadClientId)
            );
        }
        for ka in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(70_000),
        ] {
            assert_eq!(
                base.clone().keep_alive(ka).validate(),
                Err(OptionsError::KeepAlive)
            );
        }
        assert_eq!(
            base.clone()
                .session_expiry(Duration::from_secs(u64::from(u32::MAX) + 1))
                .validate(),
            Err(OptionsError::SessionExpiry)
        );
        assert_eq!(
            base.clone().request_timeout(Duration::ZERO).validate(),
            Err(OptionsError::Zero("request timeout"))
        );
        assert_eq!(
            base.max_in_flight(0).validate(),
            Err(OptionsError::Zero("max in flight"))
        );
    }

    #[async_std::test]
    async fn secrets_from_files_are_trimmed_and_errors_typed() {
        let dir = std::env::temp_dir().join(format!("leasedlock-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        std::fs::write(&path, b"s3cret\r\n").unwrap();
        assert_eq!(
            Secret::File(path.clone()).load("password").await.unwrap(),
            b"s3cret"
        );
        let missing = dir.join("missing");
        assert!(matches!(
            Secret::File(missing).load("password").await,
            Err(OptionsError::ReadFile {
                what: "password",
                ..
            })
        ));
        assert!(!format!("{:?}", Secret::Inline("x1y2".into())).contains("x1y2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
