//! The real `leasedlock` binary against a real state store: each test starts
//! `leasedlock serve` (embedded broker + emulator on a free port) and runs commands against it.
//! Every wait is bounded: output is read by helper threads and handed over through channels
//! with a deadline, and every run of the binary has a time limit.

mod common;
#[path = "common/well_formed.rs"]
mod well_formed;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

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
    // With --json the reason is an `error` event on stderr; stdout stays the command's.
    let out = server.run(&[
        "--json",
        "lock",
        "job",
        "--ttl",
        "3s",
        "--",
        "/nonexistent/leasedlock-test",
    ]);
    assert_eq!(code(&out), 127, "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let json: serde_json::Value = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "error")
        .expect("an error event");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("command not found")),
        "{json}"
    );
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
        let out = output_within(child, LIMIT);
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
            "3s",
            "--grace",
            "500ms",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lock");
    let lines = Lines::new(child.stdout.take().expect("stdout"));
    assert_eq!(lines.next(LIMIT).trim(), "started");
    let started = Instant::now();
    // Someone else takes the key over: the next renewal (SET NEX with our value) is refused.
    let out = server.run(&["set", "lost", "intruder"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let out = output_within(child, LIMIT);
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
fn kill_9_of_the_wrapper_kills_the_command_and_its_group() {
    let server = Server::start();
    for sub in ["lock", "elect"] {
        kill_9_of_the_wrapper(&server, sub);
    }
}

fn kill_9_of_the_wrapper(server: &Server, sub: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids_file = dir.path().join("pids");
    // The command starts a grandchild in the background, reports both process ids (renamed into
    // place, so the file is complete once it exists) and waits.
    let script = format!(
        "sleep 300 & echo \"$$ $!\" > {tmp}; mv {tmp} {pids}; wait",
        tmp = sh_quote(&dir.path().join("pids.tmp")),
        pids = sh_quote(&pids_file)
    );
    let mut wrapper = server
        .under_lease(sub, &format!("k9-{sub}"), &script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lock");
    let text = wait_for_file(&pids_file, LIMIT);
    let pids: Vec<i32> = text
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 2, "{text}");
    assert!(
        pids.iter().all(|p| !process_ended(*p)),
        "not running: {pids:?}"
    );
    let wrapper_pid = i32::try_from(wrapper.id()).expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wrapper_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 leasedlock");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&wait_within(&mut wrapper, LIMIT)),
        Some(9)
    );
    let gone = eventually(Duration::from_secs(10), || {
        pids.iter().all(|p| process_ended(*p))
    });
    kill_all(&pids);
    assert!(
        gone,
        "{sub}: the command or its grandchild outlived the killed wrapper: {pids:?}"
    );
    // The guard removed the private directory of its deadline, which the wrapper could not.
    let wrapper_pid = u32::try_from(wrapper_pid).expect("pid");
    assert!(
        eventually(Duration::from_secs(10), || !deadline_dir_left(wrapper_pid)),
        "{sub}: the deadline directory of the killed wrapper is left behind"
    );
}

#[test]
fn leftovers_of_the_command_are_killed_before_the_unlock() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let grandchild_file = dir.path().join("grandchild");
    let go = dir.path().join("go");
    let made = Command::new("mkfifo").arg(&go).status().expect("mkfifo");
    assert!(made.success());
    // The first holder's command leaves a grandchild behind and exits when the test says so.
    let first_script = format!(
        "sleep 300 >/dev/null 2>&1 & echo $! > {tmp}; mv {tmp} {gc}; read _ < {go}",
        tmp = sh_quote(&dir.path().join("grandchild.tmp")),
        gc = sh_quote(&grandchild_file),
        go = sh_quote(&go)
    );
    let first = server
        .under_lease("lock", "handover", &first_script)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn first");
    let grandchild: i32 = wait_for_file(&grandchild_file, LIMIT)
        .trim()
        .parse()
        .expect("pid");
    // The second holder's command runs only once the first unlocked: by then the grandchild
    // must be gone (exit 0), else it says what it saw (exit 9).
    let second_script = format!(
        "s=$(sed 's/.*) //' /proc/{grandchild}/stat 2>/dev/null | cut -c1); \
         if [ -z \"$s\" ] || [ \"$s\" = Z ]; then exit 0; else echo \"grandchild state $s\" >&2; exit 9; fi"
    );
    let second = server
        .under_lease("lock", "handover", &second_script)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn second");
    let wrappers = [first.id(), second.id()];
    // Let the first command exit.
    std::fs::write(&go, "go\n").expect("write the fifo");
    let first = output_within(first, LIMIT);
    let second = output_within(second, LIMIT);
    kill_all(&[grandchild]);
    for pid in wrappers {
        assert!(
            !deadline_dir_left(pid),
            "leasedlock {pid} left its deadline directory behind"
        );
    }
    assert_eq!(code(&first), 0, "first: {}", stderr(&first));
    assert_eq!(
        code(&second),
        0,
        "the first command's grandchild was still running when the second holder got the \
         lock: {}",
        stderr(&second)
    );
}

#[test]
fn a_grace_that_does_not_fit_the_lease_is_refused() {
    // Found before connecting anywhere (nothing listens on port 9).
    for sub in ["lock", "elect"] {
        let mut command = Command::new(BIN);
        command.args([
            "--broker",
            "127.0.0.1:9",
            sub,
            "job",
            "--ttl",
            "2s",
            "--grace",
            "1500ms",
            "--",
            "true",
        ]);
        let out = run_within(command, LIMIT);
        assert_eq!(code(&out), 2, "{sub}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains("--grace") && message.contains("renew"),
            "{sub}: the message must say why: {message}"
        );
    }
}

#[test]
fn a_command_is_dead_before_its_unrenewed_lease_could_pass_on() {
    for sub in ["lock", "elect"] {
        command_dead_before_the_lease_could_pass_on(sub);
    }
}

/// Freezes the whole state store (broker and emulator) while the command runs: no renewal can
/// succeed any more. The last renewal the store applied was applied before the freeze, so the
/// store's lease ends before freeze + --ttl at the latest, and a contender could hold the lock
/// from then on. The command ignores SIGTERM; its last heartbeat must come before that.
fn command_dead_before_the_lease_could_pass_on(sub: &str) {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (beats, term, ready) = (
        dir.path().join("beats"),
        dir.path().join("term"),
        dir.path().join("ready"),
    );
    let script = format!(
        "trap 'echo TERM > {term}' TERM; date +%s%N >> {beats}; echo $$ > {tmp}; mv {tmp} {ready}; \
         while :; do date +%s%N >> {beats}; sleep 0.01; done",
        term = sh_quote(&term),
        beats = sh_quote(&beats),
        tmp = sh_quote(&dir.path().join("ready.tmp")),
        ready = sh_quote(&ready),
    );
    let ttl = Duration::from_secs(2);
    let mut args = vec![sub, "frozen", "--ttl", "2s"];
    if sub == "elect" {
        args.push("--once");
    }
    args.extend(["--", "sh", "-c", &script]);
    let wrapper = server
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let command: i32 = wait_for_file(&ready, LIMIT).trim().parse().expect("pid");
    let frozen_at = wall_ns();
    signal(server.child.id(), nix::sys::signal::Signal::SIGSTOP);
    let dead = eventually(LIMIT, || process_ended(command));
    signal(server.child.id(), nix::sys::signal::Signal::SIGCONT);
    let out = output_within(wrapper, LIMIT);
    kill_all(&[command]);
    assert!(dead, "{sub}: the command survived its lease");
    assert_eq!(code(&out), 123, "{sub}: {}", stderr(&out));
    assert!(
        stderr(&out).contains("no renewal succeeded in time"),
        "{sub}: {}",
        stderr(&out)
    );
    assert!(term.exists(), "{sub}: no SIGTERM before the SIGKILL");
    let last = std::fs::read_to_string(&beats)
        .expect("heartbeats")
        .lines()
        .filter_map(|l| l.trim().parse::<u128>().ok())
        .max()
        .expect("a heartbeat");
    let lease_could_end = frozen_at + ttl.as_nanos();
    if last < lease_could_end {
        eprintln!(
            "{sub}: last heartbeat {} ms before the lease could pass on",
            (lease_could_end - last) / 1_000_000
        );
    }
    assert!(
        last < lease_could_end,
        "{sub}: the command still ran {} ms after the lease could have passed to another holder",
        (last - lease_could_end) / 1_000_000
    );
}

#[test]
fn a_stopped_wrapper_cannot_keep_the_command_past_its_lease() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (beats, ready) = (dir.path().join("beats"), dir.path().join("ready"));
    let script = format!(
        "trap '' TERM; date +%s%N >> {beats}; echo $$ > {tmp}; mv {tmp} {ready}; \
         while :; do date +%s%N >> {beats}; sleep 0.01; done",
        beats = sh_quote(&beats),
        tmp = sh_quote(&dir.path().join("ready.tmp")),
        ready = sh_quote(&ready),
    );
    let ttl = Duration::from_secs(2);
    let wrapper = server
        .command(&["lock", "stopped", "--ttl", "2s", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let command: i32 = wait_for_file(&ready, LIMIT).trim().parse().expect("pid");
    // A stopped leasedlock renews nothing: the store's lease ends within --ttl of this.
    let stopped_at = wall_ns();
    signal(wrapper.id(), nix::sys::signal::Signal::SIGSTOP);
    let dead = eventually(LIMIT, || process_ended(command));
    signal(wrapper.id(), nix::sys::signal::Signal::SIGCONT);
    let out = output_within(wrapper, LIMIT);
    kill_all(&[command]);
    assert!(dead, "the command survived its stopped wrapper's lease");
    assert_eq!(code(&out), 123, "{}", stderr(&out));
    let last = std::fs::read_to_string(&beats)
        .expect("heartbeats")
        .lines()
        .filter_map(|l| l.trim().parse::<u128>().ok())
        .max()
        .expect("a heartbeat");
    let lease_could_end = stopped_at + ttl.as_nanos();
    assert!(
        last < lease_could_end,
        "the command still ran {} ms after the lease could have passed to another holder",
        (last - lease_could_end) / 1_000_000
    );
    eprintln!(
        "last heartbeat {} ms before the lease could pass on",
        (lease_could_end - last) / 1_000_000
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
    let mut demo = Command::new(BIN);
    demo.args(["demo", "--seconds", "5", "--json"]);
    let out = run_within(demo, LIMIT);
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
fn demo_draws_its_timeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("out.svg");
    let mut demo = Command::new(BIN);
    demo.args([
        "demo",
        "--seconds",
        "5",
        "--clients",
        "3",
        "--json",
        "--timeline",
    ])
    .arg(&svg);
    let out = run_within(demo, LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    let doc = std::fs::read_to_string(&svg).expect("the timeline was written");
    assert_eq!(well_formed::check(&doc), Ok(()));
    assert_eq!(
        doc.matches("class=\"lane\"").count(),
        3,
        "one lane per contender"
    );
    for who in 0..3 {
        assert!(doc.contains(&format!("data-contender=\"demo-{who}\"")));
    }
    assert_eq!(doc.matches("class=\"kill\"").count(), 1);
    assert_eq!(doc.matches("class=\"failover-gap\"").count(), 1);
    // The annotation's kill-to-acquisition time is the summary's failover time.
    let failover = json["failover_ms"].as_f64().expect("failover_ms");
    let drawn: f64 = doc
        .split_once("acquiring: ")
        .and_then(|(_, rest)| rest.split_once(" ms)"))
        .and_then(|(n, _)| n.parse().ok())
        .expect("kill-to-acquisition time in the annotation");
    assert!(
        (drawn - failover).abs() <= 1.0,
        "drawn {drawn} ms, summary {failover} ms"
    );
    assert!(doc.contains(">failover gap "), "no gap annotation");
    // The killed holder's token was refused after the run, and that is drawn.
    assert!(doc.matches("class=\"refused\"").count() >= 1);
    assert!(doc.matches("class=\"hold\"").count() >= 2);
}

#[test]
fn demo_refuses_a_timeline_it_cannot_create_before_running() {
    let mut demo = Command::new(BIN);
    demo.args([
        "demo",
        "--seconds",
        "3600",
        "--timeline",
        "/nonexistent-dir/out.svg",
    ]);
    let out = run_within(demo, LIMIT);
    assert_eq!(code(&out), 2, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent-dir/out.svg"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn demo_live_view_off_a_terminal_is_plain_lines_per_contender() {
    let mut demo = Command::new(BIN);
    demo.args(["demo", "--seconds", "3", "--clients", "2"]);
    let out = run_within(demo, LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains('\x1b'), "ANSI codes off a terminal: {err:?}");
    assert!(err.contains("contender  state"), "no table: {err}");
    for who in 0..2 {
        assert!(
            err.lines()
                .any(|l| l.trim_start().starts_with(&format!("demo-{who} "))),
            "no row for demo-{who}: {err}"
        );
    }
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
        let mut command = Command::new(BIN);
        command.args(*args);
        let out = run_within(command, LIMIT);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    // A lease too short to renew is a usage error too, found before connecting anywhere.
    let mut command = Command::new(BIN);
    command.args([
        "--broker",
        "127.0.0.1:9",
        "lock",
        "job",
        "--ttl",
        "100ms",
        "--",
        "true",
    ]);
    let out = run_within(command, LIMIT);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
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
    let stdout_lines = Lines::new(child.stdout.take().expect("stdout"));
    let first = stdout_lines.next(LIMIT);
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
    let status = wait_within(&mut child, LIMIT);
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
    let lines = Lines::new(child.stdout.take().expect("stdout"));
    let next = || -> serde_json::Value {
        let line = lines.next(LIMIT);
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
    assert_eq!(wait_within(&mut child, LIMIT).code(), Some(0));
}
