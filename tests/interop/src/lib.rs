//! Harness for the interop tests in `tests/`: the official `azure_iot_operations_services`
//! client (the peer we must serve) against the leasedlock emulator over Mosquitto.
//!
//! The broker is taken from `LEASEDLOCK_TEST_BROKER` (default `127.0.0.1:1883`; start it with
//! `bash scripts/mosquitto.sh start`). One emulator serves each test binary; it runs on its own
//! runtime so it outlives every test's runtime.
#![forbid(unsafe_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use azure_iot_operations_mqtt::aio::connection_settings::MqttConnectionSettingsBuilder;
use azure_iot_operations_mqtt::session::{Session, SessionExitHandle, SessionOptionsBuilder};
use azure_iot_operations_protocol::application::ApplicationContextBuilder;
use azure_iot_operations_services::leased_lock::{lease, lock};
use azure_iot_operations_services::state_store;
use leasedlock_emulator::{Emulator, EmulatorConfig};

/// The broker under test.
pub fn broker() -> (String, u16) {
    let addr = std::env::var("LEASEDLOCK_TEST_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (host, port) = addr
        .rsplit_once(':')
        .expect("LEASEDLOCK_TEST_BROKER is HOST:PORT");
    (host.to_string(), port.parse().expect("a port number"))
}

struct Shared {
    _rt: tokio::runtime::Runtime,
    _emulator: Emulator,
}

static EMULATOR: OnceLock<Shared> = OnceLock::new();

/// Starts this binary's emulator once.
pub fn start_emulator() {
    EMULATOR.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            let (host, port) = broker();
            let mut config = EmulatorConfig::new(host, port);
            config.client_id = unique("interop-emulator");
            let emulator = rt.block_on(Emulator::start(config)).expect(
                "the emulator starts (is Mosquitto running? `bash scripts/mosquitto.sh start`)",
            );
            Shared {
                _rt: rt,
                _emulator: emulator,
            }
        })
        .join()
        .expect("emulator thread")
    });
}

/// A process-unique name that is also a valid raw MQTT client id for the official client.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One official client's running MQTT session and its state-store client: the one way this
/// repository connects the official SDK (the interop tests and the side-by-side benches).
pub struct OfficialSession {
    /// The client id (also the holder name of its leases and locks).
    pub id: String,
    /// The state-store client.
    pub store: Arc<state_store::Client>,
    exit: SessionExitHandle,
    session: tokio::task::JoinHandle<Result<(), String>>,
}

impl OfficialSession {
    /// Connects client `id` to the broker at `host:port` (no TLS) with `keep_alive`; the
    /// session runs on the caller's runtime.
    pub fn connect(id: String, host: &str, port: u16, keep_alive: Duration) -> OfficialSession {
        let connection = MqttConnectionSettingsBuilder::default()
            .client_id(id.clone())
            .hostname(host.to_string())
            .tcp_port(port)
            .keep_alive(keep_alive)
            .use_tls(false)
            .build()
            .expect("connection settings");
        let options = SessionOptionsBuilder::default()
            .connection_settings(connection)
            .build()
            .expect("session options");
        let session = Session::new(options).expect("a session");
        let context = ApplicationContextBuilder::default()
            .build()
            .expect("an application context");
        let store = Arc::new(
            state_store::Client::new(
                context,
                session.create_managed_client(),
                session.create_session_monitor(),
                state_store::ClientOptionsBuilder::default()
                    .build()
                    .expect("client options"),
            )
            .expect("a state store client"),
        );
        let exit = session.create_exit_handle();
        let session = tokio::spawn(async move { session.run().await.map_err(|e| e.to_string()) });
        OfficialSession {
            id,
            store,
            exit,
            session,
        }
    }

    /// Shuts the client down and waits (at most 5 s) for its session to end.
    pub async fn close(self) {
        let _ = self.store.shutdown().await;
        let _ = self.exit.try_exit();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session).await;
    }
}

/// One official client and a lease and lock client on `lease_name` held as its client id.
pub struct Official {
    /// The client id (also the lease holder name).
    pub id: String,
    /// The state-store client.
    pub store: Arc<state_store::Client>,
    /// A lease client.
    pub lease: lease::Client,
    /// A lock client.
    pub lock: lock::Client,
    session: OfficialSession,
}

impl Official {
    /// Connects a new official client (the session runs on the caller's runtime).
    pub fn connect(prefix: &str, lease_name: &str) -> Official {
        start_emulator();
        let (host, port) = broker();
        let session = OfficialSession::connect(unique(prefix), &host, port, Duration::from_secs(5));
        let (id, store) = (session.id.clone(), session.store.clone());
        let lease = lease::Client::new(store.clone(), lease_name.into(), id.clone().into())
            .expect("a lease client");
        let lock = lock::Client::new(store.clone(), lease_name.into(), id.clone().into())
            .expect("a lock client");
        Official {
            id,
            store,
            lease,
            lock,
            session,
        }
    }

    /// Shuts the client down and waits for its session to end.
    pub async fn close(self) {
        self.session.close().await;
    }
}
