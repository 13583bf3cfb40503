//! What the session reports to its driver.

use alloc::string::String;
use bytes::Bytes;
use core::fmt;
use leasedlock_core::envelope::{Message, QoS};

use crate::convert::ConvertError;
use crate::frame::{DecodeError, PacketKind};

/// Identifies one [`crate::Session::publish`] call for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublishId(pub u64);

/// Identifies one [`crate::Session::subscribe`] or [`crate::Session::unsubscribe`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscribeId(pub u64);

/// An MQTT 5 reason code. Values of 0x80 and above are failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    /// Success / normal disconnection / granted QoS 0.
    pub const SUCCESS: ReasonCode = ReasonCode(0x00);
    /// PUBACK: accepted, but nobody is subscribed to the topic.
    pub const NO_MATCHING_SUBSCRIBERS: ReasonCode = ReasonCode(0x10);
    /// Unspecified error.
    pub const UNSPECIFIED_ERROR: ReasonCode = ReasonCode(0x80);
    /// Malformed packet.
    pub const MALFORMED_PACKET: ReasonCode = ReasonCode(0x81);
    /// Protocol error.
    pub const PROTOCOL_ERROR: ReasonCode = ReasonCode(0x82);
    /// Not authorized.
    pub const NOT_AUTHORIZED: ReasonCode = ReasonCode(0x87);
    /// PUBCOMP: the packet identifier was not found.
    pub const PACKET_IDENTIFIER_NOT_FOUND: ReasonCode = ReasonCode(0x92);
    /// More unacknowledged QoS 2 messages than our Receive Maximum.
    pub const RECEIVE_MAXIMUM_EXCEEDED: ReasonCode = ReasonCode(0x93);
    /// A Topic Alias we never allowed.
    pub const TOPIC_ALIAS_INVALID: ReasonCode = ReasonCode(0x94);
    /// Packet larger than the Maximum Packet Size.
    pub const PACKET_TOO_LARGE: ReasonCode = ReasonCode(0x95);

    /// Whether this code reports a failure.
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X}", self.0)
    }
}

/// How a publish ended. Every [`PublishId`] gets exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishOutcome {
    /// QoS 0: handed to the transport.
    Sent,
    /// QoS 1: the broker's PUBACK (which may carry a failure code, see
    /// [`ReasonCode::is_error`]).
    Acknowledged(ReasonCode),
    /// QoS 1: it was sent, then the session that carried it ended (the broker answered a
    /// reconnect without a session, or we left without keeping it). The broker may or may not
    /// have forwarded it.
    Lost,
    /// It was never sent: the session was closed for good first, or the packet exceeds the
    /// broker's Maximum Packet Size learned at connect time.
    Discarded,
}

/// Something the broker did wrong; the session closes the connection when it sees one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A packet a server never sends, or sends only in another state.
    UnexpectedPacket(PacketKind),
    /// CONNACK reported a present session although we asked for a clean start.
    SessionPresentOnCleanStart,
    /// CONNACK announced a Receive Maximum of 0.
    ZeroReceiveMaximum,
    /// CONNACK announced a Maximum Packet Size of 0.
    ZeroMaximumPacketSize,
    /// A SUBACK or UNSUBACK without exactly one reason code for our one filter.
    AckCount,
    /// More unreleased incoming QoS 2 messages than our Receive Maximum.
    ReceiveMaximumExceeded,
    /// An incoming PUBLISH whose fields cannot be carried as a [`Message`].
    BadMessage(ConvertError),
    /// AUTH without our authentication method, or with a reason code that makes no sense here.
    BadAuth,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// [`crate::Session::disconnect`] was called.
    Local,
    /// The transport reported the connection closed ([`crate::Session::handle_connection_lost`]).
    Transport,
    /// No CONNACK before the connect timeout.
    ConnackTimeout,
    /// No PINGRESP before the ping timeout: the connection is presumed dead.
    PingTimeout,
    /// CONNACK refused the connection.
    Refused {
        /// CONNACK reason code.
        reason: ReasonCode,
        /// Reason String property, if any.
        reason_string: Option<String>,
    },
    /// The broker sent DISCONNECT.
    Server {
        /// DISCONNECT reason code.
        reason: ReasonCode,
        /// Reason String property, if any.
        reason_string: Option<String>,
    },
    /// Bytes from the broker did not decode.
    Decode(DecodeError),
    /// The broker broke the protocol.
    Protocol(ProtocolViolation),
    /// CONNECT could not be encoded (not reachable with a configuration that passed
    /// validation; reported rather than hidden).
    Encode(String),
}

/// Something the driver must act on, drained with [`crate::Session::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// CONNACK accepted the connection. `session_present` tells whether the broker kept the
    /// session: its subscriptions and our unacknowledged QoS 1 messages (which the session has
    /// re-sent with DUP).
    Connected {
        /// CONNACK's Session Present flag.
        session_present: bool,
    },
    /// An earlier connection of this session had succeeded and the broker answered this one
    /// without the session: subscriptions are gone, and QoS 1 messages in flight were reported
    /// [`PublishOutcome::Lost`] just before this event. Followed by [`Event::Connected`].
    SessionLost,
    /// A publish ended.
    Published {
        /// Which publish.
        id: PublishId,
        /// How.
        outcome: PublishOutcome,
    },
    /// SUBACK for a subscription.
    Subscribed {
        /// Which subscribe call.
        id: SubscribeId,
        /// The filter.
        filter: String,
        /// Granted QoS, or the failure code.
        result: Result<QoS, ReasonCode>,
    },
    /// UNSUBACK.
    Unsubscribed {
        /// Which unsubscribe call.
        id: SubscribeId,
        /// The filter.
        filter: String,
        /// UNSUBACK reason code.
        reason: ReasonCode,
    },
    /// A PUBLISH arrived (already acknowledged if QoS 1).
    Message(Message),
    /// The broker continues enhanced authentication; answer with
    /// [`crate::Session::auth_continue`].
    AuthContinue {
        /// Authentication Data from the broker.
        data: Option<Bytes>,
    },
    /// The broker accepted a re-authentication.
    Reauthenticated,
    /// The connection is over: write out what [`crate::Session::poll_transmit`] still returns
    /// (a DISCONNECT, if the session sent one), then close the transport. Emitted exactly once
    /// per connection.
    Disconnected(DisconnectReason),
}
