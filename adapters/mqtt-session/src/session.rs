//! The session machine: connection life cycle, QoS 1 in-flight table, subscriptions,
//! keep-alive, and what survives a reconnect.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};
use core::fmt;
use core::time::Duration;
use leasedlock_core::envelope::{Message, QoS};
use leasedlock_core::Instant;
use mqtt5_protocol::packet::auth::AuthPacket;
use mqtt5_protocol::packet::connack::ConnAckPacket;
use mqtt5_protocol::packet::connect::ConnectPacket;
use mqtt5_protocol::packet::disconnect::DisconnectPacket;
use mqtt5_protocol::packet::puback::PubAckPacket;
use mqtt5_protocol::packet::pubcomp::PubCompPacket;
use mqtt5_protocol::packet::publish::PublishPacket;
use mqtt5_protocol::packet::pubrec::PubRecPacket;
use mqtt5_protocol::packet::suback::SubAckPacket;
use mqtt5_protocol::packet::subscribe::{SubscribePacket, TopicFilter};
use mqtt5_protocol::packet::subscribe_options::{RetainHandling, SubscriptionOptions};
use mqtt5_protocol::packet::unsuback::UnsubAckPacket;
use mqtt5_protocol::packet::unsubscribe::UnsubscribePacket;
use mqtt5_protocol::{Packet, Properties, PropertyId, PropertyValue};

use crate::config::{ConfigError, SessionConfig};
use crate::convert::{self, ConvertError};
use crate::frame::{self, DecodeError, PacketKind};
use crate::packet_id::PacketIds;

pub use crate::event::{
    DisconnectReason, Event, ProtocolViolation, PublishId, PublishOutcome, ReasonCode, SubscribeId,
};

/// The PINGREQ packet.
const PINGREQ: [u8; 2] = [0xC0, 0x00];
/// DUP flag in the first byte of a PUBLISH.
const DUP_FLAG: u8 = 0x08;

/// Why a user call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// Too many publishes (or subscription requests) are waiting.
    QueueFull,
    /// The message cannot be carried by a PUBLISH.
    Convert(ConvertError),
    /// The topic filter is empty, too long, contains NUL or misplaces a wildcard.
    InvalidFilter,
    /// This session sends and subscribes at QoS 0 and 1 only.
    QoS2Unsupported,
    /// The broker's Maximum QoS is 0 and the message asks for QoS 1.
    QoSNotSupported,
    /// The broker does not support retained messages.
    RetainNotSupported,
    /// The encoded packet exceeds the broker's Maximum Packet Size.
    PacketTooLarge {
        /// Encoded size.
        size: usize,
        /// The broker's limit.
        max: u32,
    },
    /// The call needs an established connection.
    NotConnected,
    /// Enhanced authentication was not configured.
    NoAuthMethod,
    /// The codec could not encode the packet (its description).
    Encode(String),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Config(e) => write!(f, "invalid configuration: {e}"),
            SessionError::QueueFull => f.write_str("too many requests waiting"),
            SessionError::Convert(e) => write!(f, "message not representable: {e}"),
            SessionError::InvalidFilter => f.write_str("invalid topic filter"),
            SessionError::QoS2Unsupported => f.write_str("QoS 2 is not supported"),
            SessionError::QoSNotSupported => f.write_str("the broker only supports QoS 0"),
            SessionError::RetainNotSupported => f.write_str("the broker does not support retain"),
            SessionError::PacketTooLarge { size, max } => {
                write!(
                    f,
                    "packet of {size} bytes exceeds the broker's maximum of {max}"
                )
            }
            SessionError::NotConnected => f.write_str("not connected"),
            SessionError::NoAuthMethod => f.write_str("no authentication method configured"),
            SessionError::Encode(e) => write!(f, "cannot encode packet: {e}"),
        }
    }
}

impl core::error::Error for SessionError {}

impl From<ConvertError> for SessionError {
    fn from(e: ConvertError) -> Self {
        SessionError::Convert(e)
    }
}

/// Counters for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// PUBACK/SUBACK/UNSUBACK whose packet id matched nothing (late or duplicate), ignored.
    pub unmatched_acks: u64,
    /// PUBLISH packets received.
    pub messages_received: u64,
    /// QoS 1 PUBLISH packets re-sent with DUP after a reconnect.
    pub publishes_resent: u64,
    /// PINGREQ packets sent.
    pub pings_sent: u64,
    /// Connections that reached CONNACK.
    pub connections: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Disconnected,
    Connecting { deadline: Instant },
    Connected,
}

/// A publish waiting for the connection or for in-flight quota.
#[derive(Debug)]
struct Queued {
    id: PublishId,
    qos: QoS,
    /// The encoded PUBLISH; for QoS 1 with packet id 0 at `pid_at`.
    frame: Bytes,
    pid_at: usize,
}

/// A QoS 1 publish holding a packet id until its PUBACK.
#[derive(Debug)]
struct InFlight {
    id: PublishId,
    /// Order of first transmission; re-sends keep it.
    seq: u64,
    frame: Bytes,
    /// Written on the current connection (counts against the broker's Receive Maximum).
    on_wire: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubKind {
    Subscribe,
    Unsubscribe,
}

/// A SUBSCRIBE or UNSUBSCRIBE awaiting its acknowledgement. Re-sent after every reconnect
/// (both are idempotent), so an acknowledgement lost with a connection cannot hang the caller.
#[derive(Debug)]
struct PendingSub {
    id: SubscribeId,
    seq: u64,
    kind: SubKind,
    filter: String,
    frame: Bytes,
}

/// Broker limits learned from CONNACK.
#[derive(Debug, Clone, Copy)]
struct ServerLimits {
    receive_maximum: u16,
    maximum_packet_size: u32,
    maximum_qos_zero: bool,
    retain_available: bool,
    keep_alive: Duration,
}

/// The sans-IO MQTT 5 client session (see the crate documentation for how to drive it).
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    /// Undecoded bytes from the broker (at most one packet plus one read).
    rx: BytesMut,
    /// Encoded packets the transport has not taken yet.
    tx: BytesMut,
    events: VecDeque<Event>,
    limits: ServerLimits,
    /// Clean Start flag of the CONNECT on the current connection.
    clean_start_sent: bool,
    /// A CONNACK has accepted an earlier connection of this session.
    established: bool,
    last_tx: Instant,
    last_rx: Instant,
    ping_deadline: Option<Instant>,
    ids: PacketIds,
    outbox: VecDeque<Queued>,
    in_flight: BTreeMap<u16, InFlight>,
    on_wire: usize,
    pending_subs: BTreeMap<u16, PendingSub>,
    /// Incoming QoS 2 packet ids between PUBREC and PUBREL.
    incoming_qos2: BTreeSet<u16>,
    next_publish: u64,
    next_subscribe: u64,
    next_seq: u64,
    stats: SessionStats,
}

impl Session {
    /// A disconnected session. Fails if the configuration is invalid or CONNECT cannot be
    /// encoded with it.
    pub fn new(config: SessionConfig) -> Result<Session, SessionError> {
        config.validate().map_err(SessionError::Config)?;
        let session = Session {
            limits: ServerLimits {
                receive_maximum: u16::MAX,
                maximum_packet_size: u32::MAX,
                maximum_qos_zero: false,
                retain_available: true,
                keep_alive: config.keep_alive,
            },
            config,
            state: State::Disconnected,
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            events: VecDeque::new(),
            clean_start_sent: false,
            established: false,
            last_tx: Instant::ZERO,
            last_rx: Instant::ZERO,
            ping_deadline: None,
            ids: PacketIds::default(),
            outbox: VecDeque::new(),
            in_flight: BTreeMap::new(),
            on_wire: 0,
            pending_subs: BTreeMap::new(),
            incoming_qos2: BTreeSet::new(),
            next_publish: 0,
            next_subscribe: 0,
            next_seq: 0,
            stats: SessionStats::default(),
        };
        let mut probe = BytesMut::new();
        frame::encode(&session.connect_packet(), &mut probe).map_err(SessionError::Encode)?;
        Ok(session)
    }

    // ---- inputs -------------------------------------------------------------------------

    /// The transport connected: CONNECT is queued for [`Session::poll_transmit`]. If the
    /// session still believed an older connection alive, that one ends first
    /// ([`DisconnectReason::Transport`]).
    pub fn handle_connection_opened(&mut self, now: Instant) {
        if self.state != State::Disconnected {
            self.close(DisconnectReason::Transport);
        }
        self.rx.clear();
        self.tx.clear();
        self.ping_deadline = None;
        self.on_wire = 0;
        for entry in self.in_flight.values_mut() {
            entry.on_wire = false;
        }
        // Later connections resume the session the first one created.
        self.clean_start_sent = !self.established && self.config.clean_start;
        if let Err(e) = frame::encode(&self.connect_packet(), &mut self.tx) {
            self.tx.clear();
            self.events
                .push_back(Event::Disconnected(DisconnectReason::Encode(e)));
            return;
        }
        self.last_tx = now;
        self.last_rx = now;
        self.state = State::Connecting {
            deadline: now.saturating_add(self.config.connect_timeout),
        };
    }

    /// Bytes arrived from the broker. Complete packets are processed at once; a decode error
    /// or protocol violation ends the connection ([`Event::Disconnected`]). Ignored while no
    /// connection is open.
    pub fn handle_bytes_received(&mut self, bytes: &[u8], now: Instant) {
        if self.state == State::Disconnected || bytes.is_empty() {
            return;
        }
        self.last_rx = now;
        self.rx.extend_from_slice(bytes);
        while self.state != State::Disconnected {
            match frame::decode_packet(&mut self.rx, self.config.max_packet_size) {
                Ok(Some(packet)) => self.handle_packet(packet, now),
                Ok(None) => break,
                Err(e) => {
                    let code = match e {
                        DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
                        _ => ReasonCode::MALFORMED_PACKET,
                    };
                    self.fail(DisconnectReason::Decode(e), code);
                }
            }
        }
        if self.state == State::Disconnected {
            self.rx.clear();
        }
    }

    /// The transport closed (or failed). Unwritten bytes are dropped; unacknowledged QoS 1
    /// messages stay in flight for the next connection.
    pub fn handle_connection_lost(&mut self, now: Instant) {
        let _ = now;
        if self.state != State::Disconnected {
            self.close(DisconnectReason::Transport);
        }
        self.tx.clear();
    }

    /// Time passed: CONNACK timeout, keep-alive PINGREQ, PINGRESP timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Disconnected => {}
            State::Connecting { deadline } => {
                if now >= deadline {
                    self.close(DisconnectReason::ConnackTimeout);
                }
            }
            State::Connected => {
                if let Some(deadline) = self.ping_deadline {
                    if now >= deadline {
                        self.close(DisconnectReason::PingTimeout);
                    }
                } else if let Some(at) = self.next_ping_at() {
                    if now >= at {
                        self.write(&PINGREQ, now);
                        self.stats.pings_sent += 1;
                        self.ping_deadline = Some(now.saturating_add(self.config.ping_timeout));
                    }
                }
            }
        }
    }

    /// Publishes a message at QoS 0 or 1. Sent at once when connected and the broker's Receive
    /// Maximum allows, otherwise queued (bounded by `max_queued`). The outcome arrives as
    /// [`Event::Published`].
    pub fn publish(&mut self, message: &Message, now: Instant) -> Result<PublishId, SessionError> {
        let qos = match message.qos {
            QoS::AtMostOnce => QoS::AtMostOnce,
            QoS::AtLeastOnce => QoS::AtLeastOnce,
            _ => return Err(SessionError::QoS2Unsupported),
        };
        if self.state == State::Connected {
            if qos == QoS::AtLeastOnce && self.limits.maximum_qos_zero {
                return Err(SessionError::QoSNotSupported);
            }
            if message.retain && !self.limits.retain_available {
                return Err(SessionError::RetainNotSupported);
            }
        }
        if self.outbox.len() >= self.config.max_queued {
            return Err(SessionError::QueueFull);
        }
        let mut packet = convert::to_publish(message)?;
        let mut pid_at = 0;
        if qos == QoS::AtLeastOnce {
            // A placeholder: the real id is written in when quota allows sending.
            packet.packet_id = Some(0);
        }
        let mut encoded = BytesMut::new();
        frame::encode(&packet, &mut encoded).map_err(SessionError::Encode)?;
        if qos == QoS::AtLeastOnce {
            let header_len = match frame::parse_header(&encoded) {
                Ok(Some((len, _))) => len,
                _ => return Err(SessionError::Encode(String::from("bad PUBLISH header"))),
            };
            pid_at = header_len + 2 + packet.topic_name.len();
        }
        if encoded.len() > self.limits.maximum_packet_size as usize {
            return Err(SessionError::PacketTooLarge {
                size: encoded.len(),
                max: self.limits.maximum_packet_size,
            });
        }
        let id = PublishId(self.next_publish);
        self.next_publish += 1;
        self.outbox.push_back(Queued {
            id,
            qos,
            frame: encoded.freeze(),
            pid_at,
        });
        self.pump(now);
        Ok(id)
    }

    /// Subscribes to one filter (one filter per SUBSCRIBE, Retain As Published set, as the
    /// official SDK does). The SUBACK arrives as [`Event::Subscribed`].
    pub fn subscribe(
        &mut self,
        filter: &str,
        qos: QoS,
        now: Instant,
    ) -> Result<SubscribeId, SessionError> {
        let qos = match qos {
            QoS::AtMostOnce => mqtt5_protocol::QoS::AtMostOnce,
            QoS::AtLeastOnce => mqtt5_protocol::QoS::AtLeastOnce,
            _ => return Err(SessionError::QoS2Unsupported),
        };
        check_filter(filter)?;
        let options = SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: true,
            retain_handling: RetainHandling::SendAtSubscribe,
        };
        self.queue_subscription(SubKind::Subscribe, filter, now, |pid| {
            let mut packet = SubscribePacket::new(pid);
            packet
                .filters
                .push(TopicFilter::with_options(filter, options));
            let mut out = BytesMut::new();
            frame::encode(&packet, &mut out).map(|()| out)
        })
    }

    /// Unsubscribes from one filter. The UNSUBACK arrives as [`Event::Unsubscribed`].
    pub fn unsubscribe(&mut self, filter: &str, now: Instant) -> Result<SubscribeId, SessionError> {
        check_filter(filter)?;
        self.queue_subscription(SubKind::Unsubscribe, filter, now, |pid| {
            let packet = UnsubscribePacket::new(pid).add_filter(filter);
            let mut out = BytesMut::new();
            frame::encode(&packet, &mut out).map(|()| out)
        })
    }

    /// Ends the connection with DISCONNECT (normal disconnection). With `keep_session` false
    /// the DISCONNECT sets Session Expiry 0 so the broker drops the session, and everything the
    /// session still holds ends: QoS 1 messages in flight as [`PublishOutcome::Lost`], queued
    /// ones as [`PublishOutcome::Discarded`], pending (un)subscriptions silently. With
    /// `keep_session` true the in-flight table and queues survive for a later reconnect.
    pub fn disconnect(&mut self, keep_session: bool, now: Instant) {
        if self.state != State::Disconnected {
            let mut packet = DisconnectPacket::normal();
            if !keep_session && self.config.session_expiry_secs != 0 {
                packet = packet.with_session_expiry_interval(0);
            }
            self.write_packet(&packet, now);
            self.close(DisconnectReason::Local);
        }
        if !keep_session {
            self.report_in_flight_lost();
            while let Some(q) = self.outbox.pop_front() {
                self.events.push_back(Event::Published {
                    id: q.id,
                    outcome: PublishOutcome::Discarded,
                });
            }
            self.pending_subs.clear();
            self.ids.clear();
            self.incoming_qos2.clear();
            self.established = false;
        }
    }

    /// Answers [`Event::AuthContinue`] with more authentication data.
    pub fn auth_continue(&mut self, data: Bytes, now: Instant) -> Result<(), SessionError> {
        self.send_auth(ReasonCode(0x18), data, now)
    }

    /// Re-authenticates on the live connection (e.g. after a rotated token) and uses `data` in
    /// every later CONNECT. The broker answers with [`Event::Reauthenticated`], or disconnects.
    pub fn reauthenticate(&mut self, data: Bytes, now: Instant) -> Result<(), SessionError> {
        if self.state != State::Connected {
            return Err(SessionError::NotConnected);
        }
        self.send_auth(ReasonCode(0x19), data.clone(), now)?;
        self.config.auth_data = Some(data);
        Ok(())
    }

    /// Replaces the authentication data used by later CONNECTs.
    pub fn set_auth_data(&mut self, data: Option<Bytes>) -> Result<(), SessionError> {
        if data
            .as_ref()
            .is_some_and(|d| d.len() > usize::from(u16::MAX))
        {
            return Err(SessionError::Config(ConfigError::TooLong("auth_data")));
        }
        if data.is_some() && self.config.auth_method.is_none() {
            return Err(SessionError::NoAuthMethod);
        }
        self.config.auth_data = data;
        Ok(())
    }

    /// Replaces the password used by later CONNECTs (e.g. re-read from its file).
    pub fn set_password(&mut self, password: Option<Bytes>) -> Result<(), SessionError> {
        if password
            .as_ref()
            .is_some_and(|p| p.len() > usize::from(u16::MAX))
        {
            return Err(SessionError::Config(ConfigError::TooLong("password")));
        }
        self.config.password = password;
        Ok(())
    }

    // ---- outputs ------------------------------------------------------------------------

    /// Bytes to write to the transport, in order, or `None` when there is nothing to write.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.tx.is_empty() {
            None
        } else {
            Some(self.tx.split().freeze())
        }
    }

    /// The next event, or `None` when drained.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Disconnected => None,
            State::Connecting { deadline } => Some(deadline),
            State::Connected => self.ping_deadline.or_else(|| self.next_ping_at()),
        }
    }

    // ---- queries ------------------------------------------------------------------------

    /// Whether a CONNACK accepted the current connection.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// QoS 1 publishes holding a packet id (sent or awaiting re-send).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Publishes waiting for the connection or for quota.
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// The broker's Receive Maximum from the last CONNACK (65 535 before any).
    pub fn server_receive_maximum(&self) -> u16 {
        self.limits.receive_maximum
    }

    /// The client identifier (the broker's Assigned Client Identifier, if it sent one).
    pub fn client_id(&self) -> &str {
        &self.config.client_id
    }

    /// Diagnostics counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    // ---- internals ----------------------------------------------------------------------

    fn connect_packet(&self) -> ConnectPacket {
        let cfg = &self.config;
        let mut props = Properties::new();
        if cfg.session_expiry_secs != 0 {
            add(
                &mut props,
                PropertyId::SessionExpiryInterval,
                PropertyValue::FourByteInteger(cfg.session_expiry_secs),
            );
        }
        if cfg.receive_maximum != u16::MAX {
            add(
                &mut props,
                PropertyId::ReceiveMaximum,
                PropertyValue::TwoByteInteger(cfg.receive_maximum),
            );
        }
        if cfg.max_packet_size != u32::MAX {
            add(
                &mut props,
                PropertyId::MaximumPacketSize,
                PropertyValue::FourByteInteger(cfg.max_packet_size),
            );
        }
        // Topic Alias Maximum is left out: absent means 0, so the broker may not use aliases.
        if let Some(method) = &cfg.auth_method {
            add(
                &mut props,
                PropertyId::AuthenticationMethod,
                PropertyValue::Utf8String(method.clone()),
            );
            if let Some(data) = &cfg.auth_data {
                add(
                    &mut props,
                    PropertyId::AuthenticationData,
                    PropertyValue::BinaryData(data.clone()),
                );
            }
        }
        for (name, value) in &cfg.user_properties {
            add(
                &mut props,
                PropertyId::UserProperty,
                PropertyValue::Utf8StringPair(name.clone(), value.clone()),
            );
        }
        ConnectPacket {
            protocol_version: 5,
            clean_start: self.clean_start_sent,
            keep_alive: cfg.keep_alive_secs(),
            client_id: cfg.client_id.clone(),
            username: cfg.username.clone(),
            password: cfg.password.as_ref().map(|p| p.to_vec()),
            will: None,
            properties: props,
            will_properties: Properties::new(),
        }
    }

    fn handle_packet(&mut self, packet: Packet, now: Instant) {
        match packet {
            Packet::ConnAck(p) => self.on_connack(p, now),
            Packet::Publish(p) => self.on_publish(p, now),
            Packet::PubAck(p) => self.on_puback(p.packet_id, ReasonCode(p.reason_code.into()), now),
            Packet::PubRel(p) => {
                if self.state != State::Connected {
                    return self.violation(ProtocolViolation::UnexpectedPacket(PacketKind::PubRel));
                }
                let packet = if self.incoming_qos2.remove(&p.packet_id) {
                    PubCompPacket::new(p.packet_id)
                } else {
                    PubCompPacket::new_with_reason(
                        p.packet_id,
                        mqtt5_protocol::ReasonCode::PacketIdentifierNotFound,
                    )
                };
                self.write_packet(&packet, now);
            }
            Packet::SubAck(p) => self.on_suback(p),
            Packet::UnsubAck(p) => self.on_unsuback(p),
            Packet::PingResp => self.ping_deadline = None,
            Packet::Disconnect(p) => self.close(DisconnectReason::Server {
                reason: ReasonCode(p.reason_code.into()),
                reason_string: reason_string(&p.properties),
            }),
            Packet::Auth(p) => self.on_auth(p),
            other => self.violation(ProtocolViolation::UnexpectedPacket(PacketKind::of(&other))),
        }
    }

    fn on_connack(&mut self, p: ConnAckPacket, now: Instant) {
        if !matches!(self.state, State::Connecting { .. }) {
            return self.violation(ProtocolViolation::UnexpectedPacket(PacketKind::ConnAck));
        }
        let reason = ReasonCode(p.reason_code.into());
        if reason.is_error() {
            return self.close(DisconnectReason::Refused {
                reason,
                reason_string: reason_string(&p.properties),
            });
        }
        if p.session_present && self.clean_start_sent {
            return self.violation(ProtocolViolation::SessionPresentOnCleanStart);
        }
        let receive_maximum = match p.receive_maximum() {
            Some(0) => return self.violation(ProtocolViolation::ZeroReceiveMaximum),
            Some(n) => n,
            None => u16::MAX,
        };
        let maximum_packet_size = match p.maximum_packet_size() {
            Some(0) => return self.violation(ProtocolViolation::ZeroMaximumPacketSize),
            Some(n) => n,
            None => u32::MAX,
        };
        let keep_alive = match p.properties.get(PropertyId::ServerKeepAlive) {
            Some(PropertyValue::TwoByteInteger(secs)) => Duration::from_secs(u64::from(*secs)),
            _ => self.config.keep_alive,
        };
        self.limits = ServerLimits {
            receive_maximum,
            maximum_packet_size,
            maximum_qos_zero: matches!(
                p.properties.get(PropertyId::MaximumQoS),
                Some(PropertyValue::Byte(0))
            ),
            retain_available: !matches!(
                p.properties.get(PropertyId::RetainAvailable),
                Some(PropertyValue::Byte(0))
            ),
            keep_alive,
        };
        if let Some(PropertyValue::Utf8String(id)) =
            p.properties.get(PropertyId::AssignedClientIdentifier)
        {
            self.config.client_id = id.clone();
        }
        self.state = State::Connected;
        self.stats.connections += 1;
        if !p.session_present {
            if self.established {
                self.events.push_back(Event::SessionLost);
            }
            self.report_in_flight_lost();
            self.incoming_qos2.clear();
        }
        self.established = true;
        self.events.push_back(Event::Connected {
            session_present: p.session_present,
        });
        let mut subs: Vec<(u64, Bytes)> = self
            .pending_subs
            .values()
            .map(|s| (s.seq, s.frame.clone()))
            .collect();
        subs.sort_unstable_by_key(|(seq, _)| *seq);
        for (_, frame) in subs {
            self.write(&frame, now);
        }
        self.pump(now);
    }

    fn on_publish(&mut self, p: PublishPacket, now: Instant) {
        if self.state != State::Connected {
            return self.violation(ProtocolViolation::UnexpectedPacket(PacketKind::Publish));
        }
        self.stats.messages_received += 1;
        let pid = p.packet_id.unwrap_or(0);
        let qos = p.qos;
        if qos == mqtt5_protocol::QoS::ExactlyOnce && self.incoming_qos2.contains(&pid) {
            // A re-delivery before PUBREL: acknowledge again, deliver once.
            self.write_packet(&PubRecPacket::new(pid), now);
            return;
        }
        let message = match convert::from_publish(p) {
            Ok(m) => m,
            Err(ConvertError::InvalidValue(crate::convert::Field::TopicAlias)) => {
                return self.fail(
                    DisconnectReason::Protocol(ProtocolViolation::BadMessage(
                        ConvertError::InvalidValue(crate::convert::Field::TopicAlias),
                    )),
                    ReasonCode::TOPIC_ALIAS_INVALID,
                );
            }
            Err(e) => return self.violation(ProtocolViolation::BadMessage(e)),
        };
        match qos {
            mqtt5_protocol::QoS::AtMostOnce => {}
            mqtt5_protocol::QoS::AtLeastOnce => self.write_packet(&PubAckPacket::new(pid), now),
            mqtt5_protocol::QoS::ExactlyOnce => {
                if self.incoming_qos2.len() >= usize::from(self.config.receive_maximum) {
                    return self.fail(
                        DisconnectReason::Protocol(ProtocolViolation::ReceiveMaximumExceeded),
                        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    );
                }
                self.incoming_qos2.insert(pid);
                self.write_packet(&PubRecPacket::new(pid), now);
            }
        }
        self.events.push_back(Event::Message(message));
    }

    fn on_puback(&mut self, pid: u16, reason: ReasonCode, now: Instant) {
        if self.state != State::Connected {
            return self.violation(ProtocolViolation::UnexpectedPacket(PacketKind::PubAck));
        }
        match self.in_flight.get(&pid) {
            Some(entry) if entry.on_wire => {}
            _ => {
                self.stats.unmatched_acks += 1;
                return;
            }
        }
        if let Some(entry) = self.in_flight.remove(&pid) {
            self.ids.release(pid);
            self.on_wire = self.on_wire.saturating_sub(1);
            self.events.push_back(Event::Published {
                id: entry.id,
                outcome: PublishOutcome::Acknowledged(reason),
            });
        }
        self.pump(now);
    }

    fn take_pending(&mut self, pid: u16, kind: SubKind) -> Option<PendingSub> {
        if self.state != State::Connected {
            let packet = match kind {
                SubKind::Subscribe => PacketKind::SubAck,
                SubKind::Unsubscribe => PacketKind::UnsubAck,
            };
            self.violation(ProtocolViolation::UnexpectedPacket(packet));
            return None;
        }
        match self.pending_subs.get(&pid) {
            Some(s) if s.kind == kind => {}
            _ => {
                self.stats.unmatched_acks += 1;
                return None;
            }
        }
        self.ids.release(pid);
        self.pending_subs.remove(&pid)
    }

    fn on_suback(&mut self, p: SubAckPacket) {
        let [code] = p.reason_codes.as_slice() else {
            return self.violation(ProtocolViolation::AckCount);
        };
        let code = *code;
        let Some(sub) = self.take_pending(p.packet_id, SubKind::Subscribe) else {
            return;
        };
        let result = match code.granted_qos() {
            Some(mqtt5_protocol::QoS::AtMostOnce) => Ok(QoS::AtMostOnce),
            Some(mqtt5_protocol::QoS::AtLeastOnce) => Ok(QoS::AtLeastOnce),
            Some(mqtt5_protocol::QoS::ExactlyOnce) => Ok(QoS::ExactlyOnce),
            None => Err(ReasonCode(code as u8)),
        };
        self.events.push_back(Event::Subscribed {
            id: sub.id,
            filter: sub.filter,
            result,
        });
    }

    fn on_unsuback(&mut self, p: UnsubAckPacket) {
        let [code] = p.reason_codes.as_slice() else {
            return self.violation(ProtocolViolation::AckCount);
        };
        let code = *code;
        let Some(sub) = self.take_pending(p.packet_id, SubKind::Unsubscribe) else {
            return;
        };
        self.events.push_back(Event::Unsubscribed {
            id: sub.id,
            filter: sub.filter,
            reason: ReasonCode(code as u8),
        });
    }

    fn on_auth(&mut self, p: AuthPacket) {
        let ours = self.config.auth_method.as_deref();
        if ours.is_none() || p.authentication_method() != ours {
            return self.violation(ProtocolViolation::BadAuth);
        }
        let data = p.authentication_data().map(Bytes::copy_from_slice);
        match (u8::from(p.reason_code), self.state) {
            (0x18, State::Connecting { .. } | State::Connected) => {
                self.events.push_back(Event::AuthContinue { data });
            }
            (0x00, State::Connected) => self.events.push_back(Event::Reauthenticated),
            _ => self.violation(ProtocolViolation::BadAuth),
        }
    }

    fn send_auth(
        &mut self,
        reason: ReasonCode,
        data: Bytes,
        now: Instant,
    ) -> Result<(), SessionError> {
        if self.state == State::Disconnected {
            return Err(SessionError::NotConnected);
        }
        let Some(method) = self.config.auth_method.clone() else {
            return Err(SessionError::NoAuthMethod);
        };
        if data.len() > usize::from(u16::MAX) {
            return Err(SessionError::Config(ConfigError::TooLong("auth_data")));
        }
        let code = mqtt5_protocol::ReasonCode::from_u8(reason.0)
            .ok_or_else(|| SessionError::Encode(String::from("auth reason code")))?;
        let mut props = Properties::new();
        add(
            &mut props,
            PropertyId::AuthenticationMethod,
            PropertyValue::Utf8String(method),
        );
        add(
            &mut props,
            PropertyId::AuthenticationData,
            PropertyValue::BinaryData(data),
        );
        let packet = AuthPacket::with_properties(code, props);
        let mut out = BytesMut::new();
        frame::encode(&packet, &mut out).map_err(SessionError::Encode)?;
        self.write(&out, now);
        Ok(())
    }

    fn queue_subscription(
        &mut self,
        kind: SubKind,
        filter: &str,
        now: Instant,
        encode: impl FnOnce(u16) -> Result<BytesMut, String>,
    ) -> Result<SubscribeId, SessionError> {
        if self.pending_subs.len() >= self.config.max_pending_subscriptions {
            return Err(SessionError::QueueFull);
        }
        let pid = self.ids.allocate().ok_or(SessionError::QueueFull)?;
        let encoded = match encode(pid) {
            Ok(bytes) => bytes.freeze(),
            Err(e) => {
                self.ids.release(pid);
                return Err(SessionError::Encode(e));
            }
        };
        let id = SubscribeId(self.next_subscribe);
        self.next_subscribe += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.state == State::Connected {
            self.write(&encoded, now);
        }
        self.pending_subs.insert(
            pid,
            PendingSub {
                id,
                seq,
                kind,
                filter: String::from(filter),
                frame: encoded,
            },
        );
        Ok(id)
    }

    /// Sends what quota allows: first re-sends of unacknowledged QoS 1 messages (with DUP, in
    /// their original order), then the queue in order.
    fn pump(&mut self, now: Instant) {
        if self.state != State::Connected {
            return;
        }
        let quota = usize::from(self.limits.receive_maximum.min(self.config.max_in_flight));
        let mut waiting: Vec<(u64, u16)> = self
            .in_flight
            .iter()
            .filter(|(_, e)| !e.on_wire)
            .map(|(pid, e)| (e.seq, *pid))
            .collect();
        waiting.sort_unstable();
        let mut resends_blocked = false;
        for (_, pid) in waiting {
            if self.on_wire >= quota {
                resends_blocked = true;
                break;
            }
            let Some(entry) = self.in_flight.get_mut(&pid) else {
                continue;
            };
            entry.on_wire = true;
            let frame = entry.frame.clone();
            let start = self.tx.len();
            self.write(&frame, now);
            if let Some(first) = self.tx.get_mut(start) {
                *first |= DUP_FLAG;
            }
            self.on_wire += 1;
            self.stats.publishes_resent += 1;
        }
        while let Some(front) = self.outbox.front() {
            if front.frame.len() > self.limits.maximum_packet_size as usize {
                if let Some(q) = self.outbox.pop_front() {
                    self.events.push_back(Event::Published {
                        id: q.id,
                        outcome: PublishOutcome::Discarded,
                    });
                }
                continue;
            }
            if front.qos == QoS::AtMostOnce {
                if let Some(q) = self.outbox.pop_front() {
                    self.write(&q.frame, now);
                    self.events.push_back(Event::Published {
                        id: q.id,
                        outcome: PublishOutcome::Sent,
                    });
                }
                continue;
            }
            if resends_blocked || self.on_wire >= quota {
                break;
            }
            let Some(pid) = self.ids.allocate() else {
                break;
            };
            let Some(q) = self.outbox.pop_front() else {
                self.ids.release(pid);
                break;
            };
            let mut frame = BytesMut::from(&q.frame[..]);
            if let Some(slot) = frame.get_mut(q.pid_at..q.pid_at + 2) {
                slot.copy_from_slice(&pid.to_be_bytes());
            }
            let frame = frame.freeze();
            self.write(&frame, now);
            let seq = self.next_seq;
            self.next_seq += 1;
            self.in_flight.insert(
                pid,
                InFlight {
                    id: q.id,
                    seq,
                    frame,
                    on_wire: true,
                },
            );
            self.on_wire += 1;
        }
    }

    /// Every QoS 1 message holding a packet id ends as `Lost`, in send order.
    fn report_in_flight_lost(&mut self) {
        let mut lost: Vec<(u64, PublishId)> =
            self.in_flight.values().map(|e| (e.seq, e.id)).collect();
        lost.sort_unstable();
        for pid in self.in_flight.keys() {
            self.ids.release(*pid);
        }
        self.in_flight.clear();
        self.on_wire = 0;
        for (_, id) in lost {
            self.events.push_back(Event::Published {
                id,
                outcome: PublishOutcome::Lost,
            });
        }
    }

    fn next_ping_at(&self) -> Option<Instant> {
        if self.limits.keep_alive.is_zero() {
            return None;
        }
        Some(
            self.last_tx
                .min(self.last_rx)
                .saturating_add(self.limits.keep_alive),
        )
    }

    fn write(&mut self, bytes: &[u8], now: Instant) {
        self.tx.extend_from_slice(bytes);
        self.last_tx = now;
    }

    fn write_packet<P: mqtt5_protocol::packet::MqttPacket>(&mut self, packet: &P, now: Instant) {
        // Acks and DISCONNECT built from valid ids and codes always encode.
        if frame::encode(packet, &mut self.tx).is_ok() {
            self.last_tx = now;
        }
    }

    /// A protocol violation: DISCONNECT with Protocol Error, then close.
    fn violation(&mut self, v: ProtocolViolation) {
        self.fail(DisconnectReason::Protocol(v), ReasonCode::PROTOCOL_ERROR);
    }

    /// Sends DISCONNECT with `code` (best effort: the transport flushes it before closing) and
    /// closes.
    fn fail(&mut self, reason: DisconnectReason, code: ReasonCode) {
        if let Some(code) = mqtt5_protocol::ReasonCode::from_u8(code.0) {
            let _ = frame::encode(&DisconnectPacket::new(code), &mut self.tx);
        }
        self.close(reason);
    }

    fn close(&mut self, reason: DisconnectReason) {
        self.state = State::Disconnected;
        self.ping_deadline = None;
        self.rx.clear();
        self.events.push_back(Event::Disconnected(reason));
    }
}

fn add(props: &mut Properties, id: PropertyId, value: PropertyValue) {
    // Each id is added once with the type the codec expects (user properties may repeat).
    let _ = props.add(id, value);
}

fn reason_string(props: &Properties) -> Option<String> {
    match props.get(PropertyId::ReasonString) {
        Some(PropertyValue::Utf8String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A topic filter as MQTT defines it: non-empty, at most 65 535 bytes, no NUL, `#` only as
/// the whole last level, `+` only as a whole level.
fn check_filter(filter: &str) -> Result<(), SessionError> {
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) || filter.contains('\0') {
        return Err(SessionError::InvalidFilter);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(SessionError::InvalidFilter);
        }
        if level.contains('+') && level != "+" {
            return Err(SessionError::InvalidFilter);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
