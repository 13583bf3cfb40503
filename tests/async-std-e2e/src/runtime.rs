//! The scenario suite's [`Runtime`] for async-std: connections of the async-std adapter,
//! async-std's timer and executor.

use std::time::Duration;

use leasedlock_async_std::{Connection, ConnectionOptions};
use leasedlock_scenarios::api::{AdapterConn, ApiConn};
use leasedlock_scenarios::{BoxFuture, ConnectSpec, Failure, Runtime};

/// The async-std runtime for the scenarios.
#[derive(Debug, Clone)]
pub struct AsyncStd;

/// An async-std adapter connection for the scenarios.
#[derive(Debug, Clone)]
pub struct AsConn(pub Connection);

impl AdapterConn for AsConn {
    fn api(&self) -> &leasedlock_api::Connection {
        self.0.as_api()
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.0.close())
    }
    fn abort(&self) {
        self.0.abort();
    }
}

/// The adapter options a scenario asks for.
pub fn options(spec: ConnectSpec) -> ConnectionOptions {
    ConnectionOptions::new(spec.host, spec.port, spec.client_id)
        .request_timeout(spec.request_timeout)
        .reconnect_backoff(Duration::from_millis(50), spec.reconnect_max)
}

impl Runtime for AsyncStd {
    type Conn = ApiConn<AsConn>;

    fn connect(&self, spec: ConnectSpec) -> BoxFuture<'static, Result<Self::Conn, Failure>> {
        Box::pin(async move {
            Connection::connect(options(spec))
                .await
                .map(|c| ApiConn(AsConn(c)))
                .map_err(|e| Failure::Other(e.to_string()))
        })
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async_std::task::sleep(d))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        async_std::task::spawn(task);
    }
}
