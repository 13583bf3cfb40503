//! `leasedlock-mqtt-session`: a sans-IO MQTT 5 client session.
//!
//! [`Session`] is the part of an MQTT client that does not depend on a runtime: it turns bytes
//! read from the broker into [`Event`]s, turns user calls (publish, subscribe, disconnect) into
//! bytes to write, keeps the QoS 1 in-flight table, the keep-alive and CONNACK timers and the
//! session state across reconnects. It never reads a clock and never performs I/O: time comes in
//! as a [`leasedlock_core::Instant`], bytes go out through [`Session::poll_transmit`], and the
//! next deadline is [`Session::poll_timeout`]. Any runtime adapter (async-std, smol, an embedded
//! executor) drives it with the same loop:
//!
//! 1. feed inputs: [`Session::handle_connection_opened`], [`Session::handle_bytes_received`],
//!    [`Session::handle_connection_lost`], [`Session::handle_timeout`] and user calls such as
//!    [`Session::publish`], each with the current monotonic time;
//! 2. write what [`Session::poll_transmit`] returns and handle every [`Session::poll_event`];
//! 3. sleep until [`Session::poll_timeout`] or the next input.
//!
//! Packets are encoded and decoded by the `mqtt5-protocol` codec; the session frames the byte
//! stream itself so that a packet longer than the configured maximum is rejected from its
//! fixed header, before any of it is buffered. A hostile broker gets a typed error (and a closed
//! connection), never a panic and never unbounded memory.
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
