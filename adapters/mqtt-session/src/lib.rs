#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod config;
mod convert;
mod event;
mod frame;
mod packet_id;
mod session;

pub use config::{ConfigError, SessionConfig, DEFAULT_MAX_PACKET_SIZE};
pub use convert::{ConvertError, Field};
pub use frame::{DecodeError, PacketKind};
pub use session::{
    DisconnectReason, Event, ProtocolViolation, PublishId, PublishOutcome, ReasonCode, Session,
    SessionError, SessionStats, SubscribeId,
};
