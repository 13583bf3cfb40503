//! [`Connection`]: one MQTT connection to the broker, driven by one background task (on the
//! application's executor or this crate's own thread, see [`crate::spawn`]), and the handles
//! built on it.
//!
//! The handles and the runtime-independent half of the connection are `leasedlock-api`'s; this
//! type wraps that half ([`leasedlock_api::Connection`]) and adds what needs a runtime:
//! starting the task that drives the engine, waiting with a timer, aborting the task, and a
//! bound on [`Connection::close`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_io::Timer;
use futures_lite::future;
use leasedlock_api::{
    Clock, ConnectError, ConnectionOptions, ConnectionState, Engine, LastRefusal,
};
use tracing::Instrument;

use leasedlock_api::driver::Driver;
use leasedlock_api::session::SessionLink;

use crate::deadline::Deadline;
use crate::runtime::AsyncIo;
use crate::spawn::{Spawn, Spawner};

/// How much longer than the engine's own closing grace (the request timeout, for requests
/// still in flight) [`Connection::close`] waits for the driver before it stops waiting.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The driver task as the connection's clones share it.
#[derive(Debug)]
struct Task {
    /// Closing (or dropping) it ends the task at its next poll, as a crash would.
    abort: async_channel::Sender<()>,
    /// Why the broker refused the last attempt, if it did.
    last_refusal: LastRefusal,
    /// `close()` stopped waiting for a driver that did not finish in time.
    detached: AtomicBool,
    close_bound: Duration,
}

/// A connection to the broker: one sans-IO MQTT session over `async-io` I/O (the reactor
/// async-std and smol share) and the engine (the core's state-store client and machines),
/// driven by one task. Clone it freely;
/// every clone (and every handle made from it) talks to the same task. The task ends when
/// [`Connection::close`] is called or the last handle is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), leasedlock_async_std::ConnectError> {
/// use leasedlock_async_std::{Connection, ConnectionOptions};
///
/// let conn = Connection::connect(ConnectionOptions::new("127.0.0.1", 1883, "worker-1")).await?;
/// assert_eq!(conn.client_id(), "worker-1");
/// conn.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Connection {
    inner: leasedlock_api::Connection,
    task: Arc<Task>,
}

impl Connection {
    /// Starts the connection task and returns at once; requests made before the broker
    /// answers wait (within their timeouts) for the connection. The task runs on this crate's
    /// own executor thread (see [`Connection::start_with`] to run it on the application's).
    pub async fn start(options: ConnectionOptions) -> Result<Connection, ConnectError> {
        Connection::start_on(options, Spawner::Default)
    }

    /// [`Connection::start`], with the connection's background tasks spawned by `spawner`:
    /// the application's executor, e.g. `|task| { async_std::task::spawn(task); }` under
    /// async-std or `|task| smol::spawn(task).detach()` under smol.
    pub async fn start_with(
        options: ConnectionOptions,
        spawner: impl Spawn,
    ) -> Result<Connection, ConnectError> {
        Connection::start_on(options, Spawner::Given(Arc::new(spawner)))
    }

    fn start_on(options: ConnectionOptions, spawner: Spawner) -> Result<Connection, ConnectError> {
        let clock = Clock::new();
        let (engine, inner, commands) = Engine::new(&options, clock)?;
        let link = SessionLink::new(
            &options,
            engine.seed(),
            clock,
            AsyncIo::new(spawner.clone()),
        )?;
        if let Err(e) = spawner.ready() {
            // Only the default spawner can fail here (no thread for its executor); without
            // a task nothing would ever answer, so the connection is refused.
            tracing::error!(error = %e.0, "cannot start the executor thread");
            return Err(ConnectError::Closed);
        }
        let span = tracing::info_span!("leasedlock", client_id = %options.client_id());
        let id = options.client_id().to_string();
        let last_refusal = link.last_refusal();
        let driver = Driver::new(engine, commands, clock, link, Deadline::default(), id);
        let (abort, aborted) = async_channel::bounded::<()>(1);
        // The task holds a sender itself, so dropping every `Connection` clone (while other
        // handles live on) does not close the channel; only `abort()` does.
        let keep_open = abort.clone();
        spawner.spawn(
            async move {
                let _keep_open = keep_open;
                // `recv` fails once `abort()` closed the channel: the driver's future is
                // dropped where it stands, with no DISCONNECT and nothing released.
                let killed = async {
                    let _ = aborted.recv().await;
                };
                future::or(driver.run(), killed).await;
            }
            .instrument(span),
        );
        Ok(Connection {
            inner,
            task: Arc::new(Task {
                abort,
                last_refusal,
                detached: AtomicBool::new(false),
                close_bound: options.get_request_timeout() + CLOSE_GRACE,
            }),
        })
    }

    /// Starts the connection and waits for the broker to accept it (at most the connect
    /// timeout of the options, for the first attempts together). The connection's task runs
    /// on this crate's own executor thread (see [`Connection::connect_with`]).
    pub async fn connect(options: ConnectionOptions) -> Result<Connection, ConnectError> {
        let wait = options.get_connect_timeout();
        let conn = Connection::start(options).await?;
        conn.connected_within(wait).await
    }

    /// [`Connection::connect`], with the connection's background tasks spawned by `spawner`
    /// (see [`Connection::start_with`]).
    pub async fn connect_with(
        options: ConnectionOptions,
        spawner: impl Spawn,
    ) -> Result<Connection, ConnectError> {
        let wait = options.get_connect_timeout();
        let conn = Connection::start_with(options, spawner).await?;
        conn.connected_within(wait).await
    }

    /// Waits (at most `wait`) for the broker to accept the connection; closes it otherwise.
    async fn connected_within(self, wait: Duration) -> Result<Connection, ConnectError> {
        let expired = async {
            Timer::after(wait).await;
            None
        };
        match future::or(async { Some(self.wait_connected().await) }, expired).await {
            Some(result) => result.map(|()| self),
            None => {
                let last = match self.state() {
                    ConnectionState::Disconnected(e) => Some(e),
                    _ => None,
                };
                let refused = self.task.last_refusal.get();
                self.close().await;
                Err(match refused {
                    Some(reason) => ConnectError::Refused(reason),
                    None => ConnectError::Timeout(last),
                })
            }
        }
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        if self.task.detached.load(Ordering::Relaxed) {
            return ConnectionState::Closed;
        }
        self.inner.state()
    }

    /// Stops the connection task as a crash would: nothing is released or unregistered and no
    /// DISCONNECT is sent, so the broker sees the connection drop and the store lets leases
    /// expire. Meant for failover tests and fatal-error paths; prefer [`Connection::close`].
    pub fn abort(&self) {
        self.task.abort.close();
    }

    /// Closes the connection: lets requests in flight (and pending unregistrations) finish
    /// within their timeouts, disconnects, and stops the task. Other handles then fail with
    /// `Closed`.
    ///
    /// Bounded: if the driver has not finished within the request timeout plus
    /// [`CLOSE_GRACE`] (a stuck peer, an executor whose threads are all blocked), `close`
    /// returns anyway and the state reads `Closed`; the driver completes the close as soon as
    /// it runs again.
    pub async fn close(&self) {
        let bound = self.task.close_bound;
        let expired = async {
            Timer::after(bound).await;
            false
        };
        let closed = async {
            self.inner.close().await;
            true
        };
        if !future::or(closed, expired).await {
            tracing::warn!("driver did not finish closing in time; detaching");
            self.task.detached.store(true, Ordering::Relaxed);
        }
    }

    // wait_connected, client_id, state_store, lease, lease_with_session, lock,
    // lock_with_session, leader, as_api: the same under every adapter.
    leasedlock_api::forward_connection_methods!(inner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasedlock_api::OptionsError;

    #[async_std::test]
    async fn invalid_options_fail_before_spawning() {
        let err = Connection::start(ConnectionOptions::new("h", 1, ""))
            .await
            .unwrap_err();
        assert_eq!(err, ConnectError::Options(OptionsError::BadClientId));
        // What only MQTT refuses is refused as well.
        let err = Connection::start(ConnectionOptions::new("h", 1, "a\0b"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::Options(_) | ConnectError::BadClientId),
            "{err:?}"
        );
        let err = Connection::start(ConnectionOptions::new("h", 1, "c").credentials("a\0b", "pw"))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ConnectError::Options(OptionsError::Unencodable("username"))
        );
    }

    #[async_std::test]
    async fn connect_times_out_with_the_last_error() {
        let options = ConnectionOptions::new("127.0.0.1", 1, "c1")
            .connect_timeout(Duration::from_millis(300))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50));
        let err = Connection::connect(options).await.unwrap_err();
        assert!(matches!(err, ConnectError::Timeout(Some(_))), "{err:?}");
    }

    #[async_std::test]
    async fn abort_ends_the_task_and_handles_fail_closed() {
        let options = ConnectionOptions::new("127.0.0.1", 1, "c-abort")
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50));
        let conn = Connection::start(options).await.unwrap();
        conn.abort();
        let store = conn.state_store();
        let got = future::or(async { Some(store.get("k", None).await) }, async {
            Timer::after(Duration::from_secs(3)).await;
            None
        })
        .await;
        assert!(
            matches!(got, Some(Err(leasedlock_api::StoreError::Closed))),
            "{got:?}"
        );
        assert_eq!(conn.state(), ConnectionState::Closed);
    }
}
