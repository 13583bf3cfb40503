//! `Connection::close` stays bounded when the driver cannot run: here every executor thread
//! of async-std is blocked by other (misbehaving) tasks, as a busy test process or a runaway
//! task would do. Its own binary, because it stalls the whole executor for a few seconds.

use std::time::{Duration, Instant};

use leasedlock_async_std::{Connection, ConnectionOptions, ConnectionState, CLOSE_GRACE};
use leasedlock_async_std_e2e::runtime::spawn_on_async_std;
use leasedlock_scenarios::PrivateBroker;

#[async_std::test]
async fn close_is_bounded_while_the_executor_is_starved() {
    let broker = PrivateBroker::start();
    // `close` waits at most the request timeout (for requests in flight) plus `CLOSE_GRACE`.
    let request_timeout = Duration::from_millis(500);
    let bound = request_timeout + CLOSE_GRACE;
    let options = ConnectionOptions::new(
        "127.0.0.1",
        broker.port(),
        format!("as-starved-{}", std::process::id()),
    )
    .request_timeout(request_timeout);
    // The driver runs on async-std's executor, the one the blockers take over.
    let conn = Connection::connect_with(options, spawn_on_async_std)
        .await
        .unwrap();
    // More blockers than executor threads: the driver gets no thread until they finish.
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    let blocked_for = bound + Duration::from_secs(2);
    let blockers: Vec<_> = (0..threads)
        .map(|_| async_std::task::spawn(async move { std::thread::sleep(blocked_for) }))
        .collect();
    // Let the blockers take the threads.
    async_std::task::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    conn.close().await;
    let took = started.elapsed();
    assert!(took < bound + Duration::from_secs(1), "{took:?}");
    assert_eq!(conn.state(), ConnectionState::Closed);
    for b in blockers {
        b.await;
    }
}
