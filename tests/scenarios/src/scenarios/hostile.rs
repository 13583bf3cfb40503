//! A server that answers with garbage: every request ends with a typed error, never a hang,
//! and the connection keeps working.

use std::time::Duration;

use bytes::Bytes;

use super::connect;
use crate::adapter::{Conn, Failure, LeaseApi, LockApi, Runtime};
use crate::env::Env;
use crate::garbage::{marker, GarbageServer};
use crate::util::must;

/// Each kind of garbage reply maps to its typed error within the request timeout; malformed
/// notifications are ignored; lease and lock calls fail instead of hanging.
pub async fn garbage_replies_give_typed_errors<R: Runtime>(rt: &R, env: &Env) {
    let _server = GarbageServer::start(env.host(), env.port());
    let c = connect(rt, env, "hostile").await;
    let limit = Duration::from_secs(5);
    type Expect = fn(&Failure) -> bool;
    let cases: [(&str, Expect); 9] = [
        (marker::NOT_RESP3, |f| *f == Failure::BadReply),
        (marker::NO_STATUS, |f| *f == Failure::BadReply),
        (marker::STATUS_500, |f| *f == Failure::Status(500)),
        (marker::WRONG_FORM, |f| *f == Failure::BadReply),
        (marker::DRIFT, |f| *f == Failure::ClockDrift),
        (marker::BAD_CORRELATION, |f| {
            matches!(f, Failure::Timeout { sent: true })
        }),
        (marker::CONTENT_TYPE, |f| *f == Failure::BadReply),
        (marker::SILENT, |f| {
            matches!(f, Failure::Timeout { sent: true })
        }),
        (marker::HUGE_LENGTH, |f| *f == Failure::BadReply),
    ];
    for (m, expected) in cases {
        let r = must(rt, limit, m, c.get(Bytes::from(m))).await;
        match r {
            Err(f) => assert!(expected(&f), "{m}: unexpected error {f:?}"),
            Ok(v) => panic!("{m}: garbage accepted as {v:?}"),
        }
    }
    // Malformed notifications (lower-case hex, bad payloads) are dropped; the connection lives.
    let r = must(
        rt,
        limit,
        "bad notify",
        c.get(Bytes::from(marker::BAD_NOTIFY)),
    )
    .await;
    assert_eq!(r, Ok(None));
    assert!(c.is_connected());

    // Lease and lock operations over garbage fail with the request's own typed error, not a
    // hang and not a catch-all: a SET answered with non-RESP3 is a bad reply; a lock wait on a
    // store that never answers ends when its wait deadline passes.
    let lease = c.lease(Bytes::from(marker::NOT_RESP3), None).unwrap();
    let r = must(
        rt,
        limit,
        "acquire",
        lease.acquire(Duration::from_secs(5), None),
    )
    .await;
    assert_eq!(r, Err(Failure::BadReply));
    let lock = c.lock(Bytes::from(marker::SILENT)).unwrap();
    let r = must(
        rt,
        limit,
        "lock",
        lock.lock(Duration::from_secs(5), Some(Duration::from_secs(2)), None),
    )
    .await;
    assert_eq!(r, Err(Failure::WaitTimeout));
    c.close().await;
}
