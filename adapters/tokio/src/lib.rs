#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attach;
mod connection;
mod convert;
mod outbox;
mod runtime;
mod shared_subscriptions;
mod timer;

pub use attach::{attach, AttachOptions, Attached};
pub use connection::Connection;
pub use leasedlock_api::adapter::exports::*;

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_sync_and_the_documented_ones_clone() {
        fn check<T: Send + Sync>() {}
        fn clone<T: Clone>() {}
        // The other handles are leasedlock-api's, checked there.
        check::<crate::Connection>();
        clone::<crate::Connection>();
        check::<crate::Attached>();
        check::<crate::AttachOptions>();
    }
}
