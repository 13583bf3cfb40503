//! The real `leasedlock` binary against a real state store: each test starts
//! `leasedlock serve` (embedded broker + emulator on a free port) and runs commands against it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_leasedlock");

/// A `leasedlock serve` child; stopped with SIGINT when dropped.
struct Server {
    child: Child,
    broker: String,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start leasedlock serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        assert_eq!(ready["event"], "ready", "{line}");
        let broker = ready["broker"]
            .as_str()
            .expect("broker address")
            .to_string();
        Server { child, broker }
    }

    /// `leasedlock --broker <this> ARGS…`.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--broker").arg(&self.broker).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run leasedlock")
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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.display())
}

#[test]
fn lock_runs_the_command_with_its_token_and_releases() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    let script = format!(
        "echo \"$LEASEDLOCK_FENCING_TOKEN $LEASEDLOCK_LOCK_NAME\" > {}",
        sh_quote(&file)
    );
    let out = server.run(&[
        "--client-id",
        "locker",
        "lock",
        "job",
        "--ttl",
        "3s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let written = std::fs::read_to_string(&file).expect("the command ran");
    let mut parts = written.split_whitespace();
    let token = parts.next().expect("token");
    assert_eq!(token.split(':').count(), 3, "HLC token: {written}");
    assert_eq!(parts.next(), Some("job"));

    // Released: nobody holds it any more.
    let holder = server.run(&["holder", "job"]);
    assert_eq!(code(&holder), 1, "still held: {}", stdout(&holder));

    // The command's exit status passes through, and the lock is released then too.
    let out = server.run(&["lock", "job", "--ttl", "3s", "--", "sh", "-c", "exit 7"]);
    assert_eq!(code(&out), 7, "stderr: {}", stderr(&out));
    assert_eq!(code(&server.run(&["holder", "job"])), 1);

    // A command that does not exist: 127, and nothing left held.
    let out = server.run(&[
        "lock",
        "job",
        "--ttl",
        "3s",
        "--",
        "/nonexistent/leasedlock-test",
    ]);
    assert_eq!(code(&out), 127, "stderr: {}", stderr(&out));
    assert_eq!(code(&server.run(&["holder", "job"])), 1);
}

#[test]
fn concurrent_locks_never_overlap() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    // Each command appends its start and end (nanoseconds) around a short sleep.
    let script = format!(
        "echo \"start $$ $(date +%s%N)\" >> {log}; sleep 0.2; echo \"end $$ $(date +%s%N)\" >> {log}",
        log = sh_quote(&log)
    );
    let children: Vec<Child> = (0..3)
        .map(|i| {
            server
                .command(&[
                    "--client-id",
                    &format!("worker-{i}"),
                    "lock",
                    "shared",
                    "--ttl",
                    "5s",
                    "--",
                    "sh",
                    "-c",
                    &script,
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn lock")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    }
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    let mut last_end = 0u128;
    for pair in lines.chunks(2) {
        let (start, end) = (&pair[0], &pair[1]);
        assert_eq!((start[0], end[0]), ("start", "end"), "interleaved:\n{text}");
        assert_eq!(
            start[1], end[1],
            "another command ran inside a hold:\n{text}"
        );
        let (s, e): (u128, u128) = (start[2].parse().expect("ns"), end[2].parse().expect("ns"));
        assert!(
            s >= last_end,
            "a hold started before the previous one ended:\n{text}"
        );
        last_end = e;
    }
}

#[test]
fn losing_the_lease_signals_the_command() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("terminated");
    let script = format!(
        "trap 'echo TERM > {m}; exit 143' TERM; echo started; sleep 30 & wait",
        m = sh_quote(&marker)
    );
    let mut child = server
        .command(&[
            "--client-id",
            "victim",
            "lock",
            "lost",
            "--ttl",
            "1s",
            "--grace",
            "3s",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lock");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("the command started");
    assert_eq!(first.trim(), "started");
    let started = Instant::now();
    // Someone else takes the key over: the next renewal (SET NEX with our value) is refused.
    let out = server.run(&["set", "lost", "intruder"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let out = child.wait_with_output().expect("wait");
    assert_eq!(code(&out), 123, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("lost the lock"),
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&marker)
            .expect("the command got SIGTERM")
            .trim(),
        "TERM"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn lease_and_key_operations() {
    let server = Server::start();
    assert_eq!(code(&server.run(&["set", "greeting", "hello"])), 0);
    let got = server.run(&["get", "greeting"]);
    assert_eq!((code(&got), stdout(&got).trim()), (0, "hello"));
    assert_eq!(code(&server.run(&["set", "greeting", "other", "--nx"])), 1);
    assert_eq!(code(&server.run(&["del", "greeting"])), 0);
    assert_eq!(code(&server.run(&["get", "greeting"])), 1);

    let acquired = server.run(&[
        "--client-id",
        "alice",
        "--json",
        "acquire",
        "lease",
        "--ttl",
        "10s",
    ]);
    assert_eq!(code(&acquired), 0, "stderr: {}", stderr(&acquired));
    let json: serde_json::Value = serde_json::from_str(stdout(&acquired).trim()).expect("json");
    assert_eq!(json["acquired"], true);
    assert_eq!(json["holder"], "alice");
    let token = json["token"].as_str().expect("token").to_string();

    let holder = server.run(&["--json", "holder", "lease"]);
    let json: serde_json::Value = serde_json::from_str(stdout(&holder).trim()).expect("json");
    assert_eq!(
        (json["held"].clone(), json["holder"].clone()),
        (true.into(), "alice".into())
    );
    assert_eq!(json["token"], token.as_str());

    assert_eq!(
        code(&server.run(&["--client-id", "bob", "acquire", "lease", "--ttl", "10s"])),
        1
    );
    assert_eq!(
        code(&server.run(&["--client-id", "bob", "release", "lease"])),
        1
    );
    assert_eq!(
        code(&server.run(&["--client-id", "alice", "release", "lease"])),
        0
    );
    assert_eq!(code(&server.run(&["holder", "lease"])), 1);

    // A fenced write with the token, then one with a token that is too old.
    assert_eq!(
        code(&server.run(&["set", "data", "v1", "--fencing-token", &token])),
        0
    );
    let stale = server.run(&[
        "set",
        "data",
        "v0",
        "--fencing-token",
        "000000000000001:00000:x",
    ]);
    assert_eq!(code(&stale), 4, "stderr: {}", stderr(&stale));
}

#[test]
fn elect_runs_the_command_as_leader() {
    let server = Server::start();
    let out = server.run(&[
        "elect",
        "leader",
        "--ttl",
        "2s",
        "--",
        "sh",
        "-c",
        "test -n \"$LEASEDLOCK_FENCING_TOKEN\" && exit 3",
    ]);
    assert_eq!(code(&out), 3, "stderr: {}", stderr(&out));
    assert_eq!(
        code(&server.run(&["holder", "leader"])),
        1,
        "leadership not resigned"
    );
}

#[test]
fn demo_passes_in_five_seconds() {
    let out = Command::new(BIN)
        .args(["demo", "--seconds", "5", "--json"])
        .output()
        .expect("run demo");
    assert_eq!(
        code(&out),
        0,
        "stdout: {} stderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let json: serde_json::Value =
        serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(json["overlaps"], 0);
    assert_eq!(json["tokens_strictly_increasing"], true);
    assert!(json["handovers"].as_u64().expect("handovers") > 0, "{json}");
    for field in ["handover_ms_p50", "handover_ms_p99", "failover_ms"] {
        assert!(json[field].as_f64().is_some(), "{field} missing: {json}");
    }
    assert_eq!(json["stale_write_rejected"], true);
}

#[test]
fn bad_arguments_exit_with_2_and_say_why() {
    let cases: &[(&[&str], &str)] = &[
        (&["lock", "job"], "required"),
        (&["lock", "job", "--ttl", "soon", "--", "true"], "soon"),
        (&["demo", "--clients", "1"], "clients"),
        (&["--broker", "nowhere", "holder", "x"], "port"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN).args(*args).output().expect("run");
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    // A lease too short to renew is a usage error too, found before connecting anywhere.
    let out = Command::new(BIN)
        .args([
            "--broker",
            "127.0.0.1:9",
            "lock",
            "job",
            "--ttl",
            "100ms",
            "--",
            "true",
        ])
        .output()
        .expect("run");
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

fn interrupt(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGINT,
        );
    }
}

#[test]
fn acquire_with_renew_holds_until_interrupted() {
    let server = Server::start();
    let mut child = server
        .command(&[
            "--client-id",
            "renewer",
            "acquire",
            "renewed",
            "--ttl",
            "1s",
            "--renew",
            "300ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn acquire");
    let mut stdout_lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = stdout_lines.next().expect("a line").expect("utf-8");
    assert!(first.starts_with("acquired renewed as renewer"), "{first}");
    // Three lease durations later it is still held: the renewals work.
    std::thread::sleep(Duration::from_secs(3));
    let holder = server.run(&["holder", "renewed"]);
    assert_eq!(
        (
            code(&holder),
            stdout(&holder)
                .split_whitespace()
                .next()
                .map(str::to_string)
        ),
        (0, Some("renewer".into()))
    );
    interrupt(&child);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        code(&server.run(&["holder", "renewed"])),
        1,
        "not released on Ctrl-C"
    );
}

#[test]
fn watch_prints_holder_changes() {
    let server = Server::start();
    let mut child = server
        .command(&["--json", "watch", "watched"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = || -> serde_json::Value {
        let line = lines.next().expect("a line").expect("utf-8");
        serde_json::from_str(&line).expect("JSON line")
    };
    assert_eq!(next()["held"], false);
    let out = server.run(&[
        "--client-id",
        "carol",
        "acquire",
        "watched",
        "--ttl",
        "500ms",
    ]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let held = next();
    assert_eq!(
        (held["held"].clone(), held["holder"].clone()),
        (true.into(), "carol".into())
    );
    // The lease expires by itself: the store's DELETE notification says so.
    assert_eq!(next()["held"], false);
    interrupt(&child);
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}
