//! What the subcommands share: output in text or JSON, secrets from files, signals.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::args::GlobalOptions;

/// Writes results to stdout and errors to stderr, as text or as one JSON object per line.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    json: bool,
    /// JSON goes to stderr: `lock` and `elect`, whose stdout belongs to their command.
    json_on_stderr: bool,
}

impl Report {
    /// A reporter; `json` selects JSON lines.
    pub fn new(json: bool) -> Report {
        Report {
            json,
            json_on_stderr: false,
        }
    }

    /// A reporter for `lock` and `elect`: with `json`, events and errors are JSON lines on
    /// stderr, leaving stdout to the command.
    pub fn supervising(json: bool) -> Report {
        Report {
            json,
            json_on_stderr: true,
        }
    }

    /// An event of `lock` or `elect` (`{"event": what, ...fields, "wall_ms": ...}`) as a JSON
    /// line, when JSON output is on; nothing otherwise.
    pub fn event(&self, what: &str, fields: serde_json::Value) {
        if !self.json {
            return;
        }
        let mut line = serde_json::Map::new();
        line.insert("event".into(), what.into());
        if let serde_json::Value::Object(fields) = fields {
            line.extend(fields);
        }
        line.insert("wall_ms".into(), wall_ms().into());
        self.json(&serde_json::Value::Object(line));
    }

    /// Whether output is JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// A line of text on stdout, flushed at once (other programs may be waiting for it).
    pub fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) is not worth failing for.
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Bytes on stdout exactly as given (no newline), flushed at once.
    pub fn raw(&self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    /// A JSON object on one line of stdout (of stderr for [`Report::supervising`]).
    pub fn json(&self, value: &serde_json::Value) {
        if self.json_on_stderr {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{value}");
            let _ = err.flush();
        } else {
            self.line(&value.to_string());
        }
    }

    /// An error: `leasedlock: ...` on stderr, or `{"error": ...}` with `--json` (an `error`
    /// event on stderr for [`Report::supervising`]).
    pub fn error(&self, text: &str) {
        if self.json && self.json_on_stderr {
            self.event("error", serde_json::json!({ "error": text }));
        } else if self.json {
            self.json(&serde_json::json!({ "error": text }));
        } else {
            eprintln!("leasedlock: {text}");
        }
    }
}

/// The password from `--password-file` (trailing newlines removed), if one was given.
pub fn read_password(global: &GlobalOptions) -> Result<Option<String>, String> {
    let Some(path) = &global.password_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--password-file {}: {e}", path.display()))?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// SIGINT and SIGTERM as one stream. Create it once, before the work starts: a signal that
/// arrives while no stream exists is lost, since installing one replaces the default action.
#[derive(Debug)]
pub struct ShutdownSignals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl ShutdownSignals {
    /// Installs the handlers. One that cannot be installed keeps its default action (exit).
    pub fn new() -> ShutdownSignals {
        ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Resolves at the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        async fn next(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = next(&mut self.interrupt) => {}
            () = next(&mut self.terminate) => {}
        }
    }
}

/// Resolves at the next SIGINT or SIGTERM (handlers installed now).
pub async fn wait_for_shutdown_signal() {
    ShutdownSignals::new().recv().await;
}

/// Bytes as text for display (invalid UTF-8 replaced).
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An error and its causes (`source()` chain) as one line: `what: cause: deeper cause`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The wall-clock time of day, UTC, as `HH:MM:SS.mmm`.
pub fn clock_text() -> String {
    let ms = wall_ms();
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}
