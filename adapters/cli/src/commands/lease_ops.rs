//! `acquire`, `release`, `holder` and `watch`: single lease operations from the shell.

use bytes::Bytes;
use leasedlock_tokio::{AcquireOptions, Connection, DelOptions, Lease, VdelOutcome};
use serde_json::json;

use crate::args::{AcquireArgs, GlobalOptions, NameArgs, ReleaseArgs};
use crate::commands::common::{
    clock_text, lossy, wait_for_shutdown_signal, wall_ms, Report, ShutdownSignals,
};
use crate::commands::connect::{connect, default_client_id, Failure, RenewPlan};
use crate::exit;

fn lease_handle(conn: &Connection, name: &str, session: Option<&str>) -> Result<Lease, Failure> {
    let lease = match session {
        Some(s) => conn.lease_with_session(name.to_string(), s.to_string()),
        // The bare client id: the holder `release --client-id ID` (another process) names.
        None => conn.lease_as_client_id(name.to_string()),
    };
    lease.map_err(Failure::from)
}

/// `acquire NAME --ttl D [--renew R] [--session S]`.
pub async fn acquire(
    global: &GlobalOptions,
    args: &AcquireArgs,
    report: Report,
) -> Result<u8, Failure> {
    let options = match args.renew {
        Some(renew) => {
            RenewPlan::new(args.ttl, Some(renew), global.request_timeout())?.acquire_options()
        }
        None => AcquireOptions::new().timeout(global.request_timeout()),
    };
    let conn = connect(global, global.request_timeout()).await?;
    let lease = lease_handle(&conn, &args.name, args.session.as_deref())?;
    let holder = lossy(&lease.holder_value());
    let acquired = lease.acquire(args.ttl, &options).await?;
    if !acquired {
        let current = lease.holder().await.ok().flatten();
        let current_text = current.as_ref().map(|h| lossy(h));
        if report.is_json() {
            report.json(&json!({ "acquired": false, "name": args.name, "holder": current_text }));
        } else {
            report.line(&format!(
                "not acquired: {} is held by {}",
                args.name,
                current_text.as_deref().unwrap_or("(released meanwhile)")
            ));
        }
        lease.detach();
        conn.close().await;
        return Ok(exit::NO);
    }
    let token = lease.token().map(|t| t.to_string()).unwrap_or_default();
    if report.is_json() {
        report.json(&json!({
            "acquired": true,
            "name": args.name,
            "holder": holder,
            "token": token,
            "ttl_ms": args.ttl.as_millis() as u64,
        }));
    } else {
        report.line(&format!(
            "acquired {} as {holder}; fencing token {token}",
            args.name
        ));
    }
    if args.renew.is_none() {
        // The lease stays on the store until its TTL runs out (or `release` with this holder).
        if global.client_id.is_none() && !report.is_json() {
            eprintln!(
                "leasedlock: to release it before it expires: leasedlock --client-id {} release {}",
                conn.client_id(),
                args.name
            );
        }
        lease.detach();
        conn.close().await;
        return Ok(exit::OK);
    }
    if !report.is_json() {
        eprintln!("leasedlock: renewing; Ctrl-C releases it");
    }
    let code = tokio::select! {
        reason = lease.lost() => {
            report.error(&format!("lost the lease {}: {reason}", args.name));
            exit::LEASE_LOST
        }
        () = wait_for_shutdown_signal() => {
            let outcome = lease.release().await?;
            if report.is_json() {
                report.json(&json!({ "released": true, "name": args.name, "outcome": format!("{outcome:?}") }));
            } else {
                report.line(&format!("released {}", args.name));
            }
            exit::OK
        }
    };
    conn.close().await;
    Ok(code)
}

/// `release NAME [--session S]`: `VDEL name holder`, where the holder is this client id (and
/// session): the same holder value `acquire` used.
pub async fn release(
    global: &GlobalOptions,
    args: &ReleaseArgs,
    report: Report,
) -> Result<u8, Failure> {
    let client_id = global.client_id.clone().unwrap_or_else(default_client_id);
    let holder = match &args.session {
        Some(s) => format!("{client_id}:{s}"),
        None => client_id,
    };
    let conn = connect(global, global.request_timeout()).await?;
    let outcome = conn
        .state_store()
        .vdel(
            args.name.clone(),
            holder.clone(),
            &DelOptions::new().timeout(global.request_timeout()),
        )
        .await;
    conn.close().await;
    let (released, text, code) = match outcome? {
        VdelOutcome::Deleted => (true, format!("released {}", args.name), exit::OK),
        VdelOutcome::NotFound => (false, format!("{} is not held", args.name), exit::NO),
        VdelOutcome::Mismatch => (
            false,
            format!("{} is held by someone other than {holder}", args.name),
            exit::NO,
        ),
        _ => (
            false,
            format!("{}: unexpected reply", args.name),
            exit::REFUSED,
        ),
    };
    if report.is_json() {
        report.json(&json!({ "released": released, "name": args.name, "holder": holder }));
    } else {
        report.line(&text);
    }
    Ok(code)
}

/// `holder NAME`: the holder value and the version of its last acquisition or renewal.
pub async fn holder(
    global: &GlobalOptions,
    args: &NameArgs,
    report: Report,
) -> Result<u8, Failure> {
    let conn = connect(global, global.request_timeout()).await?;
    let got = conn
        .state_store()
        .get(args.name.clone(), Some(global.request_timeout()))
        .await;
    conn.close().await;
    let got = got?;
    let code = if got.is_some() { exit::OK } else { exit::NO };
    if report.is_json() {
        report.json(&json!({
            "name": args.name,
            "held": got.is_some(),
            "holder": got.as_ref().map(|v| lossy(&v.value)),
            "token": got.as_ref().and_then(|v| v.version.as_ref()).map(|t| t.to_string()),
        }));
    } else {
        match got {
            Some(v) => {
                let token = v.version.map(|t| t.to_string()).unwrap_or_default();
                report.line(&format!("{} (token {token})", lossy(&v.value)));
            }
            None => report.line(&format!("{} is not held", args.name)),
        }
    }
    Ok(code)
}

/// `watch NAME`: the current holder, then one line per change until SIGINT/SIGTERM.
pub async fn watch(global: &GlobalOptions, args: &NameArgs, report: Report) -> Result<u8, Failure> {
    let mut signals = ShutdownSignals::new();
    let conn = connect(global, global.request_timeout()).await?;
    let lease = lease_handle(&conn, &args.name, None)?;
    // Observe first, then read: a change between the two is seen, never missed.
    let mut changes = lease.observe().await?;
    let current = lease.holder().await?;
    print_change(report, &args.name, current.as_ref());
    let code = loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(change)) => {
                    let holder = if change.held { change.holder } else { None };
                    print_change(report, &args.name, holder.as_ref());
                }
                Some(Err(lapse)) => {
                    // Changes may have been missed: say so, and print where things stand now.
                    report.error(&format!("{lapse}; reading the holder again"));
                    if let Ok(current) = lease.holder().await {
                        print_change(report, &args.name, current.as_ref());
                    }
                }
                None => {
                    report.error("the observation ended (connection closed)");
                    break exit::UNREACHABLE;
                }
            },
            () = signals.recv() => break exit::OK,
        }
    };
    drop(changes);
    lease.detach();
    conn.close().await;
    Ok(code)
}

fn print_change(report: Report, name: &str, holder: Option<&Bytes>) {
    let holder = holder.map(|h| lossy(h));
    if report.is_json() {
        report.json(&json!({ "name": name, "held": holder.is_some(), "holder": holder, "wall_ms": wall_ms() }));
    } else {
        match holder {
            Some(h) => report.line(&format!("{} held by {h}", clock_text())),
            None => report.line(&format!("{} free", clock_text())),
        }
    }
}
