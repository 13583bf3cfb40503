//! TLS end to end: a private Mosquitto with a TLS listener that requires client certificates,
//! certificates made on the fly. Checks that the rustls configuration built from
//! `TlsOptions` (custom CA, client certificate and key) connects, and that a missing client
//! certificate or an untrusted server are connection errors, not hangs.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leasedlock_tokio::{ConnectError, Connection, ConnectionOptions, ConnectionState, TlsOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

struct Broker {
    child: Child,
    dir: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

fn pki(dir: &Path) -> Pki {
    let (ca_cert, ca_key) = ca("leasedlock test CA");
    let (other, _) = ca("someone else's CA");
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca_cert, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "tls-client");
    let client = client_params
        .signed_by(&client_key, &ca_cert, &ca_key)
        .unwrap();
    Pki {
        ca: write(dir, "ca.pem", &ca_cert.pem()),
        other_ca: write(dir, "other-ca.pem", &other.pem()),
        client_cert: write(dir, "client.pem", &client.pem()),
        client_key: write(dir, "client.key", &client_key.serialize_pem()),
        server_cert: write(dir, "server.pem", &server.pem()),
        server_key: write(dir, "server.key", &server_key.serialize_pem()),
    }
}

fn mosquitto_bin() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("mosquitto");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("/usr/sbin/mosquitto")
}

fn start_tls_broker(dir: &Path, pki: &Pki) -> (Broker, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\n\
         cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nlog_type error\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display()
    );
    let conf = write(dir, "mosquitto.conf", &conf);
    let child = Command::new(mosquitto_bin())
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto");
    let broker = Broker {
        child,
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "TLS mosquitto did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (broker, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_custom_ca_and_client_certificate() {
    let dir = std::env::temp_dir().join(format!("leasedlock-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = pki(&dir);
    let (_broker, port) = start_tls_broker(&dir, &pki);
    let options = |id: &str, tls: TlsOptions| {
        ConnectionOptions::new("127.0.0.1", port, id)
            .tls(tls)
            .connect_timeout(Duration::from_secs(2))
    };

    let good = TlsOptions::new()
        .ca_file(&pki.ca)
        .client_cert(&pki.client_cert, &pki.client_key);
    let conn = Connection::connect(options("tls-ok", good))
        .await
        .expect("TLS connects");
    assert_eq!(conn.state(), ConnectionState::Connected);
    conn.close().await;

    // The broker requires a client certificate.
    let no_cert = TlsOptions::new().ca_file(&pki.ca);
    let r = Connection::connect(options("tls-nocert", no_cert)).await;
    assert!(matches!(r, Err(ConnectError::Timeout(Some(_)))), "{r:?}");

    // A server whose certificate our CA did not sign is refused.
    let wrong_ca = TlsOptions::new()
        .ca_file(&pki.other_ca)
        .client_cert(&pki.client_cert, &pki.client_key);
    let r = Connection::connect(options("tls-wrongca", wrong_ca)).await;
    match r {
        Err(ConnectError::Timeout(Some(e))) => assert!(
            e.to_lowercase().contains("tls") || e.contains("certificate"),
            "{e}"
        ),
        other => panic!("untrusted server accepted: {other:?}"),
    }
}
