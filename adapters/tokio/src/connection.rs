//! [`Connection`]: one MQTT connection to the broker, driven by a tokio task, and the cheap
//! handles built on it.
//!
//! The handles and the runtime-independent half of the connection are `leasedlock-api`'s; this
//! type wraps that half ([`leasedlock_api::Connection`]) and adds what needs tokio: starting
//! the task that drives the engine, waiting for the connection with a timer, aborting the task.

use std::sync::Arc;

use leasedlock_api::{
    Clock, ConnectError, ConnectionOptions, ConnectionState, Engine, LastRefusal,
};
use tracing::Instrument;

use leasedlock_api::driver::Driver;
use leasedlock_api::session::SessionLink;

use crate::runtime::Tokio;
use crate::timer::Timer;

/// Aborts the driver task when the last [`Connection`] clone that owns it is told to.
#[derive(Debug)]
struct Task(tokio::task::AbortHandle);

/// A connection to the broker: one sans-IO MQTT session over a tokio socket
/// ([`leasedlock_api::session`], the transport both adapters share) and the engine (the core's
/// state-store client and machines), driven by one tokio task. Clone it freely; every clone
/// (and every handle made from it) talks to the same task. The task ends when
/// [`Connection::close`] is called or the last handle is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), leasedlock_tokio::ConnectError> {
/// use leasedlock_tokio::{Connection, ConnectionOptions};
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
    /// A connection whose engine runs in the task `task` (for [`crate::attach`]).
    pub(crate) fn from_parts(
        inner: leasedlock_api::Connection,
        task: tokio::task::AbortHandle,
    ) -> Connection {
        Connection {
            inner,
            task: Arc::new(Task(task)),
        }
    }

    /// Starts the connection task and returns at once; requests made before the broker
    /// answers wait (within their timeouts) for the connection. Must be called within a tokio
    /// runtime.
    pub async fn start(options: ConnectionOptions) -> Result<Connection, ConnectError> {
        Connection::spawn(options).await.map(|(conn, _)| conn)
    }

    /// [`Connection::start`], also returning where the driver records CONNACK refusals.
    async fn spawn(options: ConnectionOptions) -> Result<(Connection, LastRefusal), ConnectError> {
        let clock = Clock::new();
        let (engine, inner, commands) = Engine::new(&options, clock)?;
        let span = tracing::info_span!("leasedlock", client_id = %options.client_id());
        let link = SessionLink::new(&options, engine.seed(), clock, Tokio::current())?;
        let id = options.client_id().to_string();
        let refusal = link.last_refusal();
        let driver = Driver::new(engine, commands, clock, link, Timer::new(), id);
        let task = tokio::spawn(driver.run().instrument(span)).abort_handle();
        let conn = Connection {
            inner,
            task: Arc::new(Task(task)),
        };
        Ok((conn, refusal))
    }

    /// Starts the connection and waits for the broker to accept it (at most the connect
    /// timeout of the options, for the first attempts together). When the wait ends and the
    /// broker refused the last attempt in its CONNACK, the error is
    /// [`ConnectError::Refused`] with the reason (attempts go on until then: a rotated token
    /// or password file is read again before each); otherwise [`ConnectError::Timeout`] with
    /// the last error's text.
    pub async fn connect(options: ConnectionOptions) -> Result<Connection, ConnectError> {
        let wait = options.get_connect_timeout();
        let (conn, refusal) = Connection::spawn(options).await?;
        match tokio::time::timeout(wait, conn.wait_connected()).await {
            Ok(result) => result.map(|()| conn),
            Err(_) => {
                let last = match conn.state() {
                    ConnectionState::Disconnected(e) => Some(e),
                    _ => None,
                };
                let refused = refusal.get();
                conn.close().await;
                Err(match refused {
                    Some(reason) => ConnectError::Refused(reason),
                    None => ConnectError::Timeout(last),
                })
            }
        }
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        self.inner.state()
    }

    /// Stops the connection task at once, as a crash would: nothing is released or
    /// unregistered and no DISCONNECT is sent, so the broker sees the connection drop and the
    /// store lets leases expire. Meant for failover tests and fatal-error paths; prefer
    /// [`Connection::close`].
    pub fn abort(&self) {
        self.task.0.abort();
    }

    /// Closes the connection: lets requests in flight (and pending unregistrations) finish
    /// within their timeouts, disconnects, and stops the task. Other handles then fail with
    /// `Closed`.
    pub async fn close(&self) {
        self.inner.close().await
    }

    // wait_connected, client_id, state_store, lease, lease_with_session, lock,
    // lock_with_session, leader, as_api: the same under every adapter.
    leasedlock_api::forward_connection_methods!(inner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasedlock_api::OptionsError;
    use std::time::Duration;

    /// The async-std adapter's test of the same name covers what only MQTT refuses; these are
    /// the api's own checks, through this adapter's `start`.
    #[tokio::test]
    async fn invalid_options_fail_before_spawning() {
        let err = Connection::start(ConnectionOptions::new("h", 1, ""))
            .await
            .unwrap_err();
        assert_eq!(err, ConnectError::Options(OptionsError::BadClientId));
        let err = Connection::start(ConnectionOptions::new("", 1, "c"))
            .await
            .unwrap_err();
        assert_eq!(err, ConnectError::Options(OptionsError::EmptyHost));
        let err = Connection::start(
            ConnectionOptions::new("h", 1, "c").credentials("u", "p".repeat(65_536)),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err,
            ConnectError::Options(OptionsError::Unencodable("password"))
        );
    }

    /// The session transport has no 5 s floor on the keep-alive (rumqttc had one, refused as
    /// `OptionsError::KeepAlive`): one second is MQTT's smallest and is accepted.
    #[tokio::test]
    async fn a_one_second_keep_alive_is_accepted() {
        let conn = Connection::start(
            ConnectionOptions::new("127.0.0.1", 1, "c").keep_alive(Duration::from_secs(1)),
        )
        .await
        .expect("started");
        conn.abort();
    }
}
