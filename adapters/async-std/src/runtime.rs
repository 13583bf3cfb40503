//! What the one MQTT transport ([`leasedlock_api::session`]) needs of a runtime, on `async-io`
//! (the reactor async-std and smol share): `async-net` sockets, `async-io` timers, file reads on
//! `blocking`'s thread pool, and the connection's [`Spawner`].

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use async_net::TcpStream;
use leasedlock_api::session::{BoxFuture, Runtime};

use crate::deadline::Deadline;
use crate::spawn::Spawner;

/// `async-io`, with the connection's spawner.
#[derive(Debug, Clone)]
pub(crate) struct AsyncIo {
    spawner: Spawner,
}

impl AsyncIo {
    pub(crate) fn new(spawner: Spawner) -> AsyncIo {
        AsyncIo { spawner }
    }
}

impl Runtime for AsyncIo {
    type Tcp = TcpStream;
    type Timer = Deadline;

    fn connect(&self, host: String, port: u16) -> BoxFuture<io::Result<TcpStream>> {
        Box::pin(async move {
            let socket = TcpStream::connect((host.as_str(), port)).await?;
            socket.set_nodelay(true)?;
            Ok(socket)
        })
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(async move {
            async_io::Timer::after(duration).await;
        })
    }

    fn read_file(&self, path: PathBuf) -> BoxFuture<io::Result<Vec<u8>>> {
        Box::pin(blocking::unblock(move || std::fs::read(path)))
    }

    fn spawn(&self, task: BoxFuture<()>) {
        self.spawner.spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[async_std::test]
    async fn connections_have_nagle_off_and_refusals_are_io_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let runtime = AsyncIo::new(Spawner::Default);
        let socket = runtime.connect("127.0.0.1".into(), port).await.unwrap();
        assert!(socket.nodelay().unwrap());
        drop(listener);
        // Port 1 on loopback: nothing listens there.
        assert!(runtime.connect("127.0.0.1".into(), 1).await.is_err());
    }
}
