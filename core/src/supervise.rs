//! When to stop a command that runs under a lease: the supervisor's kill policy, as pure
//! functions of the hold's safe end and the grace, and the rule that decides whether a grace
//! fits a lease at all.
//!
//! A hold is safe until `safe_until` (the last renewal's send time + the lease duration − the
//! margin); past it another client may get the lease. A supervisor that runs a command for the
//! holder gives it a `grace` to stop cleanly:
//!
//! - SIGTERM is due at [`term_at`] (`safe_until − grace`), unless a renewal has moved
//!   `safe_until` later by then; once it went out the command is stopped whatever renewals do;
//! - SIGKILL is due at [`kill_at`] (a little before `safe_until`), so the command is gone before
//!   anyone else can hold the lease;
//! - when the hold ends earlier (the lease was taken, deleted, or a renewal refused), SIGTERM
//!   goes out at once and SIGKILL at [`kill_at_after_early_end`]: a grace later, but never after
//!   the last known safe end.
//!
//! The grace must leave a renewal time to complete before SIGTERM is due, or a lease renewed as
//! planned would still stop its command: [`renewal_room`] is that rule. The CLI runs these
//! functions on its clock; the simulator (feature `sim`) runs them on each node's clock and
//! checks that no modelled command outlives its hold.

use crate::time::{Duration, Instant};

/// How much earlier than `safe_until` SIGKILL is aimed: a timer fires on millisecond ticks and a
/// little late under load. The lease margin (at least 100 ms between `safe_until` and the
/// store's expiry) covers what is left.
pub const KILL_LEAD: Duration = Duration::from_millis(5);

/// The least time a renewal gets between being sent and the moment SIGTERM is due (see
/// [`renewal_room`]).
pub const MIN_RENEW_ROOM: Duration = Duration::from_millis(20);

/// When SIGKILL is due for a hold safe until `safe_until`: [`KILL_LEAD`] before it (at the
/// clock's origin when that is earlier).
pub fn kill_at(safe_until: Instant) -> Instant {
    safe_until.saturating_sub(KILL_LEAD)
}

/// When SIGTERM is due for a hold safe until `safe_until`: `grace` before it (at the clock's
/// origin when that is earlier).
pub fn term_at(safe_until: Instant, grace: Duration) -> Instant {
    safe_until.saturating_sub(grace)
}

/// When SIGKILL is due for a hold that ended early at `now`, last known safe until
/// `safe_until`: `grace` from now, but never after [`kill_at`]`(safe_until)`.
pub fn kill_at_after_early_end(safe_until: Instant, grace: Duration, now: Instant) -> Instant {
    now.saturating_add(grace).min(kill_at(safe_until))
}

/// The time a renewal has between being sent and SIGTERM being due, for a lease of duration
/// `ttl` renewed every `renew` whose safe end is `margin` before the store's expiry, with the
/// command's `grace`: `ttl − margin − renew − grace`. `None` when that is not above
/// [`MIN_RENEW_ROOM`]: the grace does not fit the lease.
///
/// A grant issued at `t` is safe until `t + ttl − margin`, SIGTERM is due `grace` before that,
/// and the next renewal is sent at `t + renew`; it must be able to complete (and a failed one
/// be retried) before SIGTERM is due.
pub fn renewal_room(
    ttl: Duration,
    margin: Duration,
    renew: Duration,
    grace: Duration,
) -> Option<Duration> {
    until_term(ttl, margin, renew)
        .checked_sub(grace)
        .filter(|room| *room > MIN_RENEW_ROOM)
}

/// The bound a grace must stay below to fit (see [`renewal_room`]): every grace strictly below
/// it fits, none at or above it does.
pub fn grace_bound(ttl: Duration, margin: Duration, renew: Duration) -> Duration {
    until_term(ttl, margin, renew).saturating_sub(MIN_RENEW_ROOM)
}

/// From a renewal's send time to the safe end it earns: `ttl − margin − renew` (zero when the
/// lease is shorter).
fn until_term(ttl: Duration, margin: Duration, renew: Duration) -> Duration {
    ttl.saturating_sub(margin.saturating_add(renew))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn at(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn term_comes_grace_before_the_safe_end_and_kill_just_before_it() {
        let safe_until = at(10_000);
        assert_eq!(term_at(safe_until, ms(2_000)), at(8_000));
        assert_eq!(kill_at(safe_until), at(10_000) - KILL_LEAD);
        // Lost early: SIGKILL a grace later...
        assert_eq!(
            kill_at_after_early_end(safe_until, ms(2_000), at(1_000)),
            at(3_000)
        );
        // ...but never after the safe end.
        assert_eq!(
            kill_at_after_early_end(safe_until, ms(2_000), at(9_000)),
            kill_at(safe_until)
        );
        // Ended after the safe end: at once (the kill time has passed).
        assert_eq!(
            kill_at_after_early_end(safe_until, ms(2_000), at(20_000)),
            kill_at(safe_until)
        );
    }

    #[test]
    fn near_the_origin_the_deadlines_saturate_early() {
        assert_eq!(kill_at(at(1)), Instant::ZERO);
        assert_eq!(term_at(at(1), ms(5)), Instant::ZERO);
        assert_eq!(
            kill_at_after_early_end(Instant::MAX, Duration::MAX, at(1)),
            kill_at(Instant::MAX)
        );
    }

    #[test]
    fn the_grace_must_leave_a_renewal_room_to_complete() {
        // 10 s lease, 500 ms margin, renewed every 3333 ms: SIGTERM is due 6167 ms − grace
        // after a renewal is sent.
        let (ttl, margin, renew) = (ms(10_000), ms(500), ms(3_333));
        assert_eq!(renewal_room(ttl, margin, renew, ms(1_666)), Some(ms(4_501)));
        assert_eq!(grace_bound(ttl, margin, renew), ms(6_147));
        assert_eq!(renewal_room(ttl, margin, renew, ms(6_146)), Some(ms(21)));
        assert_eq!(renewal_room(ttl, margin, renew, ms(6_147)), None);
        assert_eq!(renewal_room(ttl, margin, renew, ms(6_148)), None);
        // A lease too short for its renewals fits no grace at all.
        assert_eq!(renewal_room(ms(100), ms(100), ms(50), Duration::ZERO), None);
        assert_eq!(grace_bound(ms(100), ms(100), ms(50)), Duration::ZERO);
        // Huge inputs do not overflow.
        assert_eq!(
            renewal_room(Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX),
            None
        );
    }

    proptest! {
        #[test]
        fn kill_never_comes_after_the_safe_end(
            safe_ms in 0u64..1_000_000,
            grace_ms in 0u64..100_000,
            now_ms in 0u64..2_000_000,
        ) {
            let (safe_until, grace, now) = (at(safe_ms), ms(grace_ms), at(now_ms));
            prop_assert!(kill_at(safe_until) <= safe_until);
            prop_assert!(term_at(safe_until, grace) <= safe_until);
            let early = kill_at_after_early_end(safe_until, grace, now);
            prop_assert!(early <= kill_at(safe_until));
            prop_assert!(early <= now + grace);
            // Within the grace of the early end, unless the safe end comes first.
            prop_assert!(early == now + grace || early == kill_at(safe_until));
        }

        #[test]
        fn term_is_exactly_a_grace_before_the_safe_end(
            safe_ms in 0u64..1_000_000,
            grace_ms in 0u64..100_000,
        ) {
            let (safe_until, grace) = (at(safe_ms), ms(grace_ms));
            let term = term_at(safe_until, grace);
            if grace_ms <= safe_ms {
                prop_assert_eq!(term + grace, safe_until);
            } else {
                prop_assert_eq!(term, Instant::ZERO);
            }
        }

        #[test]
        fn a_grace_fits_exactly_below_its_bound(
            ttl_ms in 0u64..1_000_000,
            margin_ms in 0u64..100_000,
            renew_ms in 0u64..1_000_000,
            grace_ms in 0u64..1_000_000,
        ) {
            let (ttl, margin, renew, grace) = (ms(ttl_ms), ms(margin_ms), ms(renew_ms), ms(grace_ms));
            let room = renewal_room(ttl, margin, renew, grace);
            prop_assert_eq!(room.is_some(), grace < grace_bound(ttl, margin, renew));
            if let Some(room) = room {
                prop_assert!(room > MIN_RENEW_ROOM);
                // Renewal sent, room to complete, then the grace: all within the safe end.
                prop_assert_eq!(renew + room + grace + margin, ttl);
            }
        }
    }
}
