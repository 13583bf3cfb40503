//! The engine driven by scripted events, no broker: a [`World`] of engines whose PUBLISHes go
//! to the core's store model and whose replies and notifications come back by topic, in
//! virtual time. Handle futures are polled by hand between steps.

use std::cell::RefCell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::envelope::{notification_topic, response_topic, REQUEST_TOPIC};
use leasedlock_core::server::{Store, StoreConfig, StoreOutput};
use leasedlock_core::{Instant, Now};
use proptest::prelude::*;

use super::*;
use crate::{
    AcquireOptions, Connection, ConnectionOptions, LockOptions, ReleaseOutcome, SetOptions,
    StoreError, VdelOutcome,
};

const WALL0: u64 = 1_700_000_000_000;

/// One client: its engine, the connection its handles come from, and its command queue.
struct Peer {
    engine: Engine,
    /// The world's own clone (taken by tests that need every handle gone).
    conn: Option<Connection>,
    commands: Commands,
    client_id: String,
    /// What the broker would deliver to this client while it is connected.
    connected: bool,
    closed_commands: bool,
}

/// Engines, a store and virtual time.
struct World {
    store: Store,
    peers: Vec<Peer>,
    ms: u64,
    /// How many of the next KEYNOTIFY requests the broker loses (a store still reconnecting).
    lose_keynotify: usize,
}

impl World {
    fn new(clients: &[&str]) -> World {
        let origin = std::time::Instant::now();
        let peers = clients
            .iter()
            .map(|id| {
                let options = ConnectionOptions::new("broker", 1883, *id)
                    .seed(7)
                    .request_timeout(Duration::from_secs(1));
                let (engine, conn, commands) =
                    Engine::new(&options, Clock::with_origin(origin)).unwrap();
                Peer {
                    engine,
                    conn: Some(conn),
                    commands,
                    client_id: id.to_string(),
                    connected: false,
                    closed_commands: false,
                }
            })
            .collect();
        World {
            store: Store::new(StoreConfig::default()).unwrap(),
            peers,
            ms: 0,
            lose_keynotify: 0,
        }
    }

    fn now(&self) -> Now {
        Now::new(Instant::from_millis(self.ms), WALL0 + self.ms)
    }

    fn conn(&self, peer: usize) -> Connection {
        self.peers[peer]
            .conn
            .clone()
            .expect("the world's connection")
    }

    fn connect(&mut self, peer: usize) {
        let now = self.now();
        self.peers[peer].connected = true;
        self.peers[peer].engine.handle_connected(false, now);
        self.settle();
    }

    fn disconnect(&mut self, peer: usize) {
        let now = self.now();
        let p = &mut self.peers[peer];
        p.connected = false;
        p.engine.handle_disconnected("cut".to_string(), now);
        // The broker forgets a connection's client state; the store drops its registrations.
        let id = p.client_id.clone();
        self.store.handle_client_disconnected(id.as_bytes());
        self.settle();
    }

    /// Runs every queue until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let now = self.now();
            let mut moved = false;
            for p in &mut self.peers {
                while let Some(c) = p.commands.try_recv() {
                    p.engine.handle_command(c, now);
                    moved = true;
                }
                if !p.closed_commands
                    && p.commands.rx.is_empty()
                    && p.commands.rx.sender_count() == 0
                {
                    p.closed_commands = true;
                    p.engine.handle_commands_closed(now);
                    moved = true;
                }
                while let Some(t) = p.engine.poll_transmit() {
                    moved = true;
                    match t {
                        // A disconnected client's packets are lost (the core resends what it must).
                        _ if !p.connected => {}
                        Transmit::Publish(m) if m.topic == REQUEST_TOPIC.as_bytes() => {
                            let keynotify = m.payload.windows(9).any(|w| w == b"KEYNOTIFY");
                            if keynotify && self.lose_keynotify > 0 {
                                self.lose_keynotify -= 1;
                            } else {
                                self.store.handle_request(&m, now);
                            }
                        }
                        Transmit::Subscribe(f) => p.engine.handle_subscribed(&f, true, now),
                        _ => {}
                    }
                }
                if p.engine.is_done(now) {
                    p.engine.finish(&p.commands);
                }
            }
            while let Some(out) = self.store.poll_output() {
                moved = true;
                if let StoreOutput::Publish(m) = out {
                    for p in &mut self.peers {
                        let mine = m.topic.starts_with(response_topic(&p.client_id).as_bytes())
                            || m.topic
                                .starts_with(notification_topic(&p.client_id, b"").as_bytes());
                        if mine && p.connected {
                            p.engine.handle_publish(m.clone(), now);
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the world never settles");
    }

    /// Advances virtual time to the next deadline of anyone (at most `max`); false if none.
    fn advance(&mut self, max: Duration) -> bool {
        let mut next = self.store.poll_timeout();
        for p in &mut self.peers {
            next = match (next, p.engine.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let limit = Instant::from_millis(self.ms) + max;
        let Some(at) = next else { return false };
        let at = at.min(limit);
        let ms = at.as_nanos().div_ceil(1_000_000).max(self.ms);
        self.ms = ms;
        let now = self.now();
        self.store.handle_timeout(now);
        for p in &mut self.peers {
            p.engine.handle_timeout(now);
        }
        self.settle();
        true
    }

    /// Polls `fut` between steps of the world until it completes (virtual time advances when
    /// nothing else moves; at most `limit` of it).
    fn run<F: Future>(&mut self, fut: F, limit: Duration) -> F::Output {
        let mut fut = pin!(fut);
        let start = self.ms;
        loop {
            if let Poll::Ready(v) = poll_once(fut.as_mut()) {
                return v;
            }
            self.settle();
            if let Poll::Ready(v) = poll_once(fut.as_mut()) {
                return v;
            }
            // Commands the future just sent are handled now, as a driver would, before virtual
            // time jumps to the next deadline.
            if self.peers.iter().any(|p| !p.commands.rx.is_empty()) {
                continue;
            }
            let spent = Duration::from_millis(self.ms - start);
            assert!(spent < limit, "future still pending after {spent:?}");
            if !self.advance(limit - spent) {
                self.ms += 1;
            }
        }
    }
}

fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

const LONG: Duration = Duration::from_secs(60);

/// An aborted driver drops the engine's command receiver and its state sender one after the
/// other; in between, a handle already gets `Closed`, so the state must read `Closed` too.
#[test]
fn the_state_reads_closed_as_soon_as_commands_are_refused() {
    let options = ConnectionOptions::new("broker", 1883, "c-abort");
    let (engine, conn, commands) = Engine::new(&options, Clock::new()).unwrap();
    assert_ne!(conn.state(), ConnectionState::Closed);
    drop(commands);
    assert_eq!(conn.state(), ConnectionState::Closed);
    drop(engine);
    assert_eq!(conn.state(), ConnectionState::Closed);
}

#[test]
fn requests_complete_through_the_engine() {
    let mut w = World::new(&["a"]);
    w.connect(0);
    let store = w.conn(0).state_store();
    let set = w
        .run(store.set("k", "v1", &SetOptions::new()), LONG)
        .unwrap();
    assert!(set.applied && set.version.is_some());
    let got = w.run(store.get("k", None), LONG).unwrap().unwrap();
    assert_eq!(got.value, Bytes::from_static(b"v1"));
    assert_eq!(
        w.run(store.vdel("k", "other", &Default::default()), LONG),
        Ok(VdelOutcome::Mismatch)
    );
    assert_eq!(w.run(store.del("k", &Default::default()), LONG), Ok(true));
    assert_eq!(w.run(store.get("k", None), LONG), Ok(None));
}

#[test]
fn a_request_while_disconnected_times_out_instead_of_hanging() {
    let mut w = World::new(&["a"]);
    let store = w.conn(0).state_store();
    let r = w.run(store.get("k", None), LONG);
    assert!(matches!(r, Err(StoreError::Timeout { .. })), "{r:?}");
}

/// Close with work in flight everywhere: a held lease, a lock wait, an observation, a request
/// the broker cannot carry (the connection is down). Every waiter gets an answer, the streams
/// end, the held lease is released, and new work is refused.
#[test]
fn close_answers_everyone_and_refuses_new_work() {
    let mut w = World::new(&["a", "b"]);
    w.connect(0);
    w.connect(1);
    let conn = w.conn(0);
    let lease = conn.lease("l").unwrap();
    assert!(w
        .run(
            lease.acquire(Duration::from_secs(5), &AcquireOptions::new()),
            LONG
        )
        .unwrap());
    let holder = w.conn(1).lock("m").unwrap();
    w.run(
        holder.lock(Duration::from_secs(30), &LockOptions::new()),
        LONG,
    )
    .unwrap();
    let waiter = conn.lock("m").unwrap();
    let options = LockOptions::new();
    let mut wait = pin!(waiter.lock(Duration::from_secs(30), &options));
    assert!(poll_once(wait.as_mut()).is_pending());
    let mut changes = w.run(conn.state_store().observe("cfg"), LONG).unwrap();
    w.settle();
    assert!(
        poll_once(wait.as_mut()).is_pending(),
        "waiting for b's lock"
    );

    // A request in flight while the connection is down: it cannot be answered by the store.
    w.disconnect(0);
    let store = conn.state_store();
    // Its own timeout is longer than the closing grace (the connection's request timeout).
    let mut get = pin!(store.get("k", Some(Duration::from_secs(30))));
    assert!(poll_once(get.as_mut()).is_pending());
    w.settle();
    assert_eq!(
        w.peers[0].engine.client.in_flight(),
        1,
        "the GET is in flight"
    );

    // Close while all that is in flight; it ends within the grace period.
    w.run(conn.close(), Duration::from_secs(5));
    assert_eq!(conn.state(), ConnectionState::Closed);
    assert_eq!(
        poll_once(get.as_mut()),
        Poll::Ready(Err(StoreError::Closed)),
        "the GET still in flight at the end of the grace was answered"
    );
    assert!(
        matches!(poll_once(wait.as_mut()), Poll::Ready(Err(_))),
        "the lock wait was answered"
    );
    assert_eq!(w.run(changes.next(), LONG), None, "the stream ended");
    assert!(!lease.is_held());
    // Closing tried to release the held lease; offline, it is left to expire by its TTL.
    assert!(w.store.get(b"l").is_some_and(|k| k.expires_at.is_some()));
    assert_eq!(
        w.run(conn.state_store().get("k", None), LONG),
        Err(StoreError::Closed)
    );
    assert_eq!(
        w.run(
            lease.acquire(Duration::from_secs(5), &AcquireOptions::new()),
            LONG
        ),
        Err(crate::LeaseError::Closed)
    );
    assert_eq!(conn.lease("x").err(), Some(crate::LeaseError::Closed));
}

#[test]
fn close_releases_what_handles_hold() {
    let mut w = World::new(&["a"]);
    w.connect(0);
    let conn = w.conn(0);
    let lease = conn.lease("l").unwrap();
    assert!(w
        .run(
            lease.acquire(Duration::from_secs(5), &AcquireOptions::new()),
            LONG
        )
        .unwrap());
    assert!(w.store.get(b"l").is_some());
    w.run(conn.close(), LONG);
    assert!(w.store.get(b"l").is_none(), "released as dropping would");
}

#[test]
fn dropping_every_handle_closes_the_engine() {
    let mut w = World::new(&["a"]);
    w.connect(0);
    let conn = w.peers[0].conn.take().unwrap();
    let mut state = conn.shared.state.clone();
    let store = conn.state_store();
    drop(conn);
    w.settle();
    assert!(!w.peers[0].engine.finished, "a handle is still alive");
    drop(store);
    w.settle();
    assert!(
        w.peers[0].engine.finished,
        "finished once every handle was gone"
    );
    assert!(state.with_and_update(|s| *s == ConnectionState::Closed));
}

#[test]
fn a_dropped_held_lease_is_released_and_a_detached_one_is_not() {
    let mut w = World::new(&["a"]);
    w.connect(0);
    let conn = w.conn(0);
    let lease = conn.lease("dropped").unwrap();
    assert!(w
        .run(
            lease.acquire(Duration::from_secs(30), &AcquireOptions::new()),
            LONG
        )
        .unwrap());
    assert!(lease.token().is_ok() && lease.is_held());
    drop(lease);
    w.settle();
    assert!(w.store.get(b"dropped").is_none(), "released by a VDEL");

    let kept = conn.lease("detached").unwrap();
    assert!(w
        .run(
            kept.acquire(Duration::from_secs(30), &AcquireOptions::new()),
            LONG
        )
        .unwrap());
    kept.detach();
    w.settle();
    assert!(w.store.get(b"detached").is_some(), "left to expire");
    assert!(
        w.peers[0].engine.host.machines() == 0,
        "no machine left behind"
    );
}

#[test]
fn lease_release_reports_the_store_outcome_and_lost_resolves() {
    let mut w = World::new(&["a"]);
    w.connect(0);
    let lease = w.conn(0).lease("l").unwrap();
    assert!(w
        .run(
            lease.acquire(Duration::from_secs(5), &AcquireOptions::new()),
            LONG
        )
        .unwrap());
    // Without renewal the hold ends at safe_until: the engine's machine timer says so.
    let lost = w.run(lease.lost(), LONG);
    assert!(matches!(lost, crate::LeaseError::Lost(_)), "{lost:?}");
    assert!(lease.token().is_err());
    let r = w.run(
        lease.acquire(Duration::from_secs(5), &AcquireOptions::new()),
        LONG,
    );
    assert_eq!(r, Ok(true), "expired on the store, so free again");
    assert_eq!(w.run(lease.release(), LONG), Ok(ReleaseOutcome::Deleted));
}

#[test]
fn a_lock_is_handed_over_and_a_dropped_wait_unregisters() {
    let mut w = World::new(&["a", "b", "c"]);
    for p in 0..3 {
        w.connect(p);
    }
    let a = w.conn(0).lock("m").unwrap();
    let b = w.conn(1).lock("m").unwrap();
    let c = w.conn(2).lock("m").unwrap();
    let options = LockOptions::new().max_jitter(Duration::ZERO);
    w.run(a.lock(Duration::from_secs(30), &options), LONG)
        .unwrap();

    // c starts waiting, then gives up: its KEYNOTIFY must not stay behind.
    {
        let mut wait = pin!(c.lock(Duration::from_secs(30), &options));
        assert!(poll_once(wait.as_mut()).is_pending());
        w.settle();
        assert!(poll_once(wait.as_mut()).is_pending());
        assert_eq!(w.store.registrations_of(b"c").len(), 1);
    }
    w.settle();
    assert!(
        w.store.registrations_of(b"c").is_empty(),
        "dropped wait unregistered"
    );

    let mut wait = pin!(b.lock(Duration::from_secs(30), &options));
    assert!(poll_once(wait.as_mut()).is_pending());
    w.settle();
    assert!(poll_once(wait.as_mut()).is_pending());
    let unlocked = w.run(a.unlock(), LONG);
    assert_eq!(unlocked, Ok(ReleaseOutcome::Deleted));
    let token = w.run(wait.as_mut(), Duration::from_millis(1));
    assert!(
        token.is_ok(),
        "handed over without waiting for a timer: {token:?}"
    );
    assert!(b.is_held());
}

#[test]
fn an_observation_resyncs_after_a_reconnect() {
    let mut w = World::new(&["a", "b"]);
    w.connect(0);
    w.connect(1);
    let mut changes = w.run(w.conn(0).state_store().observe("cfg"), LONG).unwrap();
    let writer = w.conn(1).state_store();
    w.run(writer.set("cfg", "1", &SetOptions::new()), LONG)
        .unwrap();
    let first = w.run(changes.next(), LONG).unwrap().unwrap();
    assert_eq!(first.value.as_deref(), Some(&b"1"[..]));
    assert!(!first.resync);

    w.disconnect(0);
    w.run(writer.set("cfg", "2", &SetOptions::new()), LONG)
        .unwrap();
    w.connect(0);
    let missed = w.run(changes.next(), LONG).unwrap().unwrap();
    assert_eq!(missed.value.as_deref(), Some(&b"2"[..]));
    assert!(missed.resync, "found by the re-read, not notified");

    drop(changes);
    w.settle();
    assert!(
        w.store.registrations_of(b"a").is_empty(),
        "last stream gone: unregistered"
    );
}

/// A re-registration that times out after a reconnect is reported on the stream ("may have
/// missed changes") and retried until it succeeds: the missed change then arrives by the
/// re-read, and later changes are notified again.
#[test]
fn a_failed_reregistration_is_reported_and_retried() {
    let mut w = World::new(&["a", "b"]);
    w.connect(0);
    w.connect(1);
    let mut changes = w.run(w.conn(0).state_store().observe("cfg"), LONG).unwrap();
    let writer = w.conn(1).state_store();
    w.disconnect(0);
    w.run(writer.set("cfg", "1", &SetOptions::new()), LONG)
        .unwrap();
    // The store loses the re-registration and the first two retries.
    w.lose_keynotify = 3;
    w.connect(0);
    assert_eq!(
        w.run(changes.next(), LONG),
        Some(Err(crate::ObserveError::MayHaveMissed)),
        "the lapse is reported, not silent"
    );
    let missed = w.run(changes.next(), LONG).unwrap().unwrap();
    assert_eq!(missed.value.as_deref(), Some(&b"1"[..]));
    // Two more lapses (each retry lost), each reported.
    for _ in 0..2 {
        assert_eq!(
            w.run(changes.next(), LONG),
            Some(Err(crate::ObserveError::MayHaveMissed))
        );
    }
    assert_eq!(w.lose_keynotify, 0);
    // The next retry gets through (bounded: the back-off is at most a few seconds).
    for _ in 0..100 {
        if w.store.registrations_of(b"a").len() == 1 {
            break;
        }
        w.advance(Duration::from_millis(200));
    }
    assert_eq!(w.store.registrations_of(b"a").len(), 1, "registered again");
    w.run(writer.set("cfg", "2", &SetOptions::new()), LONG)
        .unwrap();
    let next = w.run(changes.next(), LONG).unwrap().unwrap();
    assert_eq!(next.value.as_deref(), Some(&b"2"[..]));
    assert!(!next.resync, "notified: the registration works again");
    assert_eq!(w.peers[0].engine.client.reregistrations_failing(), 0);
}

/// A lock wait whose notification registration lapsed after a reconnect is not left to its
/// slow fallback poll: the retried registration brings the holder's release at once.
#[test]
fn a_lock_wait_hears_the_release_after_a_failed_reregistration() {
    let mut w = World::new(&["a", "b"]);
    w.connect(0);
    w.connect(1);
    let holder = w.conn(0).lock("m").unwrap();
    let waiter = w.conn(1).lock("m").unwrap();
    let d = Duration::from_secs(60);
    let options = LockOptions::new()
        .max_jitter(Duration::ZERO)
        .fallback(Duration::from_secs(60));
    w.run(holder.lock(d, &options), LONG).unwrap();
    let mut wait = pin!(waiter.lock(d, &options));
    assert!(poll_once(wait.as_mut()).is_pending());
    w.settle();
    assert_eq!(w.store.registrations_of(b"b").len(), 1);
    w.disconnect(1);
    w.lose_keynotify = 2;
    w.connect(1);
    for _ in 0..100 {
        if w.lose_keynotify == 0 && w.store.registrations_of(b"b").len() == 1 {
            break;
        }
        w.advance(Duration::from_millis(200));
        assert!(poll_once(wait.as_mut()).is_pending());
    }
    assert_eq!(w.store.registrations_of(b"b").len(), 1, "registered again");
    assert_eq!(w.run(holder.unlock(), LONG), Ok(ReleaseOutcome::Deleted));
    let token = w.run(wait.as_mut(), Duration::from_millis(10));
    assert!(token.is_ok(), "notified of the release: {token:?}");
}

/// A lease observation is told when its registration lapsed, like a key observation.
#[test]
fn a_lease_observation_reports_a_failed_reregistration() {
    let mut w = World::new(&["a", "b"]);
    w.connect(0);
    w.connect(1);
    let watched = w.conn(0).lease("l").unwrap();
    let mut changes = w.run(watched.observe(), LONG).unwrap();
    w.disconnect(0);
    w.lose_keynotify = 1;
    w.connect(0);
    assert_eq!(
        w.run(changes.next(), LONG),
        Some(Err(crate::ObserveError::MayHaveMissed))
    );
    // Retried: a later acquisition by someone else is notified.
    for _ in 0..100 {
        if w.store.registrations_of(b"a").len() == 1 {
            break;
        }
        w.advance(Duration::from_millis(200));
    }
    let other = w.conn(1).lease("l").unwrap();
    assert_eq!(
        w.run(
            other.acquire(Duration::from_secs(30), &AcquireOptions::new()),
            LONG
        ),
        Ok(true)
    );
    // (The re-reads after the lapse may report the lease free first.)
    let mut seen = Vec::new();
    for _ in 0..4 {
        let change = w.run(changes.next(), LONG).unwrap().unwrap();
        let held = change.held;
        seen.push(change);
        if held {
            break;
        }
    }
    let last = seen.last().unwrap();
    assert!(last.held, "{seen:?}");
    assert_eq!(last.holder, Some(other.holder_value()));
}

/// A machine suspended past the lease: the store's TTL ran out meanwhile, and the engine's
/// timer (on the monotonic clock, which stood still) has not fired yet. The handles must not
/// say "held" after the resume, whatever the engine has processed.
#[test]
fn after_a_suspend_past_the_lease_handles_no_longer_say_held() {
    let mut w = World::new(&["a"]);
    w.connect(0);
    let conn = w.conn(0);
    let lease = conn.lease("suspended").unwrap();
    assert!(w
        .run(
            lease.acquire(Duration::from_secs(30), &AcquireOptions::new()),
            LONG
        )
        .unwrap());
    let leader = conn.leader("suspended-e").unwrap();
    w.run(
        leader.campaign(&crate::LeaderOptions::new(Duration::from_secs(30))),
        LONG,
    )
    .unwrap();
    let term = w.run(leader.elected(), LONG).unwrap();
    assert!(lease.is_held() && lease.token().is_ok() && leader.is_leader());
    let before = lease.safe_until().expect("held");

    crate::clock::suspended::simulate(Duration::from_secs(60));

    assert!(!lease.is_held(), "the lease ran out during the suspend");
    assert!(lease.safe_until().is_none());
    assert!(matches!(
        lease.token(),
        Err(crate::LeaseError::Lost(
            leasedlock_core::lease::LostReason::Expired
        ))
    ));
    assert!(!leader.is_leader(), "the term ran out during the suspend");
    assert!(
        term.safe_until() <= std::time::Instant::now() && term.safe_until() < before,
        "a term's safe_until is where it belongs on the monotonic clock after a resume"
    );
}

#[test]
fn a_leader_term_is_cancelled_on_resign() {
    let mut w = World::new(&["a"]);
    w.connect(0);
    let leader = w.conn(0).leader("e").unwrap();
    w.run(
        leader.campaign(&crate::LeaderOptions::new(Duration::from_secs(9))),
        LONG,
    )
    .unwrap();
    let term = w.run(leader.elected(), LONG).unwrap();
    assert!(!term.cancellation().is_cancelled() && leader.is_leader());
    w.run(leader.resign(), LONG).unwrap();
    assert!(term.cancellation().is_cancelled() && term.is_cancelled());
    w.run(term.cancelled(), LONG);
    assert!(w.store.get(b"e").is_none());
}

/// One step of a random schedule.
#[derive(Debug, Clone)]
enum Step {
    Get(u8),
    Set(u8),
    Del(u8),
    Observe(u8),
    DropObservation,
    /// On one of two lease handles of one name.
    Acquire(u8),
    Release(u8),
    /// On one of two lock handles of one name.
    Lock(u8),
    Unlock(u8),
    Edit(u8),
    Campaign,
    Resign,
    /// Drop the newest unanswered future (an abandoned operation).
    Abandon,
    Disconnect,
    Connect,
    Advance(u16),
    Settle,
    Close,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..3).prop_map(Step::Get),
        (0u8..3).prop_map(Step::Set),
        (0u8..3).prop_map(Step::Del),
        (0u8..3).prop_map(Step::Observe),
        Just(Step::DropObservation),
        (0u8..2).prop_map(Step::Acquire),
        (0u8..2).prop_map(Step::Release),
        (0u8..2).prop_map(Step::Lock),
        (0u8..2).prop_map(Step::Unlock),
        (0u8..2).prop_map(Step::Edit),
        Just(Step::Campaign),
        Just(Step::Resign),
        Just(Step::Abandon),
        Just(Step::Disconnect),
        Just(Step::Connect),
        (0u16..3000).prop_map(Step::Advance),
        Just(Step::Settle),
        Just(Step::Close),
    ]
}

type Pending = Pin<Box<dyn Future<Output = ()>>>;

/// The handles a schedule works on (shared with the futures it issues).
struct Handles {
    store: crate::StateStore,
    leases: [crate::Lease; 2],
    locks: [crate::Lock; 2],
    leader: crate::Leader,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the interleaving of store requests, lease, lock, edit and leader operations,
    /// abandoned futures, connection events, time and a close, every operation that was not
    /// abandoned gets exactly one answer (counted per operation), and once every handle is
    /// gone no machine and no registration is left behind.
    #[test]
    fn every_command_gets_exactly_one_answer(steps in proptest::collection::vec(step(), 1..40)) {
        let mut w = World::new(&["a"]);
        let conn = w.conn(0);
        let h = Rc::new(Handles {
            store: conn.state_store(),
            leases: [conn.lease("L").unwrap(), conn.lease("L").unwrap()],
            locks: [conn.lock("M").unwrap(), conn.lock("M").unwrap()],
            leader: conn.leader("E").unwrap(),
        });
        // Answers counted per operation id, apart from the futures' own bookkeeping.
        let answers: Rc<RefCell<std::collections::HashMap<u64, u32>>> = Rc::default();
        let mut expected = std::collections::BTreeSet::new();
        let mut pending: Vec<(u64, Pending)> = Vec::new();
        let kept = Rc::new(RefCell::new(Vec::new()));
        let mut close_requested = false;
        let key = |k: u8| Bytes::from(vec![b'k', k]);
        let d = Duration::from_secs(5);
        let wait = LockOptions::new().wait_timeout(Duration::from_secs(5));
        for (id, s) in steps.into_iter().enumerate() {
            let id = id as u64;
            let (hc, ans) = (h.clone(), answers.clone());
            let done = move || *ans.borrow_mut().entry(id).or_default() += 1;
            let wait = wait.clone();
            let op: Option<Pending> = match s {
                Step::Get(k) => Some(Box::pin(async move { let _ = hc.store.get(key(k), None).await; done() })),
                Step::Set(k) => Some(Box::pin(async move {
                    let _ = hc.store.set(key(k), "v", &SetOptions::new()).await; done()
                })),
                Step::Del(k) => Some(Box::pin(async move {
                    let _ = hc.store.del(key(k), &Default::default()).await; done()
                })),
                Step::Observe(k) => {
                    let kept = kept.clone();
                    Some(Box::pin(async move {
                        if let Ok(o) = hc.store.observe(key(k)).await { kept.borrow_mut().push(o) }
                        done()
                    }))
                }
                Step::Acquire(i) => Some(Box::pin(async move {
                    let _ = hc.leases[usize::from(i)].acquire(d, &AcquireOptions::new()).await; done()
                })),
                Step::Release(i) => Some(Box::pin(async move {
                    let _ = hc.leases[usize::from(i)].release().await; done()
                })),
                Step::Lock(i) => Some(Box::pin(async move {
                    let _ = hc.locks[usize::from(i)].lock(d, &wait).await; done()
                })),
                Step::Unlock(i) => Some(Box::pin(async move {
                    let _ = hc.locks[usize::from(i)].unlock().await; done()
                })),
                Step::Edit(i) => Some(Box::pin(async move {
                    let _ = hc.locks[usize::from(i)]
                        .edit_with("edited", d, &wait, |_| async { crate::EditDecision::Set(Bytes::from_static(b"e")) })
                        .await;
                    done()
                })),
                Step::Campaign => Some(Box::pin(async move {
                    let _ = hc.leader.campaign(&crate::LeaderOptions::new(Duration::from_secs(3))).await;
                    done()
                })),
                Step::Resign => Some(Box::pin(async move { let _ = hc.leader.resign().await; done() })),
                Step::Close => {
                    close_requested = true;
                    let c = conn.clone();
                    Some(Box::pin(async move { c.close().await; done() }))
                }
                Step::Abandon => {
                    if let Some((gone, _)) = pending.pop() {
                        expected.remove(&gone);
                    }
                    None
                }
                Step::DropObservation => { kept.borrow_mut().pop(); None }
                Step::Disconnect => { if w.peers[0].connected { w.disconnect(0) } None }
                Step::Connect => { if !w.peers[0].connected { w.connect(0) } None }
                Step::Advance(ms) => { w.advance(Duration::from_millis(u64::from(ms))); None }
                Step::Settle => { w.settle(); None }
            };
            if let Some(op) = op {
                expected.insert(id);
                pending.push((id, op));
            }
            // Poll everything once; keep what is still waiting.
            pending.retain_mut(|(_, f)| poll_once(f.as_mut()).is_pending());
        }
        // Whatever state the schedule left: reconnect and let time pass; everything answers.
        if !w.peers[0].connected { w.connect(0) }
        for _ in 0..200 {
            pending.retain_mut(|(_, f)| poll_once(f.as_mut()).is_pending());
            if pending.is_empty() { break; }
            w.settle();
            w.advance(Duration::from_millis(500));
        }
        let unanswered: Vec<u64> = pending.iter().map(|(id, _)| *id).collect();
        prop_assert!(unanswered.is_empty(), "never answered: {:?}", unanswered);
        let answers = answers.borrow();
        for id in &expected {
            prop_assert_eq!(answers.get(id).copied(), Some(1), "operation {} answered", id);
        }
        prop_assert!(answers.keys().all(|id| expected.contains(id)), "an abandoned operation answered");
        drop(answers);
        // Every handle and stream goes: nothing may stay behind.
        kept.borrow_mut().clear();
        drop(h);
        w.settle();
        for _ in 0..40 {
            if w.peers[0].engine.host.machines() == 0 { break; }
            w.advance(Duration::from_millis(500));
        }
        prop_assert!(w.peers[0].engine.host.machines() == 0, "a machine outlived its handle");
        // A close ends the streams with the connection (the store drops a disconnected client's
        // registrations); otherwise dropping the last stream of a key unregisters it.
        if !close_requested {
            prop_assert!(w.store.registrations_of(b"a").is_empty(), "a registration outlived its streams");
        }
    }
}

#[test]
fn the_deadline_follows_every_input() {
    let mut w = World::new(&["a"]);
    w.connect(0);
    assert_eq!(w.peers[0].engine.poll_timeout(), None, "idle: no deadline");
    let store = w.conn(0).state_store();
    let mut get = pin!(store.get("k", None));
    assert!(poll_once(get.as_mut()).is_pending());
    let now = w.now();
    let p = &mut w.peers[0];
    let command = p.commands.try_recv().unwrap();
    p.engine.handle_command(command, now);
    let due = p.engine.poll_timeout().expect("the request's deadline");
    assert_eq!(due, now.mono + Duration::from_secs(1));
    assert_eq!(
        p.engine.poll_timeout(),
        Some(due),
        "asking again changes nothing"
    );
    w.settle();
    assert!(w.run(get, LONG).is_ok());
    assert_eq!(
        w.peers[0].engine.poll_timeout(),
        None,
        "answered: no stale deadline"
    );
}

/// Two handles (or edits) of one connection on one name are two holders: never both held, and
/// one's release never frees the other's hold.
mod one_connection_two_holders {
    use super::*;
    use crate::{EditDecision, LeaseError, LockError};

    #[test]
    fn two_lease_handles_are_two_clients() {
        let mut w = World::new(&["a"]);
        w.connect(0);
        let conn = w.conn(0);
        let (first, second) = (conn.lease("n").unwrap(), conn.lease("n").unwrap());
        assert_ne!(first.holder_value(), second.holder_value());
        assert!(first.holder_value().starts_with(b"a:"));
        let d = Duration::from_secs(30);
        assert_eq!(
            w.run(first.acquire(d, &AcquireOptions::new()), LONG),
            Ok(true)
        );
        assert_eq!(
            w.run(second.acquire(d, &AcquireOptions::new()), LONG),
            Ok(false),
            "the second handle is refused like another client"
        );
        assert!(!second.is_held());
        assert_eq!(
            w.store.get(b"n").map(|k| k.value),
            Some(first.holder_value())
        );
        assert_eq!(w.run(first.release(), LONG), Ok(ReleaseOutcome::Deleted));
        assert_eq!(
            w.run(second.acquire(d, &AcquireOptions::new()), LONG),
            Ok(true)
        );
        // A late release by the first handle must not delete the second's lease.
        assert_ne!(w.run(first.release(), LONG), Ok(ReleaseOutcome::Deleted));
        assert_eq!(
            w.store.get(b"n").map(|k| k.value),
            Some(second.holder_value())
        );
        assert!(second.is_held());
    }

    #[test]
    fn a_second_lock_handle_waits_for_the_first_unlock() {
        let mut w = World::new(&["a"]);
        w.connect(0);
        let conn = w.conn(0);
        let (first, second) = (conn.lock("m").unwrap(), conn.lock("m").unwrap());
        let options = LockOptions::new().max_jitter(Duration::ZERO);
        let d = Duration::from_secs(30);
        w.run(first.lock(d, &options), LONG).unwrap();
        let mut wait = pin!(second.lock(d, &options));
        assert!(poll_once(wait.as_mut()).is_pending());
        // Long enough for every fallback poll of the waiter: still waiting.
        for _ in 0..20 {
            w.advance(Duration::from_secs(1));
            assert!(poll_once(wait.as_mut()).is_pending(), "both held the lock");
        }
        assert!(first.is_held() && !second.is_held());
        assert_eq!(w.run(first.unlock(), LONG), Ok(ReleaseOutcome::Deleted));
        w.run(wait.as_mut(), LONG).unwrap();
        assert!(second.is_held());
        assert_eq!(
            w.store.get(b"m").map(|k| k.value),
            Some(second.holder_value())
        );
        assert_ne!(w.run(first.unlock(), LONG), Ok(ReleaseOutcome::Deleted));
        assert_eq!(
            w.store.get(b"m").map(|k| k.value),
            Some(second.holder_value())
        );
    }

    #[test]
    fn two_edits_on_one_lock_run_one_after_the_other() {
        let mut w = World::new(&["a"]);
        w.connect(0);
        let lock = w.conn(0).lock("edit-lock").unwrap();
        // (now deciding, most ever deciding at once)
        let inside = Rc::new(RefCell::new((0u32, 0u32)));
        let (go_tx, go_rx) = futures_channel::oneshot::channel::<()>();
        // Whichever edit decides first keeps deciding until `go_tx` fires.
        let gate = Rc::new(RefCell::new(Some(go_rx)));
        let edit = || {
            let (lock, inside, gate) = (&lock, inside.clone(), gate.clone());
            async move {
                lock.edit(
                    "counter",
                    Duration::from_secs(30),
                    move |current| async move {
                        {
                            let mut i = inside.borrow_mut();
                            i.0 += 1;
                            i.1 = i.1.max(i.0);
                        }
                        let hold = gate.borrow_mut().take();
                        if let Some(hold) = hold {
                            let _ = hold.await;
                        }
                        inside.borrow_mut().0 -= 1;
                        let n: u32 = current
                            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
                            .unwrap_or(0);
                        EditDecision::Set((n + 1).to_string().into())
                    },
                )
                .await
            }
        };
        let mut one = pin!(edit());
        let mut two = pin!(edit());
        for _ in 0..20 {
            assert!(poll_once(one.as_mut()).is_pending() && poll_once(two.as_mut()).is_pending());
            w.settle();
            w.advance(Duration::from_millis(500));
        }
        assert_eq!(
            *inside.borrow(),
            (1, 1),
            "one edit decides, the other waits for the lock"
        );
        go_tx.send(()).unwrap();
        let (r1, r2) = w.run(futures_lite::future::zip(one, two), LONG);
        assert!(r1.is_ok() && r2.is_ok(), "{r1:?} {r2:?}");
        assert_eq!(
            inside.borrow().1,
            1,
            "two edits decided under the lock at once"
        );
        assert_eq!(
            w.store.get(b"counter").map(|k| k.value),
            Some(Bytes::from_static(b"2")),
            "no lost update"
        );
    }

    #[test]
    fn a_fixed_holder_is_refused_while_another_handle_has_it() {
        let mut w = World::new(&["a"]);
        w.connect(0);
        let conn = w.conn(0);
        let first = conn.lease_with_session("n", "s").unwrap();
        assert_eq!(first.holder_value(), Bytes::from_static(b"a:s"));
        assert_eq!(
            conn.lease_with_session("n", "s").err(),
            Some(LeaseError::HolderInUse)
        );
        assert_eq!(
            conn.lock_with_session("n", "s").err(),
            Some(LockError::Lease(LeaseError::HolderInUse))
        );
        // Another name, or another session, is another holder.
        assert!(conn.lease_with_session("other", "s").is_ok());
        assert!(conn.lease_with_session("n", "t").is_ok());
        let bare = conn.lease_as_client_id("n").unwrap();
        assert_eq!(bare.holder_value(), Bytes::from_static(b"a"));
        assert_eq!(
            conn.lease_as_client_id("n").err(),
            Some(LeaseError::HolderInUse)
        );
        drop(first);
        let again = conn.lease_with_session("n", "s").unwrap();
        assert_eq!(
            w.run(
                again.acquire(Duration::from_secs(5), &AcquireOptions::new()),
                LONG
            ),
            Ok(true)
        );
    }

    #[test]
    fn holders_differ_between_connection_instances_of_one_client_id() {
        let w = World::new(&["a", "a"]);
        let (one, two) = (w.conn(0).lease("n").unwrap(), w.conn(1).lease("n").unwrap());
        assert_ne!(one.holder_value(), two.holder_value());
        assert!(two.holder_value().starts_with(b"a:"));
    }

    #[test]
    fn two_leaders_of_one_connection_are_two_candidates() {
        let mut w = World::new(&["a"]);
        w.connect(0);
        let conn = w.conn(0);
        let (one, two) = (conn.leader("e").unwrap(), conn.leader("e").unwrap());
        assert_ne!(one.holder_value(), two.holder_value());
        let options = crate::LeaderOptions::new(Duration::from_secs(9));
        w.run(one.campaign(&options), LONG).unwrap();
        w.run(one.elected(), LONG).unwrap();
        w.run(two.campaign(&options), LONG).unwrap();
        for _ in 0..20 {
            w.advance(Duration::from_secs(1));
            assert!(!(one.is_leader() && two.is_leader()), "two leaders at once");
        }
        assert!(one.is_leader());
        assert_eq!(two.leader(), Some(one.holder_value()));
        w.run(one.resign(), LONG).unwrap();
        w.run(two.elected(), LONG).unwrap();
        assert_eq!(w.store.get(b"e").map(|k| k.value), Some(two.holder_value()));
    }
}

/// A command queued just before the driver's task is aborted (its `Commands` dropped without
/// `finish`) is refused, not left waiting forever.
#[test]
fn commands_queued_when_the_driver_dies_are_refused() {
    let options = ConnectionOptions::new("broker", 1883, "c-dies");
    let (engine, conn, commands) = Engine::new(&options, Clock::new()).unwrap();
    let store = conn.state_store();
    let mut get = pin!(store.get("k", None));
    assert!(
        poll_once(get.as_mut()).is_pending(),
        "queued, not yet taken"
    );
    drop(commands);
    drop(engine);
    assert_eq!(
        poll_once(get.as_mut()),
        Poll::Ready(Err(StoreError::Closed))
    );
}
