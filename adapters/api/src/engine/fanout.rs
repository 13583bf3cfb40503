//! Fan-out of key notifications to observation streams.
//!
//! The store keeps one KEYNOTIFY registration per (client id, key), so the engine registers a
//! key once and hands each notification to every stream observing it. This module is the
//! bookkeeping only: it says when a registration must be started or stopped, and the engine
//! turns that into core requests.

use std::collections::HashMap;

use async_channel::TrySendError;
use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::hlc::Hlc;

use crate::state_store::{KeyChange, ObserveError, StoreError};

/// What a stream receives.
pub(crate) type Item = Result<KeyChange, ObserveError>;

/// One observation stream.
#[derive(Debug)]
struct Subscriber {
    id: u64,
    tx: async_channel::Sender<Item>,
    /// Notifications dropped because the stream's buffer was full; reported before the next one.
    missed: u64,
    /// The `observe()` call still waiting for the registration's outcome.
    reply: Option<oneshot::Sender<Result<(), StoreError>>>,
}

impl Subscriber {
    /// Delivers `change`; `false` when the stream is gone.
    fn deliver(&mut self, change: &KeyChange) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        if self.missed > 0 {
            match self.tx.try_send(Err(ObserveError::Lagged {
                missed: self.missed,
            })) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed = self.missed.saturating_add(1);
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(Ok(change.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.missed = self.missed.saturating_add(1);
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Debug, Default)]
struct KeyEntry {
    /// The KEYNOTIFY succeeded (otherwise it is in flight).
    registered: bool,
    subscribers: Vec<Subscriber>,
    /// Version of the last change delivered (or learned by a resync GET); `None` = absent.
    last_version: Option<Hlc>,
    /// Whether the last known state is "present".
    present: Option<bool>,
}

/// What the engine must do after a fan-out change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing.
    None,
    /// Send KEYNOTIFY for the key.
    Register,
    /// Send KEYNOTIFY STOP for the key (nobody observes it any more).
    Unregister,
}

/// All observed keys and their streams.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    keys: HashMap<Bytes, KeyEntry>,
}

impl Fanout {
    /// A new stream wants `key`. Answers on `reply` once the key is registered.
    pub(crate) fn add(
        &mut self,
        key: Bytes,
        id: u64,
        tx: async_channel::Sender<Item>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    ) -> Action {
        let (entry, action) = match self.keys.get_mut(&key) {
            Some(entry) => (entry, Action::None),
            None => (self.keys.entry(key).or_default(), Action::Register),
        };
        let reply = if entry.registered {
            // Already registered: nothing to wait for. A dropped caller just drops the stream.
            let _ = reply.send(Ok(()));
            None
        } else {
            Some(reply)
        };
        entry.subscribers.push(Subscriber {
            id,
            tx,
            missed: 0,
            reply,
        });
        action
    }

    /// The KEYNOTIFY for `key` finished.
    pub(crate) fn registered(&mut self, key: &Bytes, result: Result<(), StoreError>) -> Action {
        let Some(entry) = self.keys.get_mut(key) else {
            // Every stream went away while the KEYNOTIFY was in flight.
            return if result.is_ok() {
                Action::Unregister
            } else {
                Action::None
            };
        };
        match result {
            Ok(()) => {
                entry.registered = true;
                entry.subscribers.retain_mut(|s| match s.reply.take() {
                    // A caller that gave up (dropped future) leaves no stream behind.
                    Some(reply) => reply.send(Ok(())).is_ok(),
                    None => !s.tx.is_closed(),
                });
                if entry.subscribers.is_empty() {
                    self.keys.remove(key);
                    return Action::Unregister;
                }
                Action::None
            }
            Err(e) => {
                if let Some(entry) = self.keys.remove(key) {
                    for s in entry.subscribers {
                        if let Some(reply) = s.reply {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
                // The KEYNOTIFY may have run (timeout, unknown): stop it to leave nothing behind.
                Action::Unregister
            }
        }
    }

    /// Stream `id` on `key` is gone.
    pub(crate) fn remove(&mut self, key: &Bytes, id: u64) -> Action {
        let Some(entry) = self.keys.get_mut(key) else {
            return Action::None;
        };
        entry.subscribers.retain(|s| s.id != id);
        if entry.subscribers.is_empty() && entry.registered {
            self.keys.remove(key);
            return Action::Unregister;
        }
        // Still registering with nobody left: `registered` will unregister when it completes.
        if entry.subscribers.is_empty() {
            entry.subscribers.shrink_to_fit();
        }
        Action::None
    }

    /// A notification arrived. Returns `Unregister` when every stream of the key is gone.
    pub(crate) fn deliver(&mut self, key: &Bytes, value: Option<Bytes>, version: Hlc) -> Action {
        let Some(entry) = self.keys.get_mut(key) else {
            return Action::None;
        };
        let change = KeyChange {
            key: key.clone(),
            value,
            version: Some(version.clone()),
            resync: false,
        };
        entry.present = Some(change.value.is_some());
        entry.last_version = Some(version);
        entry.subscribers.retain_mut(|s| s.deliver(&change));
        if entry.subscribers.is_empty() && entry.registered {
            self.keys.remove(key);
            return Action::Unregister;
        }
        Action::None
    }

    /// After a reconnect the current state of `key` was read with GET: deliver it as a
    /// synthetic change if it differs from what the streams last saw (a change may have been
    /// missed while the registration was down).
    pub(crate) fn resync(&mut self, key: &Bytes, value: Option<Bytes>, version: Option<Hlc>) {
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        let present = value.is_some();
        let newer = match (&version, &entry.last_version) {
            (Some(v), Some(last)) => v > last,
            (Some(_), None) => true,
            (None, _) => entry.present != Some(false),
        };
        if !newer {
            return;
        }
        entry.present = Some(present);
        if version.is_some() {
            entry.last_version = version.clone();
        }
        let change = KeyChange {
            key: key.clone(),
            value,
            version,
            resync: true,
        };
        entry.subscribers.retain_mut(|s| s.deliver(&change));
    }

    /// Whether `key` has a completed registration (to resync after a reconnect).
    pub(crate) fn is_registered(&self, key: &Bytes) -> bool {
        self.keys.get(key).is_some_and(|e| e.registered)
    }

    /// Number of observed keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    fn hlc(ms: u64) -> Hlc {
        Hlc::new(ms, 0, "n").unwrap()
    }

    fn key() -> Bytes {
        Bytes::from_static(b"k")
    }

    #[test]
    fn one_registration_serves_every_stream() {
        block_on(async {
            let mut f = Fanout::default();
            let (tx1, rx1) = async_channel::bounded(4);
            let (r1, w1) = oneshot::channel();
            assert_eq!(f.add(key(), 1, tx1, r1), Action::Register);
            let (tx2, rx2) = async_channel::bounded(4);
            let (r2, w2) = oneshot::channel();
            assert_eq!(f.add(key(), 2, tx2, r2), Action::None);
            assert_eq!(f.registered(&key(), Ok(())), Action::None);
            assert_eq!(w1.await.unwrap(), Ok(()));
            assert_eq!(w2.await.unwrap(), Ok(()));
            f.deliver(&key(), Some(Bytes::from_static(b"v")), hlc(5));
            assert_eq!(
                rx1.recv().await.unwrap().unwrap().value.as_deref(),
                Some(&b"v"[..])
            );
            assert_eq!(rx2.recv().await.unwrap().unwrap().version, Some(hlc(5)));
            assert_eq!(f.remove(&key(), 1), Action::None);
            assert_eq!(f.remove(&key(), 2), Action::Unregister);
            assert_eq!(f.len(), 0);
        });
    }

    #[test]
    fn a_caller_that_gave_up_leaves_no_registration() {
        block_on(async {
            let mut f = Fanout::default();
            let (tx, rx) = async_channel::bounded(4);
            let (r, w) = oneshot::channel();
            f.add(key(), 1, tx, r);
            drop((rx, w));
            assert_eq!(f.registered(&key(), Ok(())), Action::Unregister);
            assert_eq!(f.len(), 0);
        });
    }

    #[test]
    fn failed_registration_reports_and_cleans_up() {
        block_on(async {
            let mut f = Fanout::default();
            let (tx, _rx) = async_channel::bounded(4);
            let (r, w) = oneshot::channel();
            f.add(key(), 1, tx, r);
            assert_eq!(
                f.registered(&key(), Err(StoreError::Timeout { sent: true })),
                Action::Unregister
            );
            assert_eq!(w.await.unwrap(), Err(StoreError::Timeout { sent: true }));
            assert_eq!(f.len(), 0);
        });
    }

    #[test]
    fn a_full_stream_reports_lag_instead_of_blocking() {
        block_on(async {
            let mut f = Fanout::default();
            let (tx, rx) = async_channel::bounded(1);
            let (r, _w) = oneshot::channel();
            f.add(key(), 1, tx, r);
            f.registered(&key(), Ok(()));
            for ms in 1..=3 {
                f.deliver(&key(), None, hlc(ms));
            }
            assert_eq!(rx.recv().await.unwrap().unwrap().version, Some(hlc(1)));
            f.deliver(&key(), None, hlc(4));
            assert_eq!(
                rx.recv().await.unwrap(),
                Err(ObserveError::Lagged { missed: 2 })
            );
            // 4 did not fit behind the lag report: it is reported as missed before 5 is tried.
            f.deliver(&key(), None, hlc(5));
            assert_eq!(
                rx.try_recv().unwrap(),
                Err(ObserveError::Lagged { missed: 1 })
            );
            f.deliver(&key(), None, hlc(6));
            assert_eq!(
                rx.try_recv().unwrap(),
                Err(ObserveError::Lagged { missed: 1 })
            );
        });
    }

    #[test]
    fn resync_reports_only_what_changed() {
        block_on(async {
            let mut f = Fanout::default();
            let (tx, rx) = async_channel::bounded(8);
            let (r, _w) = oneshot::channel();
            f.add(key(), 1, tx, r);
            f.registered(&key(), Ok(()));
            f.deliver(&key(), Some(Bytes::from_static(b"a")), hlc(5));
            rx.recv().await.unwrap().unwrap();
            f.resync(&key(), Some(Bytes::from_static(b"a")), Some(hlc(5)));
            assert!(rx.try_recv().is_err(), "same version: nothing missed");
            f.resync(&key(), None, None);
            let c = rx.recv().await.unwrap().unwrap();
            assert!(c.resync && c.value.is_none());
            f.resync(&key(), None, None);
            assert!(rx.try_recv().is_err(), "still absent: nothing new");
        });
    }
}
