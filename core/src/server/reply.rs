//! The RESP3 reply payloads the store sends (docs/protocol.md §7.2). The fixed replies are static
//! byte strings compared byte for byte by the clients; GET hits and errors are built here.

use alloc::vec::Vec;
use bytes::Bytes;

use crate::command::{RequestParseError, ServiceError};

/// `+OK`: SET applied, KEYNOTIFY (STOP) accepted.
pub(crate) const OK: &[u8] = b"+OK\r\n";
/// `:-1`: SET condition failed, VDEL value mismatch.
pub(crate) const NOT_APPLIED: &[u8] = b":-1\r\n";
/// `:0`: nothing deleted, STOP on a key not watched.
pub(crate) const ZERO: &[u8] = b":0\r\n";
/// `:1`: one key deleted.
pub(crate) const ONE: &[u8] = b":1\r\n";
/// `$-1`: GET miss.
pub(crate) const NIL: &[u8] = b"$-1\r\n";

/// `$len\r\n<value>\r\n`: a GET hit.
pub(crate) fn blob(value: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(value.len() + 16);
    out.push(b'$');
    push_decimal(&mut out, value.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// `-ERR <text>\r\n`.
pub(crate) fn error(e: &ServiceError) -> Bytes {
    let text = e.text();
    let mut out = Vec::with_capacity(text.len() + 7);
    out.extend_from_slice(b"-ERR ");
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// The store error a malformed request payload gets.
pub(crate) fn parse_error(e: RequestParseError) -> ServiceError {
    match e {
        RequestParseError::UnknownCommand => ServiceError::UnknownCommand,
        RequestParseError::WrongNumberOfArguments => ServiceError::WrongNumberOfArguments,
        RequestParseError::KeyLengthZero => ServiceError::KeyLengthZero,
        _ => ServiceError::SyntaxError,
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        if let Some(d) = digits.get_mut(len) {
            *d = b'0' + (n % 10) as u8;
        }
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits.iter().take(len).rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs() {
        assert_eq!(blob(b"v1"), Bytes::from_static(b"$2\r\nv1\r\n"));
        assert_eq!(blob(b""), Bytes::from_static(b"$0\r\n\r\n"));
        let big = alloc::vec![b'x'; 1234];
        assert!(blob(&big).starts_with(b"$1234\r\nxx"));
    }
}
