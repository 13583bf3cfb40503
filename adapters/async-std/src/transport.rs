//! Opening the byte stream to the broker: TCP with `TCP_NODELAY`, optionally wrapped in TLS
//! (rustls through `futures-rustls`). Everything here is `futures-io` over `async-net`, so it
//! runs on any executor: the `async-io` reactor runs on its own thread when no `block_on` of
//! async-io drives it.

use std::net::Shutdown;
use std::sync::Arc;

use async_net::TcpStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::TlsConnector;
use leasedlock_api::{ConnectionOptions, OptionsError};
use rustls::pki_types::ServerName;

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
    let socket = TcpStream::connect((options.host(), options.port()))
        .await
        .map_err(TransportError::Io)?;
    // Without it every QoS 1 request/reply waits on Nagle's algorithm and delayed ACKs.
    socket.set_nodelay(true).map_err(TransportError::Io)?;
    let Some(tls) = options.get_tls() else {
        return Ok(Transport {
            stream: Box::new(socket.clone()),
            socket,
        });
    };
    // Files are read now, so rotated certificates are picked up on the next connection; they
    // are small, so the blocking read is brief.
    let config = tls.client_config().map_err(TransportError::Options)?;
    let name = ServerName::try_from(options.host().to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[async_std::test]
    async fn bad_tls_material_is_a_typed_error() {
        let dir = std::env::temp_dir().join(format!("leasedlock-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let options = ConnectionOptions::new("127.0.0.1", port, "c")
            .tls(leasedlock_api::TlsOptions::new().ca_file(dir.join("missing.pem")));
        let err = open(&options).await.err();
        assert!(
            matches!(
                err,
                Some(TransportError::Options(OptionsError::ReadFile { .. }))
            ),
            "{err:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[async_std::test]
    async fn refused_tcp_is_an_io_error() {
        // Port 1 on loopback: nothing listens there.
        let err = open(&ConnectionOptions::new("127.0.0.1", 1, "c")).await;
        assert!(matches!(err, Err(TransportError::Io(_))));
    }
}
