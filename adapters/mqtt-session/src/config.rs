//! What the session sends in CONNECT and the bounds it enforces.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;
use core::time::Duration;

/// Default cap on the size of one incoming packet: the largest notification payload the core
/// accepts (8 MiB, [`leasedlock_core::envelope::NOTIFY_LIMITS`]) plus room for topic and
/// properties. Anything larger is rejected from its fixed header before it is buffered.
pub const DEFAULT_MAX_PACKET_SIZE: u32 = 8 * 1024 * 1024 + 64 * 1024;

/// Smallest accepted `max_packet_size`: a CONNACK with a few properties must fit.
const MIN_MAX_PACKET_SIZE: u32 = 256;

/// Longest MQTT string or binary field.
const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// Configuration of a [`crate::Session`].
#[derive(Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// MQTT client identifier.
    pub client_id: String,
    /// Clean Start on the first connection. Later connections always ask to resume (Clean Start
    /// 0) so that the broker keeps subscriptions and in-flight QoS 1 messages when it can.
    pub clean_start: bool,
    /// Session Expiry Interval in seconds (0: the session ends with the connection).
    pub session_expiry_secs: u32,
    /// Keep Alive; whole seconds, at most 65 535 s; zero disables keep-alive pings. A Server Keep
    /// Alive in CONNACK overrides it.
    pub keep_alive: Duration,
    /// How long to wait for PINGRESP before the connection is declared dead.
    pub ping_timeout: Duration,
    /// How long to wait for CONNACK after the transport connected.
    pub connect_timeout: Duration,
    /// User Name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Enhanced authentication method (e.g. `K8S-SAT`).
    pub auth_method: Option<String>,
    /// Enhanced authentication data sent in CONNECT (e.g. the service-account token).
    pub auth_data: Option<Bytes>,
    /// Receive Maximum we announce: how many incoming QoS 2 messages may be unreleased at once
    /// (incoming QoS 1 messages are acknowledged at once).
    pub receive_maximum: u16,
    /// Maximum Packet Size we announce and enforce on every incoming packet.
    pub max_packet_size: u32,
    /// Our own cap on outgoing QoS 1 messages awaiting PUBACK (the broker's Receive Maximum
    /// lowers it further).
    pub max_in_flight: u16,
    /// How many publishes may wait for the connection or for in-flight quota.
    pub max_queued: usize,
    /// How many SUBSCRIBE/UNSUBSCRIBE requests may await their acknowledgement.
    pub max_pending_subscriptions: usize,
    /// User properties sent in CONNECT.
    pub user_properties: Vec<(String, String)>,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets stay out of logs.
        f.debug_struct("SessionConfig")
            .field("client_id", &self.client_id)
            .field("clean_start", &self.clean_start)
            .field("session_expiry_secs", &self.session_expiry_secs)
            .field("keep_alive", &self.keep_alive)
            .field("ping_timeout", &self.ping_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("auth_method", &self.auth_method)
            .field("auth_data", &self.auth_data.as_ref().map(|_| "[redacted]"))
            .field("receive_maximum", &self.receive_maximum)
            .field("max_packet_size", &self.max_packet_size)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_queued", &self.max_queued)
            .field("max_pending_subscriptions", &self.max_pending_subscriptions)
            .field("user_properties", &self.user_properties)
            .finish()
    }
}

impl SessionConfig {
    /// A configuration with the official SDK's connection defaults: Clean Start 0, Session
    /// Expiry 3600 s, Keep Alive 60 s; plus a 10 s PINGRESP and CONNACK timeout.
    pub fn new(client_id: impl Into<String>) -> SessionConfig {
        SessionConfig {
            client_id: client_id.into(),
            clean_start: false,
            session_expiry_secs: 3600,
            keep_alive: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            username: None,
            password: None,
            auth_method: None,
            auth_data: None,
            receive_maximum: 64,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            max_in_flight: 1024,
            max_queued: 4096,
            max_pending_subscriptions: 256,
            user_properties: Vec::new(),
        }
    }

    /// Keep Alive in whole seconds, as sent in CONNECT.
    pub(crate) fn keep_alive_secs(&self) -> u16 {
        u16::try_from(self.keep_alive.as_secs()).unwrap_or(u16::MAX)
    }

    /// Checks every field that would otherwise fail (or panic in a codec) later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_string(&self.client_id, "client_id")?;
        if let Some(user) = &self.username {
            check_string(user, "username")?;
        }
        if let Some(method) = &self.auth_method {
            check_string(method, "auth_method")?;
        }
        for (name, value) in &self.user_properties {
            check_string(name, "user_properties")?;
            check_string(value, "user_properties")?;
        }
        if self
            .password
            .as_ref()
            .is_some_and(|p| p.len() > MAX_FIELD_LEN)
            || self
                .auth_data
                .as_ref()
                .is_some_and(|d| d.len() > MAX_FIELD_LEN)
        {
            return Err(ConfigError::TooLong("password/auth_data"));
        }
        if self.auth_data.is_some() && self.auth_method.is_none() {
            return Err(ConfigError::AuthDataWithoutMethod);
        }
        if self.keep_alive.as_secs() > u64::from(u16::MAX) || self.keep_alive.subsec_nanos() != 0 {
            return Err(ConfigError::BadKeepAlive);
        }
        if self.ping_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.receive_maximum == 0
            || self.max_in_flight == 0
            || self.max_queued == 0
            || self.max_pending_subscriptions == 0
        {
            return Err(ConfigError::ZeroCapacity);
        }
        // Packet ids are shared by in-flight publishes and pending (un)subscriptions.
        if usize::from(self.max_in_flight).saturating_add(self.max_pending_subscriptions)
            > usize::from(u16::MAX)
        {
            return Err(ConfigError::TooManyPacketIds);
        }
        if self.max_packet_size < MIN_MAX_PACKET_SIZE {
            return Err(ConfigError::MaxPacketSizeTooSmall);
        }
        Ok(())
    }
}

fn check_string(s: &str, field: &'static str) -> Result<(), ConfigError> {
    if s.len() > MAX_FIELD_LEN {
        return Err(ConfigError::TooLong(field));
    }
    if s.contains('\0') {
        return Err(ConfigError::NulCharacter(field));
    }
    Ok(())
}

/// Why a [`SessionConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A string or binary field is longer than 65 535 bytes (its name).
    TooLong(&'static str),
    /// A string field contains U+0000, which MQTT forbids (its name).
    NulCharacter(&'static str),
    /// Authentication data without an authentication method.
    AuthDataWithoutMethod,
    /// Keep Alive is not a whole number of seconds up to 65 535.
    BadKeepAlive,
    /// A timeout is zero.
    ZeroTimeout,
    /// A capacity (receive maximum, in-flight, queue or subscription bound) is zero.
    ZeroCapacity,
    /// `max_in_flight + max_pending_subscriptions` exceeds the 65 535 packet identifiers.
    TooManyPacketIds,
    /// `max_packet_size` is below 256 bytes.
    MaxPacketSizeTooSmall,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::TooLong(field) => write!(f, "{field} is longer than 65535 bytes"),
            ConfigError::NulCharacter(field) => write!(f, "{field} contains a NUL character"),
            ConfigError::AuthDataWithoutMethod => {
                f.write_str("authentication data needs an authentication method")
            }
            ConfigError::BadKeepAlive => {
                f.write_str("keep alive must be whole seconds, at most 65535")
            }
            ConfigError::ZeroTimeout => f.write_str("timeouts must be non-zero"),
            ConfigError::ZeroCapacity => f.write_str("capacities must be non-zero"),
            ConfigError::TooManyPacketIds => {
                f.write_str("max_in_flight + max_pending_subscriptions exceeds 65535")
            }
            ConfigError::MaxPacketSizeTooSmall => {
                f.write_str("max_packet_size must be at least 256 bytes")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    #[test]
    fn defaults_are_valid_and_match_the_sdk() {
        let cfg = SessionConfig::new("c1");
        assert_eq!(cfg.validate(), Ok(()));
        assert!(!cfg.clean_start);
        assert_eq!(cfg.session_expiry_secs, 3600);
        assert_eq!(cfg.keep_alive_secs(), 60);
    }

    #[test]
    fn rejects_bad_fields() {
        let base = SessionConfig::new("c1");
        let cases: [(SessionConfig, ConfigError); 9] = [
            (
                SessionConfig {
                    client_id: "a\0b".to_string(),
                    ..base.clone()
                },
                ConfigError::NulCharacter("client_id"),
            ),
            (
                SessionConfig {
                    client_id: "x".repeat(70_000),
                    ..base.clone()
                },
                ConfigError::TooLong("client_id"),
            ),
            (
                SessionConfig {
                    keep_alive: Duration::from_secs(70_000),
                    ..base.clone()
                },
                ConfigError::BadKeepAlive,
            ),
            (
                SessionConfig {
                    keep_alive: Duration::from_millis(1500),
                    ..base.clone()
                },
                ConfigError::BadKeepAlive,
            ),
            (
                SessionConfig {
                    ping_timeout: Duration::ZERO,
                    ..base.clone()
                },
                ConfigError::ZeroTimeout,
            ),
            (
                SessionConfig {
                    max_queued: 0,
                    ..base.clone()
                },
                ConfigError::ZeroCapacity,
            ),
            (
                SessionConfig {
                    max_in_flight: u16::MAX,
                    ..base.clone()
                },
                ConfigError::TooManyPacketIds,
            ),
            (
                SessionConfig {
                    max_packet_size: 10,
                    ..base.clone()
                },
                ConfigError::MaxPacketSizeTooSmall,
            ),
            (
                SessionConfig {
                    auth_data: Some(Bytes::from_static(b"t")),
                    ..base.clone()
                },
                ConfigError::AuthDataWithoutMethod,
            ),
        ];
        for (cfg, want) in cases {
            assert_eq!(cfg.validate(), Err(want));
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let cfg = SessionConfig {
            password: Some(Bytes::from_static(b"hunter2")),
            auth_data: Some(Bytes::from_static(b"token-xyz")),
            auth_method: Some("K8S-SAT".to_string()),
            ..SessionConfig::new("c1")
        };
        let text = format!("{cfg:?}");
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("token-xyz"));
        assert!(text.contains("K8S-SAT"));
    }
}
