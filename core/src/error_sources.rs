//! The `core::error::Error` impls of the request and machine errors, each naming its cause as
//! its `source()`, so that an adapter can wrap a core error without losing the chain.

use core::error::Error;
use core::fmt;

use crate::client::RequestError;
use crate::edit::EditError;
use crate::leader::LeaderError;
use crate::lease::LeaseError;
use crate::lock::LockError;

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Service(e) => write!(f, "the store refused the request: {e}"),
            RequestError::Timeout { sent: true } => {
                f.write_str("request timed out (it may have run)")
            }
            RequestError::Timeout { sent: false } => {
                f.write_str("request timed out before it was sent")
            }
            RequestError::Unknown => f.write_str("connection lost after sending; outcome unknown"),
            RequestError::Status { status, message } => {
                write!(f, "RPC status {status}")?;
                if let Some(m) = message {
                    write!(f, ": {}", alloc::string::String::from_utf8_lossy(m))?;
                }
                Ok(())
            }
            RequestError::ClockDrift => {
                f.write_str("reply timestamp too far ahead of the local clock")
            }
            RequestError::BadReply => f.write_str("malformed reply"),
            RequestError::Busy => f.write_str("too many requests in flight"),
            RequestError::InvalidArgument(rule) => write!(f, "invalid argument: {rule}"),
            RequestError::SubscriptionRefused => f.write_str("response subscription refused"),
        }
    }
}

impl Error for RequestError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RequestError::Service(e) => Some(e),
            _ => None,
        }
    }
}

impl Error for LeaseError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            LeaseError::Request(e) => Some(e),
            _ => None,
        }
    }
}

impl Error for LockError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            LockError::Lease(e) => Some(e),
            _ => None,
        }
    }
}

impl Error for EditError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            EditError::Lock(e) => Some(e),
            EditError::Request(e) => Some(e),
            _ => None,
        }
    }
}

impl Error for LeaderError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            LeaderError::Lock(e) => Some(e),
            _ => None,
        }
    }
}
