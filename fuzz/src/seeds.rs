//! Seed inputs for the byte-level targets: the test vectors of docs/protocol.md §13 and messages
//! produced by core's own encoders. `examples/write_seeds.rs` writes them under `corpus/<target>/`.
//!
//! Structure-aware targets (those whose input is an `Arbitrary` type) build valid messages with
//! core's encoders inside the generator itself, so they need no seed files.

use bytes::Bytes;
use leasedlock_core::command::{NotifyPayload, Request, ServiceError, SetCondition};
use leasedlock_core::hlc::Hlc;

/// Request payloads of docs/protocol.md §13 (rows 1–12, 15, 26–32), byte for byte.
pub const SPEC_REQUESTS: &[&[u8]] = &[
    b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n",
    b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n",
    b"*4\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n$2\r\nNX\r\n",
    b"*4\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv2\r\n$3\r\nNEX\r\n",
    b"*4\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n$3\r\nNEX\r\n",
    b"*3\r\n$4\r\nVDEL\r\n$2\r\nk1\r\n$2\r\nv9\r\n",
    b"*3\r\n$4\r\nVDEL\r\n$2\r\nk1\r\n$2\r\nv1\r\n",
    b"*2\r\n$3\r\nDEL\r\n$2\r\nk1\r\n",
    b"*5\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n$2\r\nPX\r\n$4\r\n1000\r\n",
    b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$0\r\n\r\n",
    b"*6\r\n$3\r\nSET\r\n$5\r\nlock1\r\n$10\r\nclient1:s1\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$5\r\n10000\r\n",
    b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
    b"*2\r\n$4\r\nPING\r\n$1\r\nk\r\n",
    b"*2\r\n$3\r\nSET\r\n$2\r\nk1\r\n",
    b"SET k1 v1\r\n",
    b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$3\r\nabc\r\n",
    b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$6\r\n1500.5\r\n",
    b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$1\r\n0\r\n",
    b"*2\r\n$9\r\nKEYNOTIFY\r\n$2\r\nk1\r\n",
    b"*3\r\n$9\r\nKEYNOTIFY\r\n$2\r\nk1\r\n$4\r\nSTOP\r\n",
];

/// Reply payloads of docs/protocol.md §7.2 and §13, plus the forms clients must not receive (§7.2).
pub const SPEC_REPLIES: &[&[u8]] = &[
    b"+OK\r\n",
    b":-1\r\n",
    b":0\r\n",
    b":1\r\n",
    b"$-1\r\n",
    b"$2\r\nv1\r\n",
    b"$0\r\n\r\n",
    b"-ERR syntax error\r\n",
    b"-ERR: syntax error\r\n",
    b"-1\r\n",
    b"_\r\n",
    b"+QUEUED\r\n",
];

/// Notification payloads of docs/protocol.md §9.2 and §13 row 34.
pub const SPEC_NOTIFICATIONS: &[&[u8]] = &[
    b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n",
    b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n",
    b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$0\r\n\r\n",
    b"*2\r\n$6\r\nNOTIFY\r\n$3\r\nDEL\r\n",
];

/// HLC texts: the padded and unpadded forms of docs/protocol.md §6.1, and near-misses.
pub const SPEC_HLCS: &[&[u8]] = &[
    b"001696374425000:00000:0190f2c4-7f3a-7c1e-9b2d-3c4d5e6f7a8b",
    b"1696374425000:1:StateStore",
    b"000000000000005:1234567:n",
    b"18446744073709551615:18446744073709551615:x",
    b"1:2",
    b"abc",
    b"1:2:",
];

/// Every named service error.
pub fn service_errors() -> Vec<ServiceError> {
    vec![
        ServiceError::TimestampSkew,
        ServiceError::MissingFencingToken,
        ServiceError::FencingTokenSkew,
        ServiceError::FencingTokenLowerVersion,
        ServiceError::QuotaExceeded,
        ServiceError::SyntaxError,
        ServiceError::NotAuthorized,
        ServiceError::UnknownCommand,
        ServiceError::WrongNumberOfArguments,
        ServiceError::TimestampMissing,
        ServiceError::TimestampMalformed,
        ServiceError::KeyLengthZero,
        ServiceError::Other(Bytes::from_static(b"something new")),
    ]
}

/// One request of every shape, as core encodes it.
pub fn encoded_requests() -> Vec<Vec<u8>> {
    let key = Bytes::from_static(b"lock\x00\xffkey");
    let value = Bytes::from_static(b"client-1:session");
    let mut requests = vec![
        Request::Get { key: key.clone() },
        Request::Del { key: key.clone() },
        Request::Vdel {
            key: key.clone(),
            value: value.clone(),
        },
        Request::KeyNotify { key: key.clone() },
        Request::KeyNotifyStop { key: key.clone() },
    ];
    for condition in [
        SetCondition::Always,
        SetCondition::NotExists,
        SetCondition::NotExistsOrEqual,
    ] {
        for px_ms in [None, Some(1), Some(u64::MAX)] {
            requests.push(Request::Set {
                key: key.clone(),
                value: value.clone(),
                condition,
                px_ms,
            });
        }
    }
    requests
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            r.encode(&mut out);
            out
        })
        .collect()
}

/// Every `-ERR` reply as core encodes it.
pub fn encoded_error_replies() -> Vec<Vec<u8>> {
    service_errors()
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            e.encode_reply(&mut out);
            out
        })
        .collect()
}

/// Both notification shapes as core encodes them (the client's allocation-free path takes
/// exactly these), with values at the length-digit boundaries and values that look like
/// framing, plus near misses that must fall back to the general decoder: non-canonical length
/// digits, a length one off, trailing bytes, and a nested array in the value's place.
pub fn encoded_notifications() -> Vec<Vec<u8>> {
    let values: [&[u8]; 7] = [
        b"holder-2",
        b"",
        b"123456789",
        b"0123456789",
        b"\r\n$3\r\nSET\r\n",
        b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n",
        &[b'x'; 100],
    ];
    let mut out: Vec<Vec<u8>> = core::iter::once(NotifyPayload::Delete)
        .chain(values.iter().map(|v| NotifyPayload::Set {
            value: Bytes::copy_from_slice(v),
        }))
        .map(|p| {
            let mut wire = Vec::new();
            p.encode(&mut wire);
            wire
        })
        .collect();
    let head = b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n";
    for tail in [
        b"$03\r\nabc\r\n".as_slice(),
        b"$4\r\nabc\r\n",
        b"$2\r\nabc\r\n",
        b"$3\r\nabc\r\nX",
        b"$3\r\nabc\n\r",
        b"*1\r\n$3\r\nabc\r\n",
        b"$-1\r\n",
        b"$99999999999999999999\r\nabc\r\n",
    ] {
        out.push([head.as_slice(), tail].concat());
    }
    out.push(b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n\r\n".to_vec());
    out
}

/// Nested arrays (the decoder keeps open arrays inline up to some depth, then spills).
pub fn nested_arrays() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for depth in [1usize, 2, 3, 4, 8, 16, 33] {
        let mut wire = Vec::new();
        for _ in 0..depth {
            wire.extend_from_slice(b"*2\r\n$1\r\na\r\n");
        }
        wire.extend_from_slice(b"*0\r\n");
        out.push(wire);
    }
    out.push(b"*3\r\n*1\r\n:1\r\n*2\r\n+OK\r\n*0\r\n_\r\n".to_vec());
    out.push(b"*2\r\n*2\r\n*2\r\n".to_vec());
    out
}

/// Canonical HLC texts from the formatter.
pub fn encoded_hlcs() -> Vec<Vec<u8>> {
    [
        (0, 0, "n"),
        (1_696_374_425_000, 7, "StateStore"),
        (u64::MAX, u64::MAX, ""),
    ]
    .iter()
    .filter_map(|&(ms, c, node)| Hlc::new(ms, c, node).ok())
    .map(|h| h.to_bytes().to_vec())
    .collect()
}

/// `(target, seeds)` for every byte-level target.
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let owned = |list: &[&[u8]]| list.iter().map(|s| s.to_vec()).collect::<Vec<_>>();
    let requests = [owned(SPEC_REQUESTS), encoded_requests()].concat();
    let replies = [owned(SPEC_REPLIES), encoded_error_replies()].concat();
    let notifications = [owned(SPEC_NOTIFICATIONS), encoded_notifications()].concat();
    let hlcs = [owned(SPEC_HLCS), encoded_hlcs()].concat();
    let everything_resp3 = [
        requests.clone(),
        replies.clone(),
        notifications.clone(),
        nested_arrays(),
    ]
    .concat();
    vec![
        ("resp3_decode", everything_resp3),
        ("decode_reply", replies),
        ("request_parse", requests),
        ("notify_parse", notifications),
        ("hlc_parse", hlcs),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasedlock_core::command::{decode_reply, RequestKind};
    use leasedlock_core::resp3::Limits;

    #[test]
    fn spec_vectors_mean_what_the_spec_says() {
        let limits = Limits::default();
        // Rows 1–12, 15 are valid; 26–30 are the store's error rows; 31–32 valid again.
        let valid = SPEC_REQUESTS
            .iter()
            .filter(|r| Request::parse(&Bytes::from_static(r), &limits).is_ok())
            .count();
        assert_eq!(valid, 13);
        for n in SPEC_NOTIFICATIONS.iter().take(3) {
            assert!(NotifyPayload::parse(&Bytes::from_static(n), &limits).is_ok());
        }
        assert!(decode_reply(RequestKind::Set, &Bytes::from_static(b"+OK\r\n"), &limits).is_ok());
        for h in SPEC_HLCS.iter().take(4) {
            assert!(Hlc::parse_slice(h).is_ok(), "{h:?}");
        }
    }

    #[test]
    fn notification_seeds_reach_both_paths() {
        let limits = Limits::default();
        let seeds = encoded_notifications();
        let (exact, near_misses) = seeds.split_at(8);
        for seed in exact {
            let (fast, general) =
                NotifyPayload::parse_paths_for_fuzzing(&Bytes::copy_from_slice(seed), &limits);
            assert!(fast.is_some(), "{seed:?}");
            assert_eq!(general.ok(), fast);
        }
        // Leading zeros in the length (`$03`) are still the fast path's: the decoder accepts
        // them too. Every other near miss falls back.
        let mut fell_back = 0;
        for seed in near_misses {
            let (fast, general) =
                NotifyPayload::parse_paths_for_fuzzing(&Bytes::copy_from_slice(seed), &limits);
            match fast {
                Some(fast) => assert_eq!(general, Ok(fast), "{seed:?}"),
                None => fell_back += 1,
            }
        }
        assert_eq!(fell_back, near_misses.len() - 1);
    }

    #[test]
    fn every_byte_level_target_gets_seeds() {
        for (target, seeds) in all() {
            assert!(seeds.len() >= 4, "{target}");
        }
    }
}
