//! The world a scenario runs in: a broker, usually an in-process emulator, and the lock that
//! keeps emulator-using scenarios of one test binary from running at once (every emulator on a
//! broker serves the same request topic, so two would both answer every request).

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use leasedlock_emulator::{Emulator, EmulatorConfig, Snapshot};
use tokio::sync::oneshot;

use crate::adapter::ConnectSpec;
use crate::util::unique;

static SERIAL: Mutex<()> = Mutex::new(());

/// The shared broker's address: `LEASEDLOCK_TEST_BROKER` (`host:port`), default
/// `127.0.0.1:1883` (`scripts/mosquitto.sh start` runs one there).
pub fn shared_broker() -> (String, u16) {
    let addr = std::env::var("LEASEDLOCK_TEST_BROKER").unwrap_or_else(|_| "127.0.0.1:1883".into());
    match addr.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(1883)),
        None => (addr, 1883),
    }
}

/// An emulator on its own thread and tokio runtime, so scenarios need no particular runtime.
struct EmulatorThread {
    emulator: Arc<Mutex<Option<Emulator>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmulatorThread {
    fn start(host: &str, port: u16) -> EmulatorThread {
        let mut config = EmulatorConfig::new(host, port);
        config.client_id = unique("scenario-emulator");
        let slot: Arc<Mutex<Option<Emulator>>> = Arc::new(Mutex::new(None));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let inner = slot.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("emulator runtime");
            rt.block_on(async move {
                match Emulator::start(config).await {
                    Ok(e) => {
                        *inner.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        let _ = ready_tx.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                }
                let _ = stop_rx.await;
                let e = inner.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(e) = e {
                    e.shutdown().await;
                }
            });
        });
        match ready_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("emulator did not start on {host}:{port}: {e} (is Mosquitto running? bash scripts/mosquitto.sh start)"),
            Err(_) => panic!("emulator did not start on {host}:{port} in time"),
        }
        EmulatorThread {
            emulator: slot,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.emulator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| e.snapshot())
            .unwrap_or_default()
    }
}

impl Drop for EmulatorThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A scenario's environment.
pub struct Env {
    host: String,
    port: u16,
    emulator: Option<EmulatorThread>,
    _serial: MutexGuard<'static, ()>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("broker", &format_args!("{}:{}", self.host, self.port))
            .field("emulator", &self.emulator.is_some())
            .finish()
    }
}

impl Env {
    /// The shared broker with a fresh emulator.
    pub fn with_emulator() -> Env {
        let (host, port) = shared_broker();
        Env::on(&host, port, true)
    }

    /// The shared broker and no store at all (for scenarios that bring their own server).
    pub fn bare() -> Env {
        let (host, port) = shared_broker();
        Env::on(&host, port, false)
    }

    /// A given broker, with or without an emulator.
    pub fn on(host: &str, port: u16, emulator: bool) -> Env {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        Env {
            host: host.to_string(),
            port,
            emulator: emulator.then(|| EmulatorThread::start(host, port)),
            _serial: serial,
        }
    }

    /// Broker host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Broker port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection settings for a new client whose id starts with `prefix`.
    pub fn spec(&self, prefix: &str) -> ConnectSpec {
        ConnectSpec {
            host: self.host.clone(),
            port: self.port,
            client_id: unique(prefix),
            request_timeout: Duration::from_secs(1),
            reconnect_max: Duration::from_millis(500),
        }
    }

    /// KEYNOTIFY registrations the emulator holds now.
    pub fn registrations(&self) -> usize {
        self.emulator
            .as_ref()
            .map(|e| e.snapshot().registrations)
            .unwrap_or(0)
    }

    /// Requests the emulator has handled so far (a counter that only grows): a scenario that
    /// must know a request reached the store waits for it to move.
    pub fn requests(&self) -> u64 {
        self.emulator
            .as_ref()
            .map(|e| e.snapshot().stats.requests)
            .unwrap_or(0)
    }

    /// Keys the emulator stores now.
    pub fn keys(&self) -> usize {
        self.emulator
            .as_ref()
            .map(|e| e.snapshot().keys)
            .unwrap_or(0)
    }
}
