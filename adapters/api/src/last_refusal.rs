//! [`LastRefusal`]: what an adapter's driver and its `Connection::connect` share to tell a
//! broker that refused the connection from one that could not be reached.

use std::sync::{Arc, Mutex, PoisonError};

use crate::error::ConnackRefusal;

/// Why the broker refused the last connection attempt in its CONNACK, if it did. The driver
/// sets it after every attempt (`None` on a CONNACK that accepts and on any other failure);
/// `connect` reads it when its wait ends without a connection and then returns
/// [`ConnectError::Refused`](crate::ConnectError::Refused). Clones share one record.
#[derive(Debug, Clone, Default)]
pub struct LastRefusal(Arc<Mutex<Option<ConnackRefusal>>>);

impl LastRefusal {
    /// Records the outcome of an attempt.
    pub fn set(&self, refusal: Option<ConnackRefusal>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = refusal;
    }

    /// The refusal of the last attempt; `None` when it connected or failed otherwise.
    pub fn get(&self) -> Option<ConnackRefusal> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_last_outcome() {
        let driver = LastRefusal::default();
        let connect = driver.clone();
        assert_eq!(connect.get(), None);
        driver.set(Some(ConnackRefusal::NotAuthorized));
        assert_eq!(connect.get(), Some(ConnackRefusal::NotAuthorized));
        driver.set(None);
        assert_eq!(connect.get(), None);
    }
}
