//! The shared end-to-end scenarios (`leasedlock-scenarios`) run on the tokio adapter, against
//! Mosquitto (`bash scripts/mosquitto.sh start`; `LEASEDLOCK_TEST_BROKER`, default
//! 127.0.0.1:1883) and an in-process emulator.

use std::time::Duration;

use leasedlock_scenarios::api::{connection_options, ApiConn};
use leasedlock_scenarios::{self as sc, BoxFuture, Failure};
use leasedlock_tokio as ll;

#[derive(Clone)]
struct Tokio;

leasedlock_scenarios::adapter_conn! {
    /// The tokio adapter's connection as the shared scenario glue (`leasedlock_scenarios::api`)
    /// drives it.
    struct TokioConn(ll::Connection);
}

impl sc::Runtime for Tokio {
    type Conn = ApiConn<TokioConn>;

    fn connect(&self, spec: sc::ConnectSpec) -> BoxFuture<'static, Result<Self::Conn, Failure>> {
        Box::pin(async move {
            ll::Connection::connect(connection_options(spec))
                .await
                .map(|c| ApiConn(TokioConn(c)))
                .map_err(|e| Failure::Other(e.to_string()))
        })
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
}

fn run(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(f);
}

leasedlock_scenarios::scenario_tests!(Tokio, run);
