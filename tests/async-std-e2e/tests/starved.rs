//! `Connection::close` stays bounded when the driver cannot run: here every executor thread
//! of async-std is blocked by other (misbehaving) tasks, as a busy test process or a runaway
//! task would do. Its own binary, because it stalls the whole executor for a few seconds.

use std::sync::mpsc;
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
    // As many blockers as executor threads: each takes a thread and holds it (a blocking call,
    // as a misbehaving task would make) until `close` has returned, so the driver gets no
    // thread to run on meanwhile. Each says when it holds its thread.
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    let (holding_tx, holding_rx) = mpsc::channel::<()>();
    let held_at_most = bound + Duration::from_secs(10);
    let (releases, blockers): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| {
            let holding = holding_tx.clone();
            let (release, released) = mpsc::channel::<()>();
            let blocker = async_std::task::spawn(async move {
                let _ = holding.send(());
                // Bounded, so that a failing test does not hang.
                let _ = released.recv_timeout(held_at_most);
            });
            (release, blocker)
        })
        .unzip();
    for n in 0..threads {
        holding_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("only {n} of {threads} blockers took an executor thread"));
    }
    let started = Instant::now();
    conn.close().await;
    let took = started.elapsed();
    assert!(took < bound + Duration::from_secs(1), "{took:?}");
    assert_eq!(conn.state(), ConnectionState::Closed);
    for release in releases {
        let _ = release.send(());
    }
    for b in blockers {
        b.await;
    }
}
