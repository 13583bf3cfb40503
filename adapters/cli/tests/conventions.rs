//! The command-line conventions operators bring from `etcdctl` and `consul`: separate limits for
//! a request and for the wait for a lock, compound durations, raw values on stdin and stdout,
//! event lines, logging and shell completions. Each test runs the real binary.

mod common;

use std::process::Command;

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
