//! `get`, `set` and `del`: raw state-store operations for inspection and scripts.

use std::fmt;
use std::io::Read;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use leasedlock_core::server::StoreConfig;
use leasedlock_tokio::{DelOptions, Hlc, SetOptions, VdelOutcome};
use serde_json::json;

use crate::args::{DelArgs, GetArgs, GetOutput, GlobalOptions, SetArgs};
use crate::commands::common::{error_chain, Report};
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

/// `get KEY [--output raw|json|base64]`: prints the value (exit 1 when absent).
pub async fn get(global: &GlobalOptions, args: &GetArgs, report: Report) -> Result<u8, Failure> {
    let output = args.output.unwrap_or(if report.is_json() {
        GetOutput::Json
    } else {
        GetOutput::Raw
    });
    let conn = connect(global, global.request_timeout()).await?;
    let got = conn
        .state_store()
        .get(args.key.clone(), Some(global.request_timeout()))
        .await;
    conn.close().await;
    let got = got?;
    match (output, &got) {
        (GetOutput::Json, _) => report.json(&json!({
            "key": args.key,
            "found": got.is_some(),
            "value": got.as_ref().and_then(|v| std::str::from_utf8(&v.value).ok()),
            "value_base64": got.as_ref().map(|v| BASE64.encode(&v.value)),
            "version": got.as_ref().and_then(|v| v.version.as_ref()).map(|t| t.to_string()),
        })),
        (GetOutput::Base64, Some(v)) => report.line(&BASE64.encode(&v.value)),
        (_, Some(v)) => report.raw(&v.value),
        (_, None) => eprintln!("leasedlock: {} not found", args.key),
    }
    Ok(if got.is_some() { exit::OK } else { exit::NO })
}

/// Why `set KEY -` could not take its value from stdin.
#[derive(Debug)]
#[non_exhaustive]
pub enum StdinValueError {
    /// More bytes than the store takes in one value.
    TooLarge {
        /// The most a value may have, in bytes.
        limit: usize,
    },
    /// Reading stdin failed.
    Read(std::io::Error),
}

impl fmt::Display for StdinValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StdinValueError::TooLarge { limit } => write!(
                f,
                "the value on stdin is larger than {limit} bytes, the most the state store takes"
            ),
            StdinValueError::Read(_) => write!(f, "reading the value from stdin"),
        }
    }
}

impl std::error::Error for StdinValueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StdinValueError::Read(e) => Some(e),
            StdinValueError::TooLarge { .. } => None,
        }
    }
}

/// The most bytes one value may have: what our state store (the emulator) accepts.
pub fn max_value_len() -> usize {
    StoreConfig::default().max_value_len
}

/// Reads a whole value from `input`, refusing it once it exceeds `limit` bytes (without reading
/// more than one byte past the limit).
pub fn read_value(input: impl Read, limit: usize) -> Result<Vec<u8>, StdinValueError> {
    let mut value = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    input
        .take(cap)
        .read_to_end(&mut value)
        .map_err(StdinValueError::Read)?;
    if value.len() > limit {
        return Err(StdinValueError::TooLarge { limit });
    }
    Ok(value)
}

/// The value argument of `set`: `-` reads it from stdin.
fn set_value(arg: &str) -> Result<Bytes, Failure> {
    if arg != "-" {
        return Ok(Bytes::copy_from_slice(arg.as_bytes()));
    }
    read_value(std::io::stdin().lock(), max_value_len())
        .map(Bytes::from)
        .map_err(|e| Failure::new(exit::USAGE, error_chain(&e)))
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
    // Before connecting: a value that cannot be read is not worth a connection.
    let value = set_value(&args.value)?;
    let conn = connect(global, global.request_timeout()).await?;
    let result = conn
        .state_store()
        .set(args.key.clone(), value, &options)
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
    fn a_value_up_to_the_limit_is_read_whole_and_one_byte_more_is_refused() {
        let limit = 1000;
        let exact = vec![7u8; limit];
        assert_eq!(read_value(&exact[..], limit).expect("fits"), exact);
        let over = vec![7u8; limit + 1];
        assert!(matches!(
            read_value(&over[..], limit),
            Err(StdinValueError::TooLarge { limit: 1000 })
        ));
        assert_eq!(read_value(&b""[..], limit).expect("empty"), b"");
    }

    #[test]
    fn an_endless_input_is_refused_without_reading_it_all() {
        let endless = std::io::repeat(b'x');
        assert!(matches!(
            read_value(endless, 4096),
            Err(StdinValueError::TooLarge { limit: 4096 })
        ));
    }

    #[test]
    fn tokens() {
        let t = parse_token("001696374425000:00003:node-a").expect("valid");
        assert_eq!(t.to_string(), "001696374425000:00003:node-a");
        assert_eq!(parse_token("nope").expect_err("invalid").code, exit::USAGE);
    }
}
