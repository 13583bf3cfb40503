//! Reading state-store requests seen on the wire (by a client subscribed to the request topic).

/// Whether `payload` (a RESP3 request) is a `SET` of `key`.
pub fn is_set_of(payload: &[u8], key: &[u8]) -> bool {
    let mut set = b"\r\n$3\r\nSET\r\n".to_vec();
    set.extend_from_slice(format!("${}\r\n", key.len()).as_bytes());
    set.extend_from_slice(key);
    set.extend_from_slice(b"\r\n");
    payload.windows(set.len()).any(|w| w == set.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_a_set_of_the_key_only() {
        let set = b"*5\r\n$3\r\nSET\r\n$4\r\nlock\r\n$1\r\nv\r\n$2\r\nNX\r\n";
        assert!(is_set_of(set, b"lock"));
        assert!(!is_set_of(set, b"loc"));
        assert!(!is_set_of(b"*2\r\n$3\r\nGET\r\n$4\r\nlock\r\n", b"lock"));
    }
}
