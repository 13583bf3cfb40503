//! `get`, `set` and `del`: raw state-store operations for inspection and scripts.

use bytes::Bytes;
use leasedlock_tokio::{DelOptions, Hlc, SetOptions, VdelOutcome};
use serde_json::json;

use crate::args::{DelArgs, GlobalOptions, KeyArgs, SetArgs};
use crate::commands::common::{lossy, Report};
use crate::commands::connect::{connect, Failure};
use crate::exit;

/// Parses a `--fencing-token` argument (an HLC string `ms:counter:node`).
pub fn parse_token(text: &str) -> Result<Hlc, Failure> {
    Hlc::parse(&Bytes::copy_from_slice(text.trim().as_bytes())).map_err(|e| {
        Failure::new(
            exit::USAGE,
            format!("--fencing-token `{text}` is not an HLC timestamp (ms:counter:node): {e}"),
        )
    })
}

/// `get KEY`: prints the value (exit 1 when absent).
pub async fn get(global: &GlobalOptions, args: &KeyArgs, report: Report) -> Result<u8, Failure> {
    let conn = connect(global, global.request_timeout()).await?;
    let got = conn
        .state_store()
        .get(args.key.clone(), Some(global.request_timeout()))
        .await;
    conn.close().await;
    let got = got?;
    if report.is_json() {
        report.json(&json!({
            "key": args.key,
            "found": got.is_some(),
            "value": got.as_ref().map(|v| lossy(&v.value)),
            "version": got.as_ref().and_then(|v| v.version.as_ref()).map(|t| t.to_string()),
        }));
    } else if let Some(v) = &got {
        report.line(&lossy(&v.value));
    } else {
        eprintln!("leasedlock: {} not found", args.key);
    }
    Ok(if got.is_some() { exit::OK } else { exit::NO })
}

/// `set KEY VALUE [--px D] [--nx | --nex] [--fencing-token T]` (exit 1 when the condition
/// kept it from being set).
pub async fn set(global: &GlobalOptions, args: &SetArgs, report: Report) -> Result<u8, Failure> {
    let mut options = SetOptions::new().timeout(global.request_timeout());
    if let Some(px) = args.px {
        options = options.expiry(px);
    }
    if args.nx {
        options = options.if_absent();
    }
    if args.nex {
        options = options.if_absent_or_equal();
    }
    if let Some(token) = &args.fencing_token {
        options = options.fencing_token(parse_token(token)?);
    }
    let conn = connect(global, global.request_timeout()).await?;
    let result = conn
        .state_store()
        .set(args.key.clone(), args.value.clone(), &options)
        .await;
    conn.close().await;
    let result = result?;
    let version = result.version.as_ref().map(|v| v.to_string());
    if report.is_json() {
        report.json(&json!({ "key": args.key, "set": result.applied, "version": version }));
    } else if result.applied {
        report.line(&format!("OK (version {})", version.unwrap_or_default()));
    } else {
        report.line("not set: the key exists (--nx) or holds another value (--nex)");
    }
    Ok(if result.applied { exit::OK } else { exit::NO })
}

/// `del KEY [--if-value V] [--fencing-token T]` (exit 1 when nothing was deleted).
pub async fn del(global: &GlobalOptions, args: &DelArgs, report: Report) -> Result<u8, Failure> {
    let mut options = DelOptions::new().timeout(global.request_timeout());
    if let Some(token) = &args.fencing_token {
        options = options.fencing_token(parse_token(token)?);
    }
    let conn = connect(global, global.request_timeout()).await?;
    let store = conn.state_store();
    let result = match &args.if_value {
        None => store.del(args.key.clone(), &options).await.map(|deleted| {
            if deleted {
                "deleted"
            } else {
                "not found"
            }
        }),
        Some(value) => store
            .vdel(args.key.clone(), value.clone(), &options)
            .await
            .map(|outcome| match outcome {
                VdelOutcome::Deleted => "deleted",
                VdelOutcome::NotFound => "not found",
                _ => "holds another value",
            }),
    };
    conn.close().await;
    let what = result?;
    let deleted = what == "deleted";
    if report.is_json() {
        report.json(&json!({ "key": args.key, "deleted": deleted, "outcome": what }));
    } else {
        report.line(&format!("{}: {what}", args.key));
    }
    Ok(if deleted { exit::OK } else { exit::NO })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = parse_token("001696374425000:00003:node-a").expect("valid");
        assert_eq!(t.to_string(), "001696374425000:00003:node-a");
        assert_eq!(parse_token("nope").expect_err("invalid").code, exit::USAGE);
    }
}
