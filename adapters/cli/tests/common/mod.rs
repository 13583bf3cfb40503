//! What the tests of the `leasedlock` binary share: a `leasedlock serve` per test, runs of the
//! binary with deadlines, and bounded waits for output, files and processes.
// Each test crate uses a part of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_leasedlock");

/// The longest any single run of the binary or any awaited line may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The lines of a child's pipe, read by a thread; each is awaited with a deadline.
pub struct Lines {
    rx: mpsc::Receiver<String>,
}

impl Lines {
    pub fn new(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx }
    }

    /// The next line, or a test failure once `within` has passed (or the pipe closed).
    pub fn next(&self, within: Duration) -> String {
        match self.rx.recv_timeout(within) {
            Ok(line) => line,
            Err(e) => panic!("no line within {within:?}: {e}"),
        }
    }
}

/// Reads a whole pipe on a thread; `take` waits for its end with a deadline.
pub struct Drain {
    rx: mpsc::Receiver<Vec<u8>>,
}

impl Drain {
    pub fn new(pipe: Option<impl Read + Send + 'static>) -> Drain {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            let _ = tx.send(bytes);
        });
        Drain { rx }
    }

    pub fn take(&self, within: Duration) -> Vec<u8> {
        self.rx
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("output not closed within {within:?}: {e}"))
    }
}

/// Waits for `child` to exit, polling `try_wait` until `within` has passed; kills it and fails
/// the test if it has not exited by then.
pub fn wait_within(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("leasedlock did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Like `Child::wait_with_output`, with a deadline.
pub fn output_within(mut child: Child, within: Duration) -> Output {
    let stdout = Drain::new(child.stdout.take());
    let stderr = Drain::new(child.stderr.take());
    let status = wait_within(&mut child, within);
    Output {
        status,
        stdout: stdout.take(within),
        stderr: stderr.take(within),
    }
}

/// Runs `command` to completion with a deadline, capturing its output.
pub fn run_within(mut command: Command, within: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run leasedlock");
    output_within(child, within)
}

/// Runs `command` with `input` on its stdin (written by a thread; the command may stop reading
/// early) to completion with a deadline, capturing its output.
pub fn run_with_stdin(mut command: Command, input: Vec<u8>, within: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run leasedlock");
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::spawn(move || {
        use std::io::Write;
        // A command that refuses the input closes its end early: that is not a test failure.
        let _ = stdin.write_all(&input);
    });
    output_within(child, within)
}

/// A listener that answers every MQTT 5 CONNECT with a CONNACK refusing it with `reason`, as a
/// broker does for a client it does not let in; it stops when dropped.
pub struct RefusingBroker {
    pub addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RefusingBroker {
    pub fn start(reason: u8) -> RefusingBroker {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                // Read the whole CONNECT (fixed header, then its remaining length) first.
                if read_packet(&mut stream).is_none() {
                    continue;
                }
                // CONNACK: no session present, the reason code, no properties.
                let _ = stream.write_all(&[0x20, 0x03, 0x00, reason, 0x00]);
            }
        });
        RefusingBroker { addr, stop }
    }
}

impl Drop for RefusingBroker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wake the accepting thread so that it sees the flag.
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

/// One MQTT packet from `stream`: its body, or `None` when the stream ends or is not MQTT.
fn read_packet(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).ok()?;
    let mut length = 0usize;
    for shift in [0, 7, 14, 21] {
        stream.read_exact(&mut byte).ok()?;
        length |= usize::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body).ok()?;
            return Some(body);
        }
    }
    None
}

/// A `leasedlock serve` child; stopped with SIGINT when dropped.
pub struct Server {
    pub child: Child,
    pub broker: String,
}

impl Server {
    pub fn start() -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start leasedlock serve");
        let line = Lines::new(child.stdout.take().expect("stdout")).next(LIMIT);
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        assert_eq!(ready["event"], "ready", "{line}");
        let broker = ready["broker"]
            .as_str()
            .expect("broker address")
            .to_string();
        Server { child, broker }
    }

    /// `leasedlock --broker <this> ARGS…`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--broker").arg(&self.broker).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run_within(self.command(args), LIMIT)
    }

    /// `leasedlock SUB NAME --ttl 5s -- sh -c SCRIPT` (SUB: `lock` or `elect`).
    pub fn under_lease(&self, sub: &str, name: &str, script: &str) -> Command {
        self.command(&[sub, name, "--ttl", "5s", "--", "sh", "-c", script])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// Whether process `pid` has ended: gone, or a zombie that nobody has reaped yet.
pub fn process_ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Polls until `done` holds or `within` has passed; says whether it held.
pub fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The text of `path` once it exists (the writer renames it into place, so it is complete).
pub fn wait_for_file(path: &Path, within: Duration) -> String {
    let mut text = None;
    let found = eventually(within, || {
        text = std::fs::read_to_string(path).ok();
        text.is_some()
    });
    assert!(found, "{} did not appear within {within:?}", path.display());
    text.unwrap_or_default()
}

/// Whether the private directory of a guard deadline of `leasedlock` process `pid` exists.
pub fn deadline_dir_left(pid: u32) -> bool {
    let prefix = format!("leasedlock-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
}

/// Kills what a failed test may have left behind.
pub fn kill_all(pids: &[i32]) {
    for pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let pid = i32::try_from(pid).expect("pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal");
}

pub fn wall_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

pub fn interrupt(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGINT,
        );
    }
}
