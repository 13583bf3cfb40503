//! `leasedlock-tokio`: distributed leases, locks and leader election on the Azure IoT
//! Operations state store, for tokio, over rumqttc's MQTT 5 client.
//!
//! The adapter is thin: a background task owns the rumqttc event loop, the timers and the
//! channels, and feeds the sans-IO machines of `leasedlock-core`, where all protocol and lease
//! logic lives. Handles are cheap to clone and `Send + Sync`; dropping any future leaves no
//! state behind on the server.
//!
//! Start with a [`Connection`]; from it make [`Lease`], [`Lock`] and [`Leader`] handles, or
//! [`StateStore`] handles for the raw operations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backoff;
mod clock;
mod connection;
mod convert;
mod driver;
pub mod edit;
mod fanout;
mod host;
pub mod leader;
pub mod lease;
pub mod lock;
mod options;
pub mod state_store;
mod subscriptions;

pub use connection::{ConnectError, Connection, ConnectionState};
pub use edit::{EditDecision, EditError, EditOutcome};
pub use leader::{DeposedReason, Leader, LeaderError, LeaderOptions, Term};
pub use lease::{
    AcquireOptions, Change, Lease, LeaseError, LeaseObservation, LostReason, ReleaseOutcome,
};
pub use leasedlock_core::hlc::Hlc;
pub use lock::{Lock, LockError, LockOptions};
pub use options::{
    Authentication, ConnectionOptions, OptionsError, Secret, TlsOptions, K8S_SAT_METHOD,
};
pub use state_store::{
    DelOptions, KeyChange, Observation, ObserveError, SetOptions, SetResult, StateStore,
    StoreError, VdelOutcome, Versioned,
};

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
        check::<crate::Observation>();
        check::<crate::LeaseObservation>();
    }
}
