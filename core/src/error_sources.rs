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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every public error type of the crate is an `Error` with a `Display`, so an adapter can
    /// wrap it as a `source()` (this fails to compile when a new one is not).
    #[test]
    fn every_public_error_type_is_an_error() {
        fn error<E: Error + 'static>() {}
        error::<crate::client::ConfigError>();
        error::<crate::client::RequestError>();
        error::<crate::command::NotifyPayloadError>();
        error::<crate::command::ReplyError>();
        error::<crate::command::RequestParseError>();
        error::<crate::command::ServiceError>();
        error::<crate::envelope::EnvelopeError>();
        error::<crate::envelope::IncomingRequestError>();
        error::<crate::hex::HexError>();
        error::<crate::hlc::HlcError>();
        error::<crate::resp3::Resp3Error>();
        error::<crate::server::StoreError>();
        error::<EditError>();
        error::<LeaderError>();
        error::<LeaseError>();
        error::<LockError>();
    }

    #[test]
    fn a_store_error_keeps_its_cause() {
        let e = crate::server::StoreError::BadNodeId(crate::hlc::HlcError::BadNode);
        let cause = e.source().map(alloc::string::ToString::to_string);
        assert_eq!(
            cause.as_deref(),
            Some("HLC node id is not valid UTF-8 or is too long")
        );
    }
}
