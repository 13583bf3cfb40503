//! The processes of a scenario: a Mosquitto broker and a `leasedlock serve` emulator of its
//! own (so restarting them touches nobody else), `leasedlock lock` wrappers, and this crate's
//! contender and stamp binaries; plus bounded waiting.
//!
//! Every process is killed (SIGKILL) when its handle drops, and a [`World`] also kills the
//! process groups of the commands `leasedlock lock` started (they log their group), so a failed
//! scenario leaves nothing running.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::record::{Log, Record};

/// The bound on every wait for something to start or stop.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How often bounded waits look again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `done` returns true, at most `timeout`; the error names `what`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(POLL);
    }
}

/// The directory cargo puts the workspace's binaries in: the parent of the test executable's
/// `deps/` directory.
fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut dir = exe
        .parent()
        .ok_or("the test executable has no directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// A source file of `binary` modified after it was built, if any, from the dependency file
/// cargo writes next to it (`leasedlock.d`). `cargo test --workspace` rebuilds the CLI first;
/// `cargo test -p leasedlock-faults` does not, and a stale binary would make every CLI
/// scenario test old code.
fn newer_source(binary: &Path) -> Result<Option<PathBuf>, String> {
    let built = std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    // Without the file (a binary from elsewhere) there is nothing to compare.
    let Ok(deps) = std::fs::read_to_string(binary.with_extension("d")) else {
        return Ok(None);
    };
    // `target: source source ...`, spaces inside paths escaped with a backslash.
    let Some((_, sources)) = deps.lines().next().and_then(|l| l.split_once(": ")) else {
        return Ok(None);
    };
    let sources = sources.replace("\\ ", "\0");
    Ok(sources
        .split_whitespace()
        .map(|s| PathBuf::from(s.replace('\0', " ")))
        .find(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > built)
        }))
}

/// The binaries a scenario runs.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `leasedlock` (the CLI, from `leasedlock-cli`).
    pub leasedlock: PathBuf,
    /// This crate's library-client contender.
    pub contender: PathBuf,
    /// This crate's heartbeat stamper for commands run under `leasedlock lock`.
    pub stamp: PathBuf,
    /// The Mosquitto broker.
    pub mosquitto: PathBuf,
}

impl Bins {
    /// Finds them: the CLI next to the test executable, this crate's binaries from cargo
    /// (`CARGO_BIN_EXE_*`, passed by the test), Mosquitto on the PATH or in /usr/sbin.
    pub fn locate(contender: &str, stamp: &str) -> Result<Bins, String> {
        let leasedlock = target_dir()?.join("leasedlock");
        if !leasedlock.is_file() {
            return Err(format!(
                "{} is missing: the fault suite runs the real CLI binary; build it first with \
                 `cargo build -p leasedlock-cli` (`cargo test --workspace` builds it too)",
                leasedlock.display()
            ));
        }
        if let Some(newer) = newer_source(&leasedlock)? {
            return Err(format!(
                "{} is older than {}: the fault suite would test a stale CLI; rebuild it with \
                 `cargo build -p leasedlock-cli`",
                leasedlock.display(),
                newer.display()
            ));
        }
        let mosquitto = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| {
                std::env::var_os("PATH").and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|d| d.join("mosquitto"))
                        .find(|p| p.is_file())
                })
            })
            .ok_or(
                "mosquitto is not installed: `bash scripts/mosquitto.sh start` installs it \
                 (or `apt-get install mosquitto`)",
            )?;
        Ok(Bins {
            leasedlock,
            contender: PathBuf::from(contender),
            stamp: PathBuf::from(stamp),
            mosquitto,
        })
    }
}

/// A child process that is killed when dropped. Its stdout and stderr go to files.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `command` with output to `dir/<name>.out` and `.err`.
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> Result<Proc, String> {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let open = |p: &Path| File::create(p).map_err(|e| format!("{}: {e}", p.display()));
        command
            .stdin(Stdio::null())
            .stdout(open(&out)?)
            .stderr(open(&err)?);
        let child = command
            .spawn()
            .map_err(|e| format!("starting {name} ({command:?}): {e}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            out,
            err,
            status: None,
        })
    }

    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    /// Sends it a signal.
    pub fn signal(&self, signal: Signal) -> Result<(), String> {
        kill(self.pid(), signal).map_err(|e| format!("{signal} to {}: {e}", self.name))
    }

    /// Whether it has exited (and reaps it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for it to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let name = self.name.clone();
        wait_until(timeout, &format!("{name} to exit"), || {
            self.exited().is_some()
        })
        .map_err(|e| format!("{e}\n{}", self.output()))?;
        Ok(self.status.expect("exited"))
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Its stdout and stderr so far, for failure messages.
    pub fn output(&self) -> String {
        // The tail: a chatty process must not drown the failure message.
        let read = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let cut = text.len().saturating_sub(4000);
            let cut = (cut..text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text[cut..].to_string()
        };
        format!(
            "--- {} stdout:\n{}--- {} stderr:\n{}",
            self.name,
            read(&self.out),
            self.name,
            read(&self.err)
        )
    }

    /// Waits until its stdout contains `needle`, at most `timeout`; fails early if it exits.
    pub fn wait_stdout(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let out = self.out.clone();
        let mut exited = None;
        let found = wait_until(timeout, &format!("`{needle}` from {}", self.name), || {
            if std::fs::read_to_string(&out).is_ok_and(|t| t.contains(needle)) {
                return true;
            }
            exited = self.exited();
            exited.is_some()
        });
        match (found, exited) {
            (Ok(()), None) => Ok(()),
            (Ok(()), Some(status)) => Err(format!(
                "{} exited ({status}) before printing `{needle}`\n{}",
                self.name,
                self.output()
            )),
            (Err(e), _) => Err(format!("{e}\n{}", self.output())),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A Mosquitto broker of the scenario's own on a free loopback port, with the project's
/// settings (scripts/mosquitto.conf: no persistence, TCP_NODELAY, no in-flight limits).
#[derive(Debug)]
pub struct Mosquitto {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    proc: Option<Proc>,
    starts: usize,
}

impl Mosquitto {
    /// Starts it and waits until it accepts connections.
    pub fn start(bin: &Path, dir: &Path) -> Result<Mosquitto, String> {
        let mut last = String::new();
        // Another process may take the free port between the probe and the broker's bind.
        for _ in 0..3 {
            let mut broker = Mosquitto {
                bin: bin.to_path_buf(),
                dir: dir.to_path_buf(),
                port: free_port()?,
                proc: None,
                starts: 0,
            };
            match broker.start_again() {
                Ok(()) => return Ok(broker),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Stops it with SIGTERM (clients see their connections close) and waits for the exit.
    pub fn stop(&mut self) -> Result<(), String> {
        if let Some(mut p) = self.proc.take() {
            p.signal(Signal::SIGTERM)?;
            p.wait(START_TIMEOUT)?;
        }
        Ok(())
    }

    /// Starts it (again) on the same port and waits until it accepts connections.
    pub fn start_again(&mut self) -> Result<(), String> {
        self.starts += 1;
        let config = self.dir.join(format!("mosquitto-{}.conf", self.port));
        let text = format!(
            "allow_anonymous true\nset_tcp_nodelay true\npersistence false\n\
             max_inflight_messages 0\nmax_queued_messages 100000\n\
             log_type error\nlog_type warning\nlog_timestamp true\n\
             listener {} 127.0.0.1\n",
            self.port
        );
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let mut command = Command::new(&self.bin);
        command.arg("-c").arg(&config);
        let mut proc = Proc::spawn(
            &format!("mosquitto-{}-{}", self.port, self.starts),
            command,
            &self.dir,
        )?;
        let port = self.port;
        let mut exited = None;
        let up = wait_until(START_TIMEOUT, &format!("mosquitto on {port}"), || {
            exited = proc.exited();
            exited.is_some() || accepts(port)
        });
        match (up, exited) {
            (Ok(()), None) => {
                self.proc = Some(proc);
                Ok(())
            }
            (_, Some(status)) => Err(format!("mosquitto exited: {status}\n{}", proc.output())),
            (Err(e), None) => Err(format!("{e}\n{}", proc.output())),
        }
    }
}

/// `leasedlock serve` on the scenario's broker, keeping persisted keys in a data directory.
#[derive(Debug)]
pub struct Emulator {
    bin: PathBuf,
    dir: PathBuf,
    broker_port: u16,
    proc: Option<Proc>,
    starts: usize,
}

impl Emulator {
    /// Starts it and waits for its `ready` line.
    pub fn start(bin: &Path, dir: &Path, broker_port: u16) -> Result<Emulator, String> {
        let mut emulator = Emulator {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            broker_port,
            proc: None,
            starts: 0,
        };
        emulator.start_again()?;
        Ok(emulator)
    }

    /// Kills it with SIGKILL (a crash: nothing flushed or said goodbye) and reaps it.
    pub fn crash(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts it (again) with the same data directory and waits for its `ready` line.
    pub fn start_again(&mut self) -> Result<(), String> {
        self.starts += 1;
        let mut command = Command::new(&self.bin);
        command
            .arg("--json")
            .arg("--broker")
            .arg(format!("127.0.0.1:{}", self.broker_port))
            .arg("--client-id")
            .arg(format!("faults-emulator-{}", self.broker_port))
            .arg("serve")
            .arg("--data-dir")
            .arg(self.dir.join("store"));
        let mut proc = Proc::spawn(&format!("emulator-{}", self.starts), command, &self.dir)?;
        proc.wait_stdout("\"ready\"", START_TIMEOUT)?;
        self.proc = Some(proc);
        Ok(())
    }
}

/// Which adapter a contender runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `leasedlock-tokio`.
    Tokio,
    /// `leasedlock-async-std`.
    AsyncStd,
}

impl Runtime {
    /// The name the contender binary takes.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Tokio => "tokio",
            Runtime::AsyncStd => "async-std",
        }
    }

    /// The other one.
    pub fn other(self) -> Runtime {
        match self {
            Runtime::Tokio => Runtime::AsyncStd,
            Runtime::AsyncStd => Runtime::Tokio,
        }
    }
}

/// What a contender does: `rounds` times take the lock, hold it for `hold` (fenced writes all
/// along), release it; after a loss, one deliberately stale fenced write once another holder
/// wrote.
#[derive(Debug, Clone)]
pub struct ContenderSpec {
    /// Its client id (and holder value).
    pub id: String,
    /// Its adapter.
    pub runtime: Runtime,
    /// The port it connects to on 127.0.0.1 (the broker or a proxy).
    pub port: u16,
    /// Lease duration.
    pub ttl: Duration,
    /// How long each hold lasts.
    pub hold: Duration,
    /// How many holds.
    pub rounds: u32,
    /// MQTT keep-alive (how soon a dead connection is noticed).
    pub keep_alive: Duration,
    /// It gives up (exit status 3) after this long in all.
    pub deadline: Duration,
    /// How many lock handles of its one connection contend side by side (each records as
    /// `id.i` when there are several).
    pub handles: u32,
    /// Instead of its rounds: one hold as a lease without auto-renew, re-acquired for this
    /// long once the trigger file `LOG.shorten` exists ([`World::trigger_shortening`]).
    pub shorten_to: Option<Duration>,
}

impl ContenderSpec {
    /// A contender with the suite's defaults: TTL 1.5 s, one hold of 1 s, keep-alive 5 s,
    /// deadline 60 s.
    pub fn new(id: &str, runtime: Runtime, port: u16) -> ContenderSpec {
        ContenderSpec {
            id: id.to_string(),
            runtime,
            port,
            ttl: Duration::from_millis(1500),
            hold: Duration::from_secs(1),
            rounds: 1,
            keep_alive: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
            handles: 1,
            shorten_to: None,
        }
    }
}

/// The lock every scenario contends for, and the key its holders write under the fence.
pub const LOCK: &str = "faults/lock";
/// The fenced key.
pub const PROTECTED: &str = "faults/protected";

/// Set (to anything) to keep each scenario's directory (log, outputs, configs) for reading.
pub const KEEP_ENV: &str = "LEASEDLOCK_FAULTS_KEEP";

/// One scenario's world: a temp directory, the shared log, a broker and an emulator.
#[derive(Debug)]
pub struct World {
    /// The binaries.
    pub bins: Bins,
    /// The broker.
    pub broker: Mosquitto,
    /// The emulator.
    pub emulator: Emulator,
    /// The shared log.
    pub log: Log,
    dir: TempDir,
}

impl World {
    /// Starts a broker and an emulator of their own.
    pub fn start(bins: Bins) -> Result<World, String> {
        let mut dir = tempfile::Builder::new()
            .prefix("leasedlock-faults-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        if std::env::var_os(KEEP_ENV).is_some() {
            dir.disable_cleanup(true);
            eprintln!("keeping {}", dir.path().display());
        }
        let broker = Mosquitto::start(&bins.mosquitto, dir.path())?;
        let emulator = Emulator::start(&bins.leasedlock, dir.path(), broker.port())?;
        let log = Log::new(dir.path().join("log"));
        Ok(World {
            bins,
            broker,
            emulator,
            log,
            dir,
        })
    }

    /// The scenario's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts a library contender.
    pub fn contender(&self, spec: &ContenderSpec) -> Result<Proc, String> {
        let mut command = Command::new(&self.bins.contender);
        let ms = |d: Duration| d.as_millis().to_string();
        command
            .arg(spec.runtime.name())
            .args(["--port", &spec.port.to_string()])
            .args(["--id", &spec.id])
            .args(["--lock", LOCK])
            .args(["--key", PROTECTED])
            .arg("--log")
            .arg(self.log.path())
            .args(["--ttl-ms", &ms(spec.ttl)])
            .args(["--hold-ms", &ms(spec.hold)])
            .args(["--rounds", &spec.rounds.to_string()])
            .args(["--keep-alive-ms", &ms(spec.keep_alive)])
            .args(["--deadline-ms", &ms(spec.deadline)])
            .args(["--handles", &spec.handles.to_string()]);
        if let Some(shorter) = spec.shorten_to {
            command.args(["--shorten-to-ms", &ms(shorter)]);
        }
        Proc::spawn(&spec.id, command, self.dir())
    }

    /// Tells the contender started with [`ContenderSpec::shorten_to`] to re-acquire now.
    pub fn trigger_shortening(&self) -> Result<(), String> {
        let path = format!("{}.shorten", self.log.path().display());
        std::fs::write(&path, b"now").map_err(|e| format!("{path}: {e}"))
    }

    /// Starts `leasedlock SUBCOMMAND [LOCK] ARGS -- sh -c SCRIPT` as client `id` through
    /// `port`; `subcommand` is `lock` or `elect`, both on [`LOCK`]. The script finds the stamp
    /// binary in `$STAMP` and the log in `$LOG`: `"$STAMP" "$LOG"` records one heartbeat of
    /// the hold.
    pub fn cli_under_lease(
        &self,
        id: &str,
        port: u16,
        subcommand: &str,
        args: &[&str],
        script: &str,
    ) -> Result<Proc, String> {
        let mut command = Command::new(&self.bins.leasedlock);
        command
            .args(["--broker", &format!("127.0.0.1:{port}")])
            .args(["--client-id", id])
            .args([subcommand, LOCK])
            .args(args)
            .args(["--", "sh", "-c", script])
            .env("STAMP", &self.bins.stamp)
            .env("LOG", self.log.path());
        Proc::spawn(id, command, self.dir())
    }

    /// The log's records; a malformed log fails the scenario.
    pub fn records(&self) -> Vec<Record> {
        match self.log.read() {
            Ok(r) => r,
            Err(e) => panic!("the shared log is malformed: {e}\n{}", self.log.text()),
        }
    }

    /// Waits until some record satisfies `pred`, at most `timeout`; fails at once if one of
    /// `alive` exits meanwhile.
    pub fn wait_record(
        &self,
        timeout: Duration,
        what: &str,
        alive: &mut [&mut Proc],
        pred: impl Fn(&Record) -> bool,
    ) -> Result<(), String> {
        let mut died = None;
        let waited = wait_until(timeout, what, || {
            if self.log.read().is_ok_and(|rs| rs.iter().any(&pred)) {
                return true;
            }
            died = alive
                .iter_mut()
                .find_map(|p| p.exited().map(|status| (p.name().to_string(), status)));
            died.is_some()
        });
        let procs: Vec<&Proc> = alive.iter().map(|p| &**p).collect();
        match (waited, died) {
            (Ok(()), None) => Ok(()),
            (Ok(()), Some((name, status))) => Err(format!(
                "{name} exited ({status}) while waiting for {what}\n{}",
                self.dump(&procs)
            )),
            (Err(e), _) => Err(format!("{e}\n{}", self.dump(&procs))),
        }
    }

    /// The process groups the CLI's commands recorded.
    pub fn command_groups(&self) -> Vec<Pid> {
        let mut groups: Vec<Pid> = self
            .log
            .read()
            .unwrap_or_default()
            .iter()
            .filter_map(|r| match r {
                Record::Held { group: Some(g), .. } => Some(Pid::from_raw(*g)),
                _ => None,
            })
            .collect();
        groups.sort_by_key(|p| p.as_raw());
        groups.dedup();
        groups
    }

    /// The live (not zombie) processes of process group `group`.
    pub fn group_members(group: Pid) -> Vec<Pid> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                // pid (comm) state ppid pgrp ...; comm may hold spaces: split after the `)`.
                let (_, rest) = stat.rsplit_once(')')?;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let live = fields.first().is_some_and(|s| *s != "Z" && *s != "X");
                (live && fields.get(2) == Some(&group.as_raw().to_string().as_str()))
                    .then_some(Pid::from_raw(pid))
            })
            .collect()
    }

    /// Whether some live process of `group` runs with this world's log in its environment
    /// (so a recycled group id of someone else's is never taken for one of ours).
    pub fn group_alive(&self, group: Pid) -> bool {
        let marker = format!("LOG={}", self.log.path().display());
        World::group_members(group).iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker.as_bytes()))
        })
    }

    /// What a failing scenario prints: the holds the log shows, every record but the
    /// heartbeats, and the processes' output (the full log stays in the scenario's directory
    /// with `LEASEDLOCK_FAULTS_KEEP=1`).
    pub fn dump(&self, procs: &[&Proc]) -> String {
        let mut out = format!("--- log {}:\n", self.log.path().display());
        match self.log.read() {
            Ok(records) => {
                match crate::record::holds(&records) {
                    Ok(holds) => {
                        for h in holds {
                            out.push_str(&format!("hold {h}\n"));
                        }
                    }
                    Err(e) => out.push_str(&format!("holds: {e}\n")),
                }
                for r in records.iter().filter(|r| !matches!(r, Record::Held { .. })) {
                    out.push_str(&format!("{r}\n"));
                }
            }
            Err(e) => out.push_str(&format!("unreadable: {e}\n")),
        }
        for p in procs {
            out.push_str(&p.output());
        }
        out
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Commands a wrapper left behind (the bug some scenarios look for) must not outlive
        // the test.
        for group in self.command_groups() {
            if self.group_alive(group) {
                let _ = killpg(group, Signal::SIGKILL);
            }
        }
    }
}
