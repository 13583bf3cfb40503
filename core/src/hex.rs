//! Upper-case base16 (RFC 4648) as used in notification topics.
//!
//! Encoding always produces upper case. Decoding is strict: a lower-case digit, a non-hex byte or
//! an odd length is a typed error (the official Rust client panics on these; we never do).

use alloc::vec::Vec;

const DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// Why a hex segment was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HexError {
    /// The input has an odd number of characters.
    OddLength,
    /// The byte at this index is not an upper-case hex digit.
    InvalidDigit {
        /// Offset of the offending byte.
        index: usize,
    },
    /// The decoded output would exceed the caller's limit.
    TooLong,
}

impl core::fmt::Display for HexError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HexError::OddLength => f.write_str("hex segment has odd length"),
            HexError::InvalidDigit { index } => {
                write!(f, "byte {index} is not an upper-case hex digit")
            }
            HexError::TooLong => f.write_str("hex segment is longer than allowed"),
        }
    }
}

impl core::error::Error for HexError {}

/// Appends the upper-case hex form of `bytes` to `out`.
pub fn encode_upper_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0F)]);
    }
}

/// The upper-case hex form of `bytes`.
pub fn encode_upper(bytes: &[u8]) -> alloc::string::String {
    let mut v = Vec::with_capacity(bytes.len() * 2);
    encode_upper_into(bytes, &mut v);
    // Only ASCII digits were pushed.
    alloc::string::String::from_utf8(v).unwrap_or_default()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes strict upper-case hex; at most `max_len` decoded bytes.
pub fn decode_upper(text: &[u8], max_len: usize) -> Result<Vec<u8>, HexError> {
    if !text.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    if text.len() / 2 > max_len {
        return Err(HexError::TooLong);
    }
    let mut out = Vec::with_capacity(text.len() / 2);
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let hi = nibble(pair[0]).ok_or(HexError::InvalidDigit { index: 2 * i })?;
        let lo = nibble(pair[1]).ok_or(HexError::InvalidDigit { index: 2 * i + 1 })?;
        out.push(hi << 4 | lo);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_examples() {
        assert_eq!(encode_upper(b"client-id1"), "636C69656E742D696431");
        assert_eq!(encode_upper(b"SOMEKEY"), "534F4D454B4559");
        assert_eq!(decode_upper(b"534F4D454B4559", 64).unwrap(), b"SOMEKEY");
    }

    #[test]
    fn rejects_lower_case_and_odd() {
        assert_eq!(
            decode_upper(b"7a7a", 64),
            Err(HexError::InvalidDigit { index: 1 })
        );
        assert_eq!(decode_upper(b"ABC", 64), Err(HexError::OddLength));
        assert_eq!(decode_upper(b"ABCD", 1), Err(HexError::TooLong));
        assert_eq!(decode_upper(b"", 0).unwrap(), b"");
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let text = encode_upper(&bytes);
            prop_assert_eq!(decode_upper(text.as_bytes(), 128).unwrap(), bytes);
        }

        #[test]
        fn decode_is_total(text in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_upper(&text, 16);
        }
    }
}
