//! The store's key table: a compact hash table from key bytes to [`Entry`].
//!
//! Memory matters here (the emulator's target is under 3x the raw key+value bytes), so each key
//! costs one allocation holding the key and value back to back, a 48-byte [`Entry`] in a dense
//! vector, and a 4-byte slot in an open-addressing index kept at most half full. Deletion swaps the
//! last entry into the hole and shifts the probe run back, so there are no tombstones. The hash is
//! SipHash keyed by a caller-supplied seed, so a hostile client cannot force long probe runs
//! without knowing the seed.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::hash::Hasher;

use crate::hlc::Hlc;

/// A key's version: the server HLC's milliseconds and counter (the node id is the store's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Version {
    pub(crate) millis: u64,
    pub(crate) counter: u32,
}

/// Marks "no PX deadline" in [`Entry::expires_nanos`].
pub(crate) const NO_EXPIRY: u64 = u64::MAX;

const PERSISTED_BIT: u32 = 1 << 31;

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Key bytes followed by value bytes.
    kv: Box<[u8]>,
    pub(crate) millis: u64,
    pub(crate) expires_nanos: u64,
    pub(crate) fence: Option<Box<Hlc>>,
    pub(crate) counter: u32,
    /// Key length; the top bit says the key was written with `aio-persistence: true`.
    key_len_flags: u32,
}

impl Entry {
    /// A new entry. `key.len()` must be below 2^31 (the store's key-length quota is far lower).
    pub(crate) fn new(key: &[u8], value: &[u8], version: Version) -> Entry {
        let mut kv = Vec::with_capacity(key.len() + value.len());
        kv.extend_from_slice(key);
        kv.extend_from_slice(value);
        Entry {
            kv: kv.into_boxed_slice(),
            millis: version.millis,
            expires_nanos: NO_EXPIRY,
            fence: None,
            counter: version.counter,
            key_len_flags: (key.len() as u32) & !PERSISTED_BIT,
        }
    }

    fn key_len(&self) -> usize {
        (self.key_len_flags & !PERSISTED_BIT) as usize
    }

    pub(crate) fn key(&self) -> &[u8] {
        self.kv.get(..self.key_len()).unwrap_or_default()
    }

    pub(crate) fn value(&self) -> &[u8] {
        self.kv.get(self.key_len()..).unwrap_or_default()
    }

    /// Replaces the value, keeping the key.
    pub(crate) fn set_value(&mut self, value: &[u8]) {
        if value == self.value() {
            return;
        }
        let key_len = self.key_len();
        let mut kv = Vec::with_capacity(key_len + value.len());
        kv.extend_from_slice(self.key());
        kv.extend_from_slice(value);
        self.kv = kv.into_boxed_slice();
    }

    pub(crate) fn version(&self) -> Version {
        Version {
            millis: self.millis,
            counter: self.counter,
        }
    }

    pub(crate) fn set_version(&mut self, v: Version) {
        self.millis = v.millis;
        self.counter = v.counter;
    }

    pub(crate) fn persisted(&self) -> bool {
        self.key_len_flags & PERSISTED_BIT != 0
    }

    pub(crate) fn set_persisted(&mut self, on: bool) {
        if on {
            self.key_len_flags |= PERSISTED_BIT;
        } else {
            self.key_len_flags &= !PERSISTED_BIT;
        }
    }

    /// Heap bytes this entry accounts for against the data quota (key + value).
    pub(crate) fn data_len(&self) -> usize {
        self.kv.len()
    }
}

/// Index slot value meaning "empty".
const EMPTY: u32 = u32::MAX;

/// The key table. At most `u32::MAX - 1` entries (the store's key quota is far lower).
#[derive(Debug, Clone)]
pub(crate) struct KeyTable {
    entries: Vec<Entry>,
    /// Open addressing with linear probing; each slot is an index into `entries` or [`EMPTY`].
    /// The length is zero or a power of two, and at least twice `entries.len()`.
    index: Vec<u32>,
    seed: (u64, u64),
}

impl KeyTable {
    pub(crate) fn new(seed: u64) -> KeyTable {
        KeyTable {
            entries: Vec::new(),
            index: Vec::new(),
            seed: (seed, seed.rotate_left(32) ^ 0x5851_F42D_4C95_7F2D),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[allow(deprecated)] // SipHash-2-4 is the only keyed hash in `core`; speed is adequate here.
    fn hash(&self, key: &[u8]) -> u64 {
        let mut h = core::hash::SipHasher::new_with_keys(self.seed.0, self.seed.1);
        h.write(key);
        h.finish()
    }

    fn mask(&self) -> usize {
        self.index.len().wrapping_sub(1)
    }

    /// The index slot that holds `key`, if present.
    fn find_slot(&self, key: &[u8]) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut slot = (self.hash(key) as usize) & mask;
        loop {
            let idx = *self.index.get(slot)?;
            if idx == EMPTY {
                return None;
            }
            if self.entries.get(idx as usize).map(Entry::key) == Some(key) {
                return Some(slot);
            }
            slot = (slot + 1) & mask;
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Entry> {
        let slot = self.find_slot(key)?;
        let idx = *self.index.get(slot)?;
        self.entries.get(idx as usize)
    }

    pub(crate) fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let slot = self.find_slot(key)?;
        let idx = *self.index.get(slot)?;
        self.entries.get_mut(idx as usize)
    }

    /// Inserts an entry for a key that is not present (callers check with `get` first).
    pub(crate) fn insert_new(&mut self, entry: Entry) {
        if (self.entries.len() + 1) * 2 > self.index.len() {
            self.grow();
        }
        let idx = self.entries.len() as u32;
        self.place(entry.key(), idx);
        self.entries.push(entry);
    }

    fn place(&mut self, key: &[u8], idx: u32) {
        let mask = self.mask();
        let mut slot = (self.hash(key) as usize) & mask;
        while let Some(s) = self.index.get_mut(slot) {
            if *s == EMPTY {
                *s = idx;
                return;
            }
            slot = (slot + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let new_len = (self.index.len() * 2).max(16);
        self.index = vec![EMPTY; new_len];
        for i in 0..self.entries.len() {
            let key_hash = self
                .entries
                .get(i)
                .map(|e| self.hash(e.key()))
                .unwrap_or_default();
            let mask = self.mask();
            let mut slot = (key_hash as usize) & mask;
            while let Some(s) = self.index.get_mut(slot) {
                if *s == EMPTY {
                    *s = i as u32;
                    break;
                }
                slot = (slot + 1) & mask;
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let slot = self.find_slot(key)?;
        let idx = *self.index.get(slot)? as usize;
        self.delete_slot(slot);
        let last = self.entries.len().checked_sub(1)?;
        if idx != last {
            // The last entry moves into the hole: repoint its index slot.
            let moved_key_slot = self.entries.get(last).and_then(|e| self.find_slot(e.key()));
            if let Some(s) = moved_key_slot.and_then(|s| self.index.get_mut(s)) {
                *s = idx as u32;
            }
        }
        Some(self.entries.swap_remove(idx))
    }

    /// Empties `slot` and shifts later members of its probe run back (no tombstones).
    fn delete_slot(&mut self, mut hole: usize) {
        let mask = self.mask();
        if let Some(s) = self.index.get_mut(hole) {
            *s = EMPTY;
        }
        let mut slot = (hole + 1) & mask;
        loop {
            let idx = match self.index.get(slot) {
                Some(&i) if i != EMPTY => i,
                _ => return,
            };
            let home = self
                .entries
                .get(idx as usize)
                .map(|e| (self.hash(e.key()) as usize) & mask)
                .unwrap_or(slot);
            // Move it into the hole unless its home lies cyclically in (hole, slot].
            let stays = if hole <= slot {
                hole < home && home <= slot
            } else {
                hole < home || home <= slot
            };
            if !stays {
                if let Some(h) = self.index.get_mut(hole) {
                    *h = idx;
                }
                if let Some(s) = self.index.get_mut(slot) {
                    *s = EMPTY;
                }
                hole = slot;
            }
            slot = (slot + 1) & mask;
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use proptest::prelude::*;

    fn v(n: u64) -> Version {
        Version {
            millis: n,
            counter: 0,
        }
    }

    #[test]
    fn entry_packs_key_value_and_flag() {
        let mut e = Entry::new(b"key", b"value", v(1));
        assert_eq!((e.key(), e.value()), (&b"key"[..], &b"value"[..]));
        assert!(!e.persisted());
        e.set_persisted(true);
        assert!(e.persisted());
        assert_eq!(e.key(), b"key");
        e.set_value(b"");
        assert_eq!(
            (e.key(), e.value(), e.data_len()),
            (&b"key"[..], &b""[..], 3)
        );
        e.set_persisted(false);
        assert!(!e.persisted());
        assert_eq!(core::mem::size_of::<Entry>(), 48);
    }

    #[test]
    fn insert_get_remove() {
        let mut t = KeyTable::new(7);
        for i in 0..1000u32 {
            t.insert_new(Entry::new(&i.to_le_bytes(), b"x", v(u64::from(i))));
        }
        assert_eq!(t.len(), 1000);
        for i in (0..1000u32).step_by(3) {
            assert_eq!(t.remove(&i.to_le_bytes()).unwrap().millis, u64::from(i));
        }
        for i in 0..1000u32 {
            assert_eq!(t.get(&i.to_le_bytes()).is_some(), i % 3 != 0, "{i}");
        }
        assert!(t.remove(b"absent").is_none());
    }

    proptest! {
        /// The table behaves like a `BTreeMap` under any operation sequence.
        #[test]
        fn matches_btreemap(seed in any::<u64>(), ops in proptest::collection::vec((0u8..3, 0u8..40, any::<u8>()), 0..400)) {
            let mut t = KeyTable::new(seed);
            let mut model: BTreeMap<alloc::vec::Vec<u8>, u8> = BTreeMap::new();
            for (op, k, val) in ops {
                let key = alloc::vec![k; usize::from(k % 5)];
                match op {
                    0 => {
                        if let Some(e) = t.get_mut(&key) {
                            e.set_value(&[val]);
                        } else {
                            t.insert_new(Entry::new(&key, &[val], v(0)));
                        }
                        model.insert(key, val);
                    }
                    1 => {
                        prop_assert_eq!(t.remove(&key).map(|e| e.value().to_vec()), model.remove(&key).map(|x| alloc::vec![x]));
                    }
                    _ => {
                        prop_assert_eq!(t.get(&key).map(|e| e.value().to_vec()), model.get(&key).map(|x| alloc::vec![*x]));
                    }
                }
                prop_assert_eq!(t.len(), model.len());
            }
            for (k, x) in &model {
                prop_assert_eq!(t.get(k).map(|e| e.value().to_vec()), Some(alloc::vec![*x]));
            }
            prop_assert_eq!(t.iter().count(), model.len());
        }
    }
}
