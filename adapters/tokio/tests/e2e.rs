//! The shared end-to-end scenarios (`leasedlock-scenarios`) run on the tokio adapter, against
//! Mosquitto (`bash scripts/mosquitto.sh start`; `LEASEDLOCK_TEST_BROKER`, default
//! 127.0.0.1:1883) and an in-process emulator.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::command::VdelOutcome;
use leasedlock_core::edit::{EditDecision, EditOutcome};
use leasedlock_core::hlc::Hlc;
use leasedlock_core::lease::ReleaseOutcome;
use leasedlock_scenarios::{self as sc, scenarios, BoxFuture, Env, Failure, PrivateBroker};
use leasedlock_tokio as ll;

#[derive(Clone)]
struct Tokio;

#[derive(Clone)]
struct Conn(ll::Connection);

fn store_failure(e: ll::StoreError) -> Failure {
    match e {
        ll::StoreError::Service(s) => Failure::Service(s),
        ll::StoreError::Timeout { sent } => Failure::Timeout { sent },
        ll::StoreError::Unknown => Failure::Unknown,
        ll::StoreError::Status { status, .. } => Failure::Status(status),
        ll::StoreError::ClockDrift => Failure::ClockDrift,
        ll::StoreError::BadReply => Failure::BadReply,
        ll::StoreError::InvalidArgument(_) => Failure::InvalidArgument,
        ll::StoreError::Closed => Failure::Closed,
        other => Failure::Other(other.to_string()),
    }
}

fn lease_failure(e: ll::LeaseError) -> Failure {
    match e {
        ll::LeaseError::NoLease => Failure::NoLease,
        ll::LeaseError::Lost(_) => Failure::Lost,
        ll::LeaseError::Request(s) => store_failure(s),
        ll::LeaseError::Cancelled => Failure::Cancelled,
        ll::LeaseError::Closed => Failure::Closed,
        ll::LeaseError::InvalidConfig(_) | ll::LeaseError::InvalidArgument(_) => {
            Failure::InvalidArgument
        }
        other => Failure::Other(other.to_string()),
    }
}

fn lock_failure(e: ll::LockError) -> Failure {
    match e {
        ll::LockError::Timeout => Failure::WaitTimeout,
        ll::LockError::Cancelled => Failure::Cancelled,
        ll::LockError::Lease(l) => lease_failure(l),
        ll::LockError::Closed => Failure::Closed,
        other => Failure::Other(other.to_string()),
    }
}

fn edit_failure(e: ll::EditError) -> Failure {
    match e {
        ll::EditError::Lock(l) => lock_failure(l),
        ll::EditError::Request(s) => store_failure(s),
        ll::EditError::Lost(_) => Failure::Lost,
        ll::EditError::Cancelled => Failure::Cancelled,
        ll::EditError::Closed => Failure::Closed,
        other => Failure::Other(other.to_string()),
    }
}

fn leader_failure(e: ll::LeaderError) -> Failure {
    match e {
        ll::LeaderError::Lock(l) => lock_failure(l),
        ll::LeaderError::Closed => Failure::Closed,
        other => Failure::Other(other.to_string()),
    }
}

impl sc::Runtime for Tokio {
    type Conn = Conn;

    fn connect(&self, spec: sc::ConnectSpec) -> BoxFuture<'static, Result<Conn, Failure>> {
        Box::pin(async move {
            let options = ll::ConnectionOptions::new(spec.host, spec.port, spec.client_id)
                .request_timeout(spec.request_timeout)
                .reconnect_backoff(Duration::from_millis(50), spec.reconnect_max);
            ll::Connection::connect(options)
                .await
                .map(Conn)
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

struct KeyObs(ll::Observation);

impl sc::KeyObsApi for KeyObs {
    fn next(&mut self) -> BoxFuture<'_, Option<sc::KeyEvent>> {
        Box::pin(async move {
            loop {
                match self.0.next().await? {
                    Ok(change) => {
                        return Some(sc::KeyEvent {
                            value: change.value,
                            resync: change.resync,
                        })
                    }
                    Err(_lagged) => continue,
                }
            }
        })
    }
}

struct Changes(ll::LeaseObservation);

impl sc::ChangeStream for Changes {
    fn next(&mut self) -> BoxFuture<'_, Option<(bool, Option<Bytes>)>> {
        Box::pin(async move { self.0.next().await.map(|c| (c.held, c.holder)) })
    }
}

struct Lease(ll::Lease);

impl sc::LeaseApi for Lease {
    fn acquire(
        &self,
        duration: Duration,
        renew: Option<Duration>,
    ) -> BoxFuture<'_, Result<bool, Failure>> {
        let mut options = ll::AcquireOptions::new();
        if let Some(r) = renew {
            options = options.renew(r);
        }
        Box::pin(async move {
            self.0
                .acquire(duration, &options)
                .await
                .map_err(lease_failure)
        })
    }
    fn token(&self) -> Result<Hlc, Failure> {
        self.0.token().map_err(lease_failure)
    }
    fn safe_for(&self) -> Option<Duration> {
        self.0
            .safe_until()
            .map(|t| t.saturating_duration_since(std::time::Instant::now()))
    }
    fn holder(&self) -> BoxFuture<'_, Result<Option<Bytes>, Failure>> {
        Box::pin(async move { self.0.holder().await.map_err(lease_failure) })
    }
    fn observe(&self) -> BoxFuture<'_, Result<Box<dyn sc::ChangeStream>, Failure>> {
        Box::pin(async move {
            let o = self.0.observe().await.map_err(lease_failure)?;
            Ok(Box::new(Changes(o)) as Box<dyn sc::ChangeStream>)
        })
    }
    fn release(&self) -> BoxFuture<'_, Result<ReleaseOutcome, Failure>> {
        Box::pin(async move { self.0.release().await.map_err(lease_failure) })
    }
    fn lost(&self) -> BoxFuture<'_, Failure> {
        Box::pin(async move { lease_failure(self.0.lost().await) })
    }
    fn detach(self) {
        self.0.detach();
    }
}

struct Lock(ll::Lock);

impl sc::LockApi for Lock {
    fn lock(
        &self,
        duration: Duration,
        wait: Option<Duration>,
        renew: Option<Duration>,
    ) -> BoxFuture<'_, Result<Hlc, Failure>> {
        let mut options = ll::LockOptions::new();
        if let Some(w) = wait {
            options = options.wait_timeout(w);
        }
        if let Some(r) = renew {
            options = options.renew(r);
        }
        Box::pin(async move { self.0.lock(duration, &options).await.map_err(lock_failure) })
    }
    fn unlock(&self) -> BoxFuture<'_, Result<ReleaseOutcome, Failure>> {
        Box::pin(async move { self.0.unlock().await.map_err(lock_failure) })
    }
    fn token(&self) -> Result<Hlc, Failure> {
        self.0.token().map_err(lease_failure)
    }
    fn edit(
        &self,
        key: Bytes,
        duration: Duration,
        decide: Box<dyn FnOnce(Option<Bytes>) -> EditDecision + Send>,
    ) -> BoxFuture<'_, Result<EditOutcome, Failure>> {
        Box::pin(async move {
            self.0
                .edit(key, duration, |current| async move { decide(current) })
                .await
                .map_err(edit_failure)
        })
    }
}

struct Leader {
    inner: ll::Leader,
    term: Mutex<Option<ll::Term>>,
}

impl sc::LeaderApi for Leader {
    fn campaign(&self, duration: Duration) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async move {
            self.inner
                .campaign(&ll::LeaderOptions::new(duration))
                .await
                .map_err(leader_failure)
        })
    }
    fn elected(&self) -> BoxFuture<'_, Result<sc::TermInfo, Failure>> {
        Box::pin(async move {
            let term = self.inner.elected().await.map_err(leader_failure)?;
            let info = sc::TermInfo {
                token: term.token().clone(),
                number: term.number(),
            };
            *self.term.lock().unwrap() = Some(term);
            Ok(info)
        })
    }
    fn deposed(&self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async move {
            self.inner
                .deposed()
                .await
                .map(|_| ())
                .map_err(leader_failure)
        })
    }
    fn term_cancelled(&self) -> Option<bool> {
        self.term
            .lock()
            .unwrap()
            .as_ref()
            .map(|t| t.cancellation().is_cancelled())
    }
    fn leader(&self) -> Option<Bytes> {
        self.inner.leader()
    }
    fn resign(&self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async move { self.inner.resign().await.map_err(leader_failure) })
    }
}

impl sc::Conn for Conn {
    type Lease = Lease;
    type Lock = Lock;
    type Leader = Leader;
    type KeyObs = KeyObs;

    fn client_id(&self) -> String {
        self.0.client_id().to_string()
    }
    fn is_connected(&self) -> bool {
        self.0.state() == ll::ConnectionState::Connected
    }
    fn set(
        &self,
        key: Bytes,
        value: Bytes,
        spec: sc::SetSpec,
    ) -> BoxFuture<'_, Result<(bool, Option<Hlc>), Failure>> {
        let mut o = ll::SetOptions::new();
        if spec.if_absent {
            o = o.if_absent();
        }
        if spec.if_absent_or_equal {
            o = o.if_absent_or_equal();
        }
        if let Some(e) = spec.expiry {
            o = o.expiry(e);
        }
        if let Some(t) = spec.fencing_token {
            o = o.fencing_token(t);
        }
        Box::pin(async move {
            self.0
                .state_store()
                .set(key, value, &o)
                .await
                .map(|r| (r.applied, r.version))
                .map_err(store_failure)
        })
    }
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Option<sc::Versioned>, Failure>> {
        Box::pin(async move {
            self.0
                .state_store()
                .get(key, None)
                .await
                .map(|v| v.map(|v| (v.value, v.version)))
                .map_err(store_failure)
        })
    }
    fn del(&self, key: Bytes, fencing_token: Option<Hlc>) -> BoxFuture<'_, Result<bool, Failure>> {
        let mut o = ll::DelOptions::new();
        if let Some(t) = fencing_token {
            o = o.fencing_token(t);
        }
        Box::pin(async move {
            self.0
                .state_store()
                .del(key, &o)
                .await
                .map_err(store_failure)
        })
    }
    fn vdel(&self, key: Bytes, value: Bytes) -> BoxFuture<'_, Result<VdelOutcome, Failure>> {
        Box::pin(async move {
            self.0
                .state_store()
                .vdel(key, value, &ll::DelOptions::new())
                .await
                .map_err(store_failure)
        })
    }
    fn observe(&self, key: Bytes) -> BoxFuture<'_, Result<KeyObs, Failure>> {
        Box::pin(async move {
            self.0
                .state_store()
                .observe(key)
                .await
                .map(KeyObs)
                .map_err(store_failure)
        })
    }
    fn lease(&self, name: Bytes, session_id: Option<String>) -> Result<Lease, Failure> {
        match session_id {
            None => self.0.lease(name),
            Some(s) => self.0.lease_with_session(name, s),
        }
        .map(Lease)
        .map_err(lease_failure)
    }
    fn lock(&self, name: Bytes) -> Result<Lock, Failure> {
        self.0.lock(name).map(Lock).map_err(lock_failure)
    }
    fn leader(&self, name: Bytes) -> Result<Leader, Failure> {
        self.0
            .leader(name)
            .map(|inner| Leader {
                inner,
                term: Mutex::new(None),
            })
            .map_err(leader_failure)
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.0.close())
    }
    fn abort(&self) {
        self.0.abort();
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
