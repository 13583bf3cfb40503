//! A private Mosquitto for scenarios that restart the broker (restarting the shared one would
//! disturb everyone else's tests).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Mosquitto process this test started, on its own loopback port.
#[derive(Debug)]
pub struct PrivateBroker {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// The Mosquitto binary: from `PATH`, else Debian's location.
pub(crate) fn mosquitto_bin() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("mosquitto");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("/usr/sbin/mosquitto")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(100)).is_ok()
}

impl PrivateBroker {
    /// Starts Mosquitto on a free port (same settings as `scripts/mosquitto.conf`).
    pub fn start() -> PrivateBroker {
        PrivateBroker::start_with(true)
    }

    /// Starts Mosquitto on a free port refusing every client that brings no credentials (and,
    /// having no password file, every other one too): its CONNACK says "not authorized".
    pub fn start_refusing_anonymous() -> PrivateBroker {
        PrivateBroker::start_with(false)
    }

    fn start_with(allow_anonymous: bool) -> PrivateBroker {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "leasedlock-private-broker-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("broker dir");
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous {allow_anonymous}\nset_tcp_nodelay true\npersistence false\n\
             max_inflight_messages 0\nmax_queued_messages 100000\nlog_type error\n"
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).expect("broker config");
        let mut broker = PrivateBroker {
            port,
            dir,
            child: None,
        };
        broker.resume();
        broker
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the broker process (every client connection drops).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while port_open(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same port.
    pub fn resume(&mut self) {
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts (is it installed? scripts/mosquitto.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !port_open(self.port) {
            assert!(
                Instant::now() < deadline,
                "private mosquitto did not open port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
