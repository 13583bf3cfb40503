//! How to reach the broker and how the client behaves: [`ConnectionOptions`].
//!
//! Options are validated when the connection is built, so nothing later can panic on them
//! (rumqttc itself asserts on a keep-alive under five seconds, for example).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
    /// Keep-alive must be between 5 s (rumqttc's minimum) and 65 535 s.
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
            OptionsError::EmptyHost => write!(f, "broker host is empty"),
            OptionsError::BadClientId => write!(f, "client id is empty or not a valid topic level"),
            OptionsError::KeepAlive => write!(f, "keep-alive must be between 5 s and 65535 s"),
            OptionsError::SessionExpiry => write!(f, "session expiry exceeds u32::MAX seconds"),
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
    /// A file holding it, read again before every connection attempt so rotated secrets are
    /// picked up (trailing newlines are trimmed).
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => write!(f, "Secret::Inline(<redacted>)"),
            Secret::File(p) => write!(f, "Secret::File({})", p.display()),
        }
    }
}

/// How the client authenticates to the broker.
///
/// ```
/// use leasedlock_tokio::{Authentication, ConnectionOptions};
///
/// let sat = Authentication::K8sServiceAccountToken {
///     token_file: "/var/run/secrets/tokens/broker-sat".into(),
/// };
/// let options = ConnectionOptions::new("aio-broker", 18883, "worker-1").authentication(sat);
/// # let _ = options;
/// ```
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
    /// Kubernetes service-account token (`K8S-SAT` enhanced authentication), read from the
    /// file before every connection attempt.
    ///
    /// rumqttc 0.25 can put an authentication method and data into CONNECT but cannot send
    /// AUTH packets, so the token is not re-sent in-band when the file changes (as the official
    /// SDKs do); the new token is used on the next (re)connection instead. A broker that
    /// answers CONNECT with an AUTH challenge is not supported.
    K8sServiceAccountToken {
        /// The projected token file.
        token_file: PathBuf,
    },
}

/// TLS settings: rustls with the platform's roots or a custom CA, and an optional client
/// certificate.
///
/// ```
/// use leasedlock_tokio::{ConnectionOptions, TlsOptions};
///
/// let tls = TlsOptions::new()
///     .ca_file("/etc/aio/ca.pem")
///     .client_cert("/etc/aio/client.pem", "/etc/aio/client.key");
/// let options = ConnectionOptions::new("aio-broker", 8883, "worker-1").tls(tls);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// TLS trusting the platform's root certificates, no client certificate.
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Trust only the CA certificates in this PEM file.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> TlsOptions {
        self.ca_file = Some(path.into());
        self
    }

    /// Present this client certificate chain (PEM) and private key (PEM: PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsOptions {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    fn build(&self) -> Result<rustls::ClientConfig, OptionsError> {
        let tls = |e: rustls::Error| OptionsError::Tls(e.to_string());
        fn pem<'a>(
            what: &'static str,
            path: &'a Path,
        ) -> impl Fn(rustls::pki_types::pem::Error) -> OptionsError + 'a {
            move |e| OptionsError::ReadFile {
                what,
                path: path.to_path_buf(),
                error: e.to_string(),
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?;
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path).map_err(pem("CA", path))? {
                    roots.add(cert.map_err(pem("CA", path))?).map_err(tls)?;
                }
                if roots.is_empty() {
                    return Err(OptionsError::Tls(format!(
                        "no certificate in CA file {}",
                        path.display()
                    )));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(OptionsError::Tls(
                        "no usable platform root certificate; set a CA file".to_string(),
                    ));
                }
            }
        }
        let builder = builder.with_root_certificates(roots);
        match &self.client_cert {
            None => Ok(builder.with_no_client_auth()),
            Some((cert_path, key_path)) => {
                let chain = CertificateDer::pem_file_iter(cert_path)
                    .map_err(pem("client certificate", cert_path))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(pem("client certificate", cert_path))?;
                if chain.is_empty() {
                    return Err(OptionsError::Tls(format!(
                        "no certificate in {}",
                        cert_path.display()
                    )));
                }
                let key =
                    PrivateKeyDer::from_pem_file(key_path).map_err(pem("client key", key_path))?;
                builder.with_client_auth_cert(chain, key).map_err(tls)
            }
        }
    }
}

/// Everything needed to connect: broker address, identity, session, security, and the
/// client's defaults.
///
/// ```
/// use std::time::Duration;
/// use leasedlock_tokio::ConnectionOptions;
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
    pub(crate) auth: Authentication,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_observed: usize,
    pub(crate) max_packet_size: u32,
    pub(crate) notification_buffer: usize,
    pub(crate) seed: Option<u64>,
}

impl ConnectionOptions {
    /// Options for `host:port` with this MQTT client id and the defaults: clean start on the
    /// first connection (later reconnections always resume the session), session expiry
    /// 3600 s, keep-alive 60 s, no TLS, no credentials, 10 s request timeout.
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> Self {
        ConnectionOptions {
            host: host.into(),
            port,
            client_id: client_id.into(),
            clean_start: true,
            session_expiry: Duration::from_secs(3600),
            keep_alive: Duration::from_secs(60),
            tls: None,
            auth: Authentication::None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            max_in_flight: 1024,
            max_observed: 1024,
            max_packet_size: 8 * 1024 * 1024,
            notification_buffer: 256,
            seed: None,
        }
    }

    /// The MQTT client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Start the first connection with a clean session (`true`, the default) or resume one the
    /// broker kept (`false`). Reconnections always resume.
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }

    /// How long the broker keeps the session (subscriptions, queued QoS 1 messages) after the
    /// connection drops.
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.session_expiry = expiry;
        self
    }

    /// MQTT keep-alive (5 s to 65 535 s).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Connect over TLS.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Authenticate with a username and an inline password.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Authentication::UsernamePassword {
            username: username.into(),
            password: Secret::Inline(password.into()),
        };
        self
    }

    /// Authenticate with a username and a password read from a file before each connection.
    pub fn credentials_from_file(
        mut self,
        username: impl Into<String>,
        password_file: impl Into<PathBuf>,
    ) -> Self {
        self.auth = Authentication::UsernamePassword {
            username: username.into(),
            password: Secret::File(password_file.into()),
        };
        self
    }

    /// Any [`Authentication`], e.g. the Kubernetes service-account token.
    pub fn authentication(mut self, auth: Authentication) -> Self {
        self.auth = auth;
        self
    }

    /// Default timeout of a state-store request (the Message Expiry is this rounded up to
    /// seconds).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long one connection attempt (TCP, TLS and CONNACK) may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Reconnect back-off: the first delay and the cap (jittered exponential in between).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    /// Maximum requests in flight; more fail with a "busy" error instead of queueing.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Maximum number of keys observed at once.
    pub fn max_observed(mut self, max: usize) -> Self {
        self.max_observed = max;
        self
    }

    /// Largest MQTT packet accepted from the broker (announced in CONNECT).
    pub fn max_packet_size(mut self, bytes: u32) -> Self {
        self.max_packet_size = bytes;
        self
    }

    /// Notifications buffered per observation stream before the stream reports a lag.
    pub fn notification_buffer(mut self, len: usize) -> Self {
        self.notification_buffer = len;
        self
    }

    /// Seed for correlation ids and jitter (random by default; fix it for reproducible runs).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks everything that can be checked without I/O.
    pub(crate) fn validate(&self) -> Result<(), OptionsError> {
        if self.host.is_empty() {
            return Err(OptionsError::EmptyHost);
        }
        if self.client_id.is_empty() {
            return Err(OptionsError::BadClientId);
        }
        let ka = self.keep_alive.as_secs();
        if !(5..=u64::from(u16::MAX)).contains(&ka) {
            return Err(OptionsError::KeepAlive);
        }
        if u32::try_from(self.session_expiry.as_secs()).is_err() {
            return Err(OptionsError::SessionExpiry);
        }
        for (what, zero) in [
            ("request timeout", self.request_timeout.is_zero()),
            ("connect timeout", self.connect_timeout.is_zero()),
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

    /// The rumqttc options for the first connection (reads the secret files and TLS material).
    pub(crate) async fn to_mqtt(&self) -> Result<MqttOptions, OptionsError> {
        self.validate()?;
        let mut mqtt = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        mqtt.set_keep_alive(self.keep_alive);
        mqtt.set_clean_start(self.clean_start);
        mqtt.set_connection_timeout(self.connect_timeout.as_secs().max(1));
        mqtt.set_session_expiry_interval(u32::try_from(self.session_expiry.as_secs()).ok());
        mqtt.set_max_packet_size(Some(self.max_packet_size));
        let mut network = rumqttc::NetworkOptions::new();
        // Without it every QoS 1 request/reply stalls on Nagle's algorithm (~40 ms).
        network.set_tcp_nodelay(true);
        mqtt.set_network_options(network);
        if let Some(tls) = &self.tls {
            let config = tls.build()?;
            mqtt.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))));
        }
        apply_credentials(&self.auth, &mut mqtt).await?;
        Ok(mqtt)
    }
}

async fn read_secret(what: &'static str, path: &Path) -> Result<String, OptionsError> {
    let raw = tokio::fs::read(path)
        .await
        .map_err(|e| OptionsError::ReadFile {
            what,
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
    let text = String::from_utf8(raw).map_err(|_| OptionsError::ReadFile {
        what,
        path: path.to_path_buf(),
        error: "not UTF-8".to_string(),
    })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// Puts the current credentials into `mqtt`, reading secret files again.
pub(crate) async fn apply_credentials(
    auth: &Authentication,
    mqtt: &mut MqttOptions,
) -> Result<(), OptionsError> {
    match auth {
        Authentication::None => {}
        Authentication::UsernamePassword { username, password } => {
            let password = match password {
                Secret::Inline(p) => p.clone(),
                Secret::File(path) => read_secret("password", path).await?,
            };
            mqtt.set_credentials(username.clone(), password);
        }
        Authentication::K8sServiceAccountToken { token_file } => {
            let token = read_secret("service-account token", token_file).await?;
            mqtt.set_authentication_method(Some(K8S_SAT_METHOD.to_string()));
            mqtt.set_authentication_data(Some(Bytes::from(token)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leasedlock-tokio-opt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn invalid_options_are_typed_errors_not_panics() {
        let ok = ConnectionOptions::new("h", 1, "c");
        assert_eq!(ok.validate(), Ok(()));
        let cases = [
            (ConnectionOptions::new("", 1, "c"), OptionsError::EmptyHost),
            (
                ConnectionOptions::new("h", 1, ""),
                OptionsError::BadClientId,
            ),
            (
                ok.clone().keep_alive(Duration::from_secs(4)),
                OptionsError::KeepAlive,
            ),
            (
                ok.clone().keep_alive(Duration::from_secs(70_000)),
                OptionsError::KeepAlive,
            ),
            (
                ok.clone()
                    .session_expiry(Duration::from_secs(u64::from(u32::MAX) + 1)),
                OptionsError::SessionExpiry,
            ),
            (
                ok.clone().request_timeout(Duration::ZERO),
                OptionsError::Zero("request timeout"),
            ),
            (
                ok.clone().max_in_flight(0),
                OptionsError::Zero("max in flight"),
            ),
        ];
        for (opts, err) in cases {
            assert_eq!(opts.validate(), Err(err));
        }
    }

    #[tokio::test]
    async fn mqtt_options_carry_session_and_nodelay() {
        let mqtt = ConnectionOptions::new("broker", 1884, "id-1")
            .clean_start(false)
            .session_expiry(Duration::from_secs(120))
            .keep_alive(Duration::from_secs(7))
            .to_mqtt()
            .await
            .unwrap();
        assert_eq!(mqtt.broker_address(), ("broker".to_string(), 1884));
        assert_eq!(mqtt.client_id(), "id-1");
        assert!(!mqtt.clean_start());
        assert_eq!(mqtt.session_expiry_interval(), Some(120));
        assert_eq!(mqtt.keep_alive(), Duration::from_secs(7));
        assert!(mqtt.credentials().is_none());
        assert_eq!(mqtt.max_packet_size(), Some(8 * 1024 * 1024));
    }

    #[tokio::test]
    async fn password_and_token_files_are_read_and_trimmed() {
        let pw = tmp("pw", b"s3cret\n");
        let mqtt = ConnectionOptions::new("h", 1, "c")
            .credentials_from_file("user", &pw)
            .to_mqtt()
            .await
            .unwrap();
        let login = mqtt.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("user", "s3cret")
        );

        let tok = tmp("tok", b"eyJhbGciOi\r\n");
        let mqtt = ConnectionOptions::new("h", 1, "c")
            .authentication(Authentication::K8sServiceAccountToken { token_file: tok })
            .to_mqtt()
            .await
            .unwrap();
        assert_eq!(
            mqtt.authentication_method().as_deref(),
            Some(K8S_SAT_METHOD)
        );
        assert_eq!(
            mqtt.authentication_data(),
            Some(Bytes::from_static(b"eyJhbGciOi"))
        );

        let missing = ConnectionOptions::new("h", 1, "c")
            .credentials_from_file("user", "/nonexistent/leasedlock/pw")
            .to_mqtt()
            .await;
        assert!(matches!(
            missing,
            Err(OptionsError::ReadFile {
                what: "password",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn bad_tls_material_is_a_typed_error() {
        let not_pem = tmp("ca.pem", b"hello");
        let r = ConnectionOptions::new("h", 1, "c")
            .tls(TlsOptions::new().ca_file(&not_pem))
            .to_mqtt()
            .await;
        assert!(matches!(r, Err(OptionsError::Tls(_))), "{r:?}");
        let r = ConnectionOptions::new("h", 1, "c")
            .tls(TlsOptions::new().ca_file("/nonexistent/ca.pem"))
            .to_mqtt()
            .await;
        assert!(
            matches!(r, Err(OptionsError::ReadFile { what: "CA", .. })),
            "{r:?}"
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = format!("{:?}", Secret::Inline("hunter2".to_string()));
        assert!(!s.contains("hunter2"));
    }
}
