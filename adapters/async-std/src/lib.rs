//! `leasedlock-async-std`: distributed leases, locks and leader election on the Azure IoT
//! Operations state store, for async-std and smol.
//!
//! The adapter is thin: a background task owns the connection (TCP or TLS through
//! `futures-io`/`async-io`), the sans-IO MQTT session of `leasedlock-mqtt-session`, the timers
//! and the channels, and feeds the sans-IO machines of `leasedlock-core`, where all protocol
//! and lease logic lives. Nothing here depends on tokio. Handles are cheap to clone and
//! `Send + Sync`; dropping any future leaves no state behind on the server.
//!
//! Start with a [`Connection`]; from it make [`StateStore`] handles for the raw operations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backoff;
mod clock;
mod connection;
mod driver;
mod link;
mod mqtt;
mod options;
pub mod state_store;
mod transport;

pub use connection::{ConnectError, Connection, ConnectionState, CLOSE_GRACE};
pub use leasedlock_core::hlc::Hlc;
pub use options::{
    Authentication, ConnectionOptions, OptionsError, Secret, TlsOptions, K8S_SAT_METHOD,
};
pub use state_store::{
    DelOptions, KeyChange, Observation, ObserveError, SetOptions, SetResult, StateStore,
    StoreError, VdelOutcome, Versioned,
};
