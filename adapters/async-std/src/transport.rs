//! Opening the byte stream to the broker: TCP with `TCP_NODELAY`, optionally wrapped in TLS
//! (rustls through `futures-rustls`). Everything here is `futures-io`, so it runs on any
//! executor that drives `async-io` (async-std, smol).

use std::net::Shutdown;
use std::sync::Arc;

use async_std::net::TcpStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::TlsConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::options::{read_file, ConnectionOptions, OptionsError, TlsOptions};

/// A bidirectional byte stream.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ByteStream for T {}

/// An open connection: the stream, and the TCP socket underneath it to shut down at the end
/// (which also wakes a reader blocked on the stream).
pub(crate) struct Transport {
    pub(crate) stream: Box<dyn ByteStream>,
    pub(crate) socket: TcpStream,
}

impl Transport {
    /// Closes both directions; errors are irrelevant at this point.
    pub(crate) fn shutdown(socket: &TcpStream) {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// Why a connection attempt failed before MQTT started.
#[derive(Debug)]
pub(crate) enum TransportError {
    /// The options name unusable TLS material.
    Options(OptionsError),
    /// TCP or the TLS handshake failed.
    Io(std::io::Error),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Options(e) => write!(f, "{e}"),
            TransportError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Connects to the broker.
pub(crate) async fn open(options: &ConnectionOptions) -> Result<Transport, TransportError> {
    let socket = TcpStream::connect((options.host.as_str(), options.port))
        .await
        .map_err(TransportError::Io)?;
    // Without it every QoS 1 request/reply waits on Nagle's algorithm and delayed ACKs.
    socket.set_nodelay(true).map_err(TransportError::Io)?;
    let Some(tls) = &options.tls else {
        return Ok(Transport {
            stream: Box::new(socket.clone()),
            socket,
        });
    };
    let config = client_config(tls).await.map_err(TransportError::Options)?;
    let name = ServerName::try_from(options.host.clone())
        .map_err(|e| TransportError::Options(OptionsError::Tls(e.to_string())))?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, socket.clone())
        .await
        .map_err(TransportError::Io)?;
    Ok(Transport {
        stream: Box::new(stream),
        socket,
    })
}

/// The rustls configuration for these options (files are read now, so rotated certificates
/// are picked up on the next connection).
pub(crate) async fn client_config(tls: &TlsOptions) -> Result<ClientConfig, OptionsError> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let pem = read_file("CA", path).await?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| OptionsError::Tls(format!("CA file: {e}")))?;
            if certs.is_empty() {
                return Err(OptionsError::Tls("CA file holds no certificate".into()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| OptionsError::Tls(format!("CA certificate: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // Platform stores hold the odd certificate rustls cannot parse; skip those.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(OptionsError::Tls("no platform root certificates".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OptionsError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match &tls.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let cert_pem = read_file("client certificate", cert).await?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| OptionsError::Tls(format!("client certificate: {e}")))?;
            let key_pem = read_file("client key", key).await?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| OptionsError::Tls(format!("client key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| OptionsError::Tls(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[async_std::test]
    async fn bad_tls_material_is_a_typed_error() {
        let dir = std::env::temp_dir().join(format!("leasedlock-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"not a certificate").unwrap();
        let err = client_config(&TlsOptions::new().ca_file(&empty))
            .await
            .unwrap_err();
        assert!(matches!(err, OptionsError::Tls(_)), "{err:?}");
        let err = client_config(&TlsOptions::new().ca_file(dir.join("missing.pem")))
            .await
            .unwrap_err();
        assert!(matches!(err, OptionsError::ReadFile { what: "CA", .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[async_std::test]
    async fn refused_tcp_is_an_io_error() {
        // Port 1 on loopback: nothing listens there.
        let err = open(&ConnectionOptions::new("127.0.0.1", 1, "c")).await;
        assert!(matches!(err, Err(TransportError::Io(_))));
    }
}
