#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod connection;
mod deadline;
mod runtime;
pub mod spawn;

pub use connection::{Connection, CLOSE_GRACE};
pub use leasedlock_api::adapter::exports::*;
pub use spawn::{Spawn, Task};

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_sync_and_the_documented_ones_clone() {
        fn check<T: Send + Sync>() {}
        fn clone<T: Clone>() {}
        // The other handles are leasedlock-api's, checked there.
        check::<crate::Connection>();
        clone::<crate::Connection>();
    }
}
