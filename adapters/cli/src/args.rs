//! The command line: global options, subcommands and their arguments (clap derive).

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_duration;
use crate::exit;

/// `leasedlock`: distributed leases, locks and leader election on the Azure IoT Operations state
/// store (or on the emulator `leasedlock serve` runs), from the shell.
#[derive(Debug, Parser)]
#[command(
    name = "leasedlock",
    version,
    about = "Leases, locks and leader election on the Azure IoT Operations state store",
    long_about = "Leases, locks and leader election on the Azure IoT Operations state store.\n\n\
        Try `leasedlock demo`: it starts a broker and the state store in this process and shows \
        contenders taking turns on a lock with fenced writes, a holder killed mid-hold, and the \
        failover.\n\n\
        Logs go to stderr: warnings and errors by default; -v/-q (repeatable) for more or less, \
        or a filter in LEASEDLOCK_LOG or RUST_LOG (e.g. `leasedlock_tokio=debug`). They are \
        coloured only when stderr is a terminal and NO_COLOR is unset.",
    after_help = exit::HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Connection and output options shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalOptions,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts (before or after the subcommand name).
#[derive(Debug, Clone, Args)]
pub struct GlobalOptions {
    /// MQTT broker: HOST:PORT, mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS) [default:
    /// 127.0.0.1:1883; for serve, demo and bench: an embedded broker]
    #[arg(long, global = true, env = "LEASEDLOCK_BROKER", value_name = "ADDR")]
    pub broker: Option<BrokerAddr>,

    /// MQTT client id; also the lease holder value [default: leasedlock-<host>-<pid>]
    #[arg(long, global = true, env = "LEASEDLOCK_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,

    /// Connect with TLS, trusting the system's root certificates (implied by --tls-ca,
    /// --tls-cert and mqtts://)
    #[arg(long, global = true, env = "LEASEDLOCK_TLS")]
    pub tls: bool,

    /// PEM file with the CA certificate(s) that sign the broker's certificate
    #[arg(long, global = true, env = "LEASEDLOCK_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate for X.509 authentication (with --tls-key)
    #[arg(
        long,
        global = true,
        env = "LEASEDLOCK_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert
    #[arg(
        long,
        global = true,
        env = "LEASEDLOCK_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// MQTT username
    #[arg(long, global = true, env = "LEASEDLOCK_USERNAME", value_name = "NAME")]
    pub username: Option<String>,

    /// File holding the MQTT password (read at connect time; never pass secrets as arguments)
    #[arg(
        long,
        global = true,
        env = "LEASEDLOCK_PASSWORD_FILE",
        value_name = "FILE",
        requires = "username"
    )]
    pub password_file: Option<PathBuf>,

    /// File holding a Kubernetes service-account token for the AIO broker's `K8S-SAT`
    /// authentication (read again before every connection attempt)
    #[arg(
        long,
        global = true,
        env = "LEASEDLOCK_SAT_FILE",
        value_name = "FILE",
        conflicts_with = "username"
    )]
    pub sat_file: Option<PathBuf>,

    /// Give up on each request to the state store (one GET, SET, renewal...) after this long
    /// [default: 10s]. Never bounds the wait for a lock: that is `lock --wait`
    #[arg(long, global = true, env = "LEASEDLOCK_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,

    /// Log more: -v info, -vv debug, -vvv trace (overrides LEASEDLOCK_LOG and RUST_LOG)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Log less: -q errors only, -qq nothing (overrides LEASEDLOCK_LOG and RUST_LOG)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Print results as JSON (one object per line) for scripts; for lock and elect, event lines
    /// (acquired, renewed, lost, renew_failed, exit, released, error) on stderr, leaving stdout
    /// to the command
    #[arg(long, global = true, env = "LEASEDLOCK_JSON")]
    pub json: bool,
}

impl GlobalOptions {
    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }
}

/// What `--timeout` (removed) has to say: which option replaces which of its two meanings.
pub const REMOVED_TIMEOUT: &str = "--timeout was removed because it meant two things: use \
    --request-timeout DURATION for the limit on each request, and `lock --wait DURATION` for \
    the whole wait for a lock";

/// Whether the arguments (after the program name) use the removed `--timeout`, before any `--`
/// (what follows `--` is the command's). Checked before parsing, and not as a hidden option, so
/// that neither help nor shell completions offer it.
pub fn uses_removed_timeout(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str())
        .any(|a| a == "--timeout" || a.starts_with("--timeout="))
}

/// The environment variable of the removed `--timeout`; still set, it is ignored with a warning.
pub const REMOVED_TIMEOUT_ENV: &str = "LEASEDLOCK_TIMEOUT";

/// The per-request timeout when `--request-timeout` is not given.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the state store (the emulator) for local development and tests; with no --broker it
    /// also runs the embedded MQTT 5 broker
    Serve(ServeArgs),
    /// Try once to acquire a lease; with --renew keep it until interrupted, then release it
    Acquire(AcquireArgs),
    /// Release a lease held by this client id (and session)
    Release(ReleaseArgs),
    /// Print who holds a lease
    Holder(NameArgs),
    /// Print a line each time a lease's holder changes, until interrupted
    Watch(NameArgs),
    /// Print a key's value: its bytes exactly as stored (no newline added), or --output json|base64
    Get(GetArgs),
    /// Set a key
    Set(SetArgs),
    /// Delete a key
    Del(DelArgs),
    /// Run a command while holding a lock (renewed as it runs); the fencing token is in
    /// LEASEDLOCK_FENCING_TOKEN; the command is killed before the lock can pass to anyone else
    #[command(after_long_help = SUPERVISION_HELP)]
    Lock(LockArgs),
    /// Run a command only while this process is the elected leader; stop it when deposed and run
    /// it again when re-elected
    #[command(after_long_help = SUPERVISION_HELP)]
    Elect(ElectArgs),
    /// Show leasedlock at work: contenders taking turns on a lock with fenced writes, a holder
    /// killed mid-hold, the failover; needs nothing installed
    Demo(DemoArgs),
    /// Measure acquire and handover latency against the raw MQTT request/reply round trip
    Bench(BenchArgs),
    /// Print a completion script for SHELL on stdout (e.g. `leasedlock completions bash >
    /// /etc/bash_completion.d/leasedlock`)
    Completions(CompletionsArgs),
}

/// `completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// What `lock` and `elect` guarantee about the command, shown by `--help`.
pub const SUPERVISION_HELP: &str = "\
MUTUAL EXCLUSION:
  The command runs in a process group of its own, led by a small guard process. No process of
  that group runs past the moment another holder can acquire the lease:
  - The lease's safe end (safe_until) is the last renewal's send time + --ttl - the margin
    (5 % of --ttl, at least 100 ms). If no renewal has moved it later by safe_until - --grace,
    the group gets SIGTERM; at safe_until it gets SIGKILL. A renewal that succeeds before
    safe_until - --grace moves both; once SIGTERM is sent the command is stopped regardless.
    If the lease ends earlier (taken, deleted, refused), SIGTERM goes out at once and SIGKILL
    --grace later, never after safe_until.
  - --grace must fit in the lease next to the renewal schedule: a renewal is sent every third
    of --ttl and must be able to complete before SIGTERM is due, so
    --grace < 2/3 x --ttl - margin - 20 ms; otherwise leasedlock exits 2 and says why.
    Default: a sixth of --ttl.
  - When leasedlock dies, however it dies (kill -9 included), the guard kills the whole group
    with SIGKILL (Linux parent-death signal). The guard also keeps the SIGKILL deadline itself
    (leasedlock moves it on each renewal), so a leasedlock that is stopped (SIGSTOP), frozen or
    starved cannot keep the command running past the lease either.
  - When the command exits, whatever is left of its group is killed with SIGKILL before the
    lock is released (or leadership resigned).
  Assumptions: the clocks of this machine and of the state store run at rates that differ by
  less than the margin over a lease; the margin also covers the time the kernel takes to end
  a process after SIGKILL (SIGKILL cannot be caught or ignored) and timer latency. Processes
  that leave the group (setsid, setpgid) or a second host acting for the command are not
  covered: protect writes with LEASEDLOCK_FENCING_TOKEN.";

/// `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Keep keys written with `aio-persistence: true`, and every key with an expiry (leases), in
    /// this directory across restarts
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the embedded broker listens (ignored with --broker)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1883")]
    pub listen: SocketAddr,
}

/// A lease or lock name.
#[derive(Debug, Clone, Args)]
pub struct NameArgs {
    /// The lease (lock) name: the state-store key that holds it
    pub name: String,
}

/// `acquire`.
#[derive(Debug, Clone, Args)]
pub struct AcquireArgs {
    /// The lease name
    pub name: String,
    /// Lease duration
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Renew every DURATION and keep the lease until interrupted (Ctrl-C), then release it
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub renew: Option<Duration>,
    /// Session id appended to the holder value (`<client id>:<session>`), as the Go and .NET SDKs do
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
}

/// `release`.
#[derive(Debug, Clone, Args)]
pub struct ReleaseArgs {
    /// The lease name
    pub name: String,
    /// Session id the lease was acquired with
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
}

/// `get`.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The key
    pub key: String,
    /// How to print the value: raw (its bytes exactly, no newline added), json (one object
    /// with the value as text when it is UTF-8 and always as base64, and its version) or base64
    /// (one line) [default: raw; json with --json]
    #[arg(long, short = 'o', value_enum, value_name = "FORMAT")]
    pub output: Option<GetOutput>,
}

/// How `get` prints the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum GetOutput {
    /// The value's bytes exactly as stored, no newline added.
    Raw,
    /// One JSON object: key, found, value (text, or null when not UTF-8), value_base64, version.
    Json,
    /// The value in standard base64, with a newline.
    Base64,
}

/// `set`.
#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// The key
    pub key: String,
    /// The value; `-` reads it from stdin, as bytes (up to 4 MiB, the store's limit)
    pub value: String,
    /// Expire the key after DURATION
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub px: Option<Duration>,
    /// Only set the key if it does not exist
    #[arg(long, conflicts_with = "nex")]
    pub nx: bool,
    /// Only set the key if it does not exist or already has this value
    #[arg(long)]
    pub nex: bool,
    /// Fencing token (an HLC string such as LEASEDLOCK_FENCING_TOKEN) to protect the write with
    #[arg(long, value_name = "TOKEN")]
    pub fencing_token: Option<String>,
}

/// `del`.
#[derive(Debug, Clone, Args)]
pub struct DelArgs {
    /// The key
    pub key: String,
    /// Only delete the key if it has this value (VDEL)
    #[arg(long, value_name = "VALUE")]
    pub if_value: Option<String>,
    /// Fencing token to protect the delete with
    #[arg(long, value_name = "TOKEN")]
    pub fencing_token: Option<String>,
}

/// `lock`.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// The lock name
    pub name: String,
    /// Lease duration; the lease is renewed at a third of it while the command runs
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub ttl: Duration,
    /// How long before the lease's safe end SIGTERM is sent when no renewal succeeded; SIGKILL
    /// follows at the safe end [default: a sixth of --ttl]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<Duration>,
    /// Session id appended to the holder value
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Give up (exit 124) when the lock is not acquired within DURATION [default: wait as long
    /// as it takes]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// The command and its arguments (after `--`)
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `elect`.
#[derive(Debug, Clone, Args)]
pub struct ElectArgs {
    /// The election (lease) name
    pub name: String,
    /// Lease duration; renewed at a third of it while leader
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub ttl: Duration,
    /// How long before the lease's safe end SIGTERM is sent when no renewal succeeded; SIGKILL
    /// follows at the safe end [default: a sixth of --ttl]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<Duration>,
    /// Exit (status 123) when deposed instead of campaigning again
    #[arg(long)]
    pub once: bool,
    /// The command and its arguments (after `--`)
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Number of contenders
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=64))]
    pub clients: u32,
    /// How long the demo runs, in seconds
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=3600))]
    pub seconds: u32,
    /// Lease duration of the contenders (the failover after a killed holder takes about this long)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub ttl: Duration,
    /// How long each holder keeps the lock for its fenced writes
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "20ms")]
    pub hold: Duration,
    /// Also write a timeline of the run to FILE as an SVG picture (one lane per contender:
    /// holds with their tokens, renewals, the kill, the failover gap, refused writes)
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
}

/// `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Round trips / cycles / handovers measured per row
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub iterations: u32,
}

/// A broker address: host, port and whether the scheme asked for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://` was given.
    pub tls: bool,
}

impl BrokerAddr {
    /// The default broker: Mosquitto or `leasedlock serve` on loopback.
    pub fn local_default() -> BrokerAddr {
        BrokerAddr {
            host: "127.0.0.1".into(),
            port: 1883,
            tls: false,
        }
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts://" } else { "" };
        if self.host.contains(':') {
            write!(f, "{scheme}[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for BrokerAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<BrokerAddr, String> {
        let (rest, tls, default_port) = if let Some(rest) = text.strip_prefix("mqtts://") {
            (rest, true, Some(8883))
        } else if let Some(rest) = text.strip_prefix("mqtt://") {
            (rest, false, Some(1883))
        } else if text.contains("://") {
            return Err(format!("`{text}`: the scheme must be mqtt:// or mqtts://"));
        } else {
            (text, false, None)
        };
        let rest = rest.trim_end_matches('/');
        // [v6]:port, host:port, or (with a scheme) host alone.
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: missing `]`"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                Some(_) => return Err(format!("`{text}`: write IPv6 addresses as [ADDR]:PORT")),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!(
                "`{text}`: the host is missing (expected HOST:PORT)"
            ));
        }
        let port = match (port, default_port) {
            (Some(p), _) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{text}`: `{p}` is not a port number"))?,
            (None, Some(p)) => p,
            (None, None) => {
                return Err(format!(
                    "`{text}`: the port is missing (expected HOST:PORT)"
                ))
            }
        };
        Ok(BrokerAddr {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;
    use proptest::prelude::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("leasedlock").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn broker_addresses() {
        let a: BrokerAddr = "localhost:1883".parse().expect("host:port");
        assert_eq!(
            a,
            BrokerAddr {
                host: "localhost".into(),
                port: 1883,
                tls: false
            }
        );
        let a: BrokerAddr = "mqtts://aio-broker.example".parse().expect("mqtts");
        assert_eq!(
            a,
            BrokerAddr {
                host: "aio-broker.example".into(),
                port: 8883,
                tls: true
            }
        );
        let a: BrokerAddr = "mqtt://[::1]:1884".parse().expect("v6");
        assert_eq!(
            a,
            BrokerAddr {
                host: "::1".into(),
                port: 1884,
                tls: false
            }
        );
        assert_eq!(a.to_string(), "[::1]:1884");
        for bad in [
            "",
            "host",
            ":1883",
            "host:0",
            "host:99999",
            "http://x:1",
            "::1:1883",
            "[::1",
        ] {
            assert!(bad.parse::<BrokerAddr>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn lock_takes_the_command_after_double_dash() {
        let cli = parse(&[
            "lock",
            "job",
            "--ttl",
            "3s",
            "--wait",
            "30s",
            "--request-timeout",
            "2s",
            "--",
            "sh",
            "-c",
            "echo --ttl",
        ])
        .expect("parses");
        assert_eq!(cli.global.request_timeout, Some(Duration::from_secs(2)));
        let Command::Lock(lock) = cli.command else {
            panic!("not lock")
        };
        assert_eq!(lock.ttl, Duration::from_secs(3));
        assert_eq!(lock.grace, None, "derived from --ttl when not given");
        assert_eq!(lock.wait, Some(Duration::from_secs(30)));
        assert_eq!(
            lock.command,
            vec![OsString::from("sh"), "-c".into(), "echo --ttl".into()]
        );
    }

    #[test]
    fn the_removed_timeout_is_found_before_the_command_only() {
        let args = |list: &[&str]| -> Vec<OsString> { list.iter().map(OsString::from).collect() };
        assert!(uses_removed_timeout(&args(&[
            "leasedlock",
            "--timeout",
            "5s",
            "holder",
            "x"
        ])));
        assert!(uses_removed_timeout(&args(&[
            "leasedlock",
            "holder",
            "x",
            "--timeout=5s"
        ])));
        assert!(!uses_removed_timeout(&args(&[
            "leasedlock",
            "lock",
            "x",
            "--",
            "curl",
            "--timeout",
            "5"
        ])));
        assert!(
            !uses_removed_timeout(&args(&["--timeout"])),
            "the program name is skipped"
        );
        assert!(!uses_removed_timeout(&args(&[
            "leasedlock",
            "--request-timeout",
            "5s"
        ])));
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let before = parse(&["--json", "--broker", "b:1", "holder", "x"]).expect("before");
        let after = parse(&["holder", "x", "--json", "--broker", "b:1"]).expect("after");
        assert!(before.global.json && after.global.json);
        assert_eq!(before.global.broker, after.global.broker);
    }

    #[test]
    fn usage_errors() {
        let cases: &[&[&str]] = &[
            &[],
            &["lock", "job"],
            &["lock", "job", "--ttl", "soon", "--", "true"],
            &["acquire", "x"],
            &["demo", "--clients", "1"],
            &["set", "k", "v", "--nx", "--nex"],
            &["holder", "x", "--tls-cert", "c.pem"],
            &["holder", "x", "--password-file", "p"],
            &["holder", "x", "--broker", "nope"],
            &["frobnicate"],
        ];
        for args in cases {
            let err = parse(args).expect_err(&format!("{args:?} accepted"));
            assert_eq!(err.exit_code(), i32::from(exit::USAGE), "{args:?}: {err}");
            assert_ne!(err.kind(), ErrorKind::DisplayHelp);
        }
    }

    #[test]
    fn help_documents_exit_codes_and_environment() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("EXIT CODES"), "{help}");
        assert!(
            !help.contains("--timeout"),
            "the removed option is not offered: {help}"
        );
        for var in [
            "LEASEDLOCK_BROKER",
            "LEASEDLOCK_CLIENT_ID",
            "LEASEDLOCK_TLS_CA",
            "LEASEDLOCK_PASSWORD_FILE",
            "LEASEDLOCK_REQUEST_TIMEOUT",
            "LEASEDLOCK_JSON",
            "RUST_LOG",
            "NO_COLOR",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
    }

    #[test]
    fn lock_and_elect_help_state_the_guarantee() {
        for sub in ["lock", "elect"] {
            let mut cli = Cli::command();
            let help = cli
                .find_subcommand_mut(sub)
                .expect("subcommand")
                .render_long_help()
                .to_string();
            for needle in [
                "MUTUAL EXCLUSION",
                "safe_until - --grace",
                "kill -9",
                "before the\n    lock is released",
                "Assumptions",
            ] {
                assert!(
                    help.contains(needle),
                    "{sub} --help lacks {needle:?}:\n{help}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn broker_addr_never_panics(text in ".{0,40}") {
            let _ = text.parse::<BrokerAddr>();
        }

        #[test]
        fn broker_addr_round_trips(host in "[a-z][a-z0-9.-]{0,20}", port in 1u16.., tls: bool) {
            let addr = BrokerAddr { host, port, tls };
            let text = addr.to_string();
            prop_assert_eq!(text.parse::<BrokerAddr>(), Ok(addr));
        }
    }
}
