//! Mixed runtimes: tokio clients (`leasedlock-tokio`, driven by a tokio runtime) and async-std
//! clients (`leasedlock-async-std`) contend for one lock through the shared contention
//! scenario, unchanged: fenced read-modify-writes, hold intervals never overlap, fencing tokens
//! strictly increase across both adapters, no update is lost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leasedlock_scenarios::api::connection_options as options;
use leasedlock_scenarios::api::{AdapterConn, ApiConn};
use leasedlock_scenarios::{scenarios, BoxFuture, ConnectSpec, Env, Failure, Runtime};

/// A connection of either adapter; both hand out the same `leasedlock-api` handles.
#[derive(Debug, Clone)]
enum AnyConn {
    Tokio(leasedlock_tokio::Connection),
    AsyncStd(leasedlock_async_std::Connection),
}

impl AdapterConn for AnyConn {
    fn api(&self) -> &leasedlock_api::Connection {
        match self {
            AnyConn::Tokio(c) => c.as_api(),
            AnyConn::AsyncStd(c) => c.as_api(),
        }
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        match self {
            AnyConn::Tokio(c) => Box::pin(c.close()),
            AnyConn::AsyncStd(c) => Box::pin(c.close()),
        }
    }
    fn abort(&self) {
        match self {
            AnyConn::Tokio(c) => c.abort(),
            AnyConn::AsyncStd(c) => c.abort(),
        }
    }
}

/// Connections alternate between the adapters; the scenario's own tasks run on async-std
/// (the handles' futures need no particular runtime; each connection's driver runs on its
/// adapter's).
#[derive(Clone)]
struct Mixed {
    tokio: tokio::runtime::Handle,
    connected: Arc<[AtomicUsize; 2]>,
}

impl Runtime for Mixed {
    type Conn = ApiConn<AnyConn>;

    fn connect(&self, spec: ConnectSpec) -> BoxFuture<'static, Result<Self::Conn, Failure>> {
        let total: usize = self
            .connected
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        let side = total % 2;
        let connected = self.connected.clone();
        let tokio = self.tokio.clone();
        Box::pin(async move {
            let failed = |e: leasedlock_api::ConnectError| Failure::Other(e.to_string());
            let conn = if side == 0 {
                // The tokio adapter's driver must be spawned on a tokio runtime.
                let start = tokio.spawn(leasedlock_tokio::Connection::connect(options(spec)));
                let conn = start
                    .await
                    .map_err(|e| Failure::Other(e.to_string()))?
                    .map_err(failed)?;
                AnyConn::Tokio(conn)
            } else {
                AnyConn::AsyncStd(
                    leasedlock_async_std::Connection::connect(options(spec))
                        .await
                        .map_err(failed)?,
                )
            };
            if let Some(c) = connected.get(side) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            Ok(ApiConn(conn))
        })
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async_std::task::sleep(d))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        async_std::task::spawn(task);
    }
}

#[test]
fn tokio_and_async_std_clients_contend_for_one_lock() {
    let env = Env::with_emulator();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mixed = Mixed {
        tokio: tokio.handle().clone(),
        connected: Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]),
    };
    async_std::task::block_on(scenarios::contention_with_fenced_writes(&mixed, &env));
    let [on_tokio, on_async_std] = [0, 1].map(|i| mixed.connected[i].load(Ordering::Relaxed));
    // Eight contenders and the final check alternate between the adapters.
    assert!(
        on_tokio >= 4 && on_async_std >= 4,
        "{on_tokio} tokio, {on_async_std} async-std"
    );
    tokio.shutdown_timeout(Duration::from_secs(2));
}
