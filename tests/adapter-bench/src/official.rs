//! The official Rust SDK (`azure_iot_operations_services`) measured the same way as our
//! adapters: a lease on one connection and a lock two connections contend for. It runs on
//! tokio (the SDK needs it), on the runtime that calls [`Official::start`].

use std::time::{Duration, Instant};

use azure_iot_operations_services::leased_lock::{lease, lock};

use leasedlock_interop_tests::OfficialSession;

use crate::world::{client_id, World};

/// Each request's timeout (the SDK rounds it up to whole seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The lease and lock duration.
const DURATION: Duration = Duration::from_secs(10);

/// One official client: its running MQTT session and its state-store client.
struct Client(OfficialSession);

impl Client {
    fn connect(world: &World, prefix: &str) -> Client {
        // The SDK uses the client id as the holder name: no characters beyond a plain id.
        let id = client_id(prefix).replace(['.', ':'], "-");
        Client(OfficialSession::connect(
            id,
            world.host(),
            world.port(),
            Duration::from_secs(60),
        ))
    }

    async fn close(self) {
        self.0.close().await;
    }
}

/// A lease on one official connection and a lock two official connections contend for.
pub struct Official {
    lease: lease::Client,
    holder_lock: lock::Client,
    waiter_lock: lock::Client,
    clients: Vec<Client>,
}

impl std::fmt::Debug for Official {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Official")
            .field(
                "clients",
                &self.clients.iter().map(|c| &c.0.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Official {
    /// Connects the holder and the waiter, and waits until a request gets through.
    pub async fn start(world: &World) -> Official {
        let holder = Client::connect(world, "bench-official-holder");
        let waiter = Client::connect(world, "bench-official-waiter");
        let lease_name = client_id("bench-official-lease");
        let lock_name = client_id("bench-official-lock");
        let lease = lease::Client::new(
            holder.0.store.clone(),
            lease_name.into_bytes(),
            holder.0.id.clone().into_bytes(),
        )
        .expect("a lease client");
        let holder_lock = lock::Client::new(
            holder.0.store.clone(),
            lock_name.clone().into_bytes(),
            holder.0.id.clone().into_bytes(),
        )
        .expect("a lock client");
        let waiter_lock = lock::Client::new(
            waiter.0.store.clone(),
            lock_name.into_bytes(),
            waiter.0.id.clone().into_bytes(),
        )
        .expect("a lock client");
        let official = Official {
            lease,
            holder_lock,
            waiter_lock,
            clients: vec![holder, waiter],
        };
        // The sessions connect in the background: the first answered request says they are up.
        for client in &official.clients {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let got = client
                    .0
                    .store
                    .get(b"bench-official-probe".to_vec(), Duration::from_secs(1))
                    .await;
                if got.is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "official client never answered: {got:?}"
                );
            }
        }
        official
    }

    /// Acquire then release of a free lease: (acquire, whole cycle).
    pub async fn acquire_release(&self) -> (Duration, Duration) {
        let start = Instant::now();
        let got = self.lease.acquire(DURATION, REQUEST_TIMEOUT, None).await;
        let acquired = start.elapsed();
        assert!(got.is_ok(), "official acquire failed: {got:?}");
        let released = self.lease.release(REQUEST_TIMEOUT).await;
        assert!(released.is_ok(), "official release failed: {released:?}");
        (acquired, start.elapsed())
    }

    /// The holder unlocks while the waiter waits in `lock()`: the time from the holder's
    /// `unlock()` call to the waiter's `lock()` returning.
    pub async fn handover(&self) -> Duration {
        let first = self.holder_lock.lock(DURATION, REQUEST_TIMEOUT, None).await;
        assert!(first.is_ok(), "official holder lock failed: {first:?}");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiter = self.waiter_lock.clone();
        tokio::spawn(async move {
            let r = waiter.lock(DURATION, REQUEST_TIMEOUT, None).await;
            let _ = tx.send((r.map(|_| ()).map_err(|e| e.to_string()), Instant::now()));
        });
        // The waiter registers, is refused and settles into waiting.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let released = Instant::now();
        let unlocked = self.holder_lock.unlock(REQUEST_TIMEOUT).await;
        assert!(unlocked.is_ok(), "official unlock failed: {unlocked:?}");
        let (r, got) = rx.await.expect("official waiter reports");
        assert!(r.is_ok(), "official waiter lock failed: {r:?}");
        let done = self.waiter_lock.unlock(REQUEST_TIMEOUT).await;
        assert!(done.is_ok(), "official waiter unlock failed: {done:?}");
        got.duration_since(released)
    }

    /// Closes both connections.
    pub async fn close(self) {
        for c in self.clients {
            c.close().await;
        }
    }
}
