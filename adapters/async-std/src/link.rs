//! One live byte stream to the broker: a reader task feeding a bounded channel and a writer
//! task draining an unbounded one, so the driver never blocks on the socket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_io::Timer;
use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use crate::transport::Transport;

/// Bytes queued for the socket beyond which the connection is presumed stuck and dropped.
const MAX_PENDING_WRITE: usize = 32 * 1024 * 1024;
/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;
/// How long a closing link may take to flush before its socket is shut down.
const LINGER: Duration = Duration::from_secs(1);

/// The reader and writer tasks of one connection; dropping it flushes what is queued (within
/// [`LINGER`]) and closes the socket.
pub(crate) struct Link {
    incoming: async_channel::Receiver<std::io::Result<Vec<u8>>>,
    outgoing: async_channel::Sender<Bytes>,
    pending: Arc<AtomicUsize>,
    socket: async_std::net::TcpStream,
}

impl Link {
    /// Starts the reader and writer tasks on the transport.
    pub(crate) fn start(transport: Transport) -> Link {
        let (mut reader, mut writer) = futures_lite::io::split(transport.stream);
        let (in_tx, incoming) = async_channel::bounded(8);
        let (outgoing, out_rx) = async_channel::unbounded::<Bytes>();
        let pending = Arc::new(AtomicUsize::new(0));
        async_std::task::spawn(async move {
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                let item = match reader.read(&mut buf).await {
                    Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => Ok(buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default()),
                    Err(e) => Err(e),
                };
                let end = item.is_err();
                if in_tx.send(item).await.is_err() || end {
                    break;
                }
            }
        });
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
            // Drained (or failed): close both directions, which also ends the reader.
            Transport::shutdown(&socket);
        });
        Link {
            incoming,
            outgoing,
            pending,
            socket: transport.socket,
        }
    }

    /// The next chunk read, or the error that ended the stream (`None`: the reader is gone).
    /// Cancel-safe.
    pub(crate) async fn recv(&self) -> Option<std::io::Result<Vec<u8>>> {
        self.incoming.recv().await.ok()
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
