//! `leasedlock-async-std`: distributed leases, locks and leader election on the Azure IoT
//! Operations state store, for async-std and smol.
//!
//! The adapter is thin: a background task owns the connection (TCP or TLS through
//! `futures-io`/`async-io`) and the sans-IO MQTT 5 session of `leasedlock-mqtt-session`, and
//! drives the sans-IO engine of `leasedlock-api`, which hosts the machines of
//! `leasedlock-core`, where all protocol and lease logic lives. The handles, options and errors
//! are `leasedlock-api`'s, re-exported here, so they are the same types as under
//! `leasedlock-tokio`; only [`Connection`] is this crate's own, with the same methods. Nothing
//! here depends on tokio. Handles are cheap to clone and `Send + Sync`; dropping any future
//! leaves no state behind on the server.
//!
//! Start with a [`Connection`]; from it make [`Lease`], [`Lock`] and [`Leader`] handles, or
//! [`StateStore`] handles for the raw operations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod connection;
mod deadline;
mod driver;
mod link;
mod mqtt;
pub mod spawn;
mod transport;

pub use connection::{Connection, CLOSE_GRACE};
pub use leasedlock_api::adapter::exports::*;
pub use spawn::{Spawn, Task};

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_sync_and_cheap_to_share() {
        fn check<T: Send + Sync>() {}
        // The other handles are leasedlock-api's, checked there.
        check::<crate::Connection>();
    }
}
