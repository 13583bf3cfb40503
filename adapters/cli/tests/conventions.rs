//! The command-line conventions operators bring from `etcdctl` and `consul`: separate limits for
//! a request and for the wait for a lock, compound durations, raw values on stdin and stdout,
//! event lines, logging and shell completions. Each test runs the real binary.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// Has `other` take `name` for `ttl` and walk away: the lease stays until it expires.
fn held_by_another(server: &Server, name: &str, ttl: &str) {
    let out = server.run(&["--client-id", "other", "acquire", name, "--ttl", ttl]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
}

#[test]
fn an_exported_request_timeout_does_not_cap_the_wait_for_a_lock() {
    let server = Server::start();
    held_by_another(&server, "held", "3s");
    // Both the removed variable and its replacement are exported, as in an old profile that
    // was half updated: neither may cut the wait for the lock short.
    let mut lock = server.command(&["lock", "held", "--ttl", "2s", "--", "true"]);
    lock.env("LEASEDLOCK_TIMEOUT", "1s")
        .env("LEASEDLOCK_REQUEST_TIMEOUT", "1s");
    let out = run_within(lock, LIMIT);
    assert_eq!(
        code(&out),
        0,
        "lock gave up instead of waiting for the lease to expire: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("LEASEDLOCK_TIMEOUT is ignored"),
        "the old variable is reported: {}",
        stderr(&out)
    );
}

#[test]
fn lock_wait_bounds_the_whole_wait() {
    let server = Server::start();
    held_by_another(&server, "busy", "20s");
    let out = server.run(&["lock", "busy", "--wait", "300ms", "--", "true"]);
    assert_eq!(code(&out), 124, "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("--wait"), "{}", stderr(&out));
}

#[test]
fn the_removed_timeout_option_names_its_replacements() {
    // Refused before connecting anywhere (nothing listens on port 9).
    for args in [
        &["--timeout", "5s", "holder", "x"][..],
        &["lock", "job", "--timeout", "1m", "--", "true"][..],
    ] {
        let mut command = Command::new(BIN);
        command.args(["--broker", "127.0.0.1:9"]).args(args);
        let out = run_within(command, LIMIT);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains("--request-timeout") && message.contains("lock --wait"),
            "{args:?}: {message}"
        );
    }
}

#[test]
fn durations_take_compound_forms_and_refuse_garbage_with_a_reason() {
    let server = Server::start();
    let out = server.run(&[
        "lock",
        "compound",
        "--ttl",
        "1m30s",
        "--wait",
        "1m2.5s",
        "--request-timeout",
        "2s500ms",
        "--",
        "true",
    ]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let cases: &[(&str, &str)] = &[
        ("1m30", "needs a unit"),
        ("99999999999999999999999h", "too large"),
        ("18446744073709551615s1s", "too large"),
        ("3 fortnights", "unknown duration unit"),
        ("1.2.3s", "not a duration"),
    ];
    for (ttl, reason) in cases {
        let out = server.run(&["lock", "compound", &format!("--ttl={ttl}"), "--", "true"]);
        assert_eq!(code(&out), 2, "--ttl {ttl}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(reason) && !stderr(&out).contains("panicked"),
            "--ttl {ttl}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn get_prints_the_stored_bytes_and_set_reads_them_from_stdin() {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let server = Server::start();
    // Not UTF-8, a NUL, and a trailing newline that must survive both ways.
    let value: Vec<u8> = vec![0xff, 0x00, b'a', 0xc3, b'\n'];
    let out = run_with_stdin(server.command(&["set", "bin", "-"]), value.clone(), LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));

    let raw = server.run(&["get", "bin"]);
    assert_eq!(code(&raw), 0, "stderr: {}", stderr(&raw));
    assert_eq!(
        raw.stdout, value,
        "raw output is the stored bytes, nothing added"
    );

    let b64 = server.run(&["get", "bin", "--output", "base64"]);
    assert_eq!(stdout(&b64), format!("{}\n", base64.encode(&value)));

    let json = server.run(&["get", "bin", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(stdout(&json).trim()).expect("JSON");
    assert_eq!(json["found"], true);
    assert_eq!(json["value"], serde_json::Value::Null, "not UTF-8: {json}");
    assert_eq!(json["value_base64"], base64.encode(&value));
    // --json alone still means JSON; --output wins over it.
    let text = run_with_stdin(server.command(&["set", "txt", "-"]), b"hi".to_vec(), LIMIT);
    assert_eq!(code(&text), 0, "stderr: {}", stderr(&text));
    let json = server.run(&["--json", "get", "txt"]);
    let json: serde_json::Value = serde_json::from_str(stdout(&json).trim()).expect("JSON");
    assert_eq!(json["value"], "hi");
    assert_eq!(
        server.run(&["--json", "get", "txt", "-o", "raw"]).stdout,
        b"hi"
    );

    // Absent: exit 1 and nothing on stdout.
    let missing = server.run(&["get", "nothing-here"]);
    assert_eq!((code(&missing), missing.stdout.len()), (1, 0));
}

#[test]
fn set_from_stdin_refuses_a_value_larger_than_the_store_takes() {
    let server = Server::start();
    let limit = 4 * 1024 * 1024;
    let out = run_with_stdin(
        server.command(&["set", "big", "-"]),
        vec![b'x'; limit + 1],
        LIMIT,
    );
    assert_eq!(code(&out), 2, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("larger than {limit} bytes")),
        "{}",
        stderr(&out)
    );
    assert_eq!(code(&server.run(&["get", "big"])), 1, "nothing was set");
    // Exactly the limit is taken.
    let out = run_with_stdin(
        server.command(&["set", "big", "-"]),
        vec![b'x'; limit],
        LIMIT,
    );
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(server.run(&["get", "big"]).stdout.len(), limit);
}

/// The next event line on `lines` (a `lock`/`elect --json` stderr), skipping anything else the
/// command writes there.
fn next_event(lines: &Lines) -> serde_json::Value {
    loop {
        let line = lines.next(LIMIT);
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
            if value.get("event").is_some() {
                return value;
            }
        }
    }
}

#[test]
fn lock_json_reports_acquired_renewed_exit_and_released_on_stderr() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    assert!(Command::new("mkfifo")
        .arg(&go)
        .status()
        .expect("mkfifo")
        .success());
    // The command runs until the test has seen a renewal, then exits 3.
    let script = format!("echo out; read _ < {}; exit 3", sh_quote(&go));
    let mut child = server
        .command(&[
            "--json", "lock", "evt", "--ttl", "1s", "--", "sh", "-c", &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lock");
    let stdout = Drain::new(child.stdout.take());
    let events = Lines::new(child.stderr.take().expect("stderr"));
    let acquired = next_event(&events);
    assert_eq!(acquired["event"], "acquired", "{acquired}");
    assert_eq!(acquired["name"], "evt");
    let token = acquired["token"].as_str().expect("token").to_string();
    assert_eq!(token.split(':').count(), 3, "HLC token: {acquired}");
    let safe_until = acquired["safe_until_ms"].as_u64().expect("safe_until_ms");
    let at = acquired["wall_ms"].as_u64().expect("wall_ms");
    assert!(
        safe_until > at && safe_until <= at + 1000,
        "safe_until within the lease: {acquired}"
    );
    let renewed = next_event(&events);
    assert_eq!(renewed["event"], "renewed", "{renewed}");
    assert_ne!(
        renewed["token"],
        token.as_str(),
        "a renewal has a new token"
    );
    std::fs::write(&go, "go\n").expect("write the fifo");
    // Later renewals may come before the command's end.
    let exit = loop {
        let event = next_event(&events);
        if event["event"] != "renewed" {
            break event;
        }
    };
    assert_eq!(
        (
            exit["event"].as_str(),
            exit["code"].as_i64(),
            exit["stopped"].as_bool()
        ),
        (Some("exit"), Some(3), Some(false)),
        "{exit}"
    );
    let released = next_event(&events);
    assert_eq!(
        (released["event"].as_str(), released["outcome"].as_str()),
        (Some("released"), Some("Deleted")),
        "{released}"
    );
    assert_eq!(wait_within(&mut child, LIMIT).code(), Some(3));
    assert_eq!(
        stdout.take(LIMIT),
        b"out\n",
        "stdout carries the command's output only"
    );
}

#[test]
fn lock_json_reports_a_lost_lock_and_the_stopped_command() {
    let server = Server::start();
    let script = "trap 'exit 143' TERM; echo started; sleep 30 & wait";
    let mut child = server
        .command(&[
            "--json", "lock", "lost", "--ttl", "3s", "--grace", "500ms", "--", "sh", "-c", script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lock");
    let stdout = Lines::new(child.stdout.take().expect("stdout"));
    let events = Lines::new(child.stderr.take().expect("stderr"));
    assert_eq!(next_event(&events)["event"], "acquired");
    assert_eq!(stdout.next(LIMIT), "started");
    // Someone else takes the key: the next renewal is refused.
    let out = server.run(&["set", "lost", "intruder"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let lost = loop {
        let event = next_event(&events);
        if event["event"] != "renewed" {
            break event;
        }
    };
    assert_eq!(lost["event"], "lost", "{lost}");
    assert!(
        lost["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{lost}"
    );
    let exit = next_event(&events);
    assert_eq!(
        (
            exit["event"].as_str(),
            exit["code"].as_i64(),
            exit["stopped"].as_bool()
        ),
        (Some("exit"), Some(143), Some(true)),
        "{exit}"
    );
    assert_eq!(next_event(&events)["event"], "error", "the summary follows");
    assert_eq!(wait_within(&mut child, LIMIT).code(), Some(123));
}

#[test]
fn lock_json_reports_renewals_that_failed() {
    let server = Server::start();
    let mut child = server
        .command(&[
            "--json",
            "lock",
            "frozen",
            "--ttl",
            "2s",
            "--",
            "sh",
            "-c",
            "echo started; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lock");
    let stdout = Lines::new(child.stdout.take().expect("stdout"));
    let events = Lines::new(child.stderr.take().expect("stderr"));
    assert_eq!(next_event(&events)["event"], "acquired");
    assert_eq!(stdout.next(LIMIT), "started");
    // A frozen store answers no renewal.
    signal(server.child.id(), nix::sys::signal::Signal::SIGSTOP);
    let failed = loop {
        let event = next_event(&events);
        if event["event"] != "renewed" {
            break event;
        }
    };
    let exit = next_event(&events);
    signal(server.child.id(), nix::sys::signal::Signal::SIGCONT);
    assert_eq!(failed["event"], "renew_failed", "{failed}");
    assert!(failed["safe_until_ms"].as_u64().is_some(), "{failed}");
    assert_eq!(
        (exit["event"].as_str(), exit["stopped"].as_bool()),
        (Some("exit"), Some(true)),
        "{exit}"
    );
    assert_eq!(wait_within(&mut child, LIMIT).code(), Some(123));
}

#[test]
fn elect_json_reports_the_term_and_the_command_exit() {
    let server = Server::start();
    let out = server.run(&[
        "--json",
        "elect",
        "chair",
        "--ttl",
        "2s",
        "--",
        "sh",
        "-c",
        "echo leading; exit 4",
    ]);
    assert_eq!(code(&out), 4, "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "leading\n");
    // Log lines (warnings) may come between the events.
    let events: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e.get("event").is_some())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().expect("event"))
        .filter(|e| *e != "renewed")
        .collect();
    assert_eq!(names, ["acquired", "exit", "released"], "{events:?}");
    assert_eq!(events[0]["term"], 1);
    assert_eq!(events[0]["name"], "chair");
}

/// `leasedlock ARGS` against a port where nothing listens, with `env` set: it logs what it
/// logs and fails to connect.
fn run_unreachable(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .args(["--broker", "127.0.0.1:9", "--request-timeout", "300ms"])
        .args(args);
    for var in [
        "RUST_LOG",
        "LEASEDLOCK_LOG",
        "NO_COLOR",
        "LEASEDLOCK_TIMEOUT",
    ] {
        command.env_remove(var);
    }
    for (var, value) in env {
        command.env(var, value);
    }
    run_within(command, LIMIT)
}

#[test]
fn log_lines_to_a_pipe_carry_no_colour_codes() {
    // The removed variable draws a warning; stderr is a pipe here.
    let out = run_unreachable(&["holder", "x"], &[("LEASEDLOCK_TIMEOUT", "1s")]);
    let err = stderr(&out);
    assert!(err.contains("WARN"), "a warning was logged: {err}");
    assert!(
        !out.stderr.windows(2).any(|w| w == b"\x1b["),
        "ANSI escape codes in piped log lines: {err:?}"
    );
}

#[test]
fn verbosity_flags_and_rust_log_select_the_log_lines() {
    let warned = [("LEASEDLOCK_TIMEOUT", "1s")];
    // -q: errors only, so the warning is gone; -qq: nothing is logged at all.
    let quiet = run_unreachable(&["-q", "holder", "x"], &warned);
    assert!(!stderr(&quiet).contains("WARN"), "{}", stderr(&quiet));
    // RUST_LOG is honoured, and -v beats it.
    let traced = run_unreachable(&["holder", "x"], &[("RUST_LOG", "trace")]);
    assert!(stderr(&traced).contains("TRACE"), "{}", stderr(&traced));
    let off = run_unreachable(&["holder", "x"], &[("RUST_LOG", "off"), warned[0]]);
    assert!(!stderr(&off).contains("WARN"), "{}", stderr(&off));
    let verbose = run_unreachable(&["-vvv", "holder", "x"], &[("RUST_LOG", "off")]);
    assert!(stderr(&verbose).contains("TRACE"), "{}", stderr(&verbose));
    // LEASEDLOCK_LOG, the more specific, wins over RUST_LOG.
    let specific = run_unreachable(
        &["holder", "x"],
        &[("RUST_LOG", "trace"), ("LEASEDLOCK_LOG", "off")],
    );
    assert!(
        !stderr(&specific).contains("TRACE"),
        "{}",
        stderr(&specific)
    );
    // -v and -q together make no sense.
    assert_eq!(code(&run_unreachable(&["-v", "-q", "holder", "x"], &[])), 2);
}

#[test]
fn completions_for_each_shell() {
    for (shell, needle) in [
        ("bash", "_leasedlock()"),
        ("zsh", "#compdef leasedlock"),
        ("fish", "complete -c leasedlock"),
        ("elvish", "leasedlock"),
        ("powershell", "leasedlock"),
    ] {
        let mut command = Command::new(BIN);
        command.args(["completions", shell]);
        let out = run_within(command, LIMIT);
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(needle), "{shell}: {script}");
        assert!(
            script.contains("request-timeout"),
            "{shell}: options are completed"
        );
        assert!(
            !script.contains("--timeout"),
            "{shell}: the removed option is not offered"
        );
    }
    let mut command = Command::new(BIN);
    command.args(["completions", "cmd.exe"]);
    assert_eq!(code(&run_within(command, LIMIT)), 2);
}

#[test]
fn a_refused_connection_says_why_in_the_error() {
    let broker = RefusingBroker::start(0x87);
    let mut command = Command::new(BIN);
    command.args(["--broker", &broker.addr, "holder", "x"]);
    let out = run_within(command, LIMIT);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("the broker refused the connection: not authorized (reason code 0x87)")
            && message.contains("--sat-file"),
        "{message}"
    );
}
