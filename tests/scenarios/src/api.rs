//! The scenario traits implemented once for the handles of `leasedlock-api`, which every
//! runtime adapter re-exports: an adapter's test only supplies its [`Runtime`] and wraps its
//! `Connection` in [`ApiConn`] through [`AdapterConn`].
//!
//! [`Runtime`]: crate::Runtime

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_api as ll;
use leasedlock_core::command::VdelOutcome;
use leasedlock_core::edit::{EditDecision, EditOutcome};
use leasedlock_core::hlc::Hlc;
use leasedlock_core::lease::ReleaseOutcome;

use crate::adapter::{self as sc, BoxFuture, ConnectSpec, Failure};

#[doc(hidden)]
pub use leasedlock_api as __api;

/// What an adapter's `Connection` adds to the shared [`ll::Connection`]: the runtime-specific
/// entry points.
pub trait AdapterConn: Clone + Send + Sync + 'static {
    /// The runtime-independent half (`Connection::as_api`).
    fn api(&self) -> &ll::Connection;
    /// `Connection::close`.
    fn close(&self) -> BoxFuture<'_, ()>;
    /// `Connection::abort`.
    fn abort(&self);
}

/// Declares `struct $name(pub $conn);` (with the given attributes and visibility) and
/// implements [`AdapterConn`] for it, for an adapter `Connection` type `$conn` with the usual
/// `as_api`, `close` and `abort`.
///
/// ```ignore
/// leasedlock_scenarios::adapter_conn! {
///     /// The tokio adapter's connection for the scenarios.
///     struct TokioConn(leasedlock_tokio::Connection);
/// }
/// ```
#[macro_export]
macro_rules! adapter_conn {
    ($(#[$meta:meta])* $vis:vis struct $name:ident($conn:ty);) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis struct $name(pub $conn);

        impl $crate::api::AdapterConn for $name {
            fn api(&self) -> &$crate::api::__api::Connection {
                self.0.as_api()
            }
            fn close(&self) -> $crate::BoxFuture<'_, ()> {
                ::std::boxed::Box::pin(self.0.close())
            }
            fn abort(&self) {
                self.0.abort();
            }
        }
    };
}

/// The connection options a scenario asks for (every adapter re-exports this type).
pub fn connection_options(spec: ConnectSpec) -> ll::ConnectionOptions {
    ll::ConnectionOptions::new(spec.host, spec.port, spec.client_id)
        .request_timeout(spec.request_timeout)
        .reconnect_backoff(Duration::from_millis(50), spec.reconnect_max)
}

/// An adapter's connection as the scenarios drive it.
#[derive(Clone)]
pub struct ApiConn<C>(pub C);

/// A store error as the scenarios classify it.
pub fn store_failure(e: ll::StoreError) -> Failure {
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

/// A lease error as the scenarios classify it.
pub fn lease_failure(e: ll::LeaseError) -> Failure {
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

/// A lock error as the scenarios classify it.
pub fn lock_failure(e: ll::LockError) -> Failure {
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

/// A key observation.
pub struct KeyObs(ll::Observation);

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
        Box::pin(async move {
            loop {
                match self.0.next().await? {
                    Ok(c) => return Some((c.held, c.holder)),
                    // A lapse is not a change; the re-read after it delivers what differs.
                    Err(_) => continue,
                }
            }
        })
    }
}

/// A lease handle.
pub struct Lease(ll::Lease);

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
    fn holder_value(&self) -> Bytes {
        self.0.holder_value()
    }
}

/// A lock handle.
pub struct Lock(ll::Lock);

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
    fn holder_value(&self) -> Bytes {
        self.0.holder_value()
    }
    fn is_held(&self) -> bool {
        self.0.is_held()
    }
}

/// A leader handle and its current term.
pub struct Leader {
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
            *self.term.lock().unwrap_or_else(|p| p.into_inner()) = Some(term);
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
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|t| t.cancellation().is_cancelled())
    }
    fn leader(&self) -> Option<Bytes> {
        self.inner.leader()
    }
    fn resign(&self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async move { self.inner.resign().await.map_err(leader_failure) })
    }
    fn holder_value(&self) -> Bytes {
        self.inner.holder_value()
    }
    fn is_leader(&self) -> bool {
        self.inner.is_leader()
    }
}

impl<C: AdapterConn> sc::Conn for ApiConn<C> {
    type Lease = Lease;
    type Lock = Lock;
    type Leader = Leader;
    type KeyObs = KeyObs;

    fn client_id(&self) -> String {
        self.0.api().client_id().to_string()
    }
    fn is_connected(&self) -> bool {
        self.0.api().state() == ll::ConnectionState::Connected
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
                .api()
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
                .api()
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
                .api()
                .state_store()
                .del(key, &o)
                .await
                .map_err(store_failure)
        })
    }
    fn vdel(&self, key: Bytes, value: Bytes) -> BoxFuture<'_, Result<VdelOutcome, Failure>> {
        Box::pin(async move {
            self.0
                .api()
                .state_store()
                .vdel(key, value, &ll::DelOptions::new())
                .await
                .map_err(store_failure)
        })
    }
    fn observe(&self, key: Bytes) -> BoxFuture<'_, Result<KeyObs, Failure>> {
        Box::pin(async move {
            self.0
                .api()
                .state_store()
                .observe(key)
                .await
                .map(KeyObs)
                .map_err(store_failure)
        })
    }
    fn lease(&self, name: Bytes, session_id: Option<String>) -> Result<Lease, Failure> {
        match session_id {
            None => self.0.api().lease(name),
            Some(s) => self.0.api().lease_with_session(name, s),
        }
        .map(Lease)
        .map_err(lease_failure)
    }
    fn lock(&self, name: Bytes) -> Result<Lock, Failure> {
        self.0.api().lock(name).map(Lock).map_err(lock_failure)
    }
    fn leader(&self, name: Bytes) -> Result<Leader, Failure> {
        self.0
            .api()
            .leader(name)
            .map(|inner| Leader {
                inner,
                term: Mutex::new(None),
            })
            .map_err(leader_failure)
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        self.0.close()
    }
    fn abort(&self) {
        self.0.abort();
    }
}
