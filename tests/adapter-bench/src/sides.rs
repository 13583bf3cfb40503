//! The per-adapter measurements, written once against the shared public API and instantiated
//! for each adapter crate. Each side must be driven by its own runtime (tokio's runtime for
//! `tokio_side`, async-std's executor for `async_std_side`).

/// Connection and raw state-store measurements for one adapter crate: a module `$side` with a
/// `Side` holding one connection.
#[macro_export]
macro_rules! adapter_side {
    ($side:ident, $krate:ident) => {
        /// One adapter's connection and the measurements on it.
        pub mod $side {
            use std::time::{Duration, Instant};

            use $krate::{Connection, ConnectionOptions, StateStore};

            use $crate::world::{client_id, World};

            /// A connected client of this adapter.
            #[derive(Debug)]
            pub struct Side {
                /// The connection.
                pub conn: Connection,
                store: StateStore,
                key: String,
            }

            /// Connects one client of this adapter.
            pub async fn connect(world: &World, prefix: &str) -> Connection {
                let options = ConnectionOptions::new(world.host(), world.port(), client_id(prefix))
                    .request_timeout(Duration::from_secs(10));
                Connection::connect(options)
                    .await
                    .expect("adapter connects")
            }

            impl Side {
                /// Connects.
                pub async fn start(world: &World) -> Side {
                    let conn = connect(world, concat!("bench-", stringify!($side))).await;
                    let store = conn.state_store();
                    Side {
                        conn,
                        store,
                        key: client_id("bench-get-key"),
                    }
                }

                /// One `GET` of a missing key through the adapter.
                pub async fn get(&self) -> Duration {
                    let start = Instant::now();
                    let value = self.store.get(self.key.clone(), None).await;
                    let took = start.elapsed();
                    assert!(matches!(value, Ok(None)), "GET failed: {value:?}");
                    took
                }

                /// Closes the connection.
                pub async fn close(self) {
                    self.conn.close().await;
                }
            }
        }
    };
}

/// Lease and lock measurements for one adapter crate: a module `$leases` with a `Leases`
/// holding two connections that contend for one lock. `$spawn` runs a `'static` future on the
/// adapter's runtime and `$sleep` sleeps on it; `$side` is the module [`adapter_side!`] made
/// for the same crate.
#[macro_export]
macro_rules! adapter_leases {
    ($leases:ident, $side:ident, $krate:ident, spawn = $spawn:path, sleep = $sleep:path) => {
        /// One adapter's lease and lock measurements.
        pub mod $leases {
            use std::sync::Arc;
            use std::time::{Duration, Instant};

            use $krate::{AcquireOptions, Connection, Lease, Lock, LockOptions};

            use super::$side::connect;
            use $crate::world::{client_id, World};

            /// A lease on one connection and a lock two connections contend for.
            #[derive(Debug)]
            pub struct Leases {
                lease: Lease,
                holder_lock: Lock,
                waiter_lock: Arc<Lock>,
                conns: Vec<Connection>,
            }

            impl Leases {
                /// Connects the holder and the waiter.
                pub async fn start(world: &World) -> Leases {
                    let holder = connect(world, "bench-holder").await;
                    let waiter = connect(world, "bench-waiter").await;
                    let name = client_id("bench-lock");
                    Leases {
                        lease: holder
                            .lease(client_id("bench-lease"))
                            .expect("lease handle"),
                        holder_lock: holder.lock(name.clone()).expect("lock handle"),
                        waiter_lock: Arc::new(waiter.lock(name).expect("lock handle")),
                        conns: vec![holder, waiter],
                    }
                }

                /// Acquire then release of a free lease: (acquire, whole cycle).
                pub async fn acquire_release(&self) -> (Duration, Duration) {
                    let start = Instant::now();
                    let got = self
                        .lease
                        .acquire(Duration::from_secs(10), &AcquireOptions::new())
                        .await;
                    let acquired = start.elapsed();
                    assert!(matches!(got, Ok(true)), "acquire failed: {got:?}");
                    let released = self.lease.release().await;
                    assert!(released.is_ok(), "release failed: {released:?}");
                    (acquired, start.elapsed())
                }

                /// The holder unlocks while the waiter waits in `lock()`: (unlock to the
                /// waiter holding it, the holder's `unlock()` itself). `jitter: None` keeps
                /// the default back-off jitter.
                pub async fn handover(&self, jitter: Option<Duration>) -> (Duration, Duration) {
                    let ttl = Duration::from_secs(10);
                    let mut options = LockOptions::new().wait_timeout(Duration::from_secs(10));
                    if let Some(j) = jitter {
                        options = options.max_jitter(j);
                    }
                    let first = self.holder_lock.lock(ttl, &options).await;
                    assert!(first.is_ok(), "holder lock failed: {first:?}");
                    let (tx, rx) = futures_channel::oneshot::channel();
                    let waiter = self.waiter_lock.clone();
                    let opts = options.clone();
                    $spawn(async move {
                        let r = waiter.lock(ttl, &opts).await.map(|_| ());
                        let _ = tx.send((r.map_err(|e| e.to_string()), Instant::now()));
                    });
                    // The waiter registers, is refused and settles into waiting.
                    $sleep(Duration::from_millis(30)).await;
                    let released = Instant::now();
                    let unlocked = self.holder_lock.unlock().await;
                    let unlock_took = released.elapsed();
                    assert!(unlocked.is_ok(), "unlock failed: {unlocked:?}");
                    let (r, got) = rx.await.expect("waiter reports");
                    assert!(r.is_ok(), "waiter lock failed: {r:?}");
                    let handover = got.duration_since(released);
                    let done = self.waiter_lock.unlock().await;
                    assert!(done.is_ok(), "waiter unlock failed: {done:?}");
                    (handover, unlock_took)
                }

                /// Closes both connections.
                pub async fn close(self) {
                    for c in &self.conns {
                        c.close().await;
                    }
                }
            }
        }
    };
}

adapter_side!(tokio_side, leasedlock_tokio);
adapter_side!(async_std_side, leasedlock_async_std);
adapter_leases!(
    tokio_leases,
    tokio_side,
    leasedlock_tokio,
    spawn = tokio::spawn,
    sleep = tokio::time::sleep
);
adapter_leases!(
    async_std_leases,
    async_std_side,
    leasedlock_async_std,
    spawn = async_std::task::spawn,
    sleep = async_std::task::sleep
);
