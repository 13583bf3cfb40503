//! Eight clients fight over one lock, each doing a fenced read-modify-write while holding it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use leasedlock_core::hlc::Hlc;
use leasedlock_core::lease::ReleaseOutcome;
use tokio::sync::oneshot;

use super::connect;
use crate::adapter::{Conn, LockApi, Runtime, SetSpec};
use crate::env::Env;
use crate::util::{must, unique};

const CLIENTS: usize = 8;
const ROUNDS: usize = 3;

#[derive(Debug)]
struct Hold {
    client: usize,
    start: Instant,
    end: Instant,
    token: Hlc,
}

async fn contend<C: Conn>(
    i: usize,
    conn: C,
    name: Bytes,
    counter: Bytes,
    holds: Arc<Mutex<Vec<Hold>>>,
) -> Result<(), String> {
    let lock = conn.lock(name).map_err(|e| format!("lock handle: {e:?}"))?;
    for round in 0..ROUNDS {
        let token = lock
            .lock(Duration::from_secs(3), Some(Duration::from_secs(30)), None)
            .await
            .map_err(|e| format!("client {i} round {round}: lock: {e:?}"))?;
        let start = Instant::now();
        let current: u64 = match conn.get(counter.clone()).await {
            Ok(Some((v, _))) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            Ok(None) => 0,
            Err(e) => return Err(format!("client {i}: get: {e:?}")),
        };
        let spec = SetSpec {
            fencing_token: Some(token.clone()),
            ..SetSpec::default()
        };
        match conn
            .set(
                counter.clone(),
                Bytes::from((current + 1).to_string()),
                spec,
            )
            .await
        {
            Ok((true, _)) => {}
            other => return Err(format!("client {i}: fenced write refused: {other:?}")),
        }
        let end = Instant::now();
        holds.lock().unwrap_or_else(|p| p.into_inner()).push(Hold {
            client: i,
            start,
            end,
            token,
        });
        match lock.unlock().await {
            Ok(ReleaseOutcome::Deleted) => {}
            other => return Err(format!("client {i}: unlock: {other:?}")),
        }
    }
    conn.close().await;
    Ok(())
}

/// 8 clients × 3 rounds: hold intervals never overlap, tokens strictly increase in hold order,
/// every fenced write is accepted and no increment is lost.
pub async fn contention_with_fenced_writes<R: Runtime>(rt: &R, env: &Env) {
    let name = Bytes::from(unique("contended"));
    let counter = Bytes::from(unique("fenced-counter"));
    let holds = Arc::new(Mutex::new(Vec::new()));
    let mut finished = Vec::new();
    for i in 0..CLIENTS {
        let conn = connect(rt, env, &format!("contender{i}")).await;
        let (tx, rx) = oneshot::channel();
        finished.push(rx);
        let (name, counter, holds) = (name.clone(), counter.clone(), holds.clone());
        rt.spawn(Box::pin(async move {
            let _ = tx.send(contend(i, conn, name, counter, holds).await);
        }));
    }
    for rx in finished {
        let result = must(rt, Duration::from_secs(60), "contender", rx).await;
        result.expect("contender task ended").expect("contender");
    }
    let mut holds = std::mem::take(&mut *holds.lock().unwrap_or_else(|p| p.into_inner()));
    assert_eq!(holds.len(), CLIENTS * ROUNDS);
    holds.sort_by_key(|h| h.start);
    for w in holds.windows(2) {
        assert!(
            w[0].end <= w[1].start,
            "hold intervals overlap: client {} until {:?}, client {} from {:?}",
            w[0].client,
            w[0].end,
            w[1].client,
            w[1].start
        );
        assert!(
            w[0].token < w[1].token,
            "tokens must strictly increase: {} then {}",
            w[0].token,
            w[1].token
        );
    }
    let check = connect(rt, env, "contention-check").await;
    let (v, _) = must(rt, Duration::from_secs(5), "get", check.get(counter))
        .await
        .unwrap()
        .expect("counter");
    assert_eq!(
        v,
        Bytes::from((CLIENTS * ROUNDS).to_string()),
        "no lost update"
    );
    check.close().await;
}
