//! One live byte stream to the broker: the driver reads it directly (a read that is dropped
//! while pending loses nothing, so it can race with the driver's other inputs), and a writer
//! task drains an unbounded channel, so the driver never blocks on a slow socket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_io::Timer;
use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};

use crate::transport::{ByteStream, Transport};

/// Bytes queued for the socket beyond which the connection is presumed stuck and dropped.
const MAX_PENDING_WRITE: usize = 32 * 1024 * 1024;
/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;
/// How long a closing link may take to flush before its socket is shut down.
const LINGER: Duration = Duration::from_secs(1);

/// The read half and the writer task of one connection; dropping it flushes what is queued
/// (within [`LINGER`]) and closes the socket.
pub(crate) struct Link {
    reader: ReadHalf<Box<dyn ByteStream>>,
    buf: Vec<u8>,
    outgoing: async_channel::Sender<Bytes>,
    pending: Arc<AtomicUsize>,
    socket: async_std::net::TcpStream,
}

impl Link {
    /// Starts the writer task on the transport.
    pub(crate) fn start(transport: Transport) -> Link {
        let (reader, mut writer) = futures_lite::io::split(transport.stream);
        let (outgoing, out_rx) = async_channel::unbounded::<Bytes>();
        let pending = Arc::new(AtomicUsize::new(0));
        let socket = transport.socket.clone();
        let counter = pending.clone();
        async_std::task::spawn(async move {
            while let Ok(bytes) = out_rx.recv().await {
                let ok = writer.write_all(&bytes).await.is_ok();
                counter.fetch_sub(bytes.len(), Ordering::Relaxed);
                if !ok || (out_rx.is_empty() && writer.flush().await.is_err()) {
                    break;
                }
            }
            // Drained (or failed): close both directions, which also ends the driver's read.
            Transport::shutdown(&socket);
        });
        Link {
            reader,
            buf: vec![0u8; READ_CHUNK],
            outgoing,
            pending,
            socket: transport.socket,
        }
    }

    /// The next chunk read, or the error that ended the stream (end of stream is
    /// `UnexpectedEof`). Cancel-safe: a read dropped while pending has consumed nothing.
    pub(crate) async fn recv(&mut self) -> std::io::Result<Vec<u8>> {
        match self.reader.read(&mut self.buf).await {
            Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => Ok(self.buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default()),
            Err(e) => Err(e),
        }
    }

    /// Queues bytes; false when the writer is gone or too far behind.
    pub(crate) fn send(&self, bytes: Bytes) -> bool {
        let queued = self.pending.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        queued <= MAX_PENDING_WRITE && self.outgoing.try_send(bytes).is_ok()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The writer flushes what is queued (a DISCONNECT, say) and shuts the socket; if it is
        // stuck on a peer that stopped reading, the socket is shut down after a moment anyway.
        self.outgoing.close();
        let socket = self.socket.clone();
        async_std::task::spawn(async move {
            Timer::after(LINGER).await;
            Transport::shutdown(&socket);
        });
    }
}
