//! Framing of the byte stream into MQTT 5 packets, with the size cap applied from the fixed
//! header, and encoding of outgoing packets.

use alloc::string::{String, ToString};
use bytes::{Buf, BytesMut};
use core::fmt;
use mqtt5_protocol::packet::MqttPacket;
use mqtt5_protocol::{FixedHeader, MqttError, Packet, PacketType};

/// The MQTT protocol level this session speaks.
const PROTOCOL_VERSION: u8 = 5;

/// An MQTT control packet type, as named by the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PacketKind {
    /// CONNECT.
    Connect,
    /// CONNACK.
    ConnAck,
    /// PUBLISH.
    Publish,
    /// PUBACK.
    PubAck,
    /// PUBREC.
    PubRec,
    /// PUBREL.
    PubRel,
    /// PUBCOMP.
    PubComp,
    /// SUBSCRIBE.
    Subscribe,
    /// SUBACK.
    SubAck,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// UNSUBACK.
    UnsubAck,
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect,
    /// AUTH.
    Auth,
}

impl PacketKind {
    fn from_type(t: PacketType) -> PacketKind {
        match t {
            PacketType::Connect => PacketKind::Connect,
            PacketType::ConnAck => PacketKind::ConnAck,
            PacketType::Publish => PacketKind::Publish,
            PacketType::PubAck => PacketKind::PubAck,
            PacketType::PubRec => PacketKind::PubRec,
            PacketType::PubRel => PacketKind::PubRel,
            PacketType::PubComp => PacketKind::PubComp,
            PacketType::Subscribe => PacketKind::Subscribe,
            PacketType::SubAck => PacketKind::SubAck,
            PacketType::Unsubscribe => PacketKind::Unsubscribe,
            PacketType::UnsubAck => PacketKind::UnsubAck,
            PacketType::PingReq => PacketKind::PingReq,
            PacketType::PingResp => PacketKind::PingResp,
            PacketType::Disconnect => PacketKind::Disconnect,
            PacketType::Auth => PacketKind::Auth,
        }
    }

    /// The kind of a decoded packet.
    pub(crate) fn of(packet: &Packet) -> PacketKind {
        match packet {
            Packet::Connect(_) => PacketKind::Connect,
            Packet::ConnAck(_) => PacketKind::ConnAck,
            Packet::Publish(_) => PacketKind::Publish,
            Packet::PubAck(_) => PacketKind::PubAck,
            Packet::PubRec(_) => PacketKind::PubRec,
            Packet::PubRel(_) => PacketKind::PubRel,
            Packet::PubComp(_) => PacketKind::PubComp,
            Packet::Subscribe(_) => PacketKind::Subscribe,
            Packet::SubAck(_) => PacketKind::SubAck,
            Packet::Unsubscribe(_) => PacketKind::Unsubscribe,
            Packet::UnsubAck(_) => PacketKind::UnsubAck,
            Packet::PingReq => PacketKind::PingReq,
            Packet::PingResp => PacketKind::PingResp,
            Packet::Disconnect(_) => PacketKind::Disconnect,
            Packet::Auth(_) => PacketKind::Auth,
        }
    }
}

/// Why bytes from the broker are not a valid MQTT 5 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet is larger than our Maximum Packet Size (checked before it is buffered).
    PacketTooLarge {
        /// Total size announced by the fixed header.
        size: u64,
        /// Our limit.
        max: u32,
    },
    /// The Remaining Length is longer than four bytes.
    BadRemainingLength,
    /// The first byte names packet type 0 (reserved).
    ReservedPacketType,
    /// The codec rejected the packet body.
    Malformed {
        /// Which packet.
        packet: PacketKind,
        /// The codec's description, for logs.
        detail: String,
    },
    /// The body is longer than what the packet's fields use.
    TrailingBytes(PacketKind),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the maximum of {max}")
            }
            DecodeError::BadRemainingLength => f.write_str("remaining length longer than 4 bytes"),
            DecodeError::ReservedPacketType => f.write_str("reserved packet type 0"),
            DecodeError::Malformed { packet, detail } => {
                write!(f, "malformed {packet:?}: {detail}")
            }
            DecodeError::TrailingBytes(packet) => write!(f, "trailing bytes after {packet:?}"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Where a packet's Remaining Length ends: `Ok(None)` while more bytes are needed, otherwise
/// `(header_len, remaining_length)`.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<(usize, u32)>, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((2 + i, value)));
        }
    }
    Err(DecodeError::BadRemainingLength)
}

/// Takes one complete packet off the front of `buf`, if there is one.
///
/// The size cap is applied as soon as the fixed header is complete, so `buf` never has to hold
/// more than `max_packet_size` bytes plus whatever the transport delivered in one read.
pub(crate) fn decode_packet(
    buf: &mut BytesMut,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some((header_len, remaining)) = parse_header(buf)? else {
        return Ok(None);
    };
    let total = header_len as u64 + u64::from(remaining);
    if total > u64::from(max_packet_size) {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    // `total` fits in u32 here, so in usize.
    let total = usize::try_from(total).map_err(|_| DecodeError::PacketTooLarge {
        size: total,
        max: max_packet_size,
    })?;
    if buf.len() < total {
        return Ok(None);
    }
    let first = buf.first().copied().unwrap_or(0);
    let packet_type = PacketType::from_u8(first >> 4).ok_or(DecodeError::ReservedPacketType)?;
    let kind = PacketKind::from_type(packet_type);
    let mut frame = buf.split_to(total).freeze();
    frame.advance(header_len);
    let header = FixedHeader::new(packet_type, first & 0x0F, remaining);
    if matches!(kind, PacketKind::PingReq | PacketKind::PingResp) && remaining != 0 {
        return Err(DecodeError::TrailingBytes(kind));
    }
    let packet =
        Packet::decode_from_body_with_version(packet_type, &header, &mut frame, PROTOCOL_VERSION)
            .map_err(|e| malformed(kind, &e))?;
    if frame.has_remaining() {
        return Err(DecodeError::TrailingBytes(kind));
    }
    Ok(Some(packet))
}

fn malformed(packet: PacketKind, e: &MqttError) -> DecodeError {
    // The codec's error type is not part of our API; keep its text for diagnostics.
    let detail = match e {
        MqttError::MalformedPacket(text) | MqttError::ProtocolError(text) => text.clone(),
        other => alloc::format!("{other:?}"),
    };
    DecodeError::Malformed {
        packet,
        detail: if detail.is_empty() {
            "unspecified".to_string()
        } else {
            detail
        },
    }
}

/// Appends an encoded packet to `out`.
pub(crate) fn encode<P: MqttPacket>(packet: &P, out: &mut BytesMut) -> Result<(), String> {
    packet.encode(out).map_err(|e| alloc::format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use mqtt5_protocol::packet::publish::PublishPacket;
    use mqtt5_protocol::QoS;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8], max: u32) -> (Vec<Packet>, Option<DecodeError>) {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match decode_packet(&mut buf, max) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn header_lengths() {
        assert_eq!(parse_header(&[0x30]), Ok(None));
        assert_eq!(parse_header(&[0x30, 0x00]), Ok(Some((2, 0))));
        assert_eq!(parse_header(&[0x30, 0x80, 0x01]), Ok(Some((3, 128))));
        assert_eq!(
            parse_header(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]),
            Ok(Some((5, 268_435_455)))
        );
        assert_eq!(parse_header(&[0x30, 0xFF, 0xFF, 0xFF]), Ok(None));
        assert_eq!(
            parse_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::BadRemainingLength)
        );
    }

    #[test]
    fn short_disconnect_and_pings() {
        let (packets, err) = decode_all(&[0xE0, 0x00, 0xD0, 0x00], 1024);
        assert_eq!(err, None);
        assert_eq!(packets.len(), 2);
        assert!(matches!(packets[0], Packet::Disconnect(_)));
        assert!(matches!(packets[1], Packet::PingResp));
    }

    #[test]
    fn pingresp_with_body_is_rejected() {
        let (_, err) = decode_all(&[0xD0, 0x01, 0x00], 1024);
        assert_eq!(err, Some(DecodeError::TrailingBytes(PacketKind::PingResp)));
    }

    #[test]
    fn oversized_packet_is_rejected_from_its_header() {
        // Announces 1 MiB but only the header is present: rejected without waiting for the body.
        let (_, err) = decode_all(&[0x30, 0x80, 0x80, 0x40], 1024);
        assert_eq!(
            err,
            Some(DecodeError::PacketTooLarge {
                size: 4 + 1024 * 1024,
                max: 1024
            })
        );
    }

    #[test]
    fn reserved_type_is_rejected() {
        let (_, err) = decode_all(&[0x00, 0x00], 1024);
        assert_eq!(err, Some(DecodeError::ReservedPacketType));
    }

    #[test]
    fn publish_is_split_across_reads() {
        let mut out = BytesMut::new();
        let p = PublishPacket::new("a/b", &b"hello"[..], QoS::AtLeastOnce).with_packet_id(7);
        encode(&p, &mut out).unwrap();
        let bytes = out.to_vec();
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = decode_packet(&mut buf, 1024).unwrap();
            if i + 1 < bytes.len() {
                assert!(got.is_none());
            } else {
                let Some(Packet::Publish(p)) = got else {
                    panic!("expected a publish")
                };
                assert_eq!(p.topic_name, "a/b");
                assert_eq!(p.packet_id, Some(7));
                assert_eq!(&p.payload[..], b"hello");
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn trailing_bytes_in_a_puback_are_rejected() {
        // PUBACK id 1, reason 0, property length 0, then one stray byte.
        let (_, err) = decode_all(&[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xAA], 1024);
        assert!(err.is_some());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&bytes, 256);
        }

        #[test]
        fn mutated_publishes_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut out = BytesMut::new();
            let p = PublishPacket::new("x/y", vec![1u8; 40], QoS::AtLeastOnce)
                .with_packet_id(3)
                .with_user_property("k".into(), "v".into())
                .with_correlation_data(vec![9; 16]);
            encode(&p, &mut out).unwrap();
            let mut bytes = out.to_vec();
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = decode_all(&bytes, 4096);
        }
    }
}
