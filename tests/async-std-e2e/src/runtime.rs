//! The scenario suite's [`Runtime`] for async-std: connections of the async-std adapter whose
//! drivers run on async-std's executor (handed over as the adapter's spawner), async-std's
//! timer and executor.

use std::time::Duration;

use leasedlock_async_std::Connection;
use leasedlock_scenarios::api::{connection_options, ApiConn};
use leasedlock_scenarios::{BoxFuture, ConnectSpec, Failure, Runtime};

/// The adapter's spawner for async-std applications: the task runs on async-std's executor
/// (dropping the join handle detaches it).
pub fn spawn_on_async_std(task: leasedlock_async_std::Task) {
    async_std::task::spawn(task);
}

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
            Connection::connect_with(connection_options(spec), spawn_on_async_std)
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
