//! KEYNOTIFY registrations: an idempotent set of (client id, key) pairs, indexed both ways so a
//! change fans out by key and a disconnect drops a client's registrations by client.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use bytes::Bytes;

/// The registration set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registrations {
    by_key: BTreeMap<Bytes, BTreeSet<Bytes>>,
    by_client: BTreeMap<Bytes, BTreeSet<Bytes>>,
    count: usize,
}

/// What [`Registrations::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    New,
    AlreadyPresent,
    OverQuota,
}

impl Registrations {
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn contains(&self, client: &[u8], key: &[u8]) -> bool {
        self.by_client
            .get(client)
            .is_some_and(|keys| keys.contains(key))
    }

    /// Registers `client` for `key` unless that would exceed `max` registrations.
    pub(crate) fn add(&mut self, client: &[u8], key: &[u8], max: usize) -> Added {
        if self.contains(client, key) {
            return Added::AlreadyPresent;
        }
        if self.count >= max {
            return Added::OverQuota;
        }
        // Copies, so a registration never pins a whole received packet buffer.
        let client = Bytes::copy_from_slice(client);
        let key = Bytes::copy_from_slice(key);
        self.by_key
            .entry(key.clone())
            .or_default()
            .insert(client.clone());
        self.by_client.entry(client).or_default().insert(key);
        self.count += 1;
        Added::New
    }

    /// Removes one registration; `true` if it existed.
    pub(crate) fn remove(&mut self, client: &[u8], key: &[u8]) -> bool {
        let Some(keys) = self.by_client.get_mut(client) else {
            return false;
        };
        if !keys.remove(key) {
            return false;
        }
        if keys.is_empty() {
            self.by_client.remove(client);
        }
        if let Some(clients) = self.by_key.get_mut(key) {
            clients.remove(client);
            if clients.is_empty() {
                self.by_key.remove(key);
            }
        }
        self.count = self.count.saturating_sub(1);
        true
    }

    /// Removes every registration of `client`; returns how many there were.
    pub(crate) fn remove_client(&mut self, client: &[u8]) -> usize {
        let Some(keys) = self.by_client.remove(client) else {
            return 0;
        };
        for key in &keys {
            if let Some(clients) = self.by_key.get_mut(key) {
                clients.remove(client);
                if clients.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
        self.count = self.count.saturating_sub(keys.len());
        keys.len()
    }

    /// The clients watching `key`.
    pub(crate) fn watchers(&self, key: &[u8]) -> impl Iterator<Item = &Bytes> {
        self.by_key.get(key).into_iter().flatten()
    }

    /// The keys `client` watches, in byte order.
    pub(crate) fn keys_of(&self, client: &[u8]) -> Vec<Bytes> {
        self.by_client
            .get(client)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_set_with_quota_and_disconnect() {
        let mut r = Registrations::default();
        assert_eq!(r.add(b"c1", b"k1", 3), Added::New);
        assert_eq!(r.add(b"c1", b"k1", 3), Added::AlreadyPresent);
        assert_eq!(r.add(b"c2", b"k1", 3), Added::New);
        assert_eq!(r.add(b"c1", b"k2", 3), Added::New);
        assert_eq!(r.add(b"c3", b"k3", 3), Added::OverQuota);
        assert_eq!(r.add(b"c1", b"k2", 3), Added::AlreadyPresent);
        assert_eq!(r.len(), 3);
        assert_eq!(r.watchers(b"k1").count(), 2);
        assert!(r.remove(b"c2", b"k1"));
        assert!(!r.remove(b"c2", b"k1"));
        assert_eq!(r.watchers(b"k1").count(), 1);
        assert_eq!(r.keys_of(b"c1").len(), 2);
        assert_eq!(r.remove_client(b"c1"), 2);
        assert_eq!(r.len(), 0);
        assert_eq!(r.watchers(b"k1").count(), 0);
        assert_eq!(r.remove_client(b"c1"), 0);
    }
}
