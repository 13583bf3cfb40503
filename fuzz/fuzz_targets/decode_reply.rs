//! Raw bytes as the reply to every kind of request (`command::decode_reply`).
//!
//! Checks: no panic; the reply kind matches the request kind; a `-ERR` reply maps to the same
//! service error for every kind and re-encodes to a reply with the same text; a GET value is
//! the blob the payload carried; a payload that is not RESP3 fails the same way for every kind.
#![no_main]

use bytes::Bytes;
use leasedlock_core::command::{decode_reply, ReplyError, RequestKind, Response, ServiceError};
use leasedlock_core::resp3::{decode, Limits, Value};
use leasedlock_fuzz::codec::ALL_KINDS;
use libfuzzer_sys::fuzz_target;

fn kind_of(response: &Response) -> Option<RequestKind> {
    Some(match response {
        Response::Set(_) => RequestKind::Set,
        Response::Get(_) => RequestKind::Get,
        Response::Del(_) => RequestKind::Del,
        Response::Vdel(_) => RequestKind::Vdel,
        Response::KeyNotify => RequestKind::KeyNotify,
        Response::KeyNotifyStop(_) => RequestKind::KeyNotifyStop,
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    let limits = Limits::default();
    let raw = decode(&payload, &limits);
    let results: Vec<_> = ALL_KINDS
        .iter()
        .map(|&kind| (kind, decode_reply(kind, &payload, &limits)))
        .collect();
    for (kind, result) in &results {
        match (result, &raw) {
            (_, Err(e)) => assert_eq!(result, &Err(ReplyError::Decode(*e))),
            (Ok(response), Ok(value)) => {
                assert_eq!(kind_of(response), Some(*kind));
                if let Response::Get(Some(bytes)) = response {
                    assert_eq!(value, &Value::Blob(bytes.clone()));
                }
                if let Response::Del(n) = response {
                    assert_eq!(value, &Value::Integer(i64::try_from(*n).expect("small")));
                }
            }
            (Err(ReplyError::Service(err)), Ok(Value::Error(_))) => {
                let mut again = Vec::new();
                err.encode_reply(&mut again);
                // Re-encoding canonicalizes: `-syntax error` (no `ERR ` prefix) is
                // `Other("syntax error")`, which a server writes as `-ERR syntax error`, the
                // named variant. The text must survive, and a named variant stays itself.
                let back = decode_reply(*kind, &Bytes::from(again), &limits);
                let Err(ReplyError::Service(back)) = back else {
                    panic!("re-encoded error reply is not a service error: {back:?}");
                };
                assert_eq!(back.text(), err.text());
                if !matches!(err, ServiceError::Other(_)) {
                    assert_eq!(&back, err);
                }
            }
            (Err(ReplyError::Service(_)), Ok(other)) => {
                panic!("service error from a non-error value {other:?}")
            }
            (Err(ReplyError::Unexpected(k)), Ok(_)) => assert_eq!(k, kind),
            (Err(e), Ok(_)) => panic!("unexpected error {e:?} for a decodable payload"),
        }
    }
    // An error reply is the same error whatever was asked.
    if let Ok(Value::Error(_)) = raw {
        let first = &results[0].1;
        assert!(results.iter().all(|(_, r)| r == first));
    }
});
