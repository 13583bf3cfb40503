//! Observation of keys by many subscribers over one KEYNOTIFY registration per key.
//!
//! The store keeps one KEYNOTIFY registration per (client id, key), so a client that serves
//! several subscribers of the same key registers it once and fans each notification out.
//! [`Watches`] makes every decision that involves: when a registration must be started or
//! stopped, what a failed registration means for the subscribers waiting on it, which keys must
//! be re-read after a reconnect, and whether a notification or a re-read is new given the
//! versions already delivered. It owns no channels and performs no I/O: the caller feeds it
//! events and drains [`Action`]s with [`Watches::poll_action`], mapping subscriber ids to
//! whatever delivers to them.
//!
//! Guarantees to every subscriber: the versions it is given strictly increase, no change is
//! given twice, and a deletion found by a re-read is not given again by its notification (nor
//! an absence twice in a row by re-reads). Every registration
//! that may have reached the store ends in exactly one [`Action::Unregister`] once nobody
//! observes the key any more.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use bytes::Bytes;

use crate::hlc::Hlc;

/// A change of an observed key, to be given to every subscriber of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The new value; `None` when the key was deleted (or found absent by a re-read).
    pub value: Option<Bytes>,
    /// The key version after the change; `None` for an absence found by a re-read.
    pub version: Option<Hlc>,
    /// Found by the re-read after a reconnect rather than notified.
    pub resync: bool,
}

/// How a KEYNOTIFY started for [`Action::Register`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Registration {
    /// The store accepted it.
    Done,
    /// It failed after it may have been sent (error reply, timeout, unknown outcome): the
    /// store may hold it, so it is stopped.
    Failed,
    /// It could not even be started: nothing reached the store, nothing is stopped.
    NotSent,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Send KEYNOTIFY for `key`; report its end with [`Watches::registered`].
    Register {
        /// The key.
        key: Bytes,
    },
    /// Send KEYNOTIFY STOP for `key`: nobody observes it any more.
    Unregister {
        /// The key.
        key: Bytes,
    },
    /// Re-read `key` with GET and report the reply with [`Watches::resynced`]: changes may
    /// have been missed while the registration was down.
    Resync {
        /// The key.
        key: Bytes,
    },
    /// The subscription of `subscriber` to `key` is in place: answer its caller.
    Ready {
        /// The key.
        key: Bytes,
        /// The subscriber.
        subscriber: u64,
    },
    /// The registration of `key` failed: `subscriber` is dropped, tell its caller why.
    Failed {
        /// The key.
        key: Bytes,
        /// The subscriber.
        subscriber: u64,
    },
    /// The registration of `key` could not be renewed after a reconnect (the client retries
    /// it): until it is, changes may go unnotified. Tell every subscriber of `key` so; the
    /// re-read after the renewal that succeeds delivers what was missed.
    MayHaveMissed {
        /// The key.
        key: Bytes,
    },
    /// Give `change` to every subscriber of `key`. Report subscribers found gone with
    /// [`Watches::unsubscribe`].
    Deliver {
        /// The key.
        key: Bytes,
        /// The change.
        change: Change,
    },
}

/// One subscriber of a key.
#[derive(Debug, Clone, Copy)]
struct Subscriber {
    id: u64,
    /// Still waiting for the registration's outcome.
    pending: bool,
}

/// What is known about one observed key.
#[derive(Debug, Default)]
struct KeyWatch {
    /// The KEYNOTIFY succeeded (otherwise it is in flight).
    registered: bool,
    subscribers: Vec<Subscriber>,
    /// Version of the last change delivered or learned by a re-read; `None` = none yet.
    last_version: Option<Hlc>,
    /// Whether the last known state is "present"; `None` = unknown.
    present: Option<bool>,
    /// The absence was last reported by a re-read, which carries no version: the
    /// notification of that same deletion may still arrive and must not report it again.
    absent_by_reread: bool,
}

impl KeyWatch {
    /// Whether a change to `value` at `version` is news, recording it if it is. Stale or
    /// repeated versions are not. A deletion notified after a re-read already reported the
    /// key absent is not either: the re-read cannot tell which deletion it saw, so it is
    /// taken to be this one (its version is still recorded so that older ones stay stale).
    fn accept(&mut self, value: &Option<Bytes>, version: &Option<Hlc>) -> bool {
        let present = value.is_some();
        let news = match version {
            Some(v) => {
                if self.last_version.as_ref().is_some_and(|last| v <= last) {
                    return false;
                }
                self.last_version = Some(v.clone());
                present || !(self.present == Some(false) && self.absent_by_reread)
            }
            // Without a version only a change of presence can be told apart.
            None => self.present != Some(present),
        };
        if news || version.is_some() {
            self.absent_by_reread = !present && version.is_none();
        }
        self.present = Some(present);
        news
    }
}

/// Every observed key and its subscribers; see the module documentation.
#[derive(Debug, Default)]
pub struct Watches {
    keys: BTreeMap<Bytes, KeyWatch>,
    actions: VecDeque<Action>,
}

impl Watches {
    /// No key observed.
    pub fn new() -> Watches {
        Watches::default()
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// `subscriber` wants `key`. The first subscriber of a key causes [`Action::Register`]; a
    /// subscriber of a registered key is [`Action::Ready`] at once, otherwise when the
    /// registration ends.
    pub fn subscribe(&mut self, key: Bytes, subscriber: u64) {
        let watch = match self.keys.get_mut(&key) {
            Some(watch) => watch,
            None => {
                self.actions
                    .push_back(Action::Register { key: key.clone() });
                self.keys.entry(key.clone()).or_default()
            }
        };
        let pending = !watch.registered;
        watch.subscribers.push(Subscriber {
            id: subscriber,
            pending,
        });
        if !pending {
            self.actions.push_back(Action::Ready { key, subscriber });
        }
    }

    /// `subscriber` of `key` is gone. The last subscriber of a registered key leaving causes
    /// [`Action::Unregister`]; of a key still registering, the end of the registration does.
    pub fn unsubscribe(&mut self, key: &Bytes, subscriber: u64) {
        let Some(watch) = self.keys.get_mut(key) else {
            return;
        };
        watch.subscribers.retain(|s| s.id != subscriber);
        if watch.subscribers.is_empty() && watch.registered {
            self.keys.remove(key);
            self.actions
                .push_back(Action::Unregister { key: key.clone() });
        }
    }

    /// The KEYNOTIFY for `key` ended with `outcome`.
    pub fn registered(&mut self, key: &Bytes, outcome: Registration) {
        let Some(watch) = self.keys.get_mut(key) else {
            // Every subscriber left while it was in flight (or it is a stray outcome).
            if outcome == Registration::Done {
                self.actions
                    .push_back(Action::Unregister { key: key.clone() });
            }
            return;
        };
        if outcome == Registration::Done {
            watch.registered = true;
            for s in watch.subscribers.iter_mut().filter(|s| s.pending) {
                s.pending = false;
                self.actions.push_back(Action::Ready {
                    key: key.clone(),
                    subscriber: s.id,
                });
            }
            if watch.subscribers.is_empty() {
                self.keys.remove(key);
                self.actions
                    .push_back(Action::Unregister { key: key.clone() });
            }
            return;
        }
        if let Some(watch) = self.keys.remove(key) {
            for s in watch.subscribers {
                self.actions.push_back(Action::Failed {
                    key: key.clone(),
                    subscriber: s.id,
                });
            }
        }
        if outcome == Registration::Failed {
            // It may have run (timeout, unknown outcome): stop it to leave nothing behind.
            self.actions
                .push_back(Action::Unregister { key: key.clone() });
        }
    }

    /// A notification for `key` arrived; delivered unless it is stale or repeats what the
    /// subscribers already have.
    pub fn notification(&mut self, key: &Bytes, value: Option<Bytes>, version: Hlc) {
        let version = Some(version);
        self.offer(key, value, version, false);
    }

    /// After a reconnect the client renewed the registration of `key` (`ok`: the store
    /// accepted it again). A registered key is re-read ([`Action::Resync`]) either way, as
    /// changes may have been missed while it was down.
    ///
    /// A failed renewal is first reported to the subscribers ([`Action::MayHaveMissed`]):
    /// silence would read as "nothing changed". It still warrants the re-read, so that the
    /// streams learn the current state.
    pub fn reregistered(&mut self, key: &Bytes, ok: bool) {
        if self.is_registered(key) {
            if !ok {
                self.actions
                    .push_back(Action::MayHaveMissed { key: key.clone() });
            }
            self.actions.push_back(Action::Resync { key: key.clone() });
        }
    }

    /// The re-read of `key` found `value` at `version`: delivered (marked `resync`) if it is
    /// newer than what the subscribers last saw.
    pub fn resynced(&mut self, key: &Bytes, value: Option<Bytes>, version: Option<Hlc>) {
        self.offer(key, value, version, true);
    }

    fn offer(&mut self, key: &Bytes, value: Option<Bytes>, version: Option<Hlc>, resync: bool) {
        let Some(watch) = self.keys.get_mut(key) else {
            return;
        };
        if !watch.accept(&value, &version) {
            return;
        }
        self.actions.push_back(Action::Deliver {
            key: key.clone(),
            change: Change {
                value,
                version,
                resync,
            },
        });
    }

    /// Whether `key` has a completed registration.
    pub fn is_registered(&self, key: &Bytes) -> bool {
        self.keys.get(key).is_some_and(|w| w.registered)
    }

    /// Number of observed keys (including ones whose registration is in flight).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is observed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    fn hlc(ms: u64) -> Hlc {
        Hlc::new(ms, 0, "n").unwrap()
    }

    fn k() -> Bytes {
        Bytes::from_static(b"k")
    }

    fn v(s: &'static str) -> Option<Bytes> {
        Some(Bytes::from_static(s.as_bytes()))
    }

    fn drain(w: &mut Watches) -> Vec<Action> {
        core::iter::from_fn(|| w.poll_action()).collect()
    }

    fn deliver(value: Option<Bytes>, version: Option<Hlc>, resync: bool) -> Action {
        Action::Deliver {
            key: k(),
            change: Change {
                value,
                version,
                resync,
            },
        }
    }

    #[test]
    fn one_registration_serves_every_subscriber() {
        let mut w = Watches::new();
        w.subscribe(k(), 1);
        w.subscribe(k(), 2);
        assert_eq!(drain(&mut w), vec![Action::Register { key: k() }]);
        w.registered(&k(), Registration::Done);
        assert_eq!(
            drain(&mut w),
            vec![
                Action::Ready {
                    key: k(),
                    subscriber: 1
                },
                Action::Ready {
                    key: k(),
                    subscriber: 2
                }
            ]
        );
        w.subscribe(k(), 3);
        assert_eq!(
            drain(&mut w),
            vec![Action::Ready {
                key: k(),
                subscriber: 3
            }]
        );
        w.unsubscribe(&k(), 1);
        w.unsubscribe(&k(), 2);
        assert_eq!(drain(&mut w), vec![]);
        w.unsubscribe(&k(), 3);
        assert_eq!(drain(&mut w), vec![Action::Unregister { key: k() }]);
        assert!(w.is_empty());
    }

    #[test]
    fn leaving_during_registration_stops_it_when_it_completes() {
        let mut w = Watches::new();
        w.subscribe(k(), 1);
        w.unsubscribe(&k(), 1);
        assert_eq!(drain(&mut w), vec![Action::Register { key: k() }]);
        w.registered(&k(), Registration::Done);
        assert_eq!(drain(&mut w), vec![Action::Unregister { key: k() }]);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn failed_registration_drops_subscribers_and_stops_only_what_was_sent() {
        let mut w = Watches::new();
        w.subscribe(k(), 1);
        drain(&mut w);
        w.registered(&k(), Registration::Failed);
        assert_eq!(
            drain(&mut w),
            vec![
                Action::Failed {
                    key: k(),
                    subscriber: 1
                },
                Action::Unregister { key: k() }
            ]
        );
        w.subscribe(k(), 2);
        drain(&mut w);
        w.registered(&k(), Registration::NotSent);
        assert_eq!(
            drain(&mut w),
            vec![Action::Failed {
                key: k(),
                subscriber: 2
            }]
        );
        assert!(w.is_empty());
        // A stray failure for a key nobody observes changes nothing.
        w.registered(&k(), Registration::Failed);
        assert_eq!(drain(&mut w), vec![]);
    }

    #[test]
    fn stale_and_repeated_notifications_are_dropped() {
        let mut w = Watches::new();
        w.subscribe(k(), 1);
        w.registered(&k(), Registration::Done);
        drain(&mut w);
        w.notification(&k(), v("a"), hlc(5));
        w.notification(&k(), v("a"), hlc(5));
        w.notification(&k(), v("z"), hlc(4));
        w.notification(&k(), None, hlc(6));
        w.notification(&k(), None, hlc(6));
        // Deletions with distinct versions are distinct events (a SET between them may have
        // been dropped by a full stream upstream): each is reported.
        w.notification(&k(), None, hlc(7));
        assert_eq!(
            drain(&mut w),
            vec![
                deliver(v("a"), Some(hlc(5)), false),
                deliver(None, Some(hlc(6)), false),
                deliver(None, Some(hlc(7)), false)
            ]
        );
    }

    #[test]
    fn resync_after_reconnect_reports_only_what_changed() {
        let mut w = Watches::new();
        w.subscribe(k(), 1);
        w.reregistered(&k(), true);
        assert_eq!(
            drain(&mut w),
            vec![Action::Register { key: k() }],
            "not registered yet: no re-read"
        );
        w.registered(&k(), Registration::Done);
        drain(&mut w);
        w.notification(&k(), v("a"), hlc(5));
        drain(&mut w);
        w.reregistered(&k(), false);
        assert_eq!(
            drain(&mut w),
            vec![
                Action::MayHaveMissed { key: k() },
                Action::Resync { key: k() }
            ],
            "a failed renewal is reported, never silent"
        );
        w.reregistered(&k(), true);
        assert_eq!(drain(&mut w), vec![Action::Resync { key: k() }]);
        w.resynced(&k(), v("a"), Some(hlc(5)));
        assert_eq!(drain(&mut w), vec![], "same version: nothing missed");
        w.resynced(&k(), None, None);
        assert_eq!(drain(&mut w), vec![deliver(None, None, true)]);
        w.resynced(&k(), None, None);
        assert_eq!(drain(&mut w), vec![], "still absent: nothing new");
        // The deletion that the re-read already reported is not reported again.
        w.notification(&k(), None, hlc(6));
        assert_eq!(drain(&mut w), vec![]);
        w.resynced(&k(), v("b"), Some(hlc(8)));
        assert_eq!(drain(&mut w), vec![deliver(v("b"), Some(hlc(8)), true)]);
        // The notification of the change the re-read found is stale.
        w.notification(&k(), v("b"), hlc(8));
        assert_eq!(drain(&mut w), vec![]);
    }

    #[test]
    fn events_for_unobserved_keys_do_nothing() {
        let mut w = Watches::new();
        w.notification(&k(), v("a"), hlc(1));
        w.resynced(&k(), v("a"), Some(hlc(1)));
        w.reregistered(&k(), true);
        w.unsubscribe(&k(), 1);
        assert_eq!(drain(&mut w), vec![]);
    }

    /// One step of a random run against one key.
    #[derive(Debug, Clone)]
    enum Op {
        Subscribe,
        /// Unsubscribe the n-th live subscriber (modulo their number).
        Unsubscribe(usize),
        /// End the oldest registration in flight.
        Registered(u8),
        Notify(bool, u64),
        Reconnect(bool),
        /// Answer the oldest re-read in flight.
        Resynced(bool, Option<u64>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => Just(Op::Subscribe),
            2 => any::<usize>().prop_map(Op::Unsubscribe),
            2 => (0u8..3).prop_map(Op::Registered),
            4 => (any::<bool>(), 0u64..20).prop_map(|(p, ms)| Op::Notify(p, ms)),
            1 => any::<bool>().prop_map(Op::Reconnect),
            2 => (any::<bool>(), proptest::option::of(0u64..20))
                .prop_map(|(p, ms)| Op::Resynced(p, ms)),
        ]
    }

    /// The caller's side: subscribers' received changes and the registrations in flight.
    #[derive(Default)]
    struct Harness {
        w: Watches,
        live: Vec<u64>,
        next_id: u64,
        seen: HashMap<u64, Vec<Change>>,
        ready: HashSet<u64>,
        register_in_flight: usize,
        resync_in_flight: usize,
        /// Registrations that may be held by the store (sent and not yet stopped).
        active: i64,
        /// Changes delivered so far (to anyone).
        delivered: usize,
        /// The newest version any input carried.
        newest: Option<Hlc>,
        /// After a re-read reported the key absent: how many newer deletions were notified
        /// since. The first is the deletion the re-read saw and must not be reported again;
        /// later ones are real (a SET between them was missed) and must be.
        deletions_since_reread: Option<u32>,
        /// "May have missed changes" reports, and how many failed renewals of a registered key
        /// called for one.
        gaps: usize,
        expected_gaps: usize,
    }

    impl Harness {
        fn settle(&mut self) -> Result<(), TestCaseError> {
            while let Some(a) = self.w.poll_action() {
                match a {
                    Action::Register { .. } => {
                        prop_assert_eq!(self.register_in_flight, 0, "double KEYNOTIFY");
                        prop_assert_eq!(self.active, 0, "KEYNOTIFY while one is held");
                        self.register_in_flight += 1;
                        self.active += 1;
                    }
                    Action::Unregister { .. } => {
                        self.active -= 1;
                        prop_assert_eq!(self.active, 0, "STOP without a registration");
                    }
                    Action::Resync { .. } => self.resync_in_flight += 1,
                    Action::MayHaveMissed { .. } => self.gaps += 1,
                    Action::Ready { subscriber, .. } => {
                        prop_assert!(self.ready.insert(subscriber), "ready twice");
                    }
                    Action::Failed { subscriber, .. } => {
                        prop_assert!(!self.ready.contains(&subscriber));
                        self.live.retain(|&s| s != subscriber);
                    }
                    Action::Deliver { change, .. } => {
                        self.delivered += 1;
                        if change.value.is_some() {
                            self.deletions_since_reread = None;
                        } else if change.resync && change.version.is_none() {
                            self.deletions_since_reread = Some(0);
                        }
                        for s in &self.live {
                            self.seen.entry(*s).or_default().push(change.clone());
                        }
                    }
                }
            }
            // What the watches knew is forgotten with the key's last watcher.
            if self.w.is_empty() {
                self.newest = None;
                self.deletions_since_reread = None;
            }
            Ok(())
        }

        fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
            let key = k();
            match op {
                Op::Subscribe => {
                    self.next_id += 1;
                    self.live.push(self.next_id);
                    self.w.subscribe(key, self.next_id);
                }
                Op::Unsubscribe(n) => {
                    if !self.live.is_empty() {
                        let id = self.live.remove(n % self.live.len());
                        self.w.unsubscribe(&key, id);
                    }
                }
                Op::Registered(kind) => {
                    if self.register_in_flight > 0 {
                        self.register_in_flight -= 1;
                        let outcome = match kind {
                            0 => Registration::Done,
                            1 => Registration::Failed,
                            _ => {
                                self.active -= 1;
                                Registration::NotSent
                            }
                        };
                        self.w.registered(&key, outcome);
                    }
                }
                Op::Notify(present, ms) => {
                    // What the watches knew is forgotten with the key's last watcher.
                    if self.w.is_empty() {
                        let value = present.then(|| Bytes::from_static(b"v"));
                        self.w.notification(&key, value, hlc(ms));
                        return self.settle();
                    }
                    let version = hlc(ms);
                    let newer = self.newest.as_ref().is_none_or(|n| &version > n);
                    let repeats_reread =
                        !present && newer && self.deletions_since_reread == Some(0);
                    let before = self.delivered;
                    let value = present.then(|| Bytes::from_static(b"v"));
                    self.w.notification(&key, value, version.clone());
                    self.settle()?;
                    prop_assert!(
                        !repeats_reread || self.delivered == before,
                        "the deletion a re-read found was reported again"
                    );
                    if newer {
                        self.newest = Some(version);
                        self.deletions_since_reread = match self.deletions_since_reread {
                            Some(n) if !present => Some(n + 1),
                            _ => None,
                        };
                    }
                    return Ok(());
                }
                Op::Reconnect(ok) => {
                    if !ok && self.w.is_registered(&key) {
                        self.expected_gaps += 1;
                    }
                    self.w.reregistered(&key, ok);
                    self.settle()?;
                    prop_assert_eq!(
                        self.gaps,
                        self.expected_gaps,
                        "a failed renewal went unreported"
                    );
                    return Ok(());
                }
                Op::Resynced(present, ms) => {
                    if self.resync_in_flight > 0 {
                        self.resync_in_flight -= 1;
                        let value = present.then(|| Bytes::from_static(b"v"));
                        let version = ms.map(hlc);
                        let newer = version
                            .as_ref()
                            .is_some_and(|v| self.newest.as_ref().is_none_or(|n| v > n));
                        self.w.resynced(&key, value, version.clone());
                        self.settle()?;
                        if newer {
                            // A versioned absence counts as the deletion a re-read saw.
                            self.newest = version;
                            self.deletions_since_reread = match self.deletions_since_reread {
                                Some(n) if !present => Some(n + 1),
                                _ => None,
                            };
                        }
                        return Ok(());
                    }
                }
            }
            self.settle()
        }
    }

    proptest! {
        #[test]
        fn every_subscriber_sees_an_increasing_history(ops in proptest::collection::vec(op(), 0..80)) {
            let mut h = Harness::default();
            for op in ops {
                h.apply(op)?;
            }
            // Everyone leaves and the registration in flight (if any) ends: nothing is left
            // registered, and every KEYNOTIFY that was sent has been stopped exactly once.
            while !h.live.is_empty() {
                h.apply(Op::Unsubscribe(0))?;
            }
            h.apply(Op::Registered(0))?;
            prop_assert_eq!(h.active, 0);
            prop_assert!(h.w.is_empty());
            for changes in h.seen.values() {
                let mut last: Option<&Hlc> = None;
                for pair in changes.windows(2) {
                    prop_assert!(
                        pair[0].version.is_some() || pair[0] != pair[1],
                        "an unversioned change reported twice: {:?}", pair
                    );
                }
                for c in changes {
                    if let Some(v) = &c.version {
                        prop_assert!(last.is_none_or(|l| v > l), "version not increasing");
                        last = Some(v);
                    }
                }
            }
        }
    }
}
