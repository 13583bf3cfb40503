//! `leasedlock-emulator --broker HOST:PORT`: serves the state store on a broker until SIGINT or
//! SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use leasedlock_emulator::{Emulator, EmulatorConfig, TlsOptions};

/// Writes one line to stderr; a closed stderr is ignored (`eprintln!` would panic).
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "leasedlock-emulator: {}", format_args!($($arg)*));
    }};
}

/// An Azure IoT Operations state store emulator on a standard MQTT 5 broker.
#[derive(Debug, Parser)]
#[command(name = "leasedlock-emulator", version)]
struct Args {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:1883", value_name = "HOST:PORT")]
    broker: String,
    /// MQTT client id of the emulator's connection (default: leasedlock-emulator-PID).
    #[arg(long)]
    client_id: Option<String>,
    /// Username for the broker.
    #[arg(long)]
    username: Option<String>,
    /// Password for the broker.
    #[arg(long, conflicts_with = "password_file")]
    password: Option<String>,
    /// File holding the password (trailing newline ignored).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Connect with TLS (needs a build with the `tls` feature; otherwise refused with an error).
    #[arg(long)]
    tls: bool,
    /// PEM CA certificate(s) to trust (implies --tls; default: the platform's roots).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --client-key).
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM client key for mutual TLS.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Keep keys written with `aio-persistence: true` in this directory across restarts.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Node id of the versions the store hands out.
    #[arg(long, default_value = "leasedlock-emulator")]
    node_id: String,
    /// Maximum number of stored keys.
    #[arg(long)]
    max_keys: Option<usize>,
    /// Maximum bytes of keys plus values.
    #[arg(long)]
    max_data_bytes: Option<usize>,
    /// Maximum KEYNOTIFY registrations.
    #[arg(long)]
    max_registrations: Option<usize>,
    /// Log connection events to stderr.
    #[arg(long, short)]
    verbose: bool,
}

fn config(args: Args) -> Result<EmulatorConfig, String> {
    let (host, port) = args
        .broker
        .rsplit_once(':')
        .ok_or_else(|| format!("--broker {}: expected HOST:PORT", args.broker))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("--broker {}: bad port", args.broker))?;
    let mut c = EmulatorConfig::new(host.trim_matches(['[', ']']), port);
    if let Some(id) = args.client_id {
        c.client_id = id;
    }
    let password = match (args.password, args.password_file) {
        (Some(p), _) => Some(p),
        (None, Some(f)) => Some(
            std::fs::read_to_string(&f)
                .map_err(|e| format!("--password-file {}: {e}", f.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        (None, None) => None,
    };
    if let Some(user) = args.username {
        c.credentials = Some((user, password.unwrap_or_default()));
    } else if password.is_some() {
        return Err("--password needs --username".into());
    }
    if args.tls || args.ca_file.is_some() || args.client_cert.is_some() {
        c.tls = Some(TlsOptions {
            ca_file: args.ca_file,
            client_cert: args.client_cert.zip(args.client_key),
        });
    }
    c.data_dir = args.data_dir;
    c.store.node_id = Bytes::from(args.node_id);
    if let Some(n) = args.max_keys {
        c.store.max_keys = n;
    }
    if let Some(n) = args.max_data_bytes {
        c.store.max_data_bytes = n;
    }
    if let Some(n) = args.max_registrations {
        c.store.max_registrations = n;
    }
    c.verbose = args.verbose;
    Ok(c)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One thread: the store is sequential anyway, and hand-offs between worker threads cost more
/// than they save on a loaded machine.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match config(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            log!("{e}");
            return ExitCode::from(2);
        }
    };
    let broker = format!("{}:{}", config.host, config.port);
    let emulator = match Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            log!("{e}");
            return ExitCode::FAILURE;
        }
    };
    log!("serving the state store on {broker}");
    wait_for_signal().await;
    let snap = emulator.snapshot();
    let _ = tokio::time::timeout(Duration::from_secs(5), emulator.shutdown()).await;
    eprintln!(
        "leasedlock-emulator: stopped ({} requests, {} keys)",
        snap.stats.requests, snap.keys
    );
    ExitCode::SUCCESS
}
