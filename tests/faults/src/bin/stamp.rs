//! `leasedlock-faults-stamp LOG`: appends one heartbeat of a command running under
//! `leasedlock lock` to the shared log, stamped on the suite's clock, with the holder, token and
//! process group `leasedlock lock` gave the command.
//!
//! A shell loop calls it every few milliseconds; a record after another holder's first one is an
//! overlap. It inherits an ignored SIGTERM from such a loop, as any child of it would.

use std::process::ExitCode;

use leasedlock_core::hlc::Hlc;
use leasedlock_faults::clock::now_ns;
use leasedlock_faults::record::{Log, Record};

fn main() -> ExitCode {
    // Stamp first: the moment this process ran is what the record claims.
    let at = now_ns();
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: leasedlock-faults-stamp LOG");
        return ExitCode::from(2);
    };
    let var = |name: &str| std::env::var(name).map_err(|e| format!("{name}: {e}"));
    let record = (|| -> Result<Record, String> {
        // The holder value is `clientId:instance.handle` (one holder per handle); the scenarios
        // name participants by their client id.
        let holder = var("LEASEDLOCK_HOLDER")?;
        let who = holder.split(':').next().unwrap_or_default().to_string();
        let token_text = var("LEASEDLOCK_FENCING_TOKEN")?;
        let token = Hlc::parse_slice(token_text.as_bytes()).map_err(|e| e.to_string())?;
        Ok(Record::Held {
            at,
            who,
            session: token_text,
            token,
            group: Some(nix::unistd::getpgrp().as_raw()),
        })
    })();
    let record = match record {
        Ok(r) => r,
        Err(e) => {
            eprintln!("leasedlock-faults-stamp: not run by `leasedlock lock`? {e}");
            return ExitCode::from(2);
        }
    };
    match Log::new(path).append(&record) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasedlock-faults-stamp: {e}");
            ExitCode::from(1)
        }
    }
}
