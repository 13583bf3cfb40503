//! A private Mosquitto with a TLS listener that requires client certificates (made on the fly)
//! next to a plain listener for the emulator, for the adapters' TLS tests.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::broker::mosquitto_bin;

/// Certificate files for a test.
#[derive(Debug)]
pub struct Pki {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
    /// Client certificate.
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write test certificate");
    p
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).expect("CA certificate"), key)
}

impl Pki {
    /// A CA, a server certificate for `127.0.0.1` and a client certificate, written to `dir`.
    pub fn create(dir: &Path) -> Pki {
        let (ca_cert, ca_key) = ca("leasedlock test CA");
        let (other, _) = ca("someone else's CA");
        let server_key = KeyPair::generate().expect("key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("server certificate");
        let client_key = KeyPair::generate().expect("key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "tls-client");
        let client = client_params
            .signed_by(&client_key, &ca_cert, &ca_key)
            .expect("client certificate");
        Pki {
            ca: write(dir, "ca.pem", &ca_cert.pem()),
            other_ca: write(dir, "other-ca.pem", &other.pem()),
            client_cert: write(dir, "client.pem", &client.pem()),
            client_key: write(dir, "client.key", &client_key.serialize_pem()),
            server_cert: write(dir, "server.pem", &server.pem()),
            server_key: write(dir, "server.key", &server_key.serialize_pem()),
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The TLS broker: stopped and its files removed when dropped.
#[derive(Debug)]
pub struct TlsBroker {
    child: Child,
    dir: PathBuf,
    /// The TLS listener (client certificate required).
    pub tls_port: u16,
    /// A plain listener on the same broker (for the emulator).
    pub plain_port: u16,
    /// The certificates.
    pub pki: Pki,
}

impl TlsBroker {
    /// Starts it on two free ports.
    pub fn start() -> TlsBroker {
        let dir = std::env::temp_dir().join(format!(
            "leasedlock-tls-broker-{}-{}",
            std::process::id(),
            crate::util::unique("d")
        ));
        std::fs::create_dir_all(&dir).expect("broker dir");
        let pki = Pki::create(&dir);
        let (tls_port, plain_port) = (free_port(), free_port());
        let conf = format!(
            "allow_anonymous true\nset_tcp_nodelay true\npersistence false\nlog_type error\n\
             max_inflight_messages 0\nmax_queued_messages 100000\n\
             listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
             listener {plain_port} 127.0.0.1\n",
            pki.ca.display(),
            pki.server_cert.display(),
            pki.server_key.display()
        );
        let conf = write(&dir, "mosquitto.conf", &conf);
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let broker = TlsBroker {
            child,
            dir,
            tls_port,
            plain_port,
            pki,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", tls_port)).is_err()
            || TcpStream::connect(("127.0.0.1", plain_port)).is_err()
        {
            assert!(Instant::now() < deadline, "TLS mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
