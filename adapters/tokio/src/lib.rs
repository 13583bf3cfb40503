//! `leasedlock-tokio`: distributed leases, locks and leader election on the Azure IoT
//! Operations state store, for tokio, over rumqttc's MQTT 5 client.
//!
//! The adapter is thin: a background task owns the rumqttc event loop and the timers and drives
//! the sans-IO engine of `leasedlock-api`, which hosts the machines of `leasedlock-core`, where
//! all protocol and lease logic lives. The handles, options and errors are `leasedlock-api`'s,
//! re-exported here, so they are the same types under every runtime adapter. Handles are cheap
//! to clone and `Send + Sync`; dropping any future leaves no state behind on the server.
//!
//! Start with a [`Connection`]; from it make [`Lease`], [`Lock`] and [`Leader`] handles, or
//! [`StateStore`] handles for the raw operations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod connection;
mod convert;
mod driver;
mod options;
mod subscriptions;
mod timer;

pub use connection::Connection;
pub use leasedlock_api::adapter::exports::*;

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_sync_and_cheap_to_share() {
        fn check<T: Send + Sync>() {}
        // The other handles are leasedlock-api's, checked there.
        check::<crate::Connection>();
    }
}
