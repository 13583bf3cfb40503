#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapter;
mod backoff;
mod cancel;
mod clock;
mod connection;
pub mod edit;
mod engine;
mod handle;
pub mod leader;
pub mod lease;
pub mod lock;
mod options;
pub mod state_store;
mod watch;

pub use adapter::exports::*;
pub use backoff::Backoff;
pub use clock::{wall_ms, Clock};
pub use connection::Connection;
pub use engine::{Command, Commands, Engine, Transmit};

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_sync_and_cheap_to_share() {
        fn check<T: Send + Sync>() {}
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
    }
}
