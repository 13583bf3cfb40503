//! The scenario suite's [`Runtime`] for async-std: connections of the async-std adapter,
//! async-std's timer and executor.

use std::time::Duration;

use leasedlock_async_std::Connection;
use leasedlock_scenarios::api::{connection_options, ApiConn};
use leasedlock_scenarios::{BoxFuture, ConnectSpec, Failure, Runtime};

/// The async-std runtime for the scenarios.
#[derive(Debug, Clone)]
pub struct AsyncStd;

leasedlock_scenarios::adapter_conn! {
    /// An async-std adapter connection for the scenarios.
    pub struct AsConn(Connection);
}

impl Runtime for AsyncStd {
    type Conn = ApiConn<AsConn>;

    fn connect(&self, spec: ConnectSpec) -> BoxFuture<'static, Result<Self::Conn, Failure>> {
        Box::pin(async move {
            Connection::connect(connection_options(spec))
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
