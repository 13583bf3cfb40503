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
