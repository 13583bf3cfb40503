//! Every error a handle can return, in one leaf module: handles, the engine and the adapters all
//! name them, and none of them needs anything of the others to do so. Each wraps the core's
//! error it comes from and keeps it as its `source()`.

use leasedlock_core::client::{Completion, RequestError};
use leasedlock_core::command::ServiceError;
use leasedlock_core::edit as core_edit;
use leasedlock_core::leader as core_leader;
use leasedlock_core::lease::{self as core_lease, ConfigRule, LostReason};
use leasedlock_core::lock as core_lock;

use crate::options::OptionsError;

/// Why a state-store operation failed.
// Not core's `RequestError` on purpose: owned `String` status text, plus `Closed` and `Other`,
// which only a connection (not the sans-IO client) can produce.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store answered with an error (`-ERR ...`), e.g. a fencing-token rejection.
    Service(ServiceError),
    /// No reply in time. If `sent`, the request left and may have run.
    Timeout {
        /// Whether the request was published before the deadline.
        sent: bool,
    },
    /// The connection dropped after the request was sent: it may or may not have run.
    Unknown,
    /// The reply carried a non-200 RPC status.
    Status {
        /// The status code.
        status: u16,
        /// The status message, if any.
        message: Option<String>,
    },
    /// The reply's timestamp is too far ahead of our clock (or malformed).
    ClockDrift,
    /// The reply is not a valid answer to the request.
    BadReply,
    /// Too many requests in flight.
    Busy,
    /// The request is invalid (the rule it breaks).
    InvalidArgument(&'static str),
    /// The broker refused the response-topic subscription, so no reply can arrive.
    SubscriptionRefused,
    /// The connection was closed.
    Closed,
    /// A request failure of a kind this crate has no variant of its own for: the core's
    /// error itself (also its [`source`](std::error::Error::source)).
    Core(RequestError),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Service(e) => write!(f, "state store error: {e:?}"),
            StoreError::Timeout { sent: true } => write!(f, "request timed out (it may have run)"),
            StoreError::Timeout { sent: false } => {
                write!(f, "request timed out before it was sent")
            }
            StoreError::Unknown => write!(f, "connection lost after sending; outcome unknown"),
            StoreError::Status { status, message } => {
                write!(f, "RPC status {status}")?;
                if let Some(m) = message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            StoreError::ClockDrift => write!(f, "reply timestamp too far ahead of the local clock"),
            StoreError::BadReply => write!(f, "malformed reply"),
            StoreError::Busy => write!(f, "too many requests in flight"),
            StoreError::InvalidArgument(rule) => write!(f, "invalid argument: {rule}"),
            StoreError::SubscriptionRefused => write!(f, "response subscription refused"),
            StoreError::Closed => write!(f, "connection closed"),
            StoreError::Core(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Service(e) => Some(e),
            StoreError::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl StoreError {
    /// The core's request error this is, if it is one (everything but `Closed`).
    pub fn to_core(&self) -> Option<RequestError> {
        Some(match self {
            StoreError::Service(s) => RequestError::Service(s.clone()),
            StoreError::Timeout { sent } => RequestError::Timeout { sent: *sent },
            StoreError::Unknown => RequestError::Unknown,
            StoreError::Status { status, message } => RequestError::Status {
                status: *status,
                message: message.clone().map(bytes::Bytes::from),
            },
            StoreError::ClockDrift => RequestError::ClockDrift,
            StoreError::BadReply => RequestError::BadReply,
            StoreError::Busy => RequestError::Busy,
            StoreError::InvalidArgument(rule) => RequestError::InvalidArgument(rule),
            StoreError::SubscriptionRefused => RequestError::SubscriptionRefused,
            StoreError::Core(e) => e.clone(),
            StoreError::Closed => return None,
        })
    }

    /// Whether trying again later may succeed, exactly as the core classifies the request
    /// failure (see `RequestError::is_transient`); `Closed` is final.
    pub fn is_transient(&self) -> bool {
        self.to_core().is_some_and(|e| e.is_transient())
    }
}

impl From<RequestError> for StoreError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Service(s) => StoreError::Service(s),
            RequestError::Timeout { sent } => StoreError::Timeout { sent },
            RequestError::Unknown => StoreError::Unknown,
            RequestError::Status { status, message } => StoreError::Status {
                status,
                message: message.map(|m| String::from_utf8_lossy(&m).into_owned()),
            },
            RequestError::ClockDrift => StoreError::ClockDrift,
            RequestError::BadReply => StoreError::BadReply,
            RequestError::Busy => StoreError::Busy,
            RequestError::InvalidArgument(rule) => StoreError::InvalidArgument(rule),
            RequestError::SubscriptionRefused => StoreError::SubscriptionRefused,
            #[allow(unreachable_patterns)]
            other => StoreError::Core(other),
        }
    }
}

/// A problem an observation stream reports between changes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObserveError {
    /// The stream was not read fast enough and this many changes were dropped.
    Lagged {
        /// How many.
        missed: u64,
    },
    /// The key's notification registration could not be renewed after a reconnect (e.g. it
    /// timed out while the store was still reconnecting): changes may go unnotified until it
    /// is. The engine retries it with back-off; once renewed, the key is re-read and what
    /// changed meanwhile arrives as a change with `resync: true`.
    MayHaveMissed,
}

impl std::fmt::Display for ObserveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObserveError::Lagged { missed } => write!(f, "{missed} changes dropped (slow reader)"),
            ObserveError::MayHaveMissed => write!(
                f,
                "the notification registration lapsed: changes may have been missed"
            ),
        }
    }
}

impl std::error::Error for ObserveError {}

/// What the request path hands back: the completion of one request.
pub(crate) type Reply = Result<Completion, RequestError>;

/// Why a lease operation failed.
// Not core's `LeaseError` on purpose: requests fail with this crate's `StoreError`, and a
// closed connection (`Closed`) is an outcome the sans-IO core cannot have.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseError {
    /// No lease: never acquired, refused, or released (Go's `ErrNoLease`).
    NoLease,
    /// The lease is already auto-renewing (Go's `ErrRenewing`).
    Renewing,
    /// A conflicting operation (acquire, release, observe start/stop) is in progress.
    Busy,
    /// `observe` while this handle already observes.
    AlreadyObserving,
    /// Stopping an observation that is not running.
    NotObserving,
    /// The duration and options break a configuration rule.
    InvalidConfig(ConfigRule),
    /// An argument is invalid (the rule).
    InvalidArgument(&'static str),
    /// A state-store request failed.
    Request(StoreError),
    /// The SET succeeded without a `__ts`: there is no fencing token.
    MissingToken,
    /// The SET succeeded, but its reply came after `safe_until`: not a hold.
    ReplyTooLate,
    /// The store sent a reply the command cannot have.
    UnexpectedReply,
    /// The held lease was lost.
    Lost(LostReason),
    /// The operation was superseded (e.g. a release while acquiring).
    Cancelled,
    /// A failure of the core lease machine this crate has no variant of its own for, e.g.
    /// `ReleasePending { until }` (an earlier release of ours may still be applied until then:
    /// retry after it). The core's error itself, also the [`source`](std::error::Error::source).
    Core(core_lease::LeaseError),
    /// Another live handle of this connection already uses this holder value (the same
    /// session id, or the bare client id) for this name: one holder value never acts twice.
    HolderInUse,
    /// The connection was closed.
    Closed,
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseError::Request(e) => write!(f, "state store request failed: {e}"),
            LeaseError::Closed => write!(f, "connection closed"),
            LeaseError::HolderInUse => write!(
                f,
                "another handle of this connection uses this holder value for this name"
            ),
            LeaseError::Core(e) => write!(f, "{e}"),
            other => match other.to_core() {
                Some(core) => write!(f, "{core}"),
                None => write!(f, "lease operation failed"),
            },
        }
    }
}

impl std::error::Error for LeaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LeaseError::Request(e) => Some(e),
            LeaseError::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl LeaseError {
    /// The core's error this is, if the core has it (everything but `HolderInUse` and
    /// `Closed`, which only a connection can have; a `Request` with a `Closed` store error).
    pub fn to_core(&self) -> Option<core_lease::LeaseError> {
        use core_lease::LeaseError as C;
        Some(match self {
            LeaseError::NoLease => C::NoLease,
            LeaseError::Renewing => C::Renewing,
            LeaseError::Busy => C::Busy,
            LeaseError::AlreadyObserving => C::AlreadyObserving,
            LeaseError::NotObserving => C::NotObserving,
            LeaseError::InvalidConfig(rule) => C::InvalidConfig(*rule),
            LeaseError::InvalidArgument(a) => C::InvalidArgument(a),
            LeaseError::Request(e) => C::Request(e.to_core()?),
            LeaseError::MissingToken => C::MissingToken,
            LeaseError::ReplyTooLate => C::ReplyTooLate,
            LeaseError::UnexpectedReply => C::UnexpectedReply,
            LeaseError::Lost(reason) => C::Lost(reason.clone()),
            LeaseError::Cancelled => C::Cancelled,
            LeaseError::Core(e) => e.clone(),
            LeaseError::HolderInUse | LeaseError::Closed => return None,
        })
    }

    /// Whether retrying later may succeed (timeouts, disconnects, busy, late replies, a
    /// pending release): exactly what the core says of the same failure. `HolderInUse` and
    /// `Closed` are not.
    pub fn is_transient(&self) -> bool {
        self.to_core().is_some_and(|e| e.is_transient())
    }
}

impl From<core_lease::LeaseError> for LeaseError {
    fn from(e: core_lease::LeaseError) -> Self {
        use core_lease::LeaseError as C;
        match e {
            C::NoLease => LeaseError::NoLease,
            C::Renewing => LeaseError::Renewing,
            C::Busy => LeaseError::Busy,
            C::AlreadyObserving => LeaseError::AlreadyObserving,
            C::NotObserving => LeaseError::NotObserving,
            C::InvalidConfig(rule) => LeaseError::InvalidConfig(rule),
            C::InvalidArgument(a) => LeaseError::InvalidArgument(a),
            C::Request(r) => LeaseError::Request(r.into()),
            C::MissingToken => LeaseError::MissingToken,
            C::ReplyTooLate => LeaseError::ReplyTooLate,
            C::UnexpectedReply => LeaseError::UnexpectedReply,
            C::Lost(reason) => LeaseError::Lost(reason),
            C::Cancelled => LeaseError::Cancelled,
            other => LeaseError::Core(other),
        }
    }
}

impl From<StoreError> for LeaseError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => LeaseError::Closed,
            other => LeaseError::Request(other),
        }
    }
}

/// Why a lock operation failed.
// Not core's `LockError` on purpose: it wraps this crate's `LeaseError` and adds `Closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// The wait deadline passed.
    Timeout,
    /// The wait was cancelled.
    Cancelled,
    /// `lock` while a wait is active on this handle.
    Busy,
    /// `lock` while this handle holds the lock.
    AlreadyHeld,
    /// `unlock` without the lock.
    NotLocked,
    /// The lease underneath failed in a way retrying will not fix.
    Lease(LeaseError),
    /// A failure of the core lock machine this crate has no variant of its own for: the
    /// core's error itself (also the [`source`](std::error::Error::source)).
    Core(core_lock::LockError),
    /// The connection was closed.
    Closed,
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Timeout => write!(f, "lock wait timed out"),
            LockError::Cancelled => write!(f, "lock wait cancelled"),
            LockError::Busy => write!(f, "a lock wait is already active"),
            LockError::AlreadyHeld => write!(f, "the lock is already held"),
            LockError::NotLocked => write!(f, "the lock is not held"),
            LockError::Lease(e) => write!(f, "{e}"),
            LockError::Core(e) => write!(f, "{e}"),
            LockError::Closed => write!(f, "connection closed"),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Lease(e) => Some(e),
            LockError::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl From<core_lock::LockError> for LockError {
    fn from(e: core_lock::LockError) -> Self {
        use core_lock::LockError as C;
        match e {
            C::Timeout => LockError::Timeout,
            C::Cancelled => LockError::Cancelled,
            C::Busy => LockError::Busy,
            C::AlreadyHeld => LockError::AlreadyHeld,
            C::NotLocked => LockError::NotLocked,
            C::Lease(l) => LockError::Lease(l.into()),
            other => LockError::Core(other),
        }
    }
}

impl From<StoreError> for LockError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => LockError::Closed,
            other => LockError::Lease(LeaseError::Request(other)),
        }
    }
}

/// Why a leader operation failed.
// Not core's `LeaderError` on purpose: it wraps this crate's `LockError` and adds `Closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderError {
    /// `campaign` while campaigning or leading; `resign` while already resigning.
    Busy,
    /// `resign` with no campaign.
    NotCampaigning,
    /// The options break a configuration rule.
    InvalidConfig(ConfigRule),
    /// The lock underneath failed in a way retrying will not fix.
    Lock(LockError),
    /// A failure of the core leader machine this crate has no variant of its own for: the
    /// core's error itself (also the [`source`](std::error::Error::source)).
    Core(core_leader::LeaderError),
    /// The connection was closed.
    Closed,
}

impl std::fmt::Display for LeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaderError::Busy => write!(f, "already campaigning"),
            LeaderError::NotCampaigning => write!(f, "not campaigning"),
            LeaderError::InvalidConfig(rule) => write!(f, "invalid leader configuration: {rule}"),
            LeaderError::Lock(e) => write!(f, "{e}"),
            LeaderError::Core(e) => write!(f, "{e}"),
            LeaderError::Closed => write!(f, "connection closed"),
        }
    }
}

impl std::error::Error for LeaderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LeaderError::Lock(e) => Some(e),
            LeaderError::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl From<core_leader::LeaderError> for LeaderError {
    fn from(e: core_leader::LeaderError) -> Self {
        use core_leader::LeaderError as C;
        match e {
            C::Busy => LeaderError::Busy,
            C::NotCampaigning => LeaderError::NotCampaigning,
            C::InvalidConfig(rule) => LeaderError::InvalidConfig(rule),
            C::Lock(l) => LeaderError::Lock(l.into()),
            other => LeaderError::Core(other),
        }
    }
}

impl From<StoreError> for LeaderError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => LeaderError::Closed,
            other => LeaderError::Lock(LockError::from(other)),
        }
    }
}

/// Why an edit failed.
// Not core's `EditError` on purpose: it wraps this crate's `LockError`/`StoreError`, adds
// `Closed`, and drops the core's `Busy`/`NotDeciding`, which `Lock::edit` cannot cause.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditError {
    /// The key is empty.
    EmptyKey,
    /// The lock could not be taken.
    Lock(LockError),
    /// The lock was lost before the write was sent.
    Lost(LostReason),
    /// The GET or the write failed (a fencing rejection is `Request(Service(..))`).
    Request(StoreError),
    /// The store sent a reply the command cannot have.
    UnexpectedReply,
    /// The edit was cancelled before the write.
    Cancelled,
    /// A failure of the core edit machine this crate has no variant of its own for: the
    /// core's error itself (also the [`source`](std::error::Error::source)).
    Core(core_edit::EditError),
    /// The connection was closed.
    Closed,
    /// The write failed in a way that leaves its outcome unknown: it may or may not have been
    /// applied. With `may_still_land == false` the edit kept the lock until the write could no
    /// longer land; with `true` the lock was lost first and the write may still land later.
    OutcomeUnknown {
        /// How the write failed.
        error: StoreError,
        /// Whether the write may still land after another holder took the lock.
        may_still_land: bool,
    },
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EditError::EmptyKey => write!(f, "the key must not be empty"),
            EditError::Lock(e) => write!(f, "{e}"),
            EditError::Lost(reason) => write!(f, "lock lost during the edit: {reason}"),
            EditError::Request(e) => write!(f, "state store request failed: {e}"),
            EditError::UnexpectedReply => write!(f, "unexpected reply"),
            EditError::Cancelled => write!(f, "edit cancelled"),
            EditError::Core(e) => write!(f, "{e}"),
            EditError::Closed => write!(f, "connection closed"),
            EditError::OutcomeUnknown {
                error,
                may_still_land,
            } => {
                write!(f, "the write may or may not have been applied: {error}")?;
                if *may_still_land {
                    write!(f, " (and the lock was lost while it could still land)")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for EditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EditError::OutcomeUnknown { error, .. } => Some(error),
            EditError::Lock(e) => Some(e),
            EditError::Request(e) => Some(e),
            EditError::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl From<core_edit::EditError> for EditError {
    fn from(e: core_edit::EditError) -> Self {
        use core_edit::EditError as C;
        match e {
            C::EmptyKey => EditError::EmptyKey,
            C::Lock(l) => EditError::Lock(l.into()),
            C::Lost(reason) => EditError::Lost(reason),
            C::Request(r) => EditError::Request(r.into()),
            C::UnexpectedReply => EditError::UnexpectedReply,
            C::Cancelled => EditError::Cancelled,
            C::OutcomeUnknown {
                error,
                may_still_land,
            } => EditError::OutcomeUnknown {
                error: error.into(),
                may_still_land,
            },
            other => EditError::Core(other),
        }
    }
}

/// Why a connection could not be established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The options are invalid or name unusable files.
    Options(OptionsError),
    /// The client id is not usable in topics.
    BadClientId,
    /// No CONNACK within the connect timeout; the last connection error, if any.
    Timeout(Option<String>),
    /// The connection was closed while waiting.
    Closed,
    /// The connect wait ended with the broker refusing the last attempt in its CONNACK, for
    /// this reason (also the error's [`source`](std::error::Error::source)). An expired
    /// service-account token shows up as [`ConnackRefusal::NotAuthorized`] or
    /// [`ConnackRefusal::BadUserNameOrPassword`].
    Refused(ConnackRefusal),
}

/// The reason code of a CONNACK that refused a connection (MQTT 5; the MQTT 3 return codes map
/// to their MQTT 5 equivalents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnackRefusal {
    /// 0x80: unspecified error.
    UnspecifiedError,
    /// 0x81: malformed packet.
    MalformedPacket,
    /// 0x82: protocol error.
    ProtocolError,
    /// 0x83: implementation-specific error.
    ImplementationSpecificError,
    /// 0x84: unsupported protocol version.
    UnsupportedProtocolVersion,
    /// 0x85: client identifier not valid.
    ClientIdentifierNotValid,
    /// 0x86: bad user name or password.
    BadUserNameOrPassword,
    /// 0x87: not authorized.
    NotAuthorized,
    /// 0x88: server unavailable.
    ServerUnavailable,
    /// 0x89: server busy.
    ServerBusy,
    /// 0x8A: banned.
    Banned,
    /// 0x8C: bad authentication method.
    BadAuthenticationMethod,
    /// 0x90: topic name invalid.
    TopicNameInvalid,
    /// 0x95: packet too large.
    PacketTooLarge,
    /// 0x97: quota exceeded.
    QuotaExceeded,
    /// 0x99: payload format invalid.
    PayloadFormatInvalid,
    /// 0x9A: retain not supported.
    RetainNotSupported,
    /// 0x9B: QoS not supported.
    QosNotSupported,
    /// 0x9C: use another server.
    UseAnotherServer,
    /// 0x9D: server moved.
    ServerMoved,
    /// 0x9F: connection rate exceeded.
    ConnectionRateExceeded,
    /// Any other refusing reason code.
    Other(u8),
}

impl ConnackRefusal {
    /// Every named refusal with its MQTT 5 reason code.
    const CODES: [(ConnackRefusal, u8); 21] = [
        (ConnackRefusal::UnspecifiedError, 0x80),
        (ConnackRefusal::MalformedPacket, 0x81),
        (ConnackRefusal::ProtocolError, 0x82),
        (ConnackRefusal::ImplementationSpecificError, 0x83),
        (ConnackRefusal::UnsupportedProtocolVersion, 0x84),
        (ConnackRefusal::ClientIdentifierNotValid, 0x85),
        (ConnackRefusal::BadUserNameOrPassword, 0x86),
        (ConnackRefusal::NotAuthorized, 0x87),
        (ConnackRefusal::ServerUnavailable, 0x88),
        (ConnackRefusal::ServerBusy, 0x89),
        (ConnackRefusal::Banned, 0x8A),
        (ConnackRefusal::BadAuthenticationMethod, 0x8C),
        (ConnackRefusal::TopicNameInvalid, 0x90),
        (ConnackRefusal::PacketTooLarge, 0x95),
        (ConnackRefusal::QuotaExceeded, 0x97),
        (ConnackRefusal::PayloadFormatInvalid, 0x99),
        (ConnackRefusal::RetainNotSupported, 0x9A),
        (ConnackRefusal::QosNotSupported, 0x9B),
        (ConnackRefusal::UseAnotherServer, 0x9C),
        (ConnackRefusal::ServerMoved, 0x9D),
        (ConnackRefusal::ConnectionRateExceeded, 0x9F),
    ];

    /// The refusal of MQTT 5 reason code `code`.
    pub fn from_code(code: u8) -> ConnackRefusal {
        Self::CODES
            .iter()
            .find(|(_, c)| *c == code)
            .map_or(ConnackRefusal::Other(code), |(r, _)| *r)
    }

    /// Its MQTT 5 reason code.
    pub fn code(self) -> u8 {
        match self {
            ConnackRefusal::Other(code) => code,
            named => Self::CODES
                .iter()
                .find(|(r, _)| *r == named)
                .map_or(0x80, |(_, c)| *c),
        }
    }
}

impl std::fmt::Display for ConnackRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            ConnackRefusal::UnspecifiedError => "unspecified error",
            ConnackRefusal::MalformedPacket => "malformed packet",
            ConnackRefusal::ProtocolError => "protocol error",
            ConnackRefusal::ImplementationSpecificError => "implementation-specific error",
            ConnackRefusal::UnsupportedProtocolVersion => "unsupported protocol version",
            ConnackRefusal::ClientIdentifierNotValid => "client identifier not valid",
            ConnackRefusal::BadUserNameOrPassword => "bad user name or password",
            ConnackRefusal::NotAuthorized => "not authorized",
            ConnackRefusal::ServerUnavailable => "server unavailable",
            ConnackRefusal::ServerBusy => "server busy",
            ConnackRefusal::Banned => "banned",
            ConnackRefusal::BadAuthenticationMethod => "bad authentication method",
            ConnackRefusal::TopicNameInvalid => "topic name invalid",
            ConnackRefusal::PacketTooLarge => "packet too large",
            ConnackRefusal::QuotaExceeded => "quota exceeded",
            ConnackRefusal::PayloadFormatInvalid => "payload format invalid",
            ConnackRefusal::RetainNotSupported => "retain not supported",
            ConnackRefusal::QosNotSupported => "QoS not supported",
            ConnackRefusal::UseAnotherServer => "use another server",
            ConnackRefusal::ServerMoved => "server moved",
            ConnackRefusal::ConnectionRateExceeded => "connection rate exceeded",
            ConnackRefusal::Other(_) => "refused",
        };
        write!(f, "{text} (reason code 0x{:02X})", self.code())
    }
}

impl std::error::Error for ConnackRefusal {}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Options(e) => write!(f, "{e}"),
            ConnectError::BadClientId => write!(f, "client id is not a valid topic level"),
            ConnectError::Timeout(Some(e)) => write!(f, "could not connect: {e}"),
            ConnectError::Timeout(None) => write!(f, "could not connect in time"),
            ConnectError::Closed => write!(f, "connection closed"),
            ConnectError::Refused(_) => write!(f, "the broker refused the connection"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Only where Display leaves the cause out: a chain printer shows each part once.
        match self {
            ConnectError::Refused(reason) => Some(reason),
            _ => None,
        }
    }
}

impl From<OptionsError> for ConnectError {
    fn from(e: OptionsError) -> Self {
        ConnectError::Options(e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use leasedlock_core::client::RequestError;
    use leasedlock_core::command::ServiceError;
    use leasedlock_core::lease::LeaseError as Core;
    use leasedlock_core::Instant;

    use super::*;

    fn request_errors() -> Vec<RequestError> {
        let mut all = vec![
            RequestError::Service(ServiceError::FencingTokenLowerVersion),
            RequestError::Timeout { sent: true },
            RequestError::Timeout { sent: false },
            RequestError::Unknown,
            RequestError::ClockDrift,
            RequestError::BadReply,
            RequestError::Busy,
            RequestError::InvalidArgument("x"),
            RequestError::SubscriptionRefused,
        ];
        for status in [400, 404, 408, 415, 500, 503, 505] {
            all.push(RequestError::Status {
                status,
                message: Some(bytes::Bytes::from_static(b"why")),
            });
        }
        all
    }

    /// Every core lease error (with every request error inside `Request`).
    fn core_errors() -> Vec<Core> {
        let mut all = vec![
            Core::NoLease,
            Core::Renewing,
            Core::Busy,
            Core::AlreadyObserving,
            Core::NotObserving,
            Core::InvalidConfig(ConfigRule::SessionIdNonEmpty),
            Core::InvalidArgument("x"),
            Core::MissingToken,
            Core::ReplyTooLate,
            Core::UnexpectedReply,
            Core::Lost(LostReason::Expired),
            Core::Cancelled,
            Core::ReleasePending {
                until: Instant::from_millis(1234),
            },
        ];
        all.extend(request_errors().into_iter().map(Core::Request));
        all
    }

    #[test]
    fn every_core_lease_error_keeps_its_meaning_and_transience() {
        for core in core_errors() {
            let api = LeaseError::from(core.clone());
            assert_eq!(
                api.is_transient(),
                core.is_transient(),
                "{core:?} -> {api:?}"
            );
            assert_eq!(api.to_core(), Some(core.clone()), "round trip of {core:?}");
            let text = api.to_string();
            assert!(!text.contains("Other("), "{text}");
        }
    }

    #[test]
    fn a_pending_release_reaches_users_as_the_core_error() {
        let until = Instant::from_millis(1234);
        let api = LeaseError::from(Core::ReleasePending { until });
        assert_eq!(api, LeaseError::Core(Core::ReleasePending { until }));
        assert!(api.is_transient());
        let source = api.source().expect("the core error as source");
        assert_eq!(
            source.downcast_ref::<Core>(),
            Some(&Core::ReleasePending { until })
        );
        let lock = LockError::from(leasedlock_core::lock::LockError::Lease(
            Core::ReleasePending { until },
        ));
        assert_eq!(lock, LockError::Lease(api));
    }

    #[test]
    fn store_errors_are_transient_as_the_core_says() {
        for e in request_errors() {
            let api = StoreError::from(e.clone());
            assert_eq!(api.is_transient(), e.is_transient(), "{e:?}");
            assert_eq!(api.to_core(), Some(e.clone()));
            let lease = LeaseError::from(api.clone());
            assert_eq!(lease.is_transient(), e.is_transient(), "{e:?}");
        }
        assert!(!StoreError::Closed.is_transient());
        assert!(!LeaseError::Closed.is_transient() && !LeaseError::HolderInUse.is_transient());
    }

    #[test]
    fn errors_chain_to_their_causes() {
        let e = LeaseError::Request(StoreError::Service(ServiceError::FencingTokenLowerVersion));
        let store = e.source().expect("store error");
        assert!(store.source().is_some(), "the service error");
        let lock = LockError::Lease(e);
        assert!(lock.source().is_some());
    }
}

#[cfg(test)]
mod connack_refusal_tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn every_refusing_code_round_trips() {
        for code in 0x80..=0xFF_u8 {
            assert_eq!(ConnackRefusal::from_code(code).code(), code, "{code:#x}");
        }
        assert_eq!(
            ConnackRefusal::from_code(0x87),
            ConnackRefusal::NotAuthorized
        );
        assert_eq!(ConnackRefusal::from_code(0xA0), ConnackRefusal::Other(0xA0));
    }

    #[test]
    fn a_refused_connect_names_the_reason_as_its_source() {
        let e = ConnectError::Refused(ConnackRefusal::NotAuthorized);
        assert_eq!(e.to_string(), "the broker refused the connection");
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), "not authorized (reason code 0x87)");
        assert_eq!(
            source.downcast_ref::<ConnackRefusal>(),
            Some(&ConnackRefusal::NotAuthorized)
        );
    }
}
