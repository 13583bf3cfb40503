//! Runtime-neutral helpers: deadlines, unique names, time measurement.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use crate::adapter::Runtime;

/// Runs `fut` with a deadline: `None` when `limit` passed first. A zero `limit` polls `fut`
/// exactly once ("dropped before its answer"): a runtime's zero sleep may only fire at its next
/// timer tick (tokio's millisecond), by which time a fast round trip has completed.
pub async fn within<R: Runtime, T>(
    rt: &R,
    limit: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    let mut fut = pin!(fut);
    let mut sleep = rt.sleep(limit);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if limit.is_zero() || sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Polls `fut` once and drops it: `true` when it was still pending, i.e. it was dropped before
/// its answer. Unlike `within(rt, Duration::ZERO, fut)` this does not race the reply against the
/// runtime's timer (tokio's zero sleep stays pending until its timer wheel ticks, ~1 ms, long
/// enough for a loopback round trip).
pub async fn dropped_after_one_poll<T>(fut: impl Future<Output = T>) -> bool {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await
}

/// Drives `fut` until `ready` holds (checked every 20 ms), then drops it: for dropping an
/// operation at a known point of its life (its registration seen on the store, say) rather than
/// after a guessed delay. Panics with `what` if `fut` finishes first or `limit` passes.
pub async fn drop_when<R: Runtime, T: std::fmt::Debug>(
    rt: &R,
    limit: Duration,
    what: &str,
    fut: impl Future<Output = T>,
    mut ready: impl FnMut() -> bool,
) {
    let mut fut = pin!(fut);
    let start = std::time::Instant::now();
    while !ready() {
        if let Some(v) = within(rt, Duration::from_millis(20), fut.as_mut()).await {
            panic!("{what}: finished ({v:?}) before it was ready to be dropped");
        }
        if start.elapsed() >= limit {
            panic!("{what}: not ready within {limit:?}");
        }
    }
}

/// Like [`within`], panicking with `what` on timeout: a hang is a test failure, not a hang.
pub async fn must<R: Runtime, T>(
    rt: &R,
    limit: Duration,
    what: &str,
    fut: impl Future<Output = T>,
) -> T {
    match within(rt, limit, fut).await {
        Some(v) => v,
        None => panic!("{what}: no result within {limit:?}"),
    }
}

/// A name unique in this process and unlikely to collide with other processes on the broker.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<R: Runtime>(
    rt: &R,
    limit: Duration,
    mut check: impl FnMut() -> bool,
) -> bool {
    let start = std::time::Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        rt.sleep(Duration::from_millis(20)).await;
    }
}
