//! Opening the byte stream to the broker: the runtime's TCP stream, optionally wrapped in TLS
//! (rustls through `futures-rustls`, with the client configuration [`crate::TlsOptions`]
//! builds).

use std::sync::Arc;

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::TlsConnector;
use rustls::pki_types::ServerName;

use super::Runtime;
use crate::{ConnectionOptions, OptionsError};

/// A bidirectional byte stream. Dropping it closes the connection.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ByteStream for T {}

/// An open connection to the broker.
pub(crate) type Transport = Box<dyn ByteStream>;

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
pub(crate) async fn open<R: Runtime>(
    options: &ConnectionOptions,
    runtime: &R,
) -> Result<Transport, TransportError> {
    // The TLS material is read before the TCP connection, so a bad file fails the attempt at
    // once; files are read again on every attempt, so rotated certificates are picked up.
    let tls = match options.get_tls() {
        Some(tls) => {
            let config = tls.client_config().map_err(TransportError::Options)?;
            let name = ServerName::try_from(options.host().to_string())
                .map_err(|e| TransportError::Options(OptionsError::Tls(e.to_string())))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        }
        None => None,
    };
    let socket = runtime
        .connect(options.host().to_string(), options.port())
        .await
        .map_err(TransportError::Io)?;
    let Some((connector, name)) = tls else {
        return Ok(Box::new(socket));
    };
    let stream = connector
        .connect(name, socket)
        .await
        .map_err(TransportError::Io)?;
    Ok(Box::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_runtime::Offline;

    #[test]
    fn bad_tls_material_is_a_typed_error_before_any_connection() {
        let dir = std::env::temp_dir().join(format!("leasedlock-tls-{}", std::process::id()));
        let options = ConnectionOptions::new("127.0.0.1", 1, "c")
            .tls(crate::TlsOptions::new().ca_file(dir.join("missing.pem")));
        let err = futures_lite::future::block_on(open(&options, &Offline)).err();
        assert!(
            matches!(
                err,
                Some(TransportError::Options(OptionsError::ReadFile { .. }))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_refused_connection_is_an_io_error() {
        let err = futures_lite::future::block_on(open(
            &ConnectionOptions::new("127.0.0.1", 1, "c"),
            &Offline,
        ));
        assert!(matches!(err, Err(TransportError::Io(_))));
    }
}
