//! What handles show without a round trip: the connection's state, a lease's and a key's
//! changes, and a leader's term and view. A leaf module, like [`crate::error`].

use bytes::Bytes;
use leasedlock_core::hlc::Hlc;
use leasedlock_core::leader::DeposedReason;

use crate::cancel::CancellationToken;
use crate::clock::Clock;
use crate::error::LeaderError;

/// A change of an observed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// The key.
    pub key: Bytes,
    /// The new value, or `None` when the key was deleted (DEL, VDEL or expiry).
    pub value: Option<Bytes>,
    /// The key's version after the change (absent for a resynchronised deletion).
    pub version: Option<Hlc>,
    /// `true` when this change was not notified but found by reading the key after a
    /// reconnect (notifications may have been missed while the registration was down).
    pub resync: bool,
}

/// A change of the observed lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Whether someone holds the lease.
    pub held: bool,
    /// The holder value, if held.
    pub holder: Option<Bytes>,
}

/// One leadership term. Its cancellation token is cancelled when the term ends (deposed,
/// resigning, or the campaign stopped): scope leader work to it.
///
/// ```no_run
/// # async fn demo(leader: leasedlock_api::Leader) -> Result<(), leasedlock_api::LeaderError> {
/// let term = leader.elected().await?;
/// let stop = term.cancellation().clone();
/// // hand `stop` to the leader work; it checks `stop.is_cancelled()` or awaits `stop.cancelled()`
/// term.cancelled().await; // deposed or resigning
/// # let _ = stop;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Term {
    token: Hlc,
    /// On the core's suspend-aware axis (see [`Term::safe_until`]).
    safe_until: leasedlock_core::Instant,
    clock: Clock,
    cancel: CancellationToken,
    number: u64,
}

impl Term {
    pub(crate) fn new(
        token: Hlc,
        safe_until: leasedlock_core::Instant,
        clock: Clock,
        cancel: CancellationToken,
        number: u64,
    ) -> Term {
        Term {
            token,
            safe_until,
            clock,
            cancel,
            number,
        }
    }

    pub(crate) fn renewed(&mut self, token: Hlc, safe_until: leasedlock_core::Instant) {
        self.token = token;
        self.safe_until = safe_until;
    }

    /// The fencing token (as of the last renewal this snapshot saw).
    pub fn token(&self) -> &Hlc {
        &self.token
    }

    /// Until when acting as leader is safe (as of this snapshot). The deadline is kept on a
    /// clock that counts through system suspend and converted at each call, so after a resume
    /// it is where it belongs on the monotonic clock (in the past, if the term ran out while
    /// suspended).
    pub fn safe_until(&self) -> std::time::Instant {
        self.clock.to_std(self.safe_until)
    }

    /// Whether acting as leader is still safe now (`now < safe_until`, on the suspend-aware
    /// clock).
    pub(crate) fn is_safe_now(&self) -> bool {
        self.clock.now().mono < self.safe_until
    }

    /// Counts the terms of this handle: 1 for the first election, and so on.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The token cancelled when the term ends.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the term has ended (its token is cancelled).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the term ends.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

/// What the driver publishes about a leader handle.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaderView {
    /// Terms so far.
    pub(crate) terms: u64,
    /// The current term.
    pub(crate) term: Option<Term>,
    /// The last term that ended, and why.
    pub(crate) deposed: Option<(u64, DeposedReason)>,
    /// The leader seen in the store.
    pub(crate) leader: Option<Bytes>,
    /// Set when the campaign stopped (with its error, if any).
    pub(crate) stopped: Option<Option<LeaderError>>,
}

/// The connection's state as the engine last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// The first connection attempt has not finished.
    Connecting,
    /// Connected to the broker.
    Connected,
    /// The connection dropped; reconnecting with back-off. The last error's text.
    Disconnected(String),
    /// Closed for good (by [`Connection::close`](crate::Connection::close) or because every handle was dropped).
    Closed,
}
