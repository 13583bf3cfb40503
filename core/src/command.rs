//! Typed state-store commands and replies (spec §3, §4, §5): what a request means, how it is
//! encoded, how each reply form maps for each command, the service's `-ERR` strings, and the
//! two notification payloads.

use alloc::vec::Vec;
use bytes::Bytes;

use crate::resp3::{Limits, Resp3Error};

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

/// A `-ERR` reply from the store (spec §3.3). Texts are matched byte for byte.
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

/// A key-change notification payload (spec §5).
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

impl Request {
    /// The verb.
    pub fn kind(&self) -> RequestKind {
        todo!()
    }
    /// The key.
    pub fn key(&self) -> &Bytes {
        todo!()
    }
    /// Appends the RESP3 request array to `out`, exactly as the official clients send it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!()
    }
    /// Server side: parses a request payload, mapping problems to the store's error replies.
    pub fn parse(payload: &Bytes, limits: &Limits) -> Result<Request, RequestParseError> {
        let _ = (payload, limits);
        todo!()
    }
}

impl ServiceError {
    /// Maps the text after `-` (e.g. `ERR syntax error`) to a variant.
    pub fn from_error_text(text: &Bytes) -> ServiceError {
        let _ = text;
        todo!()
    }
    /// The text after `ERR ` for this error.
    pub fn text(&self) -> &[u8] {
        todo!()
    }
}

/// Client side: maps a reply payload to the typed response of a `kind` request.
pub fn decode_reply(
    kind: RequestKind,
    payload: &Bytes,
    limits: &Limits,
) -> Result<Response, ReplyError> {
    let _ = (kind, payload, limits);
    todo!()
}

impl NotifyPayload {
    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!()
    }
    /// Parses exactly one of the two accepted shapes.
    pub fn parse(payload: &Bytes, limits: &Limits) -> Result<NotifyPayload, NotifyPayloadError> {
        let _ = (payload, limits);
        todo!()
    }
}
