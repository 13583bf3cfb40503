//! What the one MQTT transport ([`leasedlock_api::session`]) needs of a runtime, on tokio: tokio
//! sockets (seen as futures-io streams through `tokio-util`'s compat layer), the adapter's
//! precise re-armable [`Timer`], `tokio::fs` for secrets, and the runtime the connection was
//! started on for the closing link's last writes.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use leasedlock_api::session::{BoxFuture, Runtime};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use crate::timer::Timer;

/// The tokio runtime a connection was started on.
#[derive(Debug, Clone)]
pub(crate) struct Tokio {
    /// Spawning through the handle works from any thread (a link dropped while the runtime
    /// shuts down included: the task is then dropped, not run, and nothing panics).
    handle: tokio::runtime::Handle,
}

impl Tokio {
    /// The current runtime. Panics outside one, as `tokio::spawn` does; the adapter's
    /// `Connection::start` is documented to need one.
    pub(crate) fn current() -> Tokio {
        Tokio {
            handle: tokio::runtime::Handle::current(),
        }
    }
}

impl Runtime for Tokio {
    type Tcp = Compat<TcpStream>;
    type Timer = Timer;

    fn connect(&self, host: String, port: u16) -> BoxFuture<io::Result<Compat<TcpStream>>> {
        Box::pin(async move {
            let socket = TcpStream::connect((host.as_str(), port)).await?;
            socket.set_nodelay(true)?;
            Ok(socket.compat())
        })
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn read_file(&self, path: PathBuf) -> BoxFuture<io::Result<Vec<u8>>> {
        Box::pin(tokio::fs::read(path))
    }

    fn spawn(&self, task: BoxFuture<()>) {
        drop(self.handle.spawn(task));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_have_nagle_off_and_refusals_are_io_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let runtime = Tokio::current();
        let socket = runtime.connect("127.0.0.1".into(), port).await.unwrap();
        assert!(socket.get_ref().nodelay().unwrap());
        drop(listener);
        // Port 1 on loopback: nothing listens there.
        assert!(runtime.connect("127.0.0.1".into(), 1).await.is_err());
    }

    #[tokio::test]
    async fn spawned_tasks_run_and_files_are_read() {
        let runtime = Tokio::current();
        let (done, ran) = tokio::sync::oneshot::channel();
        runtime.spawn(Box::pin(async move {
            let _ = done.send(());
        }));
        ran.await.unwrap();
        let missing = runtime.read_file("/nonexistent/leasedlock".into()).await;
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
