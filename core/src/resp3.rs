//! RESP3 as the state store speaks it (docs/protocol.md §7): an encoder for request arrays and
//! replies, and a strict, bounded decoder.
//!
//! The decoder is total: any input yields a [`Value`] or a [`Resp3Error`], never a panic, and it
//! never allocates more than the [`Limits`] allow. Blob strings are sliced out of the input
//! `Bytes` without copying, so decoding a non-array reply does not allocate.

use alloc::vec::Vec;
use bytes::Bytes;

/// Bounds the decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of elements in one array.
    pub max_array_len: usize,
    /// Maximum length of one blob or simple string.
    pub max_blob_len: usize,
    /// Maximum nesting depth (a top-level scalar has depth 0, a flat array depth 1).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_array_len: 16,
            max_blob_len: 4 * 1024 * 1024,
            max_depth: 2,
        }
    }
}

/// A decoded RESP3 value (only the forms the state store uses).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    /// `+text\r\n`
    Simple(Bytes),
    /// `-text\r\n` (the text after `-`, e.g. `ERR syntax error`)
    Error(Bytes),
    /// `:n\r\n`
    Integer(i64),
    /// `$n\r\n<bytes>\r\n`
    Blob(Bytes),
    /// `$-1\r\n`
    NullBlob,
    /// `*n\r\n...`
    Array(Vec<Value>),
}

/// Why a RESP3 payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resp3Error {
    /// The input ended before the value was complete.
    Truncated,
    /// Empty input.
    Empty,
    /// A type byte this decoder does not accept.
    UnknownType(u8),
    /// A length or integer field is not a valid decimal number.
    BadNumber,
    /// A negative length other than `$-1`.
    BadLength,
    /// A number does not fit in `i64`.
    Overflow,
    /// A blob or simple string is longer than [`Limits::max_blob_len`].
    BlobTooLong,
    /// An array has more elements than [`Limits::max_array_len`].
    ArrayTooLong,
    /// Arrays nest deeper than [`Limits::max_depth`].
    TooDeep,
    /// A line or blob is not terminated by `\r\n`.
    MissingCrlf,
    /// Bytes remain after one complete value.
    TrailingBytes,
    /// A simple string or error contains `\r` or `\n`.
    BadSimpleString,
}

impl core::fmt::Display for Resp3Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Resp3Error::Truncated => f.write_str("RESP3 input ended before the value was complete"),
            Resp3Error::Empty => f.write_str("RESP3 input is empty"),
            Resp3Error::UnknownType(b) => write!(f, "RESP3 type byte 0x{b:02X} is not accepted"),
            Resp3Error::BadNumber => f.write_str("RESP3 number is not a valid decimal"),
            Resp3Error::BadLength => f.write_str("RESP3 length is negative"),
            Resp3Error::Overflow => f.write_str("RESP3 number does not fit in i64"),
            Resp3Error::BlobTooLong => f.write_str("RESP3 string is longer than the limit"),
            Resp3Error::ArrayTooLong => f.write_str("RESP3 array has more elements than the limit"),
            Resp3Error::TooDeep => f.write_str("RESP3 arrays nest deeper than the limit"),
            Resp3Error::MissingCrlf => f.write_str("RESP3 line or blob is not terminated by CRLF"),
            Resp3Error::TrailingBytes => f.write_str("bytes follow the RESP3 value"),
            Resp3Error::BadSimpleString => {
                f.write_str("RESP3 simple string or error contains CR or LF")
            }
        }
    }
}

impl core::error::Error for Resp3Error {}

const CRLF: &[u8] = b"\r\n";

/// Smallest wire size of any element (`+\r\n`), used to bound preallocation by the input left.
const MIN_ELEMENT_LEN: usize = 3;

/// Appends the decimal form of `n` without allocating a temporary string.
pub(crate) fn push_u64(n: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(format_u64(n, &mut buf));
}

/// Writes the decimal form of `n` into the tail of `buf` and returns that tail.
pub(crate) fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

fn push_i64(n: i64, out: &mut Vec<u8>) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(n.unsigned_abs(), out);
}

fn push_len_line(kind: u8, len: usize, out: &mut Vec<u8>) {
    out.push(kind);
    push_u64(len as u64, out);
    out.extend_from_slice(CRLF);
}

fn push_blob(bytes: &[u8], out: &mut Vec<u8>) {
    push_len_line(b'$', bytes.len(), out);
    out.extend_from_slice(bytes);
    out.extend_from_slice(CRLF);
}

/// Appends a request array of blob strings (`*N\r\n$len\r\n...`) to `out`.
pub fn encode_array<'a>(parts: impl ExactSizeIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    push_len_line(b'*', parts.len(), out);
    for part in parts {
        push_blob(part, out);
    }
}

impl Value {
    /// Appends the wire form of this value to `out`.
    ///
    /// `Simple` and `Error` texts are written as given: the caller must not put `\r` or `\n` in
    /// them, or the output is not valid RESP3 (the decoder rejects such text).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(text) => {
                out.push(b'+');
                out.extend_from_slice(text);
                out.extend_from_slice(CRLF);
            }
            Value::Error(text) => {
                out.push(b'-');
                out.extend_from_slice(text);
                out.extend_from_slice(CRLF);
            }
            Value::Integer(n) => {
                out.push(b':');
                push_i64(*n, out);
                out.extend_from_slice(CRLF);
            }
            Value::Blob(bytes) => push_blob(bytes, out),
            Value::NullBlob => out.extend_from_slice(b"$-1\r\n"),
            Value::Array(items) => {
                push_len_line(b'*', items.len(), out);
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

/// One header-level item: a complete scalar, or the start of an array of `n` (> 0 or 0) elements.
enum Item {
    Scalar(Value),
    ArrayStart(usize),
}

/// A read position in the input. Every access is bounds-checked through `get`, so no input can
/// make it panic.
struct Cursor<'a> {
    input: &'a Bytes,
    pos: usize,
    limits: &'a Limits,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Consumes `\r\n`; `Truncated` if the input ends inside it, `MissingCrlf` otherwise.
    fn expect_crlf(&mut self) -> Result<(), Resp3Error> {
        for &want in CRLF {
            match self.peek() {
                None => return Err(Resp3Error::Truncated),
                Some(b) if b == want => self.pos += 1,
                Some(_) => return Err(Resp3Error::MissingCrlf),
            }
        }
        Ok(())
    }

    /// Parses `[-]digits\r\n`. No `+`, no spaces, at least one digit.
    fn number_line(&mut self) -> Result<i64, Resp3Error> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let mut value: i64 = 0;
        let mut digits = 0usize;
        while let Some(b) = self.peek() {
            if !b.is_ascii_digit() {
                break;
            }
            let digit = i64::from(b - b'0');
            // Accumulating toward the sign lets `i64::MIN` parse.
            value = value
                .checked_mul(10)
                .and_then(|v| {
                    if negative {
                        v.checked_sub(digit)
                    } else {
                        v.checked_add(digit)
                    }
                })
                .ok_or(Resp3Error::Overflow)?;
            digits += 1;
            self.pos += 1;
        }
        match self.peek() {
            None => Err(Resp3Error::Truncated),
            Some(b'\r') if digits > 0 => {
                self.pos += 1;
                match self.peek() {
                    None => Err(Resp3Error::Truncated),
                    Some(b'\n') => {
                        self.pos += 1;
                        Ok(value)
                    }
                    Some(_) => Err(Resp3Error::MissingCrlf),
                }
            }
            Some(_) => Err(Resp3Error::BadNumber),
        }
    }

    /// Parses the text of a `+` or `-` line up to and including its CRLF.
    fn simple_line(&mut self) -> Result<Bytes, Resp3Error> {
        let start = self.pos;
        let rest = self.input.get(start..).unwrap_or_default();
        let Some(offset) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
            return Err(if rest.len() > self.limits.max_blob_len {
                Resp3Error::BlobTooLong
            } else {
                Resp3Error::Truncated
            });
        };
        if offset > self.limits.max_blob_len {
            return Err(Resp3Error::BlobTooLong);
        }
        let end = start + offset;
        match (rest.get(offset), rest.get(offset + 1)) {
            (Some(b'\r'), Some(b'\n')) => {
                self.pos = end + 2;
                Ok(self.input.slice(start..end))
            }
            (Some(b'\r'), None) => Err(Resp3Error::Truncated),
            _ => Err(Resp3Error::BadSimpleString),
        }
    }

    fn blob(&mut self) -> Result<Value, Resp3Error> {
        let declared = self.number_line()?;
        if declared == -1 {
            return Ok(Value::NullBlob);
        }
        if declared < 0 {
            return Err(Resp3Error::BadLength);
        }
        let len = usize::try_from(declared).map_err(|_| Resp3Error::BlobTooLong)?;
        if len > self.limits.max_blob_len {
            return Err(Resp3Error::BlobTooLong);
        }
        if len > self.remaining() {
            return Err(Resp3Error::Truncated);
        }
        let start = self.pos;
        self.pos += len;
        self.expect_crlf()?;
        Ok(Value::Blob(self.input.slice(start..start + len)))
    }

    fn array_header(&mut self) -> Result<usize, Resp3Error> {
        let declared = self.number_line()?;
        if declared < 0 {
            return Err(Resp3Error::BadLength);
        }
        let len = usize::try_from(declared).map_err(|_| Resp3Error::ArrayTooLong)?;
        if len > self.limits.max_array_len {
            return Err(Resp3Error::ArrayTooLong);
        }
        Ok(len)
    }

    fn next_item(&mut self) -> Result<Item, Resp3Error> {
        let Some(kind) = self.peek() else {
            return Err(Resp3Error::Truncated);
        };
        self.pos += 1;
        Ok(match kind {
            b'+' => Item::Scalar(Value::Simple(self.simple_line()?)),
            b'-' => Item::Scalar(Value::Error(self.simple_line()?)),
            b':' => Item::Scalar(Value::Integer(self.number_line()?)),
            b'$' => Item::Scalar(self.blob()?),
            b'*' => Item::ArrayStart(self.array_header()?),
            other => return Err(Resp3Error::UnknownType(other)),
        })
    }
}

/// An array under construction: its elements so far and how many are still to come (≥ 1).
struct OpenArray {
    items: Vec<Value>,
    missing: usize,
}

/// Open arrays kept inline: every payload of the store's protocol is one flat array.
const INLINE_DEPTH: usize = 2;

/// The arrays under construction, innermost last. The first [`INLINE_DEPTH`] levels live on
/// the stack, so decoding a flat array allocates only its element vector.
#[derive(Default)]
struct OpenStack {
    inline: heapless::Vec<OpenArray, INLINE_DEPTH>,
    /// Deeper levels; non-empty only while `inline` is full.
    spill: Vec<OpenArray>,
}

impl OpenStack {
    fn len(&self) -> usize {
        self.inline.len() + self.spill.len()
    }

    fn push(&mut self, array: OpenArray) {
        if self.spill.is_empty() {
            if let Err(array) = self.inline.push(array) {
                self.spill.push(array);
            }
        } else {
            self.spill.push(array);
        }
    }

    fn last_mut(&mut self) -> Option<&mut OpenArray> {
        match self.spill.last_mut() {
            Some(array) => Some(array),
            None => self.inline.last_mut(),
        }
    }

    fn pop(&mut self) -> Option<OpenArray> {
        self.spill.pop().or_else(|| self.inline.pop())
    }
}

/// Decodes exactly one value that must span the whole input.
///
/// Nested arrays are built with an explicit stack rather than recursion, so no limit setting can
/// overflow the call stack. A scalar at the top level is decoded without allocating.
pub fn decode(input: &Bytes, limits: &Limits) -> Result<Value, Resp3Error> {
    if input.is_empty() {
        return Err(Resp3Error::Empty);
    }
    let mut cursor = Cursor {
        input,
        pos: 0,
        limits,
    };
    let mut open = OpenStack::default();
    loop {
        let mut value = match cursor.next_item()? {
            Item::Scalar(value) => value,
            Item::ArrayStart(len) => {
                if open.len() >= limits.max_depth {
                    return Err(Resp3Error::TooDeep);
                }
                if len == 0 {
                    Value::Array(Vec::new())
                } else {
                    // `len` is already capped by `max_array_len`; also cap by what the remaining
                    // input could possibly hold, so a lying header cannot reserve memory.
                    let capacity = len.min(cursor.remaining() / MIN_ELEMENT_LEN);
                    open.push(OpenArray {
                        items: Vec::with_capacity(capacity),
                        missing: len,
                    });
                    continue;
                }
            }
        };
        // Hand the finished value to its parent, closing every array it completes.
        loop {
            let Some(parent) = open.last_mut() else {
                return if cursor.remaining() == 0 {
                    Ok(value)
                } else {
                    Err(Resp3Error::TrailingBytes)
                };
            };
            parent.items.push(value);
            if parent.missing > 1 {
                parent.missing -= 1;
                break;
            }
            match open.pop() {
                Some(done) => value = Value::Array(done.items),
                None => return Err(Resp3Error::Truncated),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn dec(input: &[u8]) -> Result<Value, Resp3Error> {
        decode(&Bytes::copy_from_slice(input), &Limits::default())
    }

    fn enc(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        value.encode(&mut out);
        out
    }

    fn blob(b: &'static [u8]) -> Value {
        Value::Blob(Bytes::from_static(b))
    }

    #[test]
    fn encode_array_matches_the_wire() {
        let mut out = Vec::new();
        encode_array([b"GET".as_slice(), b"k1"].into_iter(), &mut out);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n");
        out.clear();
        encode_array([b"SET".as_slice(), b"k", b""].into_iter(), &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        out.clear();
        encode_array(core::iter::empty(), &mut out);
        assert_eq!(out, b"*0\r\n");
    }

    #[test]
    fn encode_every_form() {
        assert_eq!(enc(&Value::Simple(Bytes::from_static(b"OK"))), b"+OK\r\n");
        assert_eq!(
            enc(&Value::Error(Bytes::from_static(b"ERR syntax error"))),
            b"-ERR syntax error\r\n"
        );
        assert_eq!(enc(&Value::Integer(-1)), b":-1\r\n");
        assert_eq!(enc(&Value::Integer(0)), b":0\r\n");
        assert_eq!(enc(&Value::Integer(1234)), b":1234\r\n");
        assert_eq!(enc(&Value::Integer(i64::MIN)), b":-9223372036854775808\r\n");
        assert_eq!(enc(&Value::Integer(i64::MAX)), b":9223372036854775807\r\n");
        assert_eq!(enc(&blob(b"v1")), b"$2\r\nv1\r\n");
        assert_eq!(enc(&blob(b"")), b"$0\r\n\r\n");
        assert_eq!(enc(&Value::NullBlob), b"$-1\r\n");
        assert_eq!(
            enc(&Value::Array(vec![
                blob(b"NOTIFY"),
                Value::Array(vec![Value::Integer(1)])
            ])),
            b"*2\r\n$6\r\nNOTIFY\r\n*1\r\n:1\r\n"
        );
    }

    #[test]
    fn decode_valid_forms() {
        assert_eq!(
            dec(b"+OK\r\n"),
            Ok(Value::Simple(Bytes::from_static(b"OK")))
        );
        assert_eq!(dec(b"+\r\n"), Ok(Value::Simple(Bytes::new())));
        assert_eq!(
            dec(b"-ERR syntax error\r\n"),
            Ok(Value::Error(Bytes::from_static(b"ERR syntax error")))
        );
        assert_eq!(dec(b":-1\r\n"), Ok(Value::Integer(-1)));
        assert_eq!(dec(b":0\r\n"), Ok(Value::Integer(0)));
        assert_eq!(
            dec(b":-9223372036854775808\r\n"),
            Ok(Value::Integer(i64::MIN))
        );
        assert_eq!(
            dec(b":9223372036854775807\r\n"),
            Ok(Value::Integer(i64::MAX))
        );
        assert_eq!(dec(b"$2\r\nv1\r\n"), Ok(blob(b"v1")));
        assert_eq!(dec(b"$0\r\n\r\n"), Ok(blob(b"")));
        assert_eq!(dec(b"$4\r\na\r\nb\r\n"), Ok(blob(b"a\r\nb")));
        assert_eq!(dec(b"$-1\r\n"), Ok(Value::NullBlob));
        assert_eq!(dec(b"*0\r\n"), Ok(Value::Array(Vec::new())));
        assert_eq!(
            dec(b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"),
            Ok(Value::Array(vec![blob(b"NOTIFY"), blob(b"DELETE")]))
        );
        assert_eq!(
            dec(b"*2\r\n*1\r\n:1\r\n*0\r\n"),
            Ok(Value::Array(vec![
                Value::Array(vec![Value::Integer(1)]),
                Value::Array(Vec::new())
            ]))
        );
    }

    #[test]
    fn blob_is_a_slice_of_the_input() {
        let input = Bytes::from_static(b"$3\r\nabc\r\n");
        let Ok(Value::Blob(b)) = decode(&input, &Limits::default()) else {
            panic!("expected a blob");
        };
        assert_eq!(b.as_ptr(), input[4..].as_ptr());
    }

    #[test]
    fn decode_rejects_malformed_input() {
        use Resp3Error::*;
        let cases: &[(&[u8], Resp3Error)] = &[
            (b"", Empty),
            (b"+OK", Truncated),
            (b"+OK\r", Truncated),
            (b"+O\nK\r\n", BadSimpleString),
            (b"+O\rK\r\n", BadSimpleString),
            (b"-ERR x\ny\r\n", BadSimpleString),
            (b":", Truncated),
            (b":\r\n", BadNumber),
            (b":-\r\n", BadNumber),
            (b":+1\r\n", BadNumber),
            (b": 1\r\n", BadNumber),
            (b":1 \r\n", BadNumber),
            (b":1.5\r\n", BadNumber),
            (b":1\n", BadNumber),
            (b":1\rx", MissingCrlf),
            (b":12", Truncated),
            (b":9223372036854775808\r\n", Overflow),
            (b":-9223372036854775809\r\n", Overflow),
            (b"$18446744073709551615\r\n", Overflow),
            (b"$-2\r\n", BadLength),
            (b"$-9223372036854775808\r\n", BadLength),
            (b"$3\r\nab", Truncated),
            (b"$2\r\nab", Truncated),
            (b"$2\r\nab\r", Truncated),
            (b"$2\r\nabc\r\n", MissingCrlf),
            (b"$2\r\nab\n\r", MissingCrlf),
            (b"$2\r\nabX", MissingCrlf),
            (b"$2\r\nab\rX", MissingCrlf),
            (b"$x\r\n", BadNumber),
            (b"*-1\r\n", BadLength),
            (b"*-2\r\n", BadLength),
            (b"*1\r\n", Truncated),
            (b"*2\r\n:1\r\n", Truncated),
            (b"*17\r\n", ArrayTooLong),
            (b"*1\r\n*1\r\n*1\r\n:1\r\n", TooDeep),
            (b"+OK\r\n+OK\r\n", TrailingBytes),
            (b"$-1\r\nx", TrailingBytes),
            (b"*0\r\n\r\n", TrailingBytes),
            (b"_\r\n", UnknownType(b'_')),
            (b"!3\r\nerr\r\n", UnknownType(b'!')),
            (b"#t\r\n", UnknownType(b'#')),
            (b",1.5\r\n", UnknownType(b',')),
            (b"%0\r\n", UnknownType(b'%')),
            (b"~0\r\n", UnknownType(b'~')),
            (b"=3\r\ntxt\r\n", UnknownType(b'=')),
            (b"(1\r\n", UnknownType(b'(')),
            (b"OK\r\n", UnknownType(b'O')),
            (b"*1\r\n_\r\n", UnknownType(b'_')),
        ];
        for (input, want) in cases {
            assert_eq!(dec(input), Err(*want), "input {:?}", input.escape_ascii());
        }
    }

    #[test]
    fn limits_are_enforced() {
        let tight = Limits {
            max_array_len: 2,
            max_blob_len: 3,
            max_depth: 1,
        };
        let d = |input: &'static [u8]| decode(&Bytes::from_static(input), &tight);
        assert_eq!(d(b"$3\r\nabc\r\n"), Ok(blob(b"abc")));
        assert_eq!(d(b"$4\r\nabcd\r\n"), Err(Resp3Error::BlobTooLong));
        assert_eq!(d(b"+abcd\r\n"), Err(Resp3Error::BlobTooLong));
        assert_eq!(d(b"+abcd"), Err(Resp3Error::BlobTooLong));
        assert_eq!(d(b"-abc\r\n"), Ok(Value::Error(Bytes::from_static(b"abc"))));
        assert_eq!(d(b"*3\r\n"), Err(Resp3Error::ArrayTooLong));
        assert_eq!(d(b"*1\r\n*0\r\n"), Err(Resp3Error::TooDeep));
        let flat = Limits {
            max_depth: 0,
            ..Limits::default()
        };
        assert_eq!(
            decode(&Bytes::from_static(b"*0\r\n"), &flat),
            Err(Resp3Error::TooDeep)
        );
    }

    #[test]
    fn huge_declared_lengths_are_rejected_without_allocating() {
        // With generous limits the only bound left is the input itself: a lying header must
        // fail as truncated instead of reserving what it claims.
        let generous = Limits {
            max_array_len: usize::MAX,
            max_blob_len: usize::MAX,
            max_depth: usize::MAX,
        };
        let d = |input: &'static [u8]| decode(&Bytes::from_static(input), &generous);
        assert_eq!(d(b"*999999999\r\n"), Err(Resp3Error::Truncated));
        assert_eq!(
            d(b"*9223372036854775807\r\n:1\r\n"),
            Err(Resp3Error::Truncated)
        );
        assert_eq!(d(b"$999999999\r\nabc\r\n"), Err(Resp3Error::Truncated));
        assert_eq!(d(b"$9223372036854775807\r\n"), Err(Resp3Error::Truncated));
        assert_eq!(
            d(b"$99999999999999999999999\r\n"),
            Err(Resp3Error::Overflow)
        );
        let dflt = |input: &'static [u8]| decode(&Bytes::from_static(input), &Limits::default());
        assert_eq!(dflt(b"*999999999\r\n"), Err(Resp3Error::ArrayTooLong));
        assert_eq!(dflt(b"$999999999\r\n"), Err(Resp3Error::BlobTooLong));
    }

    #[test]
    fn deep_nesting_with_unbounded_depth_does_not_overflow_the_stack() {
        let generous = Limits {
            max_array_len: 16,
            max_blob_len: 16,
            max_depth: usize::MAX,
        };
        let depth = 100_000;
        let mut input = Vec::with_capacity(depth * 4 + 4);
        for _ in 0..depth {
            input.extend_from_slice(b"*1\r\n");
        }
        input.extend_from_slice(b":7\r\n");
        let value = decode(&Bytes::from(input), &generous);
        let mut current = value.as_ref().ok();
        let mut seen = 0;
        while let Some(Value::Array(items)) = current {
            seen += 1;
            current = items.first();
        }
        assert_eq!(seen, depth);
        assert_eq!(current, Some(&Value::Integer(7)));
        // Dropping a deep value recurses in `Vec`'s destructor; unwind it iteratively here.
        let mut pending = vec![value.unwrap_or(Value::NullBlob)];
        while let Some(v) = pending.pop() {
            if let Value::Array(items) = v {
                pending.extend(items);
            }
        }
    }

    fn arb_line() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(
            any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
            0..24,
        )
        .prop_map(Bytes::from)
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            arb_line().prop_map(Value::Simple),
            arb_line().prop_map(Value::Error),
            any::<i64>().prop_map(Value::Integer),
            proptest::collection::vec(any::<u8>(), 0..32).prop_map(|v| Value::Blob(Bytes::from(v))),
            Just(Value::NullBlob),
        ];
        // Depth 1 keeps values within the default limits (max_depth 2 allows one nested level).
        leaf.prop_recursive(2, 32, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Value::Array)
        })
    }

    fn arb_valid_encoding() -> impl Strategy<Value = Vec<u8>> {
        arb_value().prop_map(|v| enc(&v))
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = dec(&input);
        }

        #[test]
        fn random_resp_like_bytes_never_panic(
            input in proptest::collection::vec(
                prop_oneof![
                    Just(b'\r'), Just(b'\n'), Just(b'*'), Just(b'$'), Just(b':'), Just(b'+'),
                    Just(b'-'), Just(b'0'), Just(b'1'), Just(b'2'), Just(b'9'), any::<u8>()
                ],
                0..128,
            )
        ) {
            let _ = dec(&input);
        }

        #[test]
        fn value_round_trips(value in arb_value()) {
            let bytes = enc(&value);
            prop_assert_eq!(dec(&bytes), Ok(value));
        }

        #[test]
        fn mutations_never_panic(
            bytes in arb_valid_encoding(),
            index in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut mutated = bytes.clone();
            if !mutated.is_empty() {
                let i = index.index(mutated.len());
                mutated[i] = byte;
            }
            let _ = dec(&mutated);
            let mut inserted = bytes.clone();
            inserted.insert(index.index(bytes.len() + 1), byte);
            let _ = dec(&inserted);
        }

        #[test]
        fn every_strict_prefix_is_rejected(bytes in arb_valid_encoding(), index in any::<prop::sample::Index>()) {
            let cut = index.index(bytes.len());
            let result = dec(&bytes[..cut]);
            prop_assert!(result.is_err(), "prefix {:?} decoded", bytes[..cut].escape_ascii());
        }

        #[test]
        fn appended_bytes_are_trailing(bytes in arb_valid_encoding(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
            let mut long = bytes.clone();
            long.extend_from_slice(&extra);
            prop_assert_eq!(dec(&long), Err(Resp3Error::TrailingBytes));
        }
    }
}
