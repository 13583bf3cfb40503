//! How to reach the broker and how the client behaves: [`ConnectionOptions`].
//!
//! Options are validated when the connection is built, so nothing later can panic on them.
//! These types are shared by every runtime adapter; what needs a runtime (reading secret files
//! asynchronously, building a particular MQTT client's options) stays in the adapters, which
//! read the fields through the accessors below.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use leasedlock_core::lease::LeaseOptions;

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
    /// MQTT cannot carry this field's value: a string with a NUL character, or a string or
    /// binary value longer than 65 535 bytes (the field's name).
    Unencodable(&'static str),
}

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionsError::EmptyHost => write!(f, "broker host is empty"),
            OptionsError::BadClientId => write!(f, "client id is empty or not a valid topic level"),
            OptionsError::KeepAlive => write!(f, "keep-alive out of range for this MQTT client"),
            OptionsError::SessionExpiry => write!(f, "session expiry exceeds u32::MAX seconds"),
            OptionsError::Zero(what) => write!(f, "{what} must not be zero"),
            OptionsError::ReadFile { what, path, error } => {
                write!(f, "cannot read {what} file {}: {error}", path.display())
            }
            OptionsError::Tls(reason) => write!(f, "TLS configuration: {reason}"),
            OptionsError::Unencodable(field) => write!(
                f,
                "MQTT cannot carry the {field} (a NUL character or over 65535 bytes)"
            ),
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

impl Secret {
    /// The secret's text: the inline value, or the file's content read with `read` (the
    /// runtime's file API, e.g. `tokio::fs::read`) and decoded with [`Secret::decode_file`].
    pub async fn load<F, Fut>(&self, what: &'static str, read: F) -> Result<String, OptionsError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<Vec<u8>>>,
    {
        match self {
            Secret::Inline(value) => Ok(value.clone()),
            Secret::File(path) => Secret::decode_file(what, path, read(path.clone()).await),
        }
    }

    /// The text of a secret file as the connection uses it: UTF-8 with trailing line breaks
    /// trimmed. `contents` is the result of reading `path` (each runtime reads it its own way);
    /// `what` names the secret in the error.
    pub fn decode_file(
        what: &'static str,
        path: &Path,
        contents: std::io::Result<Vec<u8>>,
    ) -> Result<String, OptionsError> {
        let raw = contents.map_err(|e| OptionsError::ReadFile {
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
/// use leasedlock_api::{Authentication, ConnectionOptions};
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
    /// A token that changes while connected is sent in-band (MQTT AUTH) by the session
    /// transport both adapters run (the file is checked every 10 s). With the tokio adapter's
    /// `attach`, authentication is the application's own MQTT client's business.
    K8sServiceAccountToken {
        /// The projected token file.
        token_file: PathBuf,
    },
}

/// TLS settings: rustls with the platform's roots or a custom CA, and an optional client
/// certificate.
///
/// ```
/// use leasedlock_api::{ConnectionOptions, TlsOptions};
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

    /// The CA file, if set (otherwise the platform's roots are trusted).
    pub fn ca(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The client certificate and key files, if set.
    pub fn client_certificate(&self) -> Option<(&Path, &Path)> {
        self.client_cert
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()))
    }

    /// The rustls client configuration, reading the CA and certificate files now. The crypto
    /// provider is aws-lc-rs with feature `aws-lc-rs`, else ring with feature `ring` (the
    /// default), else the process-wide default provider the application installed. Blocking file reads: call it before every connection attempt from wherever the
    /// runtime allows short blocking reads.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, OptionsError> {
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
        let builder = rustls::ClientConfig::builder_with_provider(crypto_provider()?)
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
            None => add_platform_roots(&mut roots)?,
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

/// The crypto provider the features select (see [`TlsOptions::client_config`]).
fn crypto_provider() -> Result<Arc<rustls::crypto::CryptoProvider>, OptionsError> {
    #[cfg(feature = "aws-lc-rs")]
    return Ok(Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    return Ok(Arc::new(rustls::crypto::ring::default_provider()));
    #[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
    return rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .ok_or_else(|| {
            OptionsError::Tls(
                "no rustls crypto provider: enable feature `ring` or `aws-lc-rs`, or install a \
                 process-wide default"
                    .to_string(),
            )
        });
}

/// Adds the platform's root certificates (feature `native-roots`).
#[cfg(feature = "native-roots")]
fn add_platform_roots(roots: &mut rustls::RootCertStore) -> Result<(), OptionsError> {
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        return Err(OptionsError::Tls(
            "no usable platform root certificate; set a CA file".to_string(),
        ));
    }
    Ok(())
}

/// Without feature `native-roots` there are no platform roots: a CA file is required.
#[cfg(not(feature = "native-roots"))]
fn add_platform_roots(_roots: &mut rustls::RootCertStore) -> Result<(), OptionsError> {
    Err(OptionsError::Tls(
        "no CA file set, and feature `native-roots` (the platform's roots) is off".to_string(),
    ))
}

/// Everything needed to connect: broker address, identity, session, security, and the
/// client's defaults.
///
/// ```
/// use std::time::Duration;
/// use leasedlock_api::ConnectionOptions;
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

    /// MQTT keep-alive: whole seconds, 1 s to 65 535 s.
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

    /// The broker host.
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The broker port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Whether the first connection starts clean.
    pub fn is_clean_start(&self) -> bool {
        self.clean_start
    }
    /// The session expiry.
    pub fn get_session_expiry(&self) -> Duration {
        self.session_expiry
    }
    /// The keep-alive.
    pub fn get_keep_alive(&self) -> Duration {
        self.keep_alive
    }
    /// The TLS settings, if TLS is on.
    pub fn get_tls(&self) -> Option<&TlsOptions> {
        self.tls.as_ref()
    }
    /// The authentication.
    pub fn get_authentication(&self) -> &Authentication {
        &self.auth
    }
    /// The default request timeout.
    pub fn get_request_timeout(&self) -> Duration {
        self.request_timeout
    }
    /// The connect timeout.
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// The reconnect back-off bounds (first delay, cap).
    pub fn get_reconnect_backoff(&self) -> (Duration, Duration) {
        (self.reconnect_min, self.reconnect_max)
    }
    /// The maximum number of requests in flight.
    pub fn get_max_in_flight(&self) -> usize {
        self.max_in_flight
    }
    /// The largest packet accepted from the broker.
    pub fn get_max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.host.is_empty() {
            return Err(OptionsError::EmptyHost);
        }
        if self.client_id.is_empty() {
            return Err(OptionsError::BadClientId);
        }
        let ka = self.keep_alive.as_secs();
        if !(1..=u64::from(u16::MAX)).contains(&ka) {
            return Err(OptionsError::KeepAlive);
        }
        if u32::try_from(self.session_expiry.as_secs()).is_err() {
            return Err(OptionsError::SessionExpiry);
        }
        if let Authentication::UsernamePassword { username, password } = &self.auth {
            if !mqtt_can_carry_string(username) {
                return Err(OptionsError::Unencodable("username"));
            }
            // A password file is only read at connection time, so only an inline one is checked.
            if matches!(password, Secret::Inline(p) if p.len() > MQTT_MAX_FIELD) {
                return Err(OptionsError::Unencodable("password"));
            }
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
}

/// The longest string or binary field of an MQTT packet (a two-byte length prefix).
const MQTT_MAX_FIELD: usize = u16::MAX as usize;

/// Whether an MQTT UTF-8 string field can hold `s` (MQTT forbids U+0000 in them).
fn mqtt_can_carry_string(s: &str) -> bool {
    s.len() <= MQTT_MAX_FIELD && !s.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leasedlock-api-opt-{}", std::process::id()));
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
                ok.clone().keep_alive(Duration::ZERO),
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
            (
                ok.clone().notification_buffer(0),
                OptionsError::Zero("notification buffer"),
            ),
            (
                ok.clone().credentials("a\0b", "pw"),
                OptionsError::Unencodable("username"),
            ),
            (
                ok.clone().credentials("u".repeat(65_536), "pw"),
                OptionsError::Unencodable("username"),
            ),
            (
                ok.clone().credentials("u", "p".repeat(65_536)),
                OptionsError::Unencodable("password"),
            ),
        ];
        for (opts, err) in cases {
            assert_eq!(opts.validate(), Err(err));
        }
        // The longest values MQTT carries pass.
        let longest = ok.credentials("u".repeat(65_535), "p".repeat(65_535));
        assert_eq!(longest.validate(), Ok(()));
    }

    #[test]
    fn secret_files_are_trimmed_and_errors_typed() {
        let p = Path::new("/x/pw");
        assert_eq!(
            Secret::decode_file("password", p, Ok(b"s3cret\r\n".to_vec())),
            Ok("s3cret".to_string())
        );
        assert!(matches!(
            Secret::decode_file("password", p, Ok(vec![0xff])),
            Err(OptionsError::ReadFile {
                what: "password",
                ..
            })
        ));
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert!(matches!(
            Secret::decode_file("token", p, Err(missing)),
            Err(OptionsError::ReadFile { what: "token", .. })
        ));
    }

    #[test]
    fn bad_tls_material_is_a_typed_error() {
        let not_pem = tmp("ca.pem", b"hello");
        let r = TlsOptions::new().ca_file(&not_pem).client_config();
        assert!(matches!(r, Err(OptionsError::Tls(_))), "{r:?}");
        let r = TlsOptions::new()
            .ca_file("/nonexistent/ca.pem")
            .client_config();
        assert!(
            matches!(r, Err(OptionsError::ReadFile { what: "CA", .. })),
            "{r:?}"
        );
    }

    #[test]
    fn accessors_reflect_the_builder() {
        let o = ConnectionOptions::new("broker", 1884, "id-1")
            .clean_start(false)
            .keep_alive(Duration::from_secs(7))
            .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(2));
        assert_eq!(
            (o.host(), o.port(), o.client_id()),
            ("broker", 1884, "id-1")
        );
        assert!(!o.is_clean_start());
        assert_eq!(o.get_keep_alive(), Duration::from_secs(7));
        assert_eq!(
            o.get_reconnect_backoff(),
            (Duration::from_millis(1), Duration::from_millis(2))
        );
    }

    #[test]
    fn secrets_load_inline_or_through_the_given_reader() {
        use futures_lite::future::block_on;
        let inline = Secret::Inline("pw".to_string());
        let never = |_: PathBuf| async { Err(std::io::Error::other("not called")) };
        assert_eq!(
            block_on(inline.load("password", never)),
            Ok("pw".to_string())
        );
        let file = Secret::File(PathBuf::from("/x/token"));
        let read = |p: PathBuf| async move {
            assert_eq!(p, PathBuf::from("/x/token"));
            Ok(b"tok\n".to_vec())
        };
        assert_eq!(block_on(file.load("token", read)), Ok("tok".to_string()));
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = format!("{:?}", Secret::Inline("hunter2".to_string()));
        assert!(!s.contains("hunter2"));
    }
}

/// Options of [`Lease::acquire`](crate::Lease::acquire) (and of a lock's acquisition).
///
/// ```
/// use std::time::Duration;
/// use leasedlock_api::AcquireOptions;
///
/// // Renew every 3 s; each request may take 2 s; the lease duration must exceed 3 + 2 + margin.
/// let options = AcquireOptions::new()
///     .renew(Duration::from_secs(3))
///     .timeout(Duration::from_secs(2));
/// # let _ = options;
/// ```
// Not core's `LeaseOptions` on purpose: a builder whose timeout defaults to the connection's
// and whose session id comes from the handle (`to_core` fills both in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcquireOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) renew: Option<Duration>,
    pub(crate) margin: Option<Duration>,
}

impl AcquireOptions {
    /// One attempt with the connection's request timeout, no auto-renew, the default margin.
    pub fn new() -> AcquireOptions {
        AcquireOptions::default()
    }
    /// Per-request timeout.
    pub fn timeout(mut self, timeout: Duration) -> AcquireOptions {
        self.timeout = Some(timeout);
        self
    }
    /// Renew automatically every `interval` while held. The lease duration must exceed
    /// interval + request timeout + margin.
    pub fn renew(mut self, interval: Duration) -> AcquireOptions {
        self.renew = Some(interval);
        self
    }
    /// Safety margin subtracted from the duration to get `safe_until` (covers clock-rate
    /// drift; default 5 % of the duration, at least 100 ms).
    pub fn margin(mut self, margin: Duration) -> AcquireOptions {
        self.margin = Some(margin);
        self
    }

    pub(crate) fn to_core(
        &self,
        default_timeout: Duration,
        session_id: Option<&str>,
    ) -> LeaseOptions {
        LeaseOptions {
            timeout: Some(self.timeout.unwrap_or(default_timeout)),
            renew: self.renew,
            session_id: session_id.map(str::to_string),
            margin: self.margin,
        }
    }
}
