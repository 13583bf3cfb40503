//! Fan-out of key notifications to observation streams.
//!
//! The store keeps one KEYNOTIFY registration per (client id, key), so the engine registers a
//! key once and hands each notification to every stream observing it. Every decision (when a
//! registration starts or stops, what a failed one means, which keys are re-read after a
//! reconnect, which changes are new) is the core's [`Watches`]; this module maps its
//! subscriber ids to channels, and the engine turns the returned [`Action`] into core requests.

use std::collections::HashMap;

use async_channel::TrySendError;
use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::hlc::Hlc;
use leasedlock_core::observe::{self, Registration, Watches};
use tracing::debug;

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
    /// Tells the stream it may have missed changes; `false` when the stream is gone. A full
    /// buffer counts it as a dropped item, reported (as `Lagged`) before the next change.
    fn may_have_missed(&mut self) -> bool {
        match self.tx.try_send(Err(ObserveError::MayHaveMissed)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.missed = self.missed.saturating_add(1);
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

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

/// What the engine must do after a fan-out change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing.
    None,
    /// Send KEYNOTIFY for the key.
    Register,
    /// Send KEYNOTIFY STOP for the key (nobody observes it any more).
    Unregister,
    /// Re-read the key with GET (its registration was renewed after a reconnect).
    Resync,
}

/// All observed keys and their streams: the core's [`Watches`] decides, this maps its
/// subscriber ids to channels.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    watches: Watches,
    streams: HashMap<Bytes, Vec<Subscriber>>,
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
        self.streams
            .entry(key.clone())
            .or_default()
            .push(Subscriber {
                id,
                tx,
                missed: 0,
                reply: Some(reply),
            });
        self.watches.subscribe(key, id);
        // Already registered: nothing to wait for. A dropped caller just drops the stream.
        self.settle(None, false)
    }

    /// The KEYNOTIFY for `key` finished.
    pub(crate) fn registered(&mut self, key: &Bytes, result: Result<(), StoreError>) -> Action {
        match result {
            Ok(()) => {
                self.watches.registered(key, Registration::Done);
                // A caller that gave up (dropped future) leaves no stream behind.
                self.settle(None, true)
            }
            Err(e) => {
                self.watches.registered(key, Registration::Failed);
                self.settle(Some(&e), false)
            }
        }
    }

    /// The KEYNOTIFY for `key` could not be started: nothing was sent, so nothing is stopped.
    pub(crate) fn not_started(&mut self, key: &Bytes, error: StoreError) -> Action {
        self.watches.registered(key, Registration::NotSent);
        self.settle(Some(&error), false)
    }

    /// Stream `id` on `key` is gone.
    pub(crate) fn remove(&mut self, key: &Bytes, id: u64) -> Action {
        self.take_stream(key, id);
        self.watches.unsubscribe(key, id);
        self.settle(None, false)
    }

    /// A notification arrived. Returns `Unregister` when every stream of the key is gone.
    pub(crate) fn deliver(&mut self, key: &Bytes, value: Option<Bytes>, version: Hlc) -> Action {
        self.watches.notification(key, value, version);
        self.settle(None, false)
    }

    /// After a reconnect the client renewed the registration of `key` (`ok`: accepted).
    /// Returns `Resync` when the key must be re-read.
    pub(crate) fn reregistered(&mut self, key: &Bytes, ok: bool) -> Action {
        self.watches.reregistered(key, ok);
        self.settle(None, false)
    }

    /// The re-read of `key` after a reconnect found `value` at `version`: the streams get it
    /// as a synthetic change if it differs from what they last saw (a change may have been
    /// missed while the registration was down). Returns `Unregister` when every stream of the
    /// key turned out to be gone.
    pub(crate) fn resync(
        &mut self,
        key: &Bytes,
        value: Option<Bytes>,
        version: Option<Hlc>,
    ) -> Action {
        self.watches.resynced(key, value, version);
        self.settle(None, false)
    }

    /// Number of observed keys.
    pub(crate) fn len(&self) -> usize {
        self.watches.len()
    }

    /// Carries out the core's actions on the channels; returns the one request (if any) the
    /// engine must start. `failure` answers subscribers of a failed registration;
    /// `drop_gave_up` drops streams whose caller stopped waiting for the registration.
    fn settle(&mut self, failure: Option<&StoreError>, drop_gave_up: bool) -> Action {
        let mut out = Action::None;
        while let Some(action) = self.watches.poll_action() {
            match action {
                observe::Action::Register { .. } => out = Action::Register,
                observe::Action::Unregister { key } => {
                    self.streams.remove(&key);
                    out = Action::Unregister;
                }
                observe::Action::Resync { .. } => out = Action::Resync,
                observe::Action::Ready { key, subscriber } => {
                    let gave_up = self
                        .stream_mut(&key, subscriber)
                        .and_then(|s| s.reply.take())
                        .is_some_and(|reply| reply.send(Ok(())).is_err());
                    if gave_up && drop_gave_up {
                        self.take_stream(&key, subscriber);
                        self.watches.unsubscribe(&key, subscriber);
                    }
                }
                observe::Action::Failed { key, subscriber } => {
                    let reply = self.take_stream(&key, subscriber).and_then(|s| s.reply);
                    if let (Some(reply), Some(e)) = (reply, failure) {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                observe::Action::MayHaveMissed { key } => {
                    let mut gone = Vec::new();
                    if let Some(streams) = self.streams.get_mut(&key) {
                        streams.retain_mut(|s| {
                            let alive = s.may_have_missed();
                            if !alive {
                                gone.push(s.id);
                            }
                            alive
                        });
                    }
                    for id in gone {
                        self.watches.unsubscribe(&key, id);
                    }
                }
                observe::Action::Deliver { key, change } => {
                    let change = KeyChange {
                        key: key.clone(),
                        value: change.value,
                        version: change.version,
                        resync: change.resync,
                    };
                    let mut gone = Vec::new();
                    if let Some(streams) = self.streams.get_mut(&key) {
                        streams.retain_mut(|s| {
                            let alive = s.deliver(&change);
                            if !alive {
                                gone.push(s.id);
                            }
                            alive
                        });
                    }
                    for id in gone {
                        self.watches.unsubscribe(&key, id);
                    }
                }
                other => debug!(action = ?other, "unhandled observation action"),
            }
        }
        out
    }

    fn stream_mut(&mut self, key: &Bytes, id: u64) -> Option<&mut Subscriber> {
        self.streams.get_mut(key)?.iter_mut().find(|s| s.id == id)
    }

    /// Removes stream `id` of `key` (and the key's list once empty).
    fn take_stream(&mut self, key: &Bytes, id: u64) -> Option<Subscriber> {
        let streams = self.streams.get_mut(key)?;
        let at = streams.iter().position(|s| s.id == id)?;
        let stream = streams.remove(at);
        if streams.is_empty() {
            self.streams.remove(key);
        }
        Some(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    fn hlc(ms: u64) -> Hlc {
        Hlc::new(ms, 0, "n").unwrap()
    }

    /// A fan-out with one stream (id 1, buffer 8) on `key()` whose registration succeeded; the
    /// third value is the stream's registration answer, kept alive by the caller.
    fn one_registered_stream() -> (
        Fanout,
        async_channel::Receiver<Item>,
        oneshot::Receiver<Result<(), StoreError>>,
    ) {
        let mut f = Fanout::default();
        let (tx, rx) = async_channel::bounded(8);
        let (r, w) = oneshot::channel();
        f.add(key(), 1, tx, r);
        f.registered(&key(), Ok(()));
        (f, rx, w)
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
            let (mut f, rx, _w) = one_registered_stream();
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

    #[test]
    fn the_notification_of_a_change_a_resync_found_is_not_delivered_again() {
        block_on(async {
            let (mut f, rx, _w) = one_registered_stream();
            assert_eq!(f.reregistered(&key(), true), Action::Resync);
            f.resync(&key(), Some(Bytes::from_static(b"b")), Some(hlc(8)));
            assert!(rx.recv().await.unwrap().unwrap().resync);
            f.deliver(&key(), Some(Bytes::from_static(b"b")), hlc(8));
            f.deliver(&key(), Some(Bytes::from_static(b"a")), hlc(7));
            assert!(rx.try_recv().is_err(), "stale or repeated version");
        });
    }

    #[test]
    fn a_resync_that_finds_every_stream_gone_stops_the_registration() {
        block_on(async {
            let (mut f, rx, _w) = one_registered_stream();
            drop(rx);
            assert_eq!(
                f.resync(&key(), Some(Bytes::from_static(b"b")), Some(hlc(8))),
                Action::Unregister
            );
            assert_eq!(f.len(), 0);
        });
    }
}
