//! One live byte stream to the broker, read and written by the driver task itself: a read or
//! a write dropped while pending has done nothing, so both can race with the driver's other
//! inputs, and no bytes pass through another task on their way. Dropping the link hands what
//! is still unwritten (a DISCONNECT, say) to a short-lived task that writes it, within
//! [`LINGER`], and closes the socket.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::transport::{ByteStream, Transport};
use super::Runtime;

/// Bytes queued for the socket beyond which the connection is presumed stuck and dropped.
const MAX_PENDING_WRITE: usize = 32 * 1024 * 1024;
/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;
/// How long a closing link may take to flush before its socket is shut down.
const LINGER: Duration = Duration::from_secs(1);

/// The read side of a link.
pub(crate) struct Reader {
    half: ReadHalf<Box<dyn ByteStream>>,
    buf: Vec<u8>,
}

impl Reader {
    /// The next chunk read, or the error that ended the stream (end of stream is
    /// `UnexpectedEof`). Cancel-safe.
    pub(crate) async fn recv(&mut self) -> std::io::Result<Vec<u8>> {
        match self.half.read(&mut self.buf).await {
            Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => Ok(self.buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default()),
            Err(e) => Err(e),
        }
    }
}

/// The write side of a link: bytes queued by [`Writer::send`], written by [`Writer::drain`].
pub(crate) struct Writer {
    half: Option<WriteHalf<Box<dyn ByteStream>>>,
    out: BytesMut,
    needs_flush: bool,
}

impl Writer {
    /// Queues bytes; false when too much is already waiting (the peer stopped reading).
    pub(crate) fn send(&mut self, bytes: &[u8]) -> bool {
        if self.out.len().saturating_add(bytes.len()) > MAX_PENDING_WRITE {
            return false;
        }
        self.out.extend_from_slice(bytes);
        true
    }

    /// Whether [`Writer::drain`] has work.
    pub(crate) fn has_pending(&self) -> bool {
        !self.out.is_empty() || self.needs_flush
    }

    /// Writes and flushes everything queued. Cancel-safe: what was written is accounted for
    /// before the next await.
    pub(crate) async fn drain(&mut self) -> std::io::Result<()> {
        let Some(half) = self.half.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        while !self.out.is_empty() {
            let n = half.write(&self.out).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.out.advance(n);
            self.needs_flush = true;
        }
        if self.needs_flush {
            half.flush().await?;
            self.needs_flush = false;
        }
        Ok(())
    }
}

/// An open connection's two sides.
pub(crate) struct ByteLink<R: Runtime> {
    pub(crate) reader: Reader,
    pub(crate) writer: Writer,
    /// Runs the last writes when the link is dropped.
    runtime: R,
}

impl<R: Runtime> ByteLink<R> {
    /// Takes over the transport.
    pub(crate) fn start(transport: Transport, runtime: R) -> ByteLink<R> {
        let (reader, writer) = futures_lite::io::split(transport);
        ByteLink {
            reader: Reader {
                half: reader,
                buf: vec![0u8; READ_CHUNK],
            },
            writer: Writer {
                half: Some(writer),
                out: BytesMut::new(),
                needs_flush: false,
            },
            runtime,
        }
    }
}

impl<R: Runtime> Drop for ByteLink<R> {
    fn drop(&mut self) {
        let mut last = Writer {
            half: self.writer.half.take(),
            out: std::mem::take(&mut self.writer.out),
            needs_flush: self.writer.needs_flush,
        };
        // Bounded: a peer that stopped reading cannot keep the socket open. The reader half
        // is gone with the link; dropping the writer half then closes the stream.
        let linger = self.runtime.sleep(LINGER);
        self.runtime.spawn(Box::pin(async move {
            let written = async {
                let _ = last.drain().await;
            };
            future::or(written, linger).await;
            drop(last);
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_stops_reading_is_detected_not_buffered_forever() {
        let mut w = Writer {
            half: None,
            out: BytesMut::new(),
            needs_flush: false,
        };
        assert!(!w.has_pending());
        let chunk = vec![0u8; 1024 * 1024];
        for _ in 0..32 {
            assert!(w.send(&chunk));
        }
        assert!(!w.send(&[0]), "past 32 MiB the link reports a stall");
        assert!(w.has_pending());
        let err = futures_lite::future::block_on(w.drain()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
    }
}
