//! A loopback TCP proxy that injects network faults between one participant and the broker.
//!
//! Each participant that a scenario wants to cut off gets a proxy of its own, so a fault hits
//! exactly that participant's connections. The fault is switched at runtime with
//! [`FaultProxy::set`] and applies at once to every connection through the proxy, open or new:
//!
//! - [`Fault::Pass`]: bytes flow both ways.
//! - [`Fault::BlackHole`]: bytes are read and dropped both ways; the connection stays open, as a
//!   partition looks to both ends until their keep-alive notices.
//! - [`Fault::Delay`]: every chunk is forwarded that much later, in order.
//! - [`Fault::Reset`]: every connection is closed with a TCP reset (to both ends), and new ones
//!   are reset as soon as they are accepted.
//! - [`Fault::HalfOpen`]: what the client sends reaches the broker, nothing comes back.
//!
//! A direction that dropped bytes never forwards again, even after [`Fault::Pass`]: its MQTT
//! stream has a hole, so it stays dead until the client gives up on the connection; the client's
//! next connection passes.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// The fault a proxy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Forward nothing, keep connections open.
    BlackHole,
    /// Forward everything this much later.
    Delay(Duration),
    /// Reset every connection, and each new one at once.
    Reset,
    /// Forward client to broker only.
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToBroker,
    ToClient,
}

impl Fault {
    fn drops(self, direction: Direction) -> bool {
        match self {
            Fault::BlackHole => true,
            Fault::HalfOpen => direction == Direction::ToClient,
            Fault::Pass | Fault::Delay(_) | Fault::Reset => false,
        }
    }

    fn delay(self) -> Duration {
        match self {
            Fault::Delay(d) => d,
            _ => Duration::ZERO,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicUsize,
    resets: AtomicUsize,
}

/// A running proxy; stops (dropping every connection) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    counters: Arc<Counters>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`, passing everything.
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            0,
        ))))?;
        let addr = listener.local_addr()?;
        let (fault, faults) = watch::channel(Fault::Pass);
        let counters = Arc::new(Counters::default());
        runtime.spawn(accept_loop(listener, upstream, faults, counters.clone()));
        Ok(FaultProxy {
            addr,
            fault,
            counters,
            runtime: Some(runtime),
        })
    }

    /// Where participants connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the fault for every connection, open or new.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Connections reset so far.
    pub fn resets(&self) -> usize {
        self.counters.resets.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<Fault>,
    counters: Arc<Counters>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::SeqCst);
        let faults = faults.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            if *faults.borrow() == Fault::Reset {
                reset(client);
                counters.resets.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let Ok(broker) = TcpStream::connect(upstream).await else {
                // Nothing to forward to: the client sees its connection closed.
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = broker.set_nodelay(true);
            let (from_client, to_client) = client.into_split();
            let (from_broker, to_broker) = broker.into_split();
            let up = tokio::spawn(pump(
                from_client,
                to_broker,
                Direction::ToBroker,
                faults.clone(),
            ));
            let down = tokio::spawn(pump(from_broker, to_client, Direction::ToClient, faults));
            let (up, down) = tokio::join!(up, down);
            if matches!(up, Ok(Ended::Reset)) || matches!(down, Ok(Ended::Reset)) {
                counters.resets.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
}

/// Closes a socket with a TCP reset instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Closed,
    Reset,
}

/// Moves bytes one way under the current fault until either end closes or a reset is ordered.
/// On a reset both pumps of the connection drop their halves with linger 0, so both ends get a
/// TCP reset.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    mut faults: watch::Receiver<Fault>,
) -> Ended {
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut dead = false;
    let mut source_open = true;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let due = queue.front().map(|(at, _)| *at);
        tokio::select! {
            read = from.read(&mut buf), if source_open => match read {
                Ok(0) | Err(_) => source_open = false,
                Ok(n) => {
                    let fault = *faults.borrow();
                    dead |= fault.drops(direction);
                    if !dead {
                        queue.push_back((Instant::now() + fault.delay(), buf[..n].to_vec()));
                    }
                }
            },
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                if let Some((_, chunk)) = queue.pop_front() {
                    if to.write_all(&chunk).await.is_err() {
                        return Ended::Closed;
                    }
                }
            }
            changed = faults.changed() => {
                if changed.is_err() {
                    return Ended::Closed;
                }
                if *faults.borrow() == Fault::Reset {
                    let _ = to.as_ref().set_zero_linger();
                    // Dropping a write half sends a FIN first; forgetting it leaves the close
                    // (now a reset) to the moment the other pump drops the read half.
                    to.forget();
                    return Ended::Reset;
                }
            }
        }
        // The source closed and everything it sent is out: pass the close on, unless this
        // direction is dead (a black hole forwards no FIN either; the pump then waits for a
        // reset or the end of the proxy, keeping its half open).
        if !source_open && queue.is_empty() && !dead {
            let _ = to.shutdown().await;
            return Ended::Closed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};

    /// An upstream that accepts one connection and echoes it.
    fn echo_server() -> SocketAddr {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            while let Ok((mut s, _)) = listener.accept() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn client(proxy: &FaultProxy, read_timeout: Duration) -> StdStream {
        let s = StdStream::connect(proxy.addr()).expect("connect");
        s.set_read_timeout(Some(read_timeout)).expect("timeout");
        s
    }

    fn echo_once(s: &mut StdStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn pass_forwards_both_ways() {
        let proxy = FaultProxy::start(echo_server()).expect("proxy");
        let mut s = client(&proxy, Duration::from_secs(5));
        assert_eq!(echo_once(&mut s, b"hello").expect("echo"), b"hello");
        assert_eq!(proxy.accepted(), 1);
    }

    #[test]
    fn black_hole_keeps_the_connection_open_and_forwards_nothing_even_after_healing() {
        let proxy = FaultProxy::start(echo_server()).expect("proxy");
        let mut s = client(&proxy, Duration::from_millis(300));
        assert_eq!(echo_once(&mut s, b"a").expect("echo"), b"a");
        proxy.set(Fault::BlackHole);
        let err = echo_once(&mut s, b"b").expect_err("nothing comes back");
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
        proxy.set(Fault::Pass);
        // Still open (a write succeeds) and still dead.
        let err = echo_once(&mut s, b"c").expect_err("the old connection stays dead");
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
        let mut fresh = client(&proxy, Duration::from_secs(5));
        assert_eq!(echo_once(&mut fresh, b"d").expect("echo"), b"d");
    }

    #[test]
    fn half_open_delivers_upstream_only() {
        // An upstream that records what arrives instead of echoing.
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let upstream = listener.local_addr().expect("addr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let _ = tx.send(buf[..n].to_vec());
                    let _ = s.write_all(b"reply");
                }
            }
        });
        let proxy = FaultProxy::start(upstream).expect("proxy");
        proxy.set(Fault::HalfOpen);
        let mut s = client(&proxy, Duration::from_millis(300));
        s.write_all(b"up").expect("write");
        let got = rx.recv_timeout(Duration::from_secs(5)).expect("arrives");
        assert_eq!(got, b"up");
        let mut buf = [0u8; 8];
        let err = s.read(&mut buf).expect_err("the reply is dropped");
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
    }

    #[test]
    fn reset_resets_open_and_new_connections() {
        let proxy = FaultProxy::start(echo_server()).expect("proxy");
        let mut s = client(&proxy, Duration::from_secs(5));
        assert_eq!(echo_once(&mut s, b"a").expect("echo"), b"a");
        proxy.set(Fault::Reset);
        let mut buf = [0u8; 8];
        let err = s.read(&mut buf).expect_err("reset");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        let mut again = client(&proxy, Duration::from_secs(5));
        let err = again.read(&mut buf).expect_err("reset on accept");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while proxy.resets() < 2 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(proxy.resets(), 2);
        proxy.set(Fault::Pass);
        let mut fresh = client(&proxy, Duration::from_secs(5));
        assert_eq!(echo_once(&mut fresh, b"b").expect("echo"), b"b");
    }

    #[test]
    fn delay_holds_every_chunk_back_in_order() {
        let proxy = FaultProxy::start(echo_server()).expect("proxy");
        proxy.set(Fault::Delay(Duration::from_millis(150)));
        let mut s = client(&proxy, Duration::from_secs(5));
        let sent = std::time::Instant::now();
        s.write_all(b"one").expect("write");
        s.write_all(b"two").expect("write");
        let mut got = [0u8; 6];
        s.read_exact(&mut got).expect("echo");
        assert_eq!(&got, b"onetwo");
        // Both directions are delayed: at least two delays passed.
        assert!(sent.elapsed() >= Duration::from_millis(300));
    }
}
