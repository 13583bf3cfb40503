//! Typed state-store commands and replies (docs/protocol.md §7–§9): what a request means, how it is
//! encoded, how each reply form maps for each command, the service's `-ERR` strings, and the
//! two notification payloads.

use alloc::vec::Vec;
use bytes::Bytes;

use crate::resp3::{decode, encode_array, Limits, Resp3Error, Value};

/// The condition of a SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SetCondition {
    /// Always set.
    #[default]
    Always,
    /// `NX`: set only if the key is absent.
    NotExists,
    /// `NEX`: set if the key is absent or holds exactly this value (lease renewal).
    NotExistsOrEqual,
}

/// A state-store request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `SET key value [NX|NEX] [PX ms]`
    Set {
        /// Key (non-empty).
        key: Bytes,
        /// Value (may be empty).
        value: Bytes,
        /// NX / NEX / unconditional.
        condition: SetCondition,
        /// Time to live in milliseconds (`PX`), if any. Must be at least 1.
        px_ms: Option<u64>,
    },
    /// `GET key`
    Get {
        /// Key.
        key: Bytes,
    },
    /// `DEL key`
    Del {
        /// Key.
        key: Bytes,
    },
    /// `VDEL key value`: delete only if the stored value equals `value`.
    Vdel {
        /// Key.
        key: Bytes,
        /// Expected value.
        value: Bytes,
    },
    /// `KEYNOTIFY key`
    KeyNotify {
        /// Key.
        key: Bytes,
    },
    /// `KEYNOTIFY key STOP`
    KeyNotifyStop {
        /// Key.
        key: Bytes,
    },
}

/// The verb of a request, used to interpret its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestKind {
    /// SET
    Set,
    /// GET
    Get,
    /// DEL
    Del,
    /// VDEL
    Vdel,
    /// KEYNOTIFY
    KeyNotify,
    /// KEYNOTIFY STOP
    KeyNotifyStop,
}

/// A `-ERR` reply from the store (docs/protocol.md §7.3). Texts are matched byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceError {
    /// `the request timestamp is too far in the future; ...`
    TimestampSkew,
    /// `a fencing token is required for this request`
    MissingFencingToken,
    /// `the request fencing token timestamp is too far in the future; ...`
    FencingTokenSkew,
    /// `the request fencing token is a lower version than the fencing token protecting the resource`
    FencingTokenLowerVersion,
    /// `the quota has been exceeded`
    QuotaExceeded,
    /// `syntax error`
    SyntaxError,
    /// `not authorized`
    NotAuthorized,
    /// `unknown command`
    UnknownCommand,
    /// `wrong number of arguments`
    WrongNumberOfArguments,
    /// `missing timestamp`
    TimestampMissing,
    /// `malformed timestamp`
    TimestampMalformed,
    /// `the key length is zero`
    KeyLengthZero,
    /// Any other text (without the `ERR ` prefix).
    Other(Bytes),
}

/// Result of a SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetOutcome {
    /// `+OK`
    Applied,
    /// `:-1`: the NX/NEX condition failed.
    NotApplied,
}

/// Result of a VDEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VdelOutcome {
    /// `:1`: the value matched and the key was deleted.
    Deleted,
    /// `:0`: no such key.
    NotFound,
    /// `:-1`: the key holds another value.
    Mismatch,
}

/// A successful, typed reply to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// Reply to SET.
    Set(SetOutcome),
    /// Reply to GET: the value, or `None` on a miss.
    Get(Option<Bytes>),
    /// Reply to DEL: number of keys deleted (0 or 1).
    Del(u64),
    /// Reply to VDEL.
    Vdel(VdelOutcome),
    /// `+OK` to KEYNOTIFY.
    KeyNotify,
    /// Reply to KEYNOTIFY STOP: `true` for `+OK`, `false` for `:0` (was not registered).
    KeyNotifyStop(bool),
}

/// Why a reply payload did not yield a [`Response`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// The store answered `-ERR <text>`.
    Service(ServiceError),
    /// The payload is not valid RESP3.
    Decode(Resp3Error),
    /// Valid RESP3, but not a form this command can answer with.
    Unexpected(RequestKind),
}

/// Why a request payload was rejected by the store (server side); each maps to an `-ERR` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestParseError {
    /// Not an array of blob strings, bad options, bad PX: `syntax error`.
    Syntax,
    /// Verb not known: `unknown command`.
    UnknownCommand,
    /// Wrong argument count: `wrong number of arguments`.
    WrongNumberOfArguments,
    /// Empty key: `the key length is zero`.
    KeyLengthZero,
}

/// A key-change notification payload (docs/protocol.md §9.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyPayload {
    /// `*4 NOTIFY SET VALUE <value>`
    Set {
        /// The new value.
        value: Bytes,
    },
    /// `*2 NOTIFY DELETE`
    Delete,
}

/// Why a notification payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyPayloadError {
    /// Not valid RESP3.
    Decode(Resp3Error),
    /// Valid RESP3 but neither of the two accepted shapes.
    UnexpectedShape,
}

impl core::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("state store error: ")?;
        for chunk in self.text().utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

impl core::error::Error for ServiceError {}

impl core::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReplyError::Service(e) => core::fmt::Display::fmt(e, f),
            ReplyError::Decode(e) => write!(f, "invalid reply payload: {e}"),
            ReplyError::Unexpected(kind) => write!(f, "unexpected reply form for {kind:?}"),
        }
    }
}

impl core::error::Error for ReplyError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ReplyError::Service(e) => Some(e),
            ReplyError::Decode(e) => Some(e),
            ReplyError::Unexpected(_) => None,
        }
    }
}

impl core::fmt::Display for RequestParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RequestParseError::Syntax => "request rejected: syntax error",
            RequestParseError::UnknownCommand => "request rejected: unknown command",
            RequestParseError::WrongNumberOfArguments => {
                "request rejected: wrong number of arguments"
            }
            RequestParseError::KeyLengthZero => "request rejected: the key length is zero",
        })
    }
}

impl core::error::Error for RequestParseError {}

impl core::fmt::Display for NotifyPayloadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NotifyPayloadError::Decode(e) => write!(f, "invalid notification payload: {e}"),
            NotifyPayloadError::UnexpectedShape => {
                f.write_str("notification payload is neither NOTIFY SET VALUE nor NOTIFY DELETE")
            }
        }
    }
}

impl core::error::Error for NotifyPayloadError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            NotifyPayloadError::Decode(e) => Some(e),
            NotifyPayloadError::UnexpectedShape => None,
        }
    }
}

const VERB_SET: &[u8] = b"SET";
const VERB_GET: &[u8] = b"GET";
const VERB_DEL: &[u8] = b"DEL";
const VERB_VDEL: &[u8] = b"VDEL";
const VERB_KEYNOTIFY: &[u8] = b"KEYNOTIFY";
const OPT_NX: &[u8] = b"NX";
const OPT_NEX: &[u8] = b"NEX";
const OPT_PX: &[u8] = b"PX";
const OPT_STOP: &[u8] = b"STOP";

/// The `ERR ` prefix that every DSS error text carries after the RESP3 `-`.
const ERR_PREFIX: &[u8] = b"ERR ";

/// Parses a strictly positive decimal `u64`: ASCII digits only, no sign, no fraction.
fn parse_positive_ms(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (value > 0).then_some(value)
}

/// Parses the options after `SET key value`: at most one of NX/NEX and at most one PX, in any
/// order, matched case-insensitively.
fn parse_set_options(options: &[Bytes]) -> Result<(SetCondition, Option<u64>), RequestParseError> {
    let mut condition = None;
    let mut px_ms = None;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let (is_nx, is_nex) = (
            option.eq_ignore_ascii_case(OPT_NX),
            option.eq_ignore_ascii_case(OPT_NEX),
        );
        if is_nx || is_nex {
            if condition.is_some() {
                return Err(RequestParseError::Syntax);
            }
            condition = Some(if is_nx {
                SetCondition::NotExists
            } else {
                SetCondition::NotExistsOrEqual
            });
        } else if option.eq_ignore_ascii_case(OPT_PX) {
            if px_ms.is_some() {
                return Err(RequestParseError::Syntax);
            }
            let ms = rest
                .next()
                .and_then(|text| parse_positive_ms(text))
                .ok_or(RequestParseError::Syntax)?;
            px_ms = Some(ms);
        } else {
            return Err(RequestParseError::Syntax);
        }
    }
    Ok((condition.unwrap_or_default(), px_ms))
}

impl Request {
    /// The verb.
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::Set { .. } => RequestKind::Set,
            Request::Get { .. } => RequestKind::Get,
            Request::Del { .. } => RequestKind::Del,
            Request::Vdel { .. } => RequestKind::Vdel,
            Request::KeyNotify { .. } => RequestKind::KeyNotify,
            Request::KeyNotifyStop { .. } => RequestKind::KeyNotifyStop,
        }
    }

    /// The key.
    pub fn key(&self) -> &Bytes {
        match self {
            Request::Set { key, .. }
            | Request::Get { key }
            | Request::Del { key }
            | Request::Vdel { key, .. }
            | Request::KeyNotify { key }
            | Request::KeyNotifyStop { key } => key,
        }
    }

    /// Appends the RESP3 request array to `out`, exactly as the official clients send it:
    /// upper-case verbs and options, and for SET the fixed order value, `NX`/`NEX`, `PX <ms>`.
    ///
    /// `px_ms` is written as given; `Some(0)` produces `PX 0`, which [`Request::parse`] rejects.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut ms_buf = [0u8; 20];
        let mut parts: [&[u8]; 6] = [&[]; 6];
        let count = match self {
            Request::Set {
                key,
                value,
                condition,
                px_ms,
            } => {
                parts[0] = VERB_SET;
                parts[1] = key;
                parts[2] = value;
                let mut n = 3;
                let option = match condition {
                    SetCondition::Always => None,
                    SetCondition::NotExists => Some(OPT_NX),
                    SetCondition::NotExistsOrEqual => Some(OPT_NEX),
                };
                if let Some(option) = option {
                    parts[n] = option;
                    n += 1;
                }
                if let Some(ms) = px_ms {
                    parts[n] = OPT_PX;
                    parts[n + 1] = crate::resp3::format_u64(*ms, &mut ms_buf);
                    n += 2;
                }
                n
            }
            Request::Get { key } => {
                parts[0] = VERB_GET;
                parts[1] = key;
                2
            }
            Request::Del { key } => {
                parts[0] = VERB_DEL;
                parts[1] = key;
                2
            }
            Request::Vdel { key, value } => {
                parts[0] = VERB_VDEL;
                parts[1] = key;
                parts[2] = value;
                3
            }
            Request::KeyNotify { key } => {
                parts[0] = VERB_KEYNOTIFY;
                parts[1] = key;
                2
            }
            Request::KeyNotifyStop { key } => {
                parts[0] = VERB_KEYNOTIFY;
                parts[1] = key;
                parts[2] = OPT_STOP;
                3
            }
        };
        encode_array(parts.iter().take(count).copied(), out);
    }

    /// Server side: parses a request payload, mapping problems to the store's error replies.
    ///
    /// Checks run in this order (docs/protocol.md §7.1: parse, then verb and count, then key
    /// length):
    /// 1. the payload must be one RESP3 array of blob strings, else [`RequestParseError::Syntax`]
    ///    (this includes any decode error and an empty array, which has no verb);
    /// 2. the verb must be known, else [`RequestParseError::UnknownCommand`], checked before the
    ///    argument count. Verbs and options are compared ASCII case-insensitively, as Redis (whose
    ///    protocol the store imitates) does; the official clients always send upper case;
    /// 3. the argument count ([`RequestParseError::WrongNumberOfArguments`]), and for
    ///    `KEYNOTIFY key X` that `X` is `STOP` ([`RequestParseError::Syntax`]);
    /// 4. an empty key gives [`RequestParseError::KeyLengthZero`];
    /// 5. SET options: at most one of `NX`/`NEX`, at most one `PX <ms>` with a positive decimal
    ///    integer, in any order; anything else is [`RequestParseError::Syntax`].
    pub fn parse(payload: &Bytes, limits: &Limits) -> Result<Request, RequestParseError> {
        let Ok(Value::Array(items)) = decode(payload, limits) else {
            return Err(RequestParseError::Syntax);
        };
        let mut blobs: Vec<Bytes> = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::Blob(bytes) => blobs.push(bytes),
                _ => return Err(RequestParseError::Syntax),
            }
        }
        let Some((verb, args)) = blobs.split_first() else {
            return Err(RequestParseError::Syntax);
        };
        let kind = if verb.eq_ignore_ascii_case(VERB_SET) {
            RequestKind::Set
        } else if verb.eq_ignore_ascii_case(VERB_GET) {
            RequestKind::Get
        } else if verb.eq_ignore_ascii_case(VERB_DEL) {
            RequestKind::Del
        } else if verb.eq_ignore_ascii_case(VERB_VDEL) {
            RequestKind::Vdel
        } else if verb.eq_ignore_ascii_case(VERB_KEYNOTIFY) {
            if args.len() == 2 {
                RequestKind::KeyNotifyStop
            } else {
                RequestKind::KeyNotify
            }
        } else {
            return Err(RequestParseError::UnknownCommand);
        };
        let count_ok = match kind {
            RequestKind::Set => args.len() >= 2,
            RequestKind::Get | RequestKind::Del | RequestKind::KeyNotify => args.len() == 1,
            RequestKind::Vdel | RequestKind::KeyNotifyStop => args.len() == 2,
        };
        if !count_ok {
            return Err(RequestParseError::WrongNumberOfArguments);
        }
        if kind == RequestKind::KeyNotifyStop
            && !args
                .get(1)
                .is_some_and(|a| a.eq_ignore_ascii_case(OPT_STOP))
        {
            return Err(RequestParseError::Syntax);
        }
        let (Some(key), rest) = (args.first(), args.get(1..).unwrap_or_default()) else {
            return Err(RequestParseError::WrongNumberOfArguments);
        };
        if key.is_empty() {
            return Err(RequestParseError::KeyLengthZero);
        }
        let key = key.clone();
        Ok(match kind {
            RequestKind::Set => {
                let Some((value, options)) = rest.split_first() else {
                    return Err(RequestParseError::WrongNumberOfArguments);
                };
                let (condition, px_ms) = parse_set_options(options)?;
                Request::Set {
                    key,
                    value: value.clone(),
                    condition,
                    px_ms,
                }
            }
            RequestKind::Get => Request::Get { key },
            RequestKind::Del => Request::Del { key },
            RequestKind::Vdel => Request::Vdel {
                key,
                value: rest.first().cloned().unwrap_or_default(),
            },
            RequestKind::KeyNotify => Request::KeyNotify { key },
            RequestKind::KeyNotifyStop => Request::KeyNotifyStop { key },
        })
    }
}

/// Every known error text (after `ERR `), paired with its variant.
static KNOWN_ERRORS: [(&[u8], ServiceError); 12] = [
    (
        b"the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized",
        ServiceError::TimestampSkew,
    ),
    (
        b"a fencing token is required for this request",
        ServiceError::MissingFencingToken,
    ),
    (
        b"the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized",
        ServiceError::FencingTokenSkew,
    ),
    (
        b"the request fencing token is a lower version than the fencing token protecting the resource",
        ServiceError::FencingTokenLowerVersion,
    ),
    (b"the quota has been exceeded", ServiceError::QuotaExceeded),
    (b"syntax error", ServiceError::SyntaxError),
    (b"not authorized", ServiceError::NotAuthorized),
    (b"unknown command", ServiceError::UnknownCommand),
    (
        b"wrong number of arguments",
        ServiceError::WrongNumberOfArguments,
    ),
    (b"missing timestamp", ServiceError::TimestampMissing),
    (b"malformed timestamp", ServiceError::TimestampMalformed),
    (b"the key length is zero", ServiceError::KeyLengthZero),
];

impl ServiceError {
    /// Maps the text after `-` (e.g. `ERR syntax error`) to a variant.
    ///
    /// Only an exact `ERR ` prefix followed by an exact known text maps to a named variant (as the
    /// official Rust client requires). Otherwise the result is [`ServiceError::Other`] holding the
    /// text after `ERR ` if that prefix is present, else the whole text. No copy is made.
    pub fn from_error_text(text: &Bytes) -> ServiceError {
        let Some(body) = text.strip_prefix(ERR_PREFIX) else {
            return ServiceError::Other(text.clone());
        };
        KNOWN_ERRORS
            .iter()
            .find(|(known, _)| *known == body)
            .map(|(_, variant)| variant.clone())
            .unwrap_or_else(|| ServiceError::Other(text.slice(ERR_PREFIX.len()..)))
    }

    /// The text after `ERR ` for this error.
    pub fn text(&self) -> &[u8] {
        if let ServiceError::Other(text) = self {
            return text;
        }
        KNOWN_ERRORS
            .iter()
            .find(|(_, variant)| variant == self)
            .map(|(known, _)| *known)
            .unwrap_or_default()
    }

    /// Appends the full reply payload `-ERR <text>\r\n` to `out` (server side).
    ///
    /// Any `\r` or `\n` inside an [`ServiceError::Other`] text is written as a space, so the
    /// reply is always one valid RESP3 error line.
    pub fn encode_reply(&self, out: &mut Vec<u8>) {
        out.push(b'-');
        out.extend_from_slice(ERR_PREFIX);
        out.extend(
            self.text()
                .iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }
}

impl From<RequestParseError> for ServiceError {
    fn from(e: RequestParseError) -> Self {
        match e {
            RequestParseError::Syntax => ServiceError::SyntaxError,
            RequestParseError::UnknownCommand => ServiceError::UnknownCommand,
            RequestParseError::WrongNumberOfArguments => ServiceError::WrongNumberOfArguments,
            RequestParseError::KeyLengthZero => ServiceError::KeyLengthZero,
        }
    }
}

/// Client side: maps a reply payload to the typed response of a `kind` request (docs/protocol.md
/// §7.2).
///
/// A `-` reply is a [`ReplyError::Service`] for every kind. Scalar replies are decoded without
/// allocating; a GET value and an error text are slices of `payload`. (The `bytes` crate itself
/// allocates a shared header once when a `Bytes` built from a `Vec` is first sliced.)
pub fn decode_reply(
    kind: RequestKind,
    payload: &Bytes,
    limits: &Limits,
) -> Result<Response, ReplyError> {
    let value = decode(payload, limits).map_err(ReplyError::Decode)?;
    let is_ok = |v: &Value| matches!(v, Value::Simple(text) if text.as_ref() == b"OK");
    let response = match (kind, value) {
        (_, Value::Error(text)) => {
            return Err(ReplyError::Service(ServiceError::from_error_text(&text)))
        }
        (RequestKind::Set, v) if is_ok(&v) => Response::Set(SetOutcome::Applied),
        (RequestKind::Set, Value::Integer(-1)) => Response::Set(SetOutcome::NotApplied),
        (RequestKind::Get, Value::Blob(bytes)) => Response::Get(Some(bytes)),
        // The official Rust client treats `:0` as "not found" for every command.
        (RequestKind::Get, Value::NullBlob | Value::Integer(0)) => Response::Get(None),
        (RequestKind::Del, Value::Integer(n)) if n >= 0 => Response::Del(n.unsigned_abs()),
        (RequestKind::Vdel, Value::Integer(1)) => Response::Vdel(VdelOutcome::Deleted),
        (RequestKind::Vdel, Value::Integer(0)) => Response::Vdel(VdelOutcome::NotFound),
        (RequestKind::Vdel, Value::Integer(-1)) => Response::Vdel(VdelOutcome::Mismatch),
        (RequestKind::KeyNotify, v) if is_ok(&v) => Response::KeyNotify,
        // Go documents `:0` for a duplicate registration; the key is registered either way.
        (RequestKind::KeyNotify, Value::Integer(0)) => Response::KeyNotify,
        (RequestKind::KeyNotifyStop, v) if is_ok(&v) => Response::KeyNotifyStop(true),
        (RequestKind::KeyNotifyStop, Value::Integer(0)) => Response::KeyNotifyStop(false),
        (kind, _) => return Err(ReplyError::Unexpected(kind)),
    };
    Ok(response)
}

const NOTIFY_DELETE: &[u8] = b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n";
/// A SET notification up to its value's length digits.
const NOTIFY_SET_HEAD: &[u8] = b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$";

impl NotifyPayload {
    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            NotifyPayload::Delete => out.extend_from_slice(NOTIFY_DELETE),
            NotifyPayload::Set { value } => {
                // The words and framing take 41 bytes plus the digits of the value's length.
                out.reserve(value.len() + 64);
                encode_array(
                    [b"NOTIFY".as_slice(), b"SET", b"VALUE", value].into_iter(),
                    out,
                );
            }
        }
    }

    /// Parses exactly one of the two accepted shapes; the words are matched case-sensitively, as
    /// the official clients do.
    pub fn parse(payload: &Bytes, limits: &Limits) -> Result<NotifyPayload, NotifyPayloadError> {
        match NotifyPayload::parse_canonical(payload, limits) {
            Some(parsed) => Ok(parsed),
            None => NotifyPayload::parse_decoded(payload, limits),
        }
    }

    /// Fuzzing hook, not API: the two paths [`NotifyPayload::parse`] combines, each on its own,
    /// so the `notify_parse` fuzz target can check that they agree on every input and limit.
    /// `.0` is the allocation-free path for the store's exact form (`None`: not that form), `.1`
    /// the general decoder.
    #[doc(hidden)]
    pub fn parse_paths_for_fuzzing(
        payload: &Bytes,
        limits: &Limits,
    ) -> (
        Option<NotifyPayload>,
        Result<NotifyPayload, NotifyPayloadError>,
    ) {
        (
            NotifyPayload::parse_canonical(payload, limits),
            NotifyPayload::parse_decoded(payload, limits),
        )
    }

    /// The two shapes byte for byte as [`NotifyPayload::encode`] writes them (the store's
    /// form), recognised without building the array; `None` for anything else, which
    /// [`NotifyPayload::parse_decoded`] then judges. Where this returns a payload that one
    /// returns the same (`canonical_form_parses_like_the_decoder` checks it), so it only saves
    /// the array's allocation and the reference counts of its words.
    fn parse_canonical(payload: &Bytes, limits: &Limits) -> Option<NotifyPayload> {
        // What the decoder needs to accept either shape: one level of array, four elements,
        // and blobs as long as `NOTIFY`.
        if limits.max_depth == 0 || limits.max_blob_len < 6 {
            return None;
        }
        if payload.as_ref() == NOTIFY_DELETE {
            return (limits.max_array_len >= 2).then_some(NotifyPayload::Delete);
        }
        if limits.max_array_len < 4 {
            return None;
        }
        let header = payload.strip_prefix(NOTIFY_SET_HEAD)?;
        let digits = header.iter().position(|b| !b.is_ascii_digit())?;
        // At most 18 digits cannot overflow; longer lengths are left to the decoder.
        if digits == 0 || digits > 18 {
            return None;
        }
        let len = header
            .get(..digits)?
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        let len = usize::try_from(len).ok()?;
        if len > limits.max_blob_len || header.get(digits..digits + 2)? != b"\r\n" {
            return None;
        }
        let start = NOTIFY_SET_HEAD.len() + digits + 2;
        let end = start.checked_add(len)?;
        if payload.len() != end.checked_add(2)? || payload.get(end..)? != b"\r\n" {
            return None;
        }
        Some(NotifyPayload::Set {
            value: payload.slice(start..end),
        })
    }

    /// The general path: decode, then match the two shapes.
    fn parse_decoded(
        payload: &Bytes,
        limits: &Limits,
    ) -> Result<NotifyPayload, NotifyPayloadError> {
        let value = decode(payload, limits).map_err(NotifyPayloadError::Decode)?;
        let Value::Array(items) = value else {
            return Err(NotifyPayloadError::UnexpectedShape);
        };
        let word = |v: &Value, w: &[u8]| matches!(v, Value::Blob(b) if b.as_ref() == w);
        match items.as_slice() {
            [notify, delete] if word(notify, b"NOTIFY") && word(delete, b"DELETE") => {
                Ok(NotifyPayload::Delete)
            }
            [notify, set, tag, Value::Blob(value)]
                if word(notify, b"NOTIFY") && word(set, b"SET") && word(tag, b"VALUE") =>
            {
                Ok(NotifyPayload::Set {
                    value: value.clone(),
                })
            }
            _ => Err(NotifyPayloadError::UnexpectedShape),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    fn enc(req: &Request) -> Vec<u8> {
        let mut out = Vec::new();
        req.encode(&mut out);
        out
    }

    fn parse(payload: &[u8]) -> Result<Request, RequestParseError> {
        Request::parse(&Bytes::copy_from_slice(payload), &Limits::default())
    }

    fn reply(kind: RequestKind, payload: &[u8]) -> Result<Response, ReplyError> {
        decode_reply(kind, &Bytes::copy_from_slice(payload), &Limits::default())
    }

    fn set(
        key: &'static [u8],
        value: &'static [u8],
        condition: SetCondition,
        px_ms: Option<u64>,
    ) -> Request {
        Request::Set {
            key: b(key),
            value: b(value),
            condition,
            px_ms,
        }
    }

    /// Request bytes of docs/protocol.md §13 rows 1–12, 14–16, 26–28, 31–32 and the official Rust
    /// client captures; each also parses back to the same request where it is valid.
    #[test]
    fn request_vectors_encode_exactly() {
        use SetCondition::*;
        let vectors: Vec<(Request, &[u8])> = vec![
            (set(b"k1", b"v1", Always, None), b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n"),
            (Request::Get { key: b(b"k1") }, b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n"),
            (set(b"k1", b"v1", NotExists, None), b"*4\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n$2\r\nNX\r\n"),
            (set(b"k1", b"v2", NotExistsOrEqual, None), b"*4\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv2\r\n$3\r\nNEX\r\n"),
            (set(b"k1", b"v1", NotExistsOrEqual, None), b"*4\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n$3\r\nNEX\r\n"),
            (Request::Vdel { key: b(b"k1"), value: b(b"v9") }, b"*3\r\n$4\r\nVDEL\r\n$2\r\nk1\r\n$2\r\nv9\r\n"),
            (Request::Vdel { key: b(b"k1"), value: b(b"v1") }, b"*3\r\n$4\r\nVDEL\r\n$2\r\nk1\r\n$2\r\nv1\r\n"),
            (Request::Del { key: b(b"k1") }, b"*2\r\n$3\r\nDEL\r\n$2\r\nk1\r\n"),
            (set(b"k1", b"v1", Always, Some(1000)), b"*5\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n$2\r\nPX\r\n$4\r\n1000\r\n"),
            (set(b"k1", b"", Always, None), b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$0\r\n\r\n"),
            (set(b"lock1", b"client1:s1", NotExistsOrEqual, Some(10000)),
                b"*6\r\n$3\r\nSET\r\n$5\r\nlock1\r\n$10\r\nclient1:s1\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$5\r\n10000\r\n"),
            (Request::KeyNotify { key: b(b"k1") }, b"*2\r\n$9\r\nKEYNOTIFY\r\n$2\r\nk1\r\n"),
            (Request::KeyNotifyStop { key: b(b"k1") }, b"*3\r\n$9\r\nKEYNOTIFY\r\n$2\r\nk1\r\n$4\r\nSTOP\r\n"),
            // captured from the official Rust client (docs/protocol.md §1)
            (set(b"cap-lease", b"cap-lease-holder", NotExistsOrEqual, Some(5000)),
                b"*6\r\n$3\r\nSET\r\n$9\r\ncap-lease\r\n$16\r\ncap-lease-holder\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$4\r\n5000\r\n"),
            (Request::Vdel { key: b(b"cap-lease"), value: b(b"cap-lease-rel") }, b"*3\r\n$4\r\nVDEL\r\n$9\r\ncap-lease\r\n$13\r\ncap-lease-rel\r\n"),
            (Request::Get { key: b(b"cap-lease") }, b"*2\r\n$3\r\nGET\r\n$9\r\ncap-lease\r\n"),
            (Request::KeyNotify { key: b(b"cap-key") }, b"*2\r\n$9\r\nKEYNOTIFY\r\n$7\r\ncap-key\r\n"),
            (Request::KeyNotifyStop { key: b(b"stub-lock2") }, b"*3\r\n$9\r\nKEYNOTIFY\r\n$10\r\nstub-lock2\r\n$4\r\nSTOP\r\n"),
            (set(b"stub-counter", b"X", Always, None), b"*3\r\n$3\r\nSET\r\n$12\r\nstub-counter\r\n$1\r\nX\r\n"),
            (set(b"cap-key", b"cap-value", NotExistsOrEqual, Some(5000)),
                b"*6\r\n$3\r\nSET\r\n$7\r\ncap-key\r\n$9\r\ncap-value\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$4\r\n5000\r\n"),
            (Request::Del { key: b(b"cap-key") }, b"*2\r\n$3\r\nDEL\r\n$7\r\ncap-key\r\n"),
            (set(b"cap-key", b"cap-value", NotExists, Some(5000)),
                b"*6\r\n$3\r\nSET\r\n$7\r\ncap-key\r\n$9\r\ncap-value\r\n$2\r\nNX\r\n$2\r\nPX\r\n$4\r\n5000\r\n"),
            (set(b"cap-key", b"cap-value", Always, None), b"*3\r\n$3\r\nSET\r\n$7\r\ncap-key\r\n$9\r\ncap-value\r\n"),
            (Request::Vdel { key: b(b"cap-key"), value: b(b"cap-value") }, b"*3\r\n$4\r\nVDEL\r\n$7\r\ncap-key\r\n$9\r\ncap-value\r\n"),
            (set(b"stub-ftkey", b"v", Always, Some(60000)), b"*5\r\n$3\r\nSET\r\n$10\r\nstub-ftkey\r\n$1\r\nv\r\n$2\r\nPX\r\n$5\r\n60000\r\n"),
        ];
        for (req, wire) in &vectors {
            assert_eq!(enc(req), *wire, "{req:?}");
            assert_eq!(parse(wire).as_ref(), Ok(req), "{:?}", wire.escape_ascii());
        }
    }

    #[test]
    fn kind_and_key() {
        let cases = [
            (
                set(b"a", b"v", SetCondition::Always, None),
                RequestKind::Set,
            ),
            (Request::Get { key: b(b"a") }, RequestKind::Get),
            (Request::Del { key: b(b"a") }, RequestKind::Del),
            (
                Request::Vdel {
                    key: b(b"a"),
                    value: b(b"v"),
                },
                RequestKind::Vdel,
            ),
            (Request::KeyNotify { key: b(b"a") }, RequestKind::KeyNotify),
            (
                Request::KeyNotifyStop { key: b(b"a") },
                RequestKind::KeyNotifyStop,
            ),
        ];
        for (req, kind) in cases {
            assert_eq!(req.kind(), kind);
            assert_eq!(req.key().as_ref(), b"a");
        }
    }

    #[test]
    fn server_parse_error_table() {
        use RequestParseError::*;
        let cases: &[(&[u8], RequestParseError)] = &[
            // row 26
            (b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", KeyLengthZero),
            (b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$1\r\nv\r\n", KeyLengthZero),
            (b"*2\r\n$3\r\nDEL\r\n$0\r\n\r\n", KeyLengthZero),
            (b"*3\r\n$4\r\nVDEL\r\n$0\r\n\r\n$1\r\nv\r\n", KeyLengthZero),
            (b"*2\r\n$9\r\nKEYNOTIFY\r\n$0\r\n\r\n", KeyLengthZero),
            (b"*3\r\n$9\r\nKEYNOTIFY\r\n$0\r\n\r\n$4\r\nSTOP\r\n", KeyLengthZero),
            // row 27, checked before the argument count
            (b"*2\r\n$4\r\nPING\r\n$1\r\nk\r\n", UnknownCommand),
            (b"*1\r\n$4\r\nPING\r\n", UnknownCommand),
            (b"*1\r\n$0\r\n\r\n", UnknownCommand),
            (b"*2\r\n$4\r\nSETX\r\n$1\r\nk\r\n", UnknownCommand),
            // row 28 and other counts
            (b"*2\r\n$3\r\nSET\r\n$2\r\nk1\r\n", WrongNumberOfArguments),
            (b"*1\r\n$3\r\nSET\r\n", WrongNumberOfArguments),
            (b"*1\r\n$3\r\nGET\r\n", WrongNumberOfArguments),
            (b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\nx\r\n", WrongNumberOfArguments),
            (b"*3\r\n$3\r\nDEL\r\n$1\r\nk\r\n$1\r\nx\r\n", WrongNumberOfArguments),
            (b"*2\r\n$4\r\nVDEL\r\n$1\r\nk\r\n", WrongNumberOfArguments),
            (b"*4\r\n$4\r\nVDEL\r\n$1\r\nk\r\n$1\r\nv\r\n$1\r\nx\r\n", WrongNumberOfArguments),
            (b"*1\r\n$9\r\nKEYNOTIFY\r\n", WrongNumberOfArguments),
            (b"*4\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n$4\r\nSTOP\r\n$1\r\nx\r\n", WrongNumberOfArguments),
            // an empty key with a wrong count is a count error first
            (b"*3\r\n$3\r\nGET\r\n$0\r\n\r\n$1\r\nx\r\n", WrongNumberOfArguments),
            (b"*3\r\n$9\r\nKEYNOTIFY\r\n$0\r\n\r\n$4\r\nSTAP\r\n", Syntax),
            // row 29
            (b"SET k1 v1\r\n", Syntax),
            (b"*3\r\n$3\r\nSET\r\n$3\r\nk1\r\n$2\r\nv1\r\n", Syntax),
            (b"*3\r\n$3\r\nSET\r\n$1\r\nk1\r\n$2\r\nv1\r\n", Syntax),
            (b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n+x\r\n", Syntax),
            (b"$3\r\nGET\r\n", Syntax),
            (b"*0\r\n", Syntax),
            (b"", Syntax),
            (b"*2\r\n+GET\r\n$1\r\nk\r\n", Syntax),
            (b"*2\r\n$3\r\nGET\r\n:1\r\n", Syntax),
            (b"*2\r\n$3\r\nGET\r\n$-1\r\n", Syntax),
            (b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n", Syntax),
            // KEYNOTIFY third element must be STOP
            (b"*3\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n$4\r\nSTAP\r\n", Syntax),
            // row 30 and option rules
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$3\r\nabc\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$6\r\n1500.5\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$1\r\n0\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$2\r\n-5\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$6\r\n1500,5\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$2\r\n+5\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$0\r\n\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$5\r\n 1500\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$20\r\n18446744073709551616\r\n", Syntax),
            (b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n", Syntax),
            (b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n", Syntax),
            (b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$4\r\nSTOP\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$2\r\nNX\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$3\r\nNEX\r\n$3\r\nNEX\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$3\r\nNEX\r\n", Syntax),
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$3\r\nNEX\r\n$2\r\nnx\r\n", Syntax),
            (b"*7\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$1\r\n1\r\n$2\r\nPX\r\n$1\r\n2\r\n", Syntax),
            // `PX` whose value is itself an option word is still a bad number
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$2\r\nNX\r\n", Syntax),
        ];
        for (payload, want) in cases {
            assert_eq!(
                parse(payload),
                Err(*want),
                "payload {:?}",
                payload.escape_ascii()
            );
        }
    }

    #[test]
    fn server_parse_accepts_any_case_and_option_order() {
        use SetCondition::*;
        let cases: &[(&[u8], Request)] = &[
            (b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n", Request::Get { key: b(b"k") }),
            (b"*2\r\n$3\r\nDeL\r\n$1\r\nk\r\n", Request::Del { key: b(b"k") }),
            (b"*3\r\n$4\r\nvdel\r\n$1\r\nk\r\n$1\r\nv\r\n", Request::Vdel { key: b(b"k"), value: b(b"v") }),
            (b"*2\r\n$9\r\nkeynotify\r\n$1\r\nk\r\n", Request::KeyNotify { key: b(b"k") }),
            (b"*3\r\n$9\r\nKeyNotify\r\n$1\r\nk\r\n$4\r\nstop\r\n", Request::KeyNotifyStop { key: b(b"k") }),
            (b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n", set(b"k", b"v", Always, None)),
            (b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nnx\r\n", set(b"k", b"v", NotExists, None)),
            (b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$3\r\nNeX\r\n", set(b"k", b"v", NotExistsOrEqual, None)),
            (b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\npx\r\n$2\r\n25\r\n$3\r\nNEX\r\n",
                set(b"k", b"v", NotExistsOrEqual, Some(25))),
            (b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$20\r\n18446744073709551615\r\n$2\r\nNX\r\n",
                set(b"k", b"v", NotExists, Some(u64::MAX))),
            // the value slot is positional: a value that looks like an option is a value
            (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nNX\r\n", set(b"k", b"NX", Always, None)),
            // leading zeros are still a positive decimal integer
            (b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$3\r\n007\r\n", set(b"k", b"v", Always, Some(7))),
        ];
        for (payload, want) in cases {
            assert_eq!(
                parse(payload).as_ref(),
                Ok(want),
                "payload {:?}",
                payload.escape_ascii()
            );
        }
    }

    const ALL_ERRORS: [(ServiceError, &[u8]); 12] = [
        (ServiceError::TimestampSkew, b"the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized"),
        (ServiceError::MissingFencingToken, b"a fencing token is required for this request"),
        (ServiceError::FencingTokenSkew, b"the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized"),
        (ServiceError::FencingTokenLowerVersion, b"the request fencing token is a lower version than the fencing token protecting the resource"),
        (ServiceError::QuotaExceeded, b"the quota has been exceeded"),
        (ServiceError::SyntaxError, b"syntax error"),
        (ServiceError::NotAuthorized, b"not authorized"),
        (ServiceError::UnknownCommand, b"unknown command"),
        (ServiceError::WrongNumberOfArguments, b"wrong number of arguments"),
        (ServiceError::TimestampMissing, b"missing timestamp"),
        (ServiceError::TimestampMalformed, b"malformed timestamp"),
        (ServiceError::KeyLengthZero, b"the key length is zero"),
    ];

    #[test]
    fn service_error_strings_map_both_ways() {
        for (variant, text) in ALL_ERRORS {
            let mut after_dash = b"ERR ".to_vec();
            after_dash.extend_from_slice(text);
            assert_eq!(
                ServiceError::from_error_text(&Bytes::from(after_dash.clone())),
                variant
            );
            assert_eq!(variant.text(), text);
            let mut wire = Vec::new();
            variant.encode_reply(&mut wire);
            let mut want = b"-".to_vec();
            want.extend_from_slice(&after_dash);
            want.extend_from_slice(b"\r\n");
            assert_eq!(wire, want);
            for kind in ALL_KINDS {
                assert_eq!(
                    reply(kind, &wire),
                    Err(ReplyError::Service(variant.clone()))
                );
            }
        }
    }

    #[test]
    fn service_error_other_texts() {
        let other = |s: &'static [u8]| ServiceError::Other(b(s));
        let from = |s: &'static [u8]| ServiceError::from_error_text(&b(s));
        // MSDOC's "that" spelling is not the service's string.
        assert_eq!(
            from(b"ERR the request fencing token is a lower version that the fencing token protecting the resource"),
            other(b"the request fencing token is a lower version that the fencing token protecting the resource")
        );
        assert_eq!(from(b"ERR syntax error "), other(b"syntax error "));
        assert_eq!(from(b"ERR Syntax Error"), other(b"Syntax Error"));
        assert_eq!(from(b"ERR: syntax error"), other(b"ERR: syntax error"));
        assert_eq!(from(b"syntax error"), other(b"syntax error"));
        assert_eq!(from(b"ERR"), other(b"ERR"));
        assert_eq!(from(b"ERR "), other(b""));
        assert_eq!(from(b"WRONGTYPE x"), other(b"WRONGTYPE x"));
        assert_eq!(other(b"boom").text(), b"boom");
        let mut wire = Vec::new();
        other(b"a\r\nb").encode_reply(&mut wire);
        assert_eq!(wire, b"-ERR a  b\r\n");
        assert_eq!(
            reply(RequestKind::Get, b"-NOPE\r\n"),
            Err(ReplyError::Service(other(b"NOPE")))
        );
        assert_eq!(
            reply(RequestKind::Set, b"-ERR something new\r\n"),
            Err(ReplyError::Service(other(b"something new")))
        );
    }

    #[test]
    fn parse_errors_convert_to_service_errors() {
        assert_eq!(
            ServiceError::from(RequestParseError::Syntax),
            ServiceError::SyntaxError
        );
        assert_eq!(
            ServiceError::from(RequestParseError::UnknownCommand),
            ServiceError::UnknownCommand
        );
        assert_eq!(
            ServiceError::from(RequestParseError::WrongNumberOfArguments),
            ServiceError::WrongNumberOfArguments
        );
        assert_eq!(
            ServiceError::from(RequestParseError::KeyLengthZero),
            ServiceError::KeyLengthZero
        );
    }

    const ALL_KINDS: [RequestKind; 6] = [
        RequestKind::Set,
        RequestKind::Get,
        RequestKind::Del,
        RequestKind::Vdel,
        RequestKind::KeyNotify,
        RequestKind::KeyNotifyStop,
    ];

    /// Every reply form of docs/protocol.md §7.2 (plus a few that no command accepts), for every
    /// kind.
    #[test]
    fn reply_mapping_table() {
        use RequestKind as K;
        use Response as R;
        let forms: [&[u8]; 10] = [
            b"+OK\r\n",
            b":-1\r\n",
            b":0\r\n",
            b":1\r\n",
            b":7\r\n",
            b"$-1\r\n",
            b"$2\r\nv1\r\n",
            b"$0\r\n\r\n",
            b"+QUEUED\r\n",
            b"*1\r\n$2\r\nOK\r\n",
        ];
        let expect = |kind: K, form: &[u8]| -> Option<Response> {
            Some(match (kind, form) {
                (K::Set, b"+OK\r\n") => R::Set(SetOutcome::Applied),
                (K::Set, b":-1\r\n") => R::Set(SetOutcome::NotApplied),
                (K::Get, b"$2\r\nv1\r\n") => R::Get(Some(b(b"v1"))),
                (K::Get, b"$0\r\n\r\n") => R::Get(Some(Bytes::new())),
                (K::Get, b"$-1\r\n" | b":0\r\n") => R::Get(None),
                (K::Del, b":0\r\n") => R::Del(0),
                (K::Del, b":1\r\n") => R::Del(1),
                (K::Del, b":7\r\n") => R::Del(7),
                (K::Vdel, b":1\r\n") => R::Vdel(VdelOutcome::Deleted),
                (K::Vdel, b":0\r\n") => R::Vdel(VdelOutcome::NotFound),
                (K::Vdel, b":-1\r\n") => R::Vdel(VdelOutcome::Mismatch),
                (K::KeyNotify, b"+OK\r\n" | b":0\r\n") => R::KeyNotify,
                (K::KeyNotifyStop, b"+OK\r\n") => R::KeyNotifyStop(true),
                (K::KeyNotifyStop, b":0\r\n") => R::KeyNotifyStop(false),
                _ => return None,
            })
        };
        for kind in ALL_KINDS {
            for form in forms {
                let want = expect(kind, form).ok_or(ReplyError::Unexpected(kind));
                assert_eq!(
                    reply(kind, form),
                    want,
                    "{kind:?} {:?}",
                    form.escape_ascii()
                );
            }
        }
    }

    #[test]
    fn invalid_replies_are_decode_errors() {
        for kind in ALL_KINDS {
            assert_eq!(reply(kind, b""), Err(ReplyError::Decode(Resp3Error::Empty)));
            assert_eq!(
                reply(kind, b"_\r\n"),
                Err(ReplyError::Decode(Resp3Error::UnknownType(b'_')))
            );
            assert_eq!(
                reply(kind, b"+OK\r\n\r\n"),
                Err(ReplyError::Decode(Resp3Error::TrailingBytes))
            );
            assert_eq!(
                reply(kind, b"$3\r\nv1\r\n"),
                Err(ReplyError::Decode(Resp3Error::MissingCrlf))
            );
            assert_eq!(
                reply(kind, b"-1\r\n"),
                Err(ReplyError::Service(ServiceError::Other(b(b"1"))))
            );
        }
    }

    #[test]
    fn get_value_is_a_slice_of_the_payload() {
        let payload = b(b"$5\r\nhello\r\n");
        let Ok(Response::Get(Some(value))) =
            decode_reply(RequestKind::Get, &payload, &Limits::default())
        else {
            panic!("expected a hit");
        };
        assert_eq!(value.as_ptr(), payload[4..].as_ptr());
    }

    #[test]
    fn notify_payloads_exact() {
        let del = b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n";
        let set = b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n";
        let mut out = Vec::new();
        NotifyPayload::Delete.encode(&mut out);
        assert_eq!(out, del);
        out.clear();
        NotifyPayload::Set { value: b(b"abc") }.encode(&mut out);
        assert_eq!(out, set);
        let p = |x: &[u8]| NotifyPayload::parse(&Bytes::copy_from_slice(x), &Limits::default());
        assert_eq!(p(del), Ok(NotifyPayload::Delete));
        assert_eq!(p(set), Ok(NotifyPayload::Set { value: b(b"abc") }));
        assert_eq!(
            p(b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$0\r\n\r\n"),
            Ok(NotifyPayload::Set {
                value: Bytes::new()
            })
        );
        let bad: [&[u8]; 9] = [
            b"*2\r\n$6\r\nnotify\r\n$6\r\nDELETE\r\n",
            b"*2\r\n$6\r\nNOTIFY\r\n$3\r\nDEL\r\n",
            b"*3\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$1\r\nv\r\n",
            b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nvalue\r\n$1\r\nv\r\n",
            b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$-1\r\n",
            b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n+v\r\n",
            b"*2\r\n+NOTIFY\r\n$6\r\nDELETE\r\n",
            b"*3\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n$1\r\nx\r\n",
            b"+OK\r\n",
        ];
        for x in bad {
            assert_eq!(
                p(x),
                Err(NotifyPayloadError::UnexpectedShape),
                "{:?}",
                x.escape_ascii()
            );
        }
        assert_eq!(
            p(b"*2\r\n$6\r\nNOTIFY\r\n"),
            Err(NotifyPayloadError::Decode(Resp3Error::Truncated))
        );
    }

    #[test]
    fn errors_display() {
        use alloc::string::ToString;
        assert_eq!(
            ServiceError::SyntaxError.to_string(),
            "state store error: syntax error"
        );
        assert_eq!(
            ServiceError::Other(b(b"x\xffy")).to_string(),
            "state store error: x\u{FFFD}y"
        );
        assert!(ReplyError::Decode(Resp3Error::Empty)
            .to_string()
            .contains("empty"));
        assert!(RequestParseError::KeyLengthZero
            .to_string()
            .contains("key length"));
        assert!(NotifyPayloadError::UnexpectedShape
            .to_string()
            .contains("NOTIFY"));
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
        // Bias toward the bytes that matter to the framing.
        proptest::collection::vec(
            prop_oneof![
                Just(b'\r'),
                Just(b'\n'),
                Just(b'$'),
                Just(b'*'),
                any::<u8>()
            ],
            0..max,
        )
        .prop_map(Bytes::from)
    }

    fn arb_key() -> impl Strategy<Value = Bytes> {
        arb_bytes(24).prop_filter("non-empty key", |k| !k.is_empty())
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        let condition = prop_oneof![
            Just(SetCondition::Always),
            Just(SetCondition::NotExists),
            Just(SetCondition::NotExistsOrEqual)
        ];
        prop_oneof![
            (
                arb_key(),
                arb_bytes(32),
                condition,
                proptest::option::of(1..=u64::MAX)
            )
                .prop_map(|(key, value, condition, px_ms)| Request::Set {
                    key,
                    value,
                    condition,
                    px_ms
                }),
            arb_key().prop_map(|key| Request::Get { key }),
            arb_key().prop_map(|key| Request::Del { key }),
            (arb_key(), arb_bytes(32)).prop_map(|(key, value)| Request::Vdel { key, value }),
            arb_key().prop_map(|key| Request::KeyNotify { key }),
            arb_key().prop_map(|key| Request::KeyNotifyStop { key }),
        ]
    }

    fn arb_reply() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"+OK\r\n".to_vec()),
            Just(b":-1\r\n".to_vec()),
            Just(b":0\r\n".to_vec()),
            Just(b":1\r\n".to_vec()),
            Just(b"$-1\r\n".to_vec()),
            arb_bytes(16).prop_map(|v| {
                let mut out = Vec::new();
                crate::resp3::Value::Blob(v).encode(&mut out);
                out
            }),
            (0..ALL_ERRORS.len()).prop_map(|i| {
                let mut out = Vec::new();
                ALL_ERRORS[i].0.encode_reply(&mut out);
                out
            }),
        ]
    }

    fn arb_kind() -> impl Strategy<Value = RequestKind> {
        (0..ALL_KINDS.len()).prop_map(|i| ALL_KINDS[i])
    }

    fn mutate(mut bytes: Vec<u8>, op: u8, index: prop::sample::Index, byte: u8) -> Vec<u8> {
        match op % 3 {
            0 if !bytes.is_empty() => {
                let i = index.index(bytes.len());
                bytes[i] = byte;
            }
            1 => bytes.truncate(index.index(bytes.len() + 1)),
            _ => bytes.insert(index.index(bytes.len() + 1), byte),
        }
        bytes
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_random_bytes(input in proptest::collection::vec(any::<u8>(), 0..128)) {
            let input = Bytes::from(input);
            let limits = Limits::default();
            let _ = Request::parse(&input, &limits);
            let _ = NotifyPayload::parse(&input, &limits);
            for kind in ALL_KINDS {
                let _ = decode_reply(kind, &input, &limits);
            }
            let _ = ServiceError::from_error_text(&input);
        }

        #[test]
        fn request_round_trips(req in arb_request()) {
            let wire = enc(&req);
            prop_assert_eq!(parse(&wire), Ok(req));
        }

        #[test]
        fn notify_round_trips(value in proptest::option::of(arb_bytes(64))) {
            let payload = match value {
                Some(value) => NotifyPayload::Set { value },
                None => NotifyPayload::Delete,
            };
            let mut wire = Vec::new();
            payload.encode(&mut wire);
            prop_assert_eq!(
                NotifyPayload::parse(&Bytes::from(wire), &Limits::default()),
                Ok(payload)
            );
        }

        #[test]
        fn mutated_requests_never_panic(
            req in arb_request(), op in any::<u8>(), index in any::<prop::sample::Index>(), byte in any::<u8>()
        ) {
            let wire = mutate(enc(&req), op, index, byte);
            let _ = parse(&wire);
        }

        #[test]
        fn mutated_replies_never_panic(
            form in arb_reply(), kind in arb_kind(), op in any::<u8>(),
            index in any::<prop::sample::Index>(), byte in any::<u8>()
        ) {
            let wire = mutate(form, op, index, byte);
            let _ = reply(kind, &wire);
        }

        /// The allocation-free path for the store's own form agrees with decoding, on the
        /// exact form and on near misses, under any limits; and it does take the exact form.
        #[test]
        fn canonical_form_parses_like_the_decoder(
            value in arb_bytes(32), delete in any::<bool>(), mutated in any::<bool>(),
            op in any::<u8>(), index in any::<prop::sample::Index>(), byte in any::<u8>(),
            max_array_len in 0usize..6, max_blob_len in 0usize..40, max_depth in 0usize..3,
        ) {
            let payload = if delete { NotifyPayload::Delete } else { NotifyPayload::Set { value } };
            let mut wire = Vec::new();
            payload.encode(&mut wire);
            if mutated {
                wire = mutate(wire, op, index, byte);
            }
            let wire = Bytes::from(wire);
            let limits = Limits { max_array_len, max_blob_len, max_depth };
            prop_assert_eq!(
                NotifyPayload::parse(&wire, &limits),
                NotifyPayload::parse_decoded(&wire, &limits)
            );
            if !mutated {
                prop_assert_eq!(
                    NotifyPayload::parse_canonical(&wire, &Limits::default()),
                    Some(payload)
                );
            }
        }

        #[test]
        fn mutated_notifications_never_panic(
            value in arb_bytes(32), delete in any::<bool>(), op in any::<u8>(),
            index in any::<prop::sample::Index>(), byte in any::<u8>()
        ) {
            let payload = if delete { NotifyPayload::Delete } else { NotifyPayload::Set { value } };
            let mut wire = Vec::new();
            payload.encode(&mut wire);
            let wire = mutate(wire, op, index, byte);
            let _ = NotifyPayload::parse(&Bytes::from(wire), &Limits::default());
        }
    }
}
