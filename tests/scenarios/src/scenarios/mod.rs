//! The scenarios, one module per area. Each is an `async fn(&R, &Env)` that panics on failure.

mod cancel;
mod contention;
mod faults;
mod hostile;
mod leader;
mod lease;
mod lock;
mod same_connection;
mod store;

pub use cancel::dropped_futures_leave_nothing_behind;
pub use contention::contention_with_fenced_writes;
pub use faults::{broker_restart_mid_lease, failover_when_holder_dies};
pub use hostile::garbage_replies_give_typed_errors;
pub use leader::leader_operations;
pub use lease::lease_operations;
pub use lock::lock_operations;
pub use same_connection::same_connection_holders_are_distinct;
pub use store::store_operations;

use std::time::Duration;

use crate::adapter::{Conn, Runtime};
use crate::env::Env;
use crate::util::must;

/// Connects a client whose id starts with `prefix`.
pub(crate) async fn connect<R: Runtime>(rt: &R, env: &Env, prefix: &str) -> R::Conn {
    let spec = env.spec(prefix);
    let id = spec.client_id.clone();
    match must(rt, Duration::from_secs(10), "connect", rt.connect(spec)).await {
        Ok(c) => {
            assert_eq!(c.client_id(), id);
            c
        }
        Err(e) => panic!("connect {id}: {e:?}"),
    }
}

/// Reads `key` every 20 ms until it is absent (or `limit` passes); returns whether it went.
pub(crate) async fn until_absent<R: Runtime, C: Conn>(
    rt: &R,
    c: &C,
    key: &bytes::Bytes,
    limit: Duration,
) -> bool {
    let start = std::time::Instant::now();
    loop {
        if let Ok(None) = must(rt, Duration::from_secs(5), "get", c.get(key.clone())).await {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        rt.sleep(Duration::from_millis(20)).await;
    }
}
