//! The topics of the state-store RPC: the response topic, the notification topics and their
//! filter, and how a notification topic names its key (strict upper-case hex).

use alloc::string::String;
use alloc::vec::Vec;

use super::{NOTIFY_MIDDLE, NOTIFY_TOPIC_PREFIX, SERVICE_PATH};
use crate::hex;

/// The response topic this library uses for a client (the Rust SDK's form).
pub fn response_topic(client_id: &str) -> String {
    let mut topic = String::with_capacity(
        "clients/".len() + client_id.len() + "/services/".len() + SERVICE_PATH.len() + 25,
    );
    topic.push_str("clients/");
    topic.push_str(client_id);
    topic.push_str("/services/");
    topic.push_str(SERVICE_PATH);
    topic.push_str("/command/invoke/response");
    topic
}

/// `{prefix}/{HEX(client_id)}/command/notify/` as bytes.
pub(super) fn notification_topic_head(client_id: &[u8], extra: usize) -> Vec<u8> {
    let mut topic = Vec::with_capacity(
        NOTIFY_TOPIC_PREFIX.len() + 1 + 2 * client_id.len() + NOTIFY_MIDDLE.len() + extra,
    );
    topic.extend_from_slice(NOTIFY_TOPIC_PREFIX.as_bytes());
    topic.push(b'/');
    hex::encode_upper_into(client_id, &mut topic);
    topic.extend_from_slice(NOTIFY_MIDDLE.as_bytes());
    topic
}

fn notification_topic_bytes(client_id: &[u8], key: &[u8]) -> Vec<u8> {
    let mut topic = notification_topic_head(client_id, 2 * key.len());
    hex::encode_upper_into(key, &mut topic);
    topic
}

/// Only ASCII was written into these topics, so the conversion cannot fail.
fn ascii_to_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// The notification topic for a client and key.
pub fn notification_topic(client_id: &str, key: &[u8]) -> String {
    ascii_to_string(notification_topic_bytes(client_id.as_bytes(), key))
}

/// The subscription filter for all of a client's notifications (`.../command/notify/+`).
pub fn notification_filter(client_id: &str) -> String {
    let mut filter = notification_topic_head(client_id.as_bytes(), 1);
    filter.push(b'+');
    ascii_to_string(filter)
}

fn upper_digit(nibble: u8) -> u8 {
    if nibble < 10 {
        b'0' + nibble
    } else {
        b'A' + (nibble - 10)
    }
}

/// Whether `text` is exactly the upper-case hex form of `bytes` (no allocation).
fn is_upper_hex_of(text: &[u8], bytes: &[u8]) -> bool {
    text.len() == 2 * bytes.len()
        && text.chunks_exact(2).zip(bytes).all(|(pair, &b)| {
            matches!(pair, [hi, lo] if *hi == upper_digit(b >> 4) && *lo == upper_digit(b & 0x0F))
        })
}

/// The key hex segment of `topic` if it is a notification topic for `client_id`.
pub(super) fn notification_key_segment<'t>(topic: &'t [u8], client_id: &str) -> Option<&'t [u8]> {
    let rest = topic.strip_prefix(NOTIFY_TOPIC_PREFIX.as_bytes())?;
    let rest = rest.strip_prefix(b"/")?;
    let client_len = 2 * client_id.len();
    let (client_hex, rest) = (rest.get(..client_len)?, rest.get(client_len..)?);
    if !is_upper_hex_of(client_hex, client_id.as_bytes()) {
        return None;
    }
    let key_hex = rest.strip_prefix(NOTIFY_MIDDLE.as_bytes())?;
    // An extra level below the key is not a notification; an empty key segment names no key
    // the store can hold.
    if key_hex.is_empty() || key_hex.contains(&b'/') {
        return None;
    }
    Some(key_hex)
}
