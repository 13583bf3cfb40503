//! Writing and reading the protocol's MQTT properties, for both sides: static property
//! values, user properties, the status, numeric and version texts, and the version and
//! content-type checks.

use bytes::Bytes;

use super::{prop, EnvelopeError, Message, CONTENT_TYPE};

pub(super) fn static_bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

pub(super) fn user_prop(name: &'static str, value: Bytes) -> (Bytes, Bytes) {
    (static_bytes(name), value)
}

/// A decimal `u16` with no sign, spaces or empty text.
pub(super) fn parse_status(text: &[u8]) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u16, |acc, &c| {
        acc.checked_mul(10)?.checked_add(u16::from(c - b'0'))
    })
}

/// A decimal `u32` with no sign, spaces or empty text.
pub(super) fn parse_u32(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u32, |acc, &c| {
        acc.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })
}

/// `major.minor`, both decimal.
pub(super) fn parse_version(text: &[u8]) -> Option<(u32, u32)> {
    let dot = text.iter().position(|&c| c == b'.')?;
    let (major, minor) = text.split_at(dot);
    Some((parse_u32(major)?, parse_u32(minor.get(1..)?)?))
}

/// Client side: `__protVer` is absent (meaning 1.0) or `1.<minor>`.
pub(super) fn check_version(msg: &Message) -> Result<(), EnvelopeError> {
    match msg.user_property(prop::PROTOCOL_VERSION) {
        None => Ok(()),
        Some(v) => match parse_version(v) {
            Some((1, _)) => Ok(()),
            _ => Err(EnvelopeError::UnsupportedVersion),
        },
    }
}

/// Client side: content type absent or exactly `application/octet-stream`.
pub(super) fn check_content_type(msg: &Message) -> Result<(), EnvelopeError> {
    match &msg.content_type {
        Some(ct) if ct.as_ref() != CONTENT_TYPE.as_bytes() => Err(EnvelopeError::BadContentType),
        _ => Ok(()),
    }
}
