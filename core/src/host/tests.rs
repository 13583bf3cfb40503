use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;
use proptest::prelude::*;

use super::*;
use crate::client::Output;
use crate::command::{RequestKind, VdelOutcome};
use crate::testkit::{at, get, note_set, ok_set, tok, vdel, FakeRequester};

const TIMEOUT: Duration = Duration::from_secs(1);

fn host() -> (Host, FakeRequester) {
    let host = Host::new(HostConfig {
        seed: 7,
        request_timeout: TIMEOUT,
    });
    (host, FakeRequester::new("c"))
}

fn name(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

fn acquire(session: &str, renew: Option<Duration>) -> Op {
    Op::Acquire {
        duration: Duration::from_secs(10),
        options: LeaseOptions {
            timeout: Some(TIMEOUT),
            renew,
            session_id: Some(session.into()),
            margin: None,
        },
    }
}

fn outputs(h: &mut Host) -> Vec<HostOutput> {
    core::iter::from_fn(|| h.poll_output()).collect()
}

fn answers(outs: &[HostOutput]) -> Vec<(HandleId, CallId, Answer)> {
    outs.iter()
        .filter_map(|o| match o {
            HostOutput::Answer {
                handle,
                call,
                answer,
            } => Some((*handle, *call, answer.clone())),
            _ => None,
        })
        .collect()
}

/// Answers request `id` of the fake requester through the host.
fn complete(
    h: &mut Host,
    r: &mut FakeRequester,
    id: crate::client::RequestId,
    result: Result<crate::command::Response, RequestError>,
    version: Option<Hlc>,
    ms: u64,
) {
    let c = r.answer(id, result, version);
    h.handle_output(Output::Completion(c), r, at(ms));
}

#[test]
fn a_completion_reaches_only_the_handle_that_sent_it() {
    let (mut h, mut r) = host();
    h.create(
        HandleId(1),
        Create::Lease { name: name(b"a") },
        &mut r,
        at(0),
    );
    h.create(
        HandleId(2),
        Create::Lease { name: name(b"a") },
        &mut r,
        at(0),
    );
    h.op(HandleId(1), CallId(10), acquire("one", None), &mut r, at(0));
    h.op(HandleId(2), CallId(20), acquire("two", None), &mut r, at(0));
    let sets: Vec<_> = r.open_sent();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[1].value().map(|v| v.as_ref()), Some(&b"c:two"[..]));
    outputs(&mut h);
    // The second handle's SET is answered first: only the second handle hears of it.
    complete(&mut h, &mut r, sets[1].id, ok_set(), Some(tok(5)), 1);
    let outs = outputs(&mut h);
    assert_eq!(
        answers(&outs),
        [(HandleId(2), CallId(20), Answer::Acquire(Ok(true)))]
    );
    let status = outs.iter().position(|o| {
        matches!(
            o,
            HostOutput::Status {
                handle: HandleId(2),
                status: Status::Held { .. }
            }
        )
    });
    let answer = outs
        .iter()
        .position(|o| matches!(o, HostOutput::Answer { .. }));
    assert!(
        status < answer,
        "the status comes before the answer: {outs:?}"
    );
    complete(
        &mut h,
        &mut r,
        sets[0].id,
        crate::testkit::refused_set(),
        None,
        2,
    );
    assert_eq!(
        answers(&outputs(&mut h)),
        [(HandleId(1), CallId(10), Answer::Acquire(Ok(false)))]
    );
}

#[test]
fn a_late_completion_of_a_gone_handle_is_dropped() {
    let (mut h, mut r) = host();
    h.create(
        HandleId(1),
        Create::Lease { name: name(b"a") },
        &mut r,
        at(0),
    );
    h.op(
        HandleId(1),
        CallId(1),
        Op::Holder { timeout: None },
        &mut r,
        at(0),
    );
    let get_id = r.last().id;
    h.drop_handle(HandleId(1), false, &mut r, at(0));
    assert!(outputs(&mut h).contains(&HostOutput::Gone {
        handle: HandleId(1)
    }));
    complete(&mut h, &mut r, get_id, get(None), None, 1);
    assert_eq!(outputs(&mut h), []);
    assert!(h.is_idle());
}

#[test]
fn dropping_a_holding_handle_releases_and_the_machine_goes_after_the_vdel() {
    let (mut h, mut r) = host();
    h.create(
        HandleId(1),
        Create::Lease { name: name(b"a") },
        &mut r,
        at(0),
    );
    h.op(
        HandleId(1),
        CallId(1),
        acquire("s", Some(Duration::from_secs(3))),
        &mut r,
        at(0),
    );
    let set = r.last().id;
    complete(&mut h, &mut r, set, ok_set(), Some(tok(1)), 1);
    outputs(&mut h);
    h.drop_handle(HandleId(1), true, &mut r, at(2));
    let vdel_sent = r.last();
    assert_eq!(vdel_sent.kind, RequestKind::Vdel);
    assert_eq!(vdel_sent.value().map(|v| v.as_ref()), Some(&b"c:s"[..]));
    assert_eq!(h.machines(), 1, "the machine waits for its release");
    complete(
        &mut h,
        &mut r,
        vdel_sent.id,
        vdel(VdelOutcome::Deleted),
        None,
        3,
    );
    assert!(outputs(&mut h).contains(&HostOutput::Gone {
        handle: HandleId(1)
    }));
    assert!(h.is_idle());
    assert_eq!(h.poll_timeout(), None, "no timer of a gone machine is left");
}

/// A host with one lease handle (1, on `a`) observing; the KEYNOTIFY it sent.
fn observing_lease() -> (Host, FakeRequester, crate::testkit::Sent) {
    let (mut h, mut r) = host();
    h.create(
        HandleId(1),
        Create::Lease { name: name(b"a") },
        &mut r,
        at(0),
    );
    h.op(HandleId(1), CallId(1), Op::Observe, &mut r, at(0));
    let keynotify = r.last();
    assert_eq!(keynotify.kind, RequestKind::KeyNotify);
    (h, r, keynotify)
}

/// Handle 1 was dropped and its STOP `earlier` answered: its machine stays until one more
/// STOP, not due before `not_before` ms, has gone out and been answered, and then goes.
fn the_cleanup_stop_comes_before_the_machine_goes(
    h: &mut Host,
    r: &mut FakeRequester,
    earlier: crate::client::RequestId,
    not_before: u64,
) {
    use crate::command::Response;
    let gone = HostOutput::Gone {
        handle: HandleId(1),
    };
    assert!(!outputs(h).contains(&gone), "gone before its cleanup");
    let due = h.poll_timeout().expect("the cleanup STOP is scheduled");
    assert!(
        due > at(not_before).mono,
        "not before the KEYNOTIFY can no longer land: {due:?}"
    );
    let ms = due.as_nanos() / 1_000_000 + 1;
    h.handle_timeout(r, at(ms));
    let sweep = r.last();
    assert_eq!(sweep.kind, RequestKind::KeyNotifyStop);
    assert_ne!(sweep.id, earlier);
    assert!(!outputs(h).contains(&gone), "gone before the STOP's answer");
    let answer = Ok(Response::KeyNotifyStop(false));
    complete(h, r, sweep.id, answer, None, ms + 1);
    assert!(outputs(h).contains(&gone));
    assert!(h.is_idle());
    assert_eq!(h.poll_timeout(), None, "no timer of a gone machine is left");
}

/// Observes, lets the KEYNOTIFY time out (it may still land later), answers the STOP that
/// follows at once, then drops the handle: the machine must stay until the cleanup STOP that
/// waits for that KEYNOTIFY to be unable to land has gone out and been answered, or the store
/// keeps the registration for the connection's lifetime (found by the simulator's `shared`
/// workload: "the store still holds 1 KEYNOTIFY registrations after every node stopped").
fn a_dropped_handle_stays_for_its_cleanup_stop(release: bool) {
    use crate::command::Response;
    let (mut h, mut r, keynotify) = observing_lease();
    let timed_out = Err(RequestError::Timeout { sent: true });
    complete(&mut h, &mut r, keynotify.id, timed_out, None, 1_000);
    let stop = r.last();
    assert_eq!(stop.kind, RequestKind::KeyNotifyStop);
    let not_registered = Ok(Response::KeyNotifyStop(false));
    complete(&mut h, &mut r, stop.id, not_registered, None, 1_001);
    outputs(&mut h);
    h.drop_handle(HandleId(1), release, &mut r, at(1_002));
    the_cleanup_stop_comes_before_the_machine_goes(&mut h, &mut r, stop.id, 2_000);
}

/// A KEYNOTIFY on its way when the connection dropped may be published again by a reconnect
/// that keeps the session, after the STOP of a handle dropped meanwhile: the machine stays
/// through the reconnect and sends one more STOP once that copy can no longer land (found by
/// the `sim_faults` fuzz target: a registration left behind after a nine-second disconnect).
#[test]
fn a_dropped_handle_stays_for_a_keynotify_the_reconnect_may_publish_again() {
    use crate::command::Response;
    let (mut h, mut r, keynotify) = observing_lease();
    let registered = Ok(Response::KeyNotify);
    complete(&mut h, &mut r, keynotify.id, registered, None, 10);
    h.handle_output(Output::Disconnected, &mut r, at(15));
    h.drop_handle(HandleId(1), true, &mut r, at(20));
    let stop = r.last();
    assert_eq!(stop.kind, RequestKind::KeyNotifyStop);
    let unregistered = Ok(Response::KeyNotifyStop(true));
    complete(&mut h, &mut r, stop.id, unregistered, None, 30);
    assert!(
        !outputs(&mut h).contains(&HostOutput::Gone {
            handle: HandleId(1)
        }),
        "gone before the reconnect"
    );
    let reconnect = Output::Connected {
        session_present: true,
    };
    h.handle_output(reconnect, &mut r, at(5_000));
    the_cleanup_stop_comes_before_the_machine_goes(&mut h, &mut r, stop.id, 6_000);
}

/// A detached handle's machine may stay through a reconnect (for its cleanup STOP), but the
/// lease it leaves to expire is not renewed by that reconnect, though a renewal had failed.
#[test]
fn a_detached_lease_kept_for_its_cleanup_is_not_renewed_by_a_reconnect() {
    use crate::command::Response;
    let (mut h, mut r, keynotify) = observing_lease();
    complete(
        &mut h,
        &mut r,
        keynotify.id,
        Ok(Response::KeyNotify),
        None,
        1,
    );
    let renew = Some(Duration::from_millis(500));
    h.op(HandleId(1), CallId(2), acquire("s", renew), &mut r, at(2));
    let set = r.last_of(RequestKind::Set);
    complete(&mut h, &mut r, set.id, ok_set(), Some(tok(1)), 3);
    // The renewal leaves and fails: the next reconnect would retry it at once.
    let due = h.poll_timeout().expect("a renewal").as_nanos() / 1_000_000 + 1;
    h.handle_timeout(&mut r, at(due));
    let renewal = r.last_of(RequestKind::Set);
    assert_ne!(renewal.id, set.id);
    let timed_out = Err(RequestError::Timeout { sent: true });
    complete(&mut h, &mut r, renewal.id, timed_out, None, due + 100);
    // The connection drops while the KEYNOTIFY may still be published again; then the handle
    // is dropped, leaving the lease to expire.
    h.handle_output(Output::Disconnected, &mut r, at(due + 200));
    h.drop_handle(HandleId(1), false, &mut r, at(due + 300));
    for sent in r.open_sent() {
        let result = Ok(Response::KeyNotifyStop(true));
        complete(&mut h, &mut r, sent.id, result, None, due + 400);
    }
    assert_eq!(h.machines(), 1, "kept for the reconnect");
    let sets = r.count(RequestKind::Set);
    let reconnect = Output::Connected {
        session_present: true,
    };
    h.handle_output(reconnect, &mut r, at(due + 1_000));
    assert_eq!(
        r.count(RequestKind::Set),
        sets,
        "no renewal of a detached lease"
    );
}

/// A lock watching its holder (`LockOptions::watch_holder`) keeps its observation after its
/// hold ends; dropping the handle stops it, or the machine never goes (found by the
/// `client_machines` fuzz target: "a machine outlived its handle").
#[test]
fn dropping_a_lock_that_watches_its_holder_stops_the_watch() {
    use crate::command::Response;
    for release in [true, false] {
        let (mut h, mut r) = host();
        h.create(
            HandleId(1),
            Create::Lock { name: name(b"l") },
            &mut r,
            at(0),
        );
        let options = LockOptions {
            lease: LeaseOptions {
                timeout: Some(TIMEOUT),
                renew: None,
                session_id: None,
                margin: None,
            },
            watch_holder: true,
            ..LockOptions::default()
        };
        let lock = Op::Lock {
            duration: Duration::from_secs(2),
            options,
        };
        h.op(HandleId(1), CallId(1), lock, &mut r, at(0));
        let keynotify = r.last();
        assert_eq!(keynotify.kind, RequestKind::KeyNotify);
        complete(
            &mut h,
            &mut r,
            keynotify.id,
            Ok(Response::KeyNotify),
            None,
            1,
        );
        let set = r.last_of(RequestKind::Set);
        complete(&mut h, &mut r, set.id, ok_set(), Some(tok(1)), 2);
        // Not renewed: the hold ends at its safe end; the watch goes on.
        let ms = h.poll_timeout().expect("the hold's end").as_nanos() / 1_000_000 + 1;
        h.handle_timeout(&mut r, at(ms));
        outputs(&mut h);
        let stops = r.count(RequestKind::KeyNotifyStop);
        h.drop_handle(HandleId(1), release, &mut r, at(ms + 1));
        assert_eq!(
            r.count(RequestKind::KeyNotifyStop),
            stops + 1,
            "release: {release}"
        );
        // Whatever else the drop sent (the release of a hold that may remain) is answered too.
        for sent in r.open_sent() {
            let result = match sent.kind {
                RequestKind::KeyNotifyStop => Ok(Response::KeyNotifyStop(true)),
                _ => vdel(VdelOutcome::Deleted),
            };
            complete(&mut h, &mut r, sent.id, result, None, ms + 2);
        }
        assert!(
            outputs(&mut h).contains(&HostOutput::Gone {
                handle: HandleId(1)
            }),
            "release: {release}"
        );
        assert!(h.is_idle());
    }
}

#[test]
fn a_released_handle_stays_for_its_cleanup_stop() {
    a_dropped_handle_stays_for_its_cleanup_stop(true);
}

#[test]
fn a_detached_handle_stays_for_its_cleanup_stop() {
    a_dropped_handle_stays_for_its_cleanup_stop(false);
}

#[test]
fn an_abandoned_acquire_gives_back_the_lease_it_took() {
    let (mut h, mut r) = host();
    h.create(
        HandleId(1),
        Create::Lease { name: name(b"a") },
        &mut r,
        at(0),
    );
    h.op(HandleId(1), CallId(1), acquire("s", None), &mut r, at(0));
    let set = r.last().id;
    complete(&mut h, &mut r, set, ok_set(), Some(tok(1)), 1);
    outputs(&mut h);
    // The answer could not be delivered: the caller is gone.
    h.abandon(HandleId(1), CallId(1), &mut r, at(1));
    assert_eq!(r.last().kind, RequestKind::Vdel);
}

#[test]
fn a_detached_edit_still_stops_and_goes() {
    // Found by the fuzz harness: an edit dropped "detached" kept waiting for its lock with no
    // timer armed, so its machine never went.
    let (mut h, mut r) = host();
    let create = Create::Edit {
        lock_name: name(b"l"),
        key: name(b"k"),
        duration: Duration::from_secs(5),
        options: alloc::boxed::Box::default(),
    };
    h.create(HandleId(1), create, &mut r, at(0));
    h.drop_handle(HandleId(1), false, &mut r, at(0));
    for sent in r.open_sent() {
        let result = Err(RequestError::Timeout { sent: true });
        complete(&mut h, &mut r, sent.id, result, None, 1);
    }
    let mut ms = 1;
    while let Some(t) = h.poll_timeout() {
        ms = (t.as_nanos() / 1_000_000 + 1).max(ms + 1);
        h.handle_timeout(&mut r, at(ms));
        for sent in r.open_sent() {
            let result = Err(RequestError::Timeout { sent: true });
            complete(&mut h, &mut r, sent.id, result, None, ms);
        }
        assert!(ms < 120_000, "still running at {ms} ms");
    }
    assert_eq!(h.machines(), 0, "the dropped edit's machine is gone");
}

#[test]
fn renewals_run_from_the_timer_table() {
    let (mut h, mut r) = host();
    h.create(
        HandleId(1),
        Create::Lease { name: name(b"a") },
        &mut r,
        at(0),
    );
    h.op(
        HandleId(1),
        CallId(1),
        acquire("s", Some(Duration::from_secs(3))),
        &mut r,
        at(0),
    );
    let set = r.last().id;
    complete(&mut h, &mut r, set, ok_set(), Some(tok(1)), 0);
    let due = h.poll_timeout().expect("a renewal is scheduled");
    assert_eq!(due, at(3000).mono);
    h.handle_timeout(&mut r, at(2999));
    assert_eq!(r.count(RequestKind::Set), 1, "nothing before its time");
    h.handle_timeout(&mut r, at(3000));
    assert_eq!(r.count(RequestKind::Set), 2, "the renewal went out");
}

#[test]
fn closing_releases_refuses_new_work_and_ends_when_idle() {
    let (mut h, mut r) = host();
    h.create(
        HandleId(1),
        Create::Lease { name: name(b"a") },
        &mut r,
        at(0),
    );
    h.op(HandleId(1), CallId(1), acquire("s", None), &mut r, at(0));
    let set = r.last().id;
    complete(&mut h, &mut r, set, ok_set(), Some(tok(1)), 0);
    outputs(&mut h);
    h.close(&mut r, at(1));
    let release = r.last();
    assert_eq!(release.kind, RequestKind::Vdel);
    assert_eq!(
        outputs(&mut h),
        [HostOutput::Status {
            handle: HandleId(1),
            status: Status::NotHeld(LeaseError::NoLease)
        }]
    );
    h.op(
        HandleId(1),
        CallId(2),
        Op::Holder { timeout: None },
        &mut r,
        at(1),
    );
    h.create(
        HandleId(2),
        Create::Lease { name: name(b"b") },
        &mut r,
        at(1),
    );
    h.request(
        CallId(3),
        Request::Get { key: name(b"k") },
        RequestOptions::default(),
        &mut r,
        at(1),
    );
    assert_eq!(
        outputs(&mut h),
        [
            HostOutput::Refused(Refused::Op(HandleId(1), CallId(2))),
            HostOutput::Refused(Refused::Create(HandleId(2))),
            HostOutput::Refused(Refused::Request(CallId(3))),
        ]
    );
    assert!(!h.is_done(at(2)));
    assert!(
        h.is_done(at(1001)),
        "the grace period is the request timeout"
    );
    complete(
        &mut h,
        &mut r,
        release.id,
        vdel(VdelOutcome::Deleted),
        None,
        2,
    );
    assert!(h.is_done(at(2)));
}

#[test]
fn one_registration_serves_every_stream_of_a_key() {
    let (mut h, mut r) = host();
    h.observe(StreamId(1), name(b"k"), &mut r, at(0));
    h.observe(StreamId(2), name(b"k"), &mut r, at(0));
    assert_eq!(r.count(RequestKind::KeyNotify), 1);
    let reg = r.last().id;
    complete(
        &mut h,
        &mut r,
        reg,
        Ok(crate::command::Response::KeyNotify),
        None,
        1,
    );
    assert_eq!(
        outputs(&mut h),
        [
            HostOutput::Observed {
                stream: StreamId(1),
                result: Ok(())
            },
            HostOutput::Observed {
                stream: StreamId(2),
                result: Ok(())
            },
        ]
    );
    let n = note_set(b"k", b"v", tok(3));
    h.handle_output(Output::Notification(n), &mut r, at(2));
    let changes = outputs(&mut h);
    assert_eq!(changes.len(), 2);
    assert!(changes
        .iter()
        .all(|o| matches!(o, HostOutput::KeyChange { .. })));
    h.unobserve(StreamId(1), &name(b"k"), &mut r, at(3));
    assert_eq!(r.count(RequestKind::KeyNotifyStop), 0);
    h.unobserve(StreamId(2), &name(b"k"), &mut r, at(3));
    assert_eq!(r.count(RequestKind::KeyNotifyStop), 1);
}

#[test]
fn a_registration_that_cannot_start_fails_its_streams_with_the_cause() {
    let (mut h, mut r) = host();
    r.fail_next = Some(RequestError::Busy);
    h.observe(StreamId(1), name(b"k"), &mut r, at(0));
    assert_eq!(
        outputs(&mut h),
        [HostOutput::Observed {
            stream: StreamId(1),
            result: Err(RequestError::Busy)
        }]
    );
    assert_eq!(h.observed_keys(), 0);
}

/// A user action in the property test.
#[derive(Debug, Clone)]
enum Step {
    Create(u8, u8),
    Acquire(u8),
    Release(u8),
    Lock(u8),
    Unlock(u8),
    Holder(u8),
    Abandon(u8),
    Drop(u8, bool),
    /// Answer the oldest open request: SET applied / refused / failed.
    Answer(u8),
    Advance(u16),
    Close,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..4, 0u8..3).prop_map(|(h, k)| Step::Create(h, k)),
        (0u8..4).prop_map(Step::Acquire),
        (0u8..4).prop_map(Step::Release),
        (0u8..4).prop_map(Step::Lock),
        (0u8..4).prop_map(Step::Unlock),
        (0u8..4).prop_map(Step::Holder),
        (0u8..4).prop_map(Step::Abandon),
        (0u8..4, any::<bool>()).prop_map(|(h, r)| Step::Drop(h, r)),
        (0u8..3).prop_map(Step::Answer),
        (1u16..4000).prop_map(Step::Advance),
        Just(Step::Close),
    ]
}

proptest! {
    /// Whatever users do on one connection: every operation gets exactly one answer or
    /// refusal, the host never panics, and once every handle is dropped and every request
    /// answered, no machine and no timer is left.
    #[test]
    fn every_operation_ends_once_and_nothing_outlives_its_handle(
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let (mut h, mut r) = host();
        let mut ms = 0u64;
        let mut next_call = 0u64;
        let mut waiting: alloc::collections::BTreeMap<(u64, u64), ()> = Default::default();
        let mut last_call: alloc::collections::BTreeMap<u64, u64> = Default::default();
        let mut created = alloc::collections::BTreeSet::new();
        let mut ended = Vec::new();
        let mut abandoned = alloc::collections::BTreeSet::new();
        // The last call made before each handle's `Gone`.
        let mut gone_at: alloc::collections::BTreeMap<u64, u64> = Default::default();
        for s in steps {
            let now = at(ms);
            match s {
                Step::Create(id, kind) => {
                    if created.insert(u64::from(id)) {
                        let n = if id % 2 == 0 { name(b"a") } else { name(b"b") };
                        let create = match kind {
                            0 | 1 => Create::Lease { name: n },
                            _ => Create::Lock { name: n },
                        };
                        h.create(HandleId(id.into()), create, &mut r, now);
                    }
                }
                Step::Acquire(id) | Step::Release(id) | Step::Lock(id) | Step::Unlock(id) | Step::Holder(id) => {
                    next_call += 1;
                    let op = match s {
                        Step::Acquire(_) => acquire("s", Some(Duration::from_secs(3))),
                        Step::Release(_) => Op::Release { options: LeaseOptions::default() },
                        Step::Lock(_) => Op::Lock { duration: Duration::from_secs(10), options: LockOptions::default() },
                        Step::Unlock(_) => Op::Unlock { options: LeaseOptions::default() },
                        _ => Op::Holder { timeout: None },
                    };
                    waiting.insert((id.into(), next_call), ());
                    last_call.insert(id.into(), next_call);
                    h.op(HandleId(id.into()), CallId(next_call), op, &mut r, now);
                }
                Step::Abandon(id) => {
                    if let Some(call) = last_call.remove(&u64::from(id)) {
                        waiting.remove(&(id.into(), call));
                        abandoned.insert((u64::from(id), call));
                        h.abandon(HandleId(id.into()), CallId(call), &mut r, now);
                    }
                }
                Step::Drop(id, release) => h.drop_handle(HandleId(id.into()), release, &mut r, now),
                Step::Answer(how) => {
                    if let Some(sent) = r.open_sent().first().cloned() {
                        let result = match (how, sent.kind) {
                            (0, RequestKind::Set) => ok_set(),
                            (0, RequestKind::Vdel) => vdel(VdelOutcome::Deleted),
                            (0, RequestKind::Get) => get(None),
                            (0, RequestKind::KeyNotifyStop) => Ok(crate::command::Response::KeyNotifyStop(true)),
                            (0, _) => Ok(crate::command::Response::KeyNotify),
                            (1, RequestKind::Set) => crate::testkit::refused_set(),
                            _ => Err(RequestError::Timeout { sent: true }),
                        };
                        let c = r.answer(sent.id, result, Some(tok(ms + 1)));
                        h.handle_output(Output::Completion(c), &mut r, now);
                    }
                }
                Step::Advance(d) => {
                    ms += u64::from(d);
                    h.handle_timeout(&mut r, at(ms));
                }
                Step::Close => h.close(&mut r, now),
            }
            for o in outputs(&mut h) {
                if let HostOutput::Gone { handle } = &o {
                    gone_at.insert(handle.0, next_call);
                }
                ended.push(o);
            }
        }
        // Drop everything, then answer whatever is asked until it is quiet.
        for id in 0..4u64 {
            h.drop_handle(HandleId(id), true, &mut r, at(ms));
        }
        for _ in 0..400 {
            ended.extend(outputs(&mut h));
            if let Some(sent) = r.open_sent().first().cloned() {
                let c = r.answer(sent.id, Err(RequestError::Timeout { sent: true }), None);
                h.handle_output(Output::Completion(c), &mut r, at(ms));
            } else if let Some(t) = h.poll_timeout() {
                // A closing host's grace end stays in the past: step over it.
                ms = (ms + 100).max(t.as_nanos() / 1_000_000 + 1);
                h.handle_timeout(&mut r, at(ms));
            } else {
                break;
            }
        }
        ended.extend(outputs(&mut h));
        // Each call ends once: by its answer or refusal, or with its handle's `Gone` (the
        // machine went with the call unanswered: a detached handle's release, say). Abandoned
        // calls may still be answered (the answer was on its way).
        let mut open: alloc::collections::BTreeSet<(u64, u64)> = waiting.keys().copied().collect();
        for o in &ended {
            match o {
                HostOutput::Answer { handle, call, .. }
                | HostOutput::Refused(Refused::Op(handle, call)) => {
                    let key = (handle.0, call.0);
                    prop_assert!(
                        open.remove(&key) || abandoned.contains(&key),
                        "call {:?} ended twice or was never made", key
                    );
                    abandoned.remove(&key);
                }
                HostOutput::Gone { handle } => {
                    let limit = gone_at.get(&handle.0).copied().unwrap_or(u64::MAX);
                    open.retain(|(h, c)| *h != handle.0 || *c > limit);
                }
                _ => {}
            }
        }
        prop_assert!(open.is_empty(), "never ended: {:?}", open);
        prop_assert_eq!(h.machines(), 0, "a machine outlived its handle");
        prop_assert!(h.is_idle());
        prop_assert_eq!(h.poll_timeout(), None);
    }
}
