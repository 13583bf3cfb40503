//! What the lease machine reports: its events, its state, why a held lease was lost, what a
//! release found, and its errors.

use bytes::Bytes;
use core::fmt;
use core::time::Duration;

use super::{classify, ConfigRule, OpId};
use crate::client::RequestError;
use crate::hlc::Hlc;
use crate::time::Instant;

/// Why a held lease ended without being released.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// `safe_until` passed without a successful renewal.
    Expired,
    /// The store says someone else holds it (a renewal was refused, or a notification or GET
    /// showed another holder).
    Taken,
    /// A notification or GET showed the key deleted.
    Deleted,
    /// A renewal failed for a reason that retrying will not fix.
    RequestFailed(RequestError),
    /// A renewal succeeded without a `__ts`, so there is no fencing token.
    MissingToken,
    /// The store answered a renewal with a reply that a SET cannot have.
    UnexpectedReply,
    /// A release `VDEL` of ours may be applied again (a reconnect may publish a copy of it
    /// again) and would delete this grant.
    ReleaseInDoubt,
    /// The wall clock advanced further than the monotonic clock plus the margin between two
    /// inputs: the monotonic clock probably stood still (system suspend, a frozen VM) while
    /// the store's TTL kept running, so `safe_until` can no longer be trusted.
    ClockJump {
        /// How far the wall clock advanced.
        wall: Duration,
        /// How far the monotonic clock advanced meanwhile.
        mono: Duration,
    },
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LostReason::Expired => f.write_str("lease expired without a successful renewal"),
            LostReason::Taken => f.write_str("lease taken by another holder"),
            LostReason::Deleted => f.write_str("lease key deleted"),
            LostReason::RequestFailed(e) => write!(f, "renewal failed: {e:?}"),
            LostReason::MissingToken => f.write_str("renewal reply carried no fencing token"),
            LostReason::UnexpectedReply => f.write_str("unexpected reply to a renewal"),
            LostReason::ReleaseInDoubt => {
                f.write_str("an earlier release of ours may still delete the lease")
            }
            LostReason::ClockJump { wall, mono } => write!(
                f,
                "the wall clock jumped {wall:?} while the monotonic clock advanced {mono:?} \
                 (suspend or frozen VM?)"
            ),
        }
    }
}

/// What `VDEL name holder` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseOutcome {
    /// `:1`: we were the holder; the key is deleted.
    Deleted,
    /// `:0`: nothing was there.
    NotFound,
    /// `:-1`: someone else holds it; nothing was deleted.
    HeldByOther,
}

/// Errors of the lease machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseError {
    /// No lease: never acquired, refused, or released (Go's `ErrNoLease`).
    NoLease,
    /// The lease is already auto-renewing (Go's `ErrRenewing`).
    Renewing,
    /// An operation that conflicts with this one is in progress (an acquire, a release, or an
    /// observe start/stop).
    Busy,
    /// `observe_start` while already observing.
    AlreadyObserving,
    /// `observe_stop` while not observing.
    NotObserving,
    /// The options break a configuration rule.
    InvalidConfig(ConfigRule),
    /// An argument is invalid (empty name, holder differing from the held lease's...).
    InvalidArgument(&'static str),
    /// A state-store request failed.
    Request(RequestError),
    /// The SET succeeded but its reply carried no `__ts`, so there is no fencing token. The
    /// store holds the lease for us until it expires.
    MissingToken,
    /// The SET succeeded, but its reply arrived after `safe_until`: not a hold.
    ReplyTooLate,
    /// The store sent a reply this command cannot have.
    UnexpectedReply,
    /// The held lease was lost.
    Lost(LostReason),
    /// The operation was superseded (a release while acquiring, an observe stop while
    /// starting).
    Cancelled,
    /// An earlier release `VDEL` of ours may still be applied by the store until `until`
    /// (its outcome is unknown, or a reconnect may publish it again): a grant made before
    /// then could be deleted by it. Retry at `until`.
    ReleasePending {
        /// When the earlier release can no longer be applied.
        until: Instant,
    },
}

impl LeaseError {
    /// Whether retrying the operation later may succeed (timeouts, disconnects, a full
    /// in-flight table, late or token-less replies). Rejections by the store and invalid
    /// arguments are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            LeaseError::Request(e) => classify(e).transient,
            LeaseError::Busy
            | LeaseError::MissingToken
            | LeaseError::ReplyTooLate
            | LeaseError::UnexpectedReply
            | LeaseError::Lost(_)
            | LeaseError::Cancelled
            | LeaseError::ReleasePending { .. } => true,
            LeaseError::NoLease
            | LeaseError::Renewing
            | LeaseError::AlreadyObserving
            | LeaseError::NotObserving
            | LeaseError::InvalidConfig(_)
            | LeaseError::InvalidArgument(_) => false,
        }
    }
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseError::NoLease => f.write_str("no lease"),
            LeaseError::Renewing => f.write_str("lease is already renewing"),
            LeaseError::Busy => f.write_str("a conflicting lease operation is in progress"),
            LeaseError::AlreadyObserving => f.write_str("already observing"),
            LeaseError::NotObserving => f.write_str("not observing"),
            LeaseError::InvalidConfig(rule) => write!(f, "invalid lease configuration: {rule}"),
            LeaseError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            LeaseError::Request(e) => write!(f, "state store request failed: {e:?}"),
            LeaseError::MissingToken => f.write_str("SET reply carried no fencing token"),
            LeaseError::ReplyTooLate => f.write_str("SET reply arrived after safe_until"),
            LeaseError::UnexpectedReply => f.write_str("unexpected reply"),
            LeaseError::Lost(reason) => write!(f, "lease lost: {reason}"),
            LeaseError::Cancelled => f.write_str("operation cancelled"),
            LeaseError::ReleasePending { until } => {
                write!(f, "an earlier release may still be applied until {until:?}")
            }
        }
    }
}

/// The lease as this machine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseState {
    /// Not held by us, as far as the store has shown.
    Idle,
    /// The first SET is in flight.
    Acquiring,
    /// Held until `safe_until` (a renewal may be in flight).
    Held {
        /// Fencing token.
        token: Hlc,
        /// Until when acting as the holder is safe.
        safe_until: Instant,
    },
    /// A SET of ours may have been applied (outcome unknown): neither held nor free.
    MaybeHeld,
    /// The VDEL of a release is in flight.
    Releasing,
}

/// What the lease machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseEvent {
    /// Answer to `acquire`: held.
    Acquired {
        /// The operation.
        op: OpId,
        /// Fencing token (`__ts` of the SET reply).
        token: Hlc,
        /// Until when acting as the holder is safe.
        safe_until: Instant,
    },
    /// Answer to `acquire`: someone else holds it.
    NotAcquired {
        /// The operation.
        op: OpId,
    },
    /// Answer to `acquire`: failed. The lease is then [`LeaseState::Idle`] or, if the SET may
    /// have been applied, [`LeaseState::MaybeHeld`].
    AcquireFailed {
        /// The operation.
        op: OpId,
        /// Why.
        error: LeaseError,
    },
    /// An automatic renewal succeeded.
    Renewed {
        /// The new fencing token.
        token: Hlc,
        /// The new safe-until.
        safe_until: Instant,
    },
    /// The held lease ended without a release.
    Lost {
        /// Why.
        reason: LostReason,
    },
    /// Answer to `release`.
    Released {
        /// The operation.
        op: OpId,
        /// What the VDEL found, or why it failed.
        result: Result<ReleaseOutcome, LeaseError>,
    },
    /// Answer to `holder`: the current holder, `None` when free.
    Holder {
        /// The operation.
        op: OpId,
        /// The holder, or why the GET failed.
        result: Result<Option<Bytes>, LeaseError>,
    },
    /// Answer to `observe_start`.
    ObserveStarted {
        /// The operation.
        op: OpId,
        /// Whether KEYNOTIFY was accepted.
        result: Result<(), LeaseError>,
    },
    /// Answer to `observe_stop`: `Ok(true)` when the store had a registration.
    ObserveStopped {
        /// The operation.
        op: OpId,
        /// The STOP reply, or why it failed.
        result: Result<bool, LeaseError>,
    },
    /// The observed lease changed (a notification, or a GET after re-registration).
    Change {
        /// Whether someone holds it.
        held: bool,
        /// The holder value, if held.
        holder: Option<Bytes>,
    },
}
