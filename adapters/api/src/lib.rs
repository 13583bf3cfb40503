#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapter;
mod backoff;
mod cancel;
mod clock;
mod connection;
pub mod driver;
pub mod edit;
mod engine;
mod error;
mod handle;
mod last_refusal;
pub mod leader;
pub mod lease;
pub mod lock;
mod options;
#[cfg(feature = "session")]
pub mod session;
mod shared;
pub mod state_store;
mod view;
mod watch;

pub use adapter::exports::*;
pub use backoff::Backoff;
pub use clock::{wall_ms, Clock, WakeCap, MAX_TIMER_SLEEP};
pub use connection::Connection;
pub use engine::{Command, Commands, Engine, Transmit};
pub use last_refusal::LastRefusal;

/// The crate docs say `Lease`, `Lock` and `Leader` are not `Clone` (each owns one core lease
/// machine and its holder identity); these fail to compile as long as that stays true.
///
/// ```compile_fail
/// fn clone<T: Clone>() {}
/// clone::<leasedlock_api::Lease>();
/// ```
///
/// ```compile_fail
/// fn clone<T: Clone>() {}
/// clone::<leasedlock_api::Lock>();
/// ```
///
/// ```compile_fail
/// fn clone<T: Clone>() {}
/// clone::<leasedlock_api::Leader>();
/// ```
///
/// ```
/// fn clone<T: Clone>() {}
/// clone::<leasedlock_api::Connection>();
/// clone::<leasedlock_api::StateStore>();
/// ```
#[cfg(doctest)]
pub struct HandleCloneability;

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_sync_and_the_documented_ones_clone() {
        fn check<T: Send + Sync>() {}
        fn clone<T: Clone>() {}
        check::<crate::Connection>();
        check::<crate::StateStore>();
        check::<crate::Lease>();
        check::<crate::Lock>();
        check::<crate::Leader>();
        check::<crate::Term>();
        check::<crate::Observation>();
        check::<crate::LeaseObservation>();
        check::<crate::Engine>();
        check::<crate::Commands>();
        // The crate docs promise these are `Clone` (and `Lease`, `Lock`, `Leader` are not).
        clone::<crate::Connection>();
        clone::<crate::StateStore>();
    }
}
