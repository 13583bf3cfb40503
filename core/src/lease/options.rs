//! The lease's options and their rules: defaults, the safety margin, the holder value, and
//! the timing a duration and options give (or the rule they break).

use bytes::{BufMut, Bytes, BytesMut};
use core::fmt;
use core::time::Duration;

/// Per-request timeout used when [`LeaseOptions::timeout`] is `None` (the Go and .NET default).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The smallest default safety margin.
pub const DEFAULT_MIN_MARGIN: Duration = Duration::from_millis(100);

/// The default safety margin is at least `duration / DEFAULT_MARGIN_DIVISOR` (5 %).
pub const DEFAULT_MARGIN_DIVISOR: u32 = 20;

/// The wall clock is read in whole milliseconds: two readings may differ by up to this much
/// more than the time between them.
pub(crate) const WALL_RESOLUTION: Duration = Duration::from_millis(1);

/// The slowest a failed renewal is retried (it is retried sooner for short renew intervals).
pub const MAX_RENEW_RETRY: Duration = Duration::from_secs(1);

/// Identifies one user operation (acquire, release, holder, observe start/stop) so that the
/// event answering it can be matched. Every operation gets exactly one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Options of lease operations. Shared by the lock, edit and leader machines and the adapters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseOptions {
    /// Per-request timeout; `None` means [`DEFAULT_REQUEST_TIMEOUT`].
    pub timeout: Option<Duration>,
    /// Auto-renew interval (acquire only); `None` means no auto-renew.
    pub renew: Option<Duration>,
    /// Session id: the holder becomes `clientId:sessionId`, so two leases on one connection
    /// stay distinct. Kept for every renewal and used by release.
    pub session_id: Option<alloc::string::String>,
    /// Safety margin subtracted from the lease duration; `None` means
    /// [`default_margin`]`(duration)`.
    pub margin: Option<Duration>,
}

impl LeaseOptions {
    /// The effective per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }
}

/// The default safety margin for a lease of `duration`: 5 % of it, at least
/// [`DEFAULT_MIN_MARGIN`].
pub fn default_margin(duration: Duration) -> Duration {
    let fraction = duration / DEFAULT_MARGIN_DIVISOR;
    if fraction > DEFAULT_MIN_MARGIN {
        fraction
    } else {
        DEFAULT_MIN_MARGIN
    }
}

/// The holder value stored in the lease key: `clientId`, or `clientId:sessionId` (the Go and
/// .NET format).
pub fn holder_value(client_id: &str, session_id: Option<&str>) -> Bytes {
    match session_id {
        None => Bytes::copy_from_slice(client_id.as_bytes()),
        Some(s) => {
            let mut b = BytesMut::with_capacity(client_id.len() + 1 + s.len());
            b.put_slice(client_id.as_bytes());
            b.put_u8(b':');
            b.put_slice(s.as_bytes());
            b.freeze()
        }
    }
}

/// A configuration rule that a lease's options broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigRule {
    /// The lease duration must be at least 1 ms (PX is whole milliseconds).
    DurationAtLeastOneMs,
    /// The lease duration in milliseconds must fit in a `u64`.
    DurationTooLong,
    /// The per-request timeout must not be zero.
    TimeoutNonZero,
    /// The renew interval must not be zero.
    RenewIntervalNonZero,
    /// The lease duration must be greater than the safety margin.
    DurationAboveMargin,
    /// The lease duration must be greater than renew interval + request timeout + margin, so
    /// that a renewal which takes its whole timeout still lands before `safe_until`.
    DurationAboveRenewPlusTimeoutPlusMargin,
    /// A session id, when given, must not be empty.
    SessionIdNonEmpty,
    /// The leader machine needs an auto-renew interval.
    RenewIntervalRequired,
}

impl fmt::Display for ConfigRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigRule::DurationAtLeastOneMs => "lease duration must be at least 1 ms",
            ConfigRule::DurationTooLong => "lease duration in milliseconds must fit in u64",
            ConfigRule::TimeoutNonZero => "request timeout must not be zero",
            ConfigRule::RenewIntervalNonZero => "renew interval must not be zero",
            ConfigRule::DurationAboveMargin => "lease duration must be greater than the margin",
            ConfigRule::DurationAboveRenewPlusTimeoutPlusMargin => {
                "lease duration must be greater than renew interval + request timeout + margin"
            }
            ConfigRule::SessionIdNonEmpty => "session id must not be empty",
            ConfigRule::RenewIntervalRequired => "an auto-renew interval is required",
        })
    }
}

/// Validated timing of one acquisition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `PX` in milliseconds.
    pub px_ms: u64,
    /// The lease duration actually requested (`px_ms` milliseconds).
    pub duration: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Safety margin.
    pub margin: Duration,
    /// Auto-renew interval, if any.
    pub renew: Option<Duration>,
}

impl Timing {
    /// The request timeout rounded up to whole seconds: the Message Expiry, after which the
    /// broker no longer delivers the request.
    pub(crate) fn expiry(&self) -> Duration {
        let secs = self.timeout.as_secs();
        if self.timeout.subsec_nanos() > 0 {
            Duration::from_secs(secs.saturating_add(1))
        } else {
            self.timeout
        }
    }

    pub(crate) fn retry_delay(&self) -> Duration {
        let base = self.renew.unwrap_or(MAX_RENEW_RETRY) / 4;
        base.clamp(Duration::from_millis(1), MAX_RENEW_RETRY)
    }
}

/// Checks a lease duration and options against the configuration rules.
pub fn validate(duration: Duration, options: &LeaseOptions) -> Result<Timing, ConfigRule> {
    let px_ms = u64::try_from(duration.as_millis()).map_err(|_| ConfigRule::DurationTooLong)?;
    if px_ms == 0 {
        return Err(ConfigRule::DurationAtLeastOneMs);
    }
    let duration = Duration::from_millis(px_ms);
    let timeout = options.request_timeout();
    if timeout.is_zero() {
        return Err(ConfigRule::TimeoutNonZero);
    }
    if options.session_id.as_deref() == Some("") {
        return Err(ConfigRule::SessionIdNonEmpty);
    }
    let margin = options.margin.unwrap_or_else(|| default_margin(duration));
    if duration <= margin {
        return Err(ConfigRule::DurationAboveMargin);
    }
    if let Some(renew) = options.renew {
        if renew.is_zero() {
            return Err(ConfigRule::RenewIntervalNonZero);
        }
        let needed = renew.saturating_add(timeout).saturating_add(margin);
        if duration <= needed {
            return Err(ConfigRule::DurationAboveRenewPlusTimeoutPlusMargin);
        }
    }
    Ok(Timing {
        px_ms,
        duration,
        timeout,
        margin,
        renew: options.renew,
    })
}
