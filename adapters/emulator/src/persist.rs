//! Optional durability (`--data-dir`): keys written with `aio-persistence: true`, and every key
//! with an expiry (leases: `StoreConfig::persist_expiring`), are kept in a
//! [redb](https://docs.rs/redb) database so they survive an emulator restart.
//!
//! Each write is its own committed transaction (redb's default durability flushes to disk on
//! commit), and the store task performs it before publishing the reply that follows it, so a
//! client never sees `+OK` for a persisted key that is not yet on disk.
//!
//! Record layout (the redb value; the key is the state-store key):
//! `[u8 format = 1][u64 LE expiry wall ms, 0 = none][u16 LE version len][version]`
//! `[u16 LE token len, 0 = none][token][value...]`, versions and tokens in HLC text form.

use std::path::Path;

use bytes::Bytes;
use leasedlock_core::hlc::Hlc;
use leasedlock_core::server::PersistedKey;
use redb::{Database, ReadableTable, TableDefinition};

const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");
const FORMAT: u8 = 1;

/// A durability failure.
#[derive(Debug)]
pub struct PersistError(String);

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PersistError {}

fn err(e: impl std::fmt::Display) -> PersistError {
    PersistError(e.to_string())
}

/// The on-disk key store.
pub struct Durable {
    db: Database,
}

impl Durable {
    /// Opens (or creates) `dir/store.redb`.
    pub fn open(dir: &Path) -> Result<Durable, PersistError> {
        std::fs::create_dir_all(dir).map_err(err)?;
        let db = Database::create(dir.join("store.redb")).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(KEYS).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Durable { db })
    }

    /// Every stored record; undecodable ones are returned as errors with their key.
    pub fn load(&self) -> Result<Vec<Result<PersistedKey, Bytes>>, PersistError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(KEYS).map_err(err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let key = Bytes::copy_from_slice(k.value());
            out.push(decode(key.clone(), v.value()).ok_or(key));
        }
        Ok(out)
    }

    /// Stores or replaces a key, durably.
    pub fn put(&self, rec: &PersistedKey) -> Result<(), PersistError> {
        let value = encode(rec);
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(KEYS).map_err(err)?;
            table.insert(&rec.key[..], &value[..]).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Removes a key, durably.
    pub fn remove(&self, key: &[u8]) -> Result<(), PersistError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(KEYS).map_err(err)?;
            table.remove(key).map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

fn encode(rec: &PersistedKey) -> Vec<u8> {
    let version = rec.version.to_bytes();
    let token = rec
        .fencing_token
        .as_ref()
        .map(Hlc::to_bytes)
        .unwrap_or_default();
    let mut v = Vec::with_capacity(1 + 8 + 4 + version.len() + token.len() + rec.value.len());
    v.push(FORMAT);
    v.extend_from_slice(&rec.expires_at_wall_ms.unwrap_or(0).to_le_bytes());
    // HLC texts are bounded by hlc::MAX_TEXT_LEN, far below u16::MAX.
    v.extend_from_slice(&(version.len() as u16).to_le_bytes());
    v.extend_from_slice(&version);
    v.extend_from_slice(&(token.len() as u16).to_le_bytes());
    v.extend_from_slice(&token);
    v.extend_from_slice(&rec.value);
    v
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

fn take_u16(input: &mut &[u8]) -> Option<usize> {
    let b = take(input, 2)?;
    Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn decode(key: Bytes, mut input: &[u8]) -> Option<PersistedKey> {
    if take(&mut input, 1)? != [FORMAT] {
        return None;
    }
    let expiry = u64::from_le_bytes(take(&mut input, 8)?.try_into().ok()?);
    let n = take_u16(&mut input)?;
    let version = Hlc::parse_slice(take(&mut input, n)?).ok()?;
    let n = take_u16(&mut input)?;
    let token = match n {
        0 => None,
        n => Some(Hlc::parse_slice(take(&mut input, n)?).ok()?),
    };
    Some(PersistedKey {
        key,
        value: Bytes::copy_from_slice(input),
        version,
        fencing_token: token,
        expires_at_wall_ms: (expiry != 0).then_some(expiry),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &'static [u8], token: bool, expiry: Option<u64>) -> PersistedKey {
        PersistedKey {
            key: Bytes::from_static(key),
            value: Bytes::from_static(b"value\x00\xff"),
            version: Hlc::new(1_700_000_000_000, 3, "node").unwrap(),
            fencing_token: token.then(|| Hlc::new(1_699_999_999_999, 0, "holder").unwrap()),
            expires_at_wall_ms: expiry,
        }
    }

    #[test]
    fn records_round_trip_and_garbage_is_rejected() {
        for r in [
            rec(b"a", false, None),
            rec(b"b", true, Some(1_700_000_060_000)),
        ] {
            assert_eq!(decode(r.key.clone(), &encode(&r)), Some(r));
        }
        let good = encode(&rec(b"a", true, None));
        for cut in 0..good.len() - 8 {
            // Any truncation inside the header is refused, never a panic.
            let _ = decode(Bytes::new(), &good[..cut]);
        }
        assert!(decode(Bytes::new(), b"").is_none());
        assert!(decode(Bytes::new(), b"\x02").is_none());
    }

    #[test]
    fn database_keeps_records_across_reopen() {
        let dir = std::env::temp_dir().join(format!("leasedlock-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let d = Durable::open(&dir).unwrap();
            d.put(&rec(b"k1", true, None)).unwrap();
            d.put(&rec(b"k2", false, Some(5))).unwrap();
            d.remove(b"k2").unwrap();
        }
        let d = Durable::open(&dir).unwrap();
        let all = d.load().unwrap();
        assert_eq!(all, vec![Ok(rec(b"k1", true, None))]);
        drop(d);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
