//! rumqttc's options from the shared [`ConnectionOptions`], and the credentials read from their
//! files with tokio's file system API before every connection attempt.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_api::{Authentication, ConnectionOptions, OptionsError, Secret, K8S_SAT_METHOD};
use rumqttc::v5::MqttOptions;
#[cfg(feature = "tls")]
use rumqttc::TlsConfiguration;
use rumqttc::Transport;

/// rumqttc asserts on a keep-alive under five seconds.
const MIN_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The rumqttc options for the first connection (validates, reads the secret files and the TLS
/// material).
pub(crate) async fn to_mqtt(o: &ConnectionOptions) -> Result<MqttOptions, OptionsError> {
    o.validate()?;
    if o.get_keep_alive() < MIN_KEEP_ALIVE {
        return Err(OptionsError::KeepAlive);
    }
    let mut mqtt = MqttOptions::new(o.client_id(), o.host(), o.port());
    mqtt.set_keep_alive(o.get_keep_alive());
    mqtt.set_clean_start(o.is_clean_start());
    mqtt.set_connection_timeout(o.get_connect_timeout().as_secs().max(1));
    mqtt.set_session_expiry_interval(u32::try_from(o.get_session_expiry().as_secs()).ok());
    mqtt.set_max_packet_size(Some(o.get_max_packet_size()));
    mqtt.set_outgoing_inflight_upper_limit(inflight_limit(o));
    let mut network = rumqttc::NetworkOptions::new();
    // Without it every QoS 1 request/reply stalls on Nagle's algorithm (~40 ms).
    network.set_tcp_nodelay(true);
    mqtt.set_network_options(network);
    if let Some(tls) = o.get_tls() {
        mqtt.set_transport(tls_transport(tls)?);
    }
    apply_credentials(o.get_authentication(), &mut mqtt).await?;
    Ok(mqtt)
}

/// rumqttc's TLS transport with the rustls configuration `leasedlock-api` builds.
#[cfg(feature = "tls")]
pub(crate) fn tls_transport(tls: &leasedlock_api::TlsOptions) -> Result<Transport, OptionsError> {
    let config = tls.client_config()?;
    Ok(Transport::Tls(TlsConfiguration::Rustls(
        std::sync::Arc::new(config),
    )))
}

/// Built without feature `tls`: TLS options are refused with a typed error.
#[cfg(not(feature = "tls"))]
pub(crate) fn tls_transport(_tls: &leasedlock_api::TlsOptions) -> Result<Transport, OptionsError> {
    Err(OptionsError::Tls(
        "TLS needs feature `tls` of leasedlock-tokio".to_string(),
    ))
}

/// The most QoS 1 publishes rumqttc keeps unacknowledged. rumqttc allocates (and zeroes) its
/// table of them for this limit when the client is made, `u16::MAX + 1` entries by default:
/// megabytes per connection and milliseconds of every connect. A limit only makes rumqttc hold
/// further publishes in its channel until PUBACKs free slots, and the driver never has more
/// than the channel's capacity (`max_in_flight + 64`) queued anyway.
fn inflight_limit(o: &ConnectionOptions) -> u16 {
    u16::try_from(o.get_max_in_flight().saturating_add(64)).unwrap_or(u16::MAX)
}

async fn read_secret(what: &'static str, path: &Path) -> Result<String, OptionsError> {
    Secret::decode_file(what, path, tokio::fs::read(path).await)
}

/// Puts the current credentials into `mqtt`, reading secret files again.
pub(crate) async fn apply_credentials(
    auth: &Authentication,
    mqtt: &mut MqttOptions,
) -> Result<(), OptionsError> {
    match auth {
        Authentication::UsernamePassword { username, password } => {
            let password = password.load("password", tokio::fs::read).await?;
            mqtt.set_credentials(username.clone(), password);
        }
        Authentication::K8sServiceAccountToken { token_file } => {
            let token = read_secret("service-account token", token_file).await?;
            mqtt.set_authentication_method(Some(K8S_SAT_METHOD.to_string()));
            mqtt.set_authentication_data(Some(Bytes::from(token)));
        }
        // `None`: no credentials (or only the TLS client certificate).
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasedlock_api::TlsOptions;
    use std::path::PathBuf;

    fn tmp(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leasedlock-tokio-opt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[tokio::test]
    async fn invalid_options_are_typed_errors_not_panics() {
        // rumqttc's own minimum keep-alive is checked here, not by a panic inside rumqttc.
        let r =
            to_mqtt(&ConnectionOptions::new("h", 1, "c").keep_alive(Duration::from_secs(4))).await;
        assert!(matches!(r, Err(OptionsError::KeepAlive)), "{r:?}");
        let r = to_mqtt(&ConnectionOptions::new("", 1, "c")).await;
        assert!(matches!(r, Err(OptionsError::EmptyHost)), "{r:?}");
        // rumqttc would put these into a CONNECT the broker must refuse as malformed.
        let r = to_mqtt(&ConnectionOptions::new("h", 1, "c").credentials("a\0b", "pw")).await;
        assert!(
            matches!(r, Err(OptionsError::Unencodable("username"))),
            "{r:?}"
        );
        let r = to_mqtt(&ConnectionOptions::new("h", 1, "c").credentials("u", "p".repeat(65_536)))
            .await;
        assert!(
            matches!(r, Err(OptionsError::Unencodable("password"))),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn mqtt_options_carry_session_and_nodelay() {
        let mqtt = to_mqtt(
            &ConnectionOptions::new("broker", 1884, "id-1")
                .clean_start(false)
                .session_expiry(Duration::from_secs(120))
                .keep_alive(Duration::from_secs(7)),
        )
        .await
        .unwrap();
        assert_eq!(mqtt.broker_address(), ("broker".to_string(), 1884));
        assert_eq!(mqtt.client_id(), "id-1");
        assert!(!mqtt.clean_start());
        assert_eq!(mqtt.session_expiry_interval(), Some(120));
        assert_eq!(mqtt.keep_alive(), Duration::from_secs(7));
        assert!(mqtt.credentials().is_none());
        assert_eq!(mqtt.max_packet_size(), Some(8 * 1024 * 1024));
        // Not rumqttc's default of u16::MAX, which allocates a table that large per connection.
        assert_eq!(mqtt.get_outgoing_inflight_upper_limit(), Some(1024 + 64));
        let huge =
            to_mqtt(&ConnectionOptions::new("broker", 1884, "id-2").max_in_flight(100_000)).await;
        if let Ok(huge) = huge {
            assert_eq!(huge.get_outgoing_inflight_upper_limit(), Some(u16::MAX));
        }
    }

    #[tokio::test]
    async fn password_and_token_files_are_read_and_trimmed() {
        let pw = tmp("pw", b"s3cret\n");
        let mqtt = to_mqtt(&ConnectionOptions::new("h", 1, "c").credentials_from_file("user", &pw))
            .await
            .unwrap();
        let login = mqtt.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("user", "s3cret")
        );

        let tok = tmp("tok", b"eyJhbGciOi\r\n");
        let mqtt = to_mqtt(
            &ConnectionOptions::new("h", 1, "c")
                .authentication(Authentication::K8sServiceAccountToken { token_file: tok }),
        )
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

        let missing = to_mqtt(
            &ConnectionOptions::new("h", 1, "c")
                .credentials_from_file("user", "/nonexistent/leasedlock/pw"),
        )
        .await;
        assert!(matches!(
            missing,
            Err(OptionsError::ReadFile {
                what: "password",
                ..
            })
        ));
    }

    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn bad_tls_material_is_a_typed_error() {
        let not_pem = tmp("ca.pem", b"hello");
        let r =
            to_mqtt(&ConnectionOptions::new("h", 1, "c").tls(TlsOptions::new().ca_file(&not_pem)))
                .await;
        assert!(matches!(r, Err(OptionsError::Tls(_))), "{r:?}");
        let r = to_mqtt(
            &ConnectionOptions::new("h", 1, "c")
                .tls(TlsOptions::new().ca_file("/nonexistent/ca.pem")),
        )
        .await;
        assert!(
            matches!(r, Err(OptionsError::ReadFile { what: "CA", .. })),
            "{r:?}"
        );
    }

    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn without_the_tls_feature_tls_options_are_refused() {
        let r = to_mqtt(&ConnectionOptions::new("h", 1, "c").tls(TlsOptions::new())).await;
        assert!(
            matches!(&r, Err(OptionsError::Tls(e)) if e.contains("feature `tls`")),
            "{r:?}"
        );
        assert!(to_mqtt(&ConnectionOptions::new("h", 1, "c")).await.is_ok());
    }
}
