//! The shared end-to-end scenarios (`leasedlock-scenarios`) run on the tokio adapter, against
//! Mosquitto (`bash scripts/mosquitto.sh start`; `LEASEDLOCK_TEST_BROKER`, default
//! 127.0.0.1:1883) and an in-process emulator.

use std::time::Duration;

use leasedlock_scenarios::api::{AdapterConn, ApiConn};
use leasedlock_scenarios::{self as sc, scenarios, BoxFuture, Env, Failure, PrivateBroker};
use leasedlock_tokio as ll;

#[derive(Clone)]
struct Tokio;

/// The tokio adapter's connection as the shared scenario glue (`leasedlock_scenarios::api`)
/// drives it.
#[derive(Clone)]
struct TokioConn(ll::Connection);

impl AdapterConn for TokioConn {
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

impl sc::Runtime for Tokio {
    type Conn = ApiConn<TokioConn>;

    fn connect(&self, spec: sc::ConnectSpec) -> BoxFuture<'static, Result<Self::Conn, Failure>> {
        Box::pin(async move {
            let options = ll::ConnectionOptions::new(spec.host, spec.port, spec.client_id)
                .request_timeout(spec.request_timeout)
                .reconnect_backoff(Duration::from_millis(50), spec.reconnect_max);
            ll::Connection::connect(options)
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

#[test]
fn store_operations() {
    let env = Env::with_emulator();
    run(scenarios::store_operations(&Tokio, &env));
}

#[test]
fn lease_operations() {
    let env = Env::with_emulator();
    run(scenarios::lease_operations(&Tokio, &env));
}

#[test]
fn lock_operations() {
    let env = Env::with_emulator();
    run(scenarios::lock_operations(&Tokio, &env));
}

#[test]
fn leader_operations() {
    let env = Env::with_emulator();
    run(scenarios::leader_operations(&Tokio, &env));
}

#[test]
fn contention_with_fenced_writes() {
    let env = Env::with_emulator();
    run(scenarios::contention_with_fenced_writes(&Tokio, &env));
}

#[test]
fn failover_when_holder_dies() {
    let env = Env::with_emulator();
    run(scenarios::failover_when_holder_dies(&Tokio, &env));
}

#[test]
fn broker_restart_mid_lease() {
    let mut broker = PrivateBroker::start();
    let env = Env::on("127.0.0.1", broker.port(), true);
    run(scenarios::broker_restart_mid_lease(
        &Tokio,
        &env,
        &mut broker,
    ));
}

#[test]
fn dropped_futures_leave_nothing_behind() {
    let env = Env::with_emulator();
    run(scenarios::dropped_futures_leave_nothing_behind(
        &Tokio, &env,
    ));
}

#[test]
fn garbage_replies_give_typed_errors() {
    let env = Env::bare();
    run(scenarios::garbage_replies_give_typed_errors(&Tokio, &env));
}
