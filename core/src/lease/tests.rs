use super::*;
use crate::command::RequestKind;
use crate::testkit::*;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;

const NAME: &[u8] = b"lease1";
const DUR: Duration = Duration::from_millis(1000);
const MARGIN: Duration = Duration::from_millis(100);

fn opts(renew: bool) -> LeaseOptions {
    LeaseOptions {
        timeout: Some(Duration::from_millis(300)),
        renew: renew.then_some(Duration::from_millis(200)),
        session_id: None,
        margin: Some(MARGIN),
    }
}

fn setup() -> (Lease, FakeRequester) {
    (
        Lease::new(Bytes::from_static(NAME)).unwrap(),
        FakeRequester::new("client1"),
    )
}

fn drain(l: &mut Lease) -> Vec<LeaseEvent> {
    core::iter::from_fn(|| l.poll_event()).collect()
}

/// Acquires at `t` ms, answered at `t + 10` ms with `tok(n)`.
fn hold(l: &mut Lease, r: &mut FakeRequester, t: u64, renew: bool, n: u64) -> OpId {
    let op = l.acquire(DUR, &opts(renew), r, at(t)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(n)));
    assert!(l.handle_completion(&c, r, at(t + 10)));
    op
}

#[test]
fn acquire_sends_nex_set_with_holder_and_px() {
    let (mut l, mut r) = setup();
    l.acquire(DUR, &opts(false), &mut r, at(0)).unwrap();
    let s = r.last();
    assert_eq!(
        s.request,
        Some(Request::Set {
            key: Bytes::from_static(NAME),
            value: Bytes::from_static(b"client1"),
            condition: SetCondition::NotExistsOrEqual,
            px_ms: Some(1000),
        })
    );
    assert_eq!(s.options.timeout, Some(Duration::from_millis(300)));
    assert_eq!(l.state(Instant::from_millis(1)), LeaseState::Acquiring);
}

#[test]
fn session_id_makes_holder_client_colon_session() {
    let (mut l, mut r) = setup();
    let mut o = opts(false);
    o.session_id = Some(String::from("s1"));
    l.acquire(DUR, &o, &mut r, at(0)).unwrap();
    assert_eq!(r.last().value(), Some(&Bytes::from_static(b"client1:s1")));
    assert_eq!(holder_value("c", None), Bytes::from_static(b"c"));
}

#[test]
fn acquired_has_token_and_safe_until_from_issue_time() {
    let (mut l, mut r) = setup();
    let op = l.acquire(DUR, &opts(false), &mut r, at(50)).unwrap();
    // The reply comes late: safe_until still counts from when the SET was issued.
    let c = r.answer(r.last().id, ok_set(), Some(tok(1)));
    assert!(l.handle_completion(&c, &mut r, at(400)));
    let safe_until = Instant::from_millis(50 + 1000 - 100);
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Acquired {
            op,
            token: tok(1),
            safe_until
        }]
    );
    assert_eq!(l.token(Instant::from_millis(500)), Ok(tok(1)));
    assert_eq!(l.poll_timeout(), Some(safe_until));
}

#[test]
fn refused_acquire_is_not_acquired_and_token_is_no_lease() {
    let (mut l, mut r) = setup();
    let op = l.acquire(DUR, &opts(false), &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, refused_set(), Some(tok(9)));
    l.handle_completion(&c, &mut r, at(5));
    assert_eq!(drain(&mut l), vec![LeaseEvent::NotAcquired { op }]);
    assert_eq!(l.token(Instant::from_millis(6)), Err(LeaseError::NoLease));
    assert_eq!(l.state(Instant::from_millis(6)), LeaseState::Idle);
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn token_before_any_acquire_is_no_lease() {
    let (l, _) = setup();
    assert_eq!(l.token(Instant::ZERO), Err(LeaseError::NoLease));
}

#[test]
fn acquire_with_unknown_outcome_is_maybe_held_never_held() {
    let (mut l, mut r) = setup();
    let op = l.acquire(DUR, &opts(false), &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, Err(RequestError::Timeout { sent: true }), None);
    l.handle_completion(&c, &mut r, at(300));
    let error = LeaseError::Request(RequestError::Timeout { sent: true });
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::AcquireFailed {
            op,
            error: error.clone()
        }]
    );
    assert_eq!(l.state(Instant::from_millis(301)), LeaseState::MaybeHeld);
    assert_eq!(l.token(Instant::from_millis(301)), Err(error));
    // A GET issued while the SET may still be applied proves nothing.
    let q = l.holder(None, &mut r, at(400)).unwrap();
    let c = r.answer(r.last().id, get(None), None);
    l.handle_completion(&c, &mut r, at(410));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Holder {
            op: q,
            result: Ok(None)
        }]
    );
    assert_eq!(l.state(Instant::from_millis(411)), LeaseState::MaybeHeld);
    // Our own value there does not resolve it either (no expiry known).
    l.holder(None, &mut r, at(1400)).unwrap();
    let c = r.answer(r.last().id, get(Some(b"client1")), Some(tok(3)));
    l.handle_completion(&c, &mut r, at(1410));
    assert_eq!(l.state(Instant::from_millis(1411)), LeaseState::MaybeHeld);
    // Someone else's value, seen after the apply window (300 ms + 1 s expiry), resolves it.
    l.holder(None, &mut r, at(1500)).unwrap();
    let c = r.answer(r.last().id, get(Some(b"other")), Some(tok(4)));
    l.handle_completion(&c, &mut r, at(1510));
    assert_eq!(l.state(Instant::from_millis(1511)), LeaseState::Idle);
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn maybe_held_resolved_by_reacquire() {
    let (mut l, mut r) = setup();
    l.acquire(DUR, &opts(false), &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, Err(RequestError::Unknown), None);
    l.handle_completion(&c, &mut r, at(100));
    assert_eq!(l.state(Instant::from_millis(101)), LeaseState::MaybeHeld);
    let op = hold(&mut l, &mut r, 200, false, 5);
    assert!(drain(&mut l).contains(&LeaseEvent::Acquired {
        op,
        token: tok(5),
        safe_until: Instant::from_millis(1100)
    }));
}

#[test]
fn maybe_held_ends_when_no_grant_can_remain() {
    let (mut l, mut r) = setup();
    l.acquire(DUR, &opts(false), &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, Err(RequestError::Unknown), None);
    l.handle_completion(&c, &mut r, at(100));
    // 100 + 1 s expiry + 1 s lease + 100 ms margin.
    assert_eq!(l.poll_timeout(), Some(Instant::from_millis(2200)));
    l.handle_timeout(&mut r, at(2200));
    assert_eq!(l.state(Instant::from_millis(2200)), LeaseState::Idle);
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn unsent_timeout_leaves_idle() {
    let (mut l, mut r) = setup();
    l.acquire(DUR, &opts(false), &mut r, at(0)).unwrap();
    let c = r.answer(
        r.last().id,
        Err(RequestError::Timeout { sent: false }),
        None,
    );
    l.handle_completion(&c, &mut r, at(300));
    assert_eq!(l.state(Instant::from_millis(301)), LeaseState::Idle);
}

#[test]
fn success_reply_after_safe_until_is_not_a_hold() {
    let (mut l, mut r) = setup();
    let op = l.acquire(DUR, &opts(false), &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(1)));
    l.handle_completion(&c, &mut r, at(900));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::AcquireFailed {
            op,
            error: LeaseError::ReplyTooLate
        }]
    );
    assert_eq!(l.state(Instant::from_millis(901)), LeaseState::MaybeHeld);
    assert!(l.token(Instant::from_millis(901)).is_err());
}

#[test]
fn success_without_version_is_not_a_hold() {
    let (mut l, mut r) = setup();
    let op = l.acquire(DUR, &opts(false), &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, ok_set(), None);
    l.handle_completion(&c, &mut r, at(10));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::AcquireFailed {
            op,
            error: LeaseError::MissingToken
        }]
    );
    assert_eq!(l.state(Instant::from_millis(11)), LeaseState::MaybeHeld);
}

#[test]
fn lost_is_raised_at_safe_until_without_any_reply() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    drain(&mut l);
    l.handle_timeout(&mut r, at(200));
    assert_eq!(r.count(RequestKind::Set), 2);
    // The renewal never comes back.
    assert_eq!(l.poll_timeout(), Some(Instant::from_millis(900)));
    l.handle_timeout(&mut r, at(899));
    assert!(drain(&mut l).is_empty());
    l.handle_timeout(&mut r, at(900));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Lost {
            reason: LostReason::Expired
        }]
    );
    assert_eq!(
        l.token(Instant::from_millis(900)),
        Err(LeaseError::Lost(LostReason::Expired))
    );
    // The abandoned renewal's late success is swallowed and is no hold.
    let c = r.answer(r.last().id, ok_set(), Some(tok(2)));
    assert!(l.handle_completion(&c, &mut r, at(950)));
    assert!(drain(&mut l).is_empty());
    assert_ne!(
        core::mem::discriminant(&l.state(Instant::from_millis(950))),
        core::mem::discriminant(&LeaseState::Held {
            token: tok(0),
            safe_until: Instant::ZERO
        })
    );
}

#[test]
fn auto_renew_fires_at_interval_and_reports_renewed() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    drain(&mut l);
    assert_eq!(l.poll_timeout(), Some(Instant::from_millis(200)));
    l.handle_timeout(&mut r, at(200));
    let renew = r.last();
    assert_eq!(renew.px(), Some(1000));
    let c = r.answer(renew.id, ok_set(), Some(tok(2)));
    l.handle_completion(&c, &mut r, at(220));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Renewed {
            token: tok(2),
            safe_until: Instant::from_millis(1100)
        }]
    );
    assert_eq!(l.poll_timeout(), Some(Instant::from_millis(400)));
    assert!(l.is_renewing());
}

#[test]
fn transient_renew_failure_is_retried_until_safe_until() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    drain(&mut l);
    l.handle_timeout(&mut r, at(200));
    let c = r.answer(r.last().id, Err(RequestError::Timeout { sent: true }), None);
    l.handle_completion(&c, &mut r, at(500));
    // Still held until safe_until, token kept, and a retry is scheduled.
    assert_eq!(l.token(Instant::from_millis(500)), Ok(tok(1)));
    assert!(drain(&mut l).is_empty());
    let retry_at = l.poll_timeout().unwrap();
    assert!(retry_at > Instant::from_millis(500) && retry_at < Instant::from_millis(900));
    l.handle_timeout(&mut r, at_mono(retry_at));
    assert_eq!(r.count(RequestKind::Set), 3);
    let c = r.answer(r.last().id, Err(RequestError::Unknown), None);
    l.handle_completion(&c, &mut r, at(600));
    let retry_at = l.poll_timeout().unwrap();
    l.handle_timeout(&mut r, at_mono(retry_at));
    let c = r.answer(r.last().id, ok_set(), Some(tok(3)));
    l.handle_completion(&c, &mut r, at(700));
    assert!(matches!(
        drain(&mut l).as_slice(),
        [LeaseEvent::Renewed { token, .. }] if *token == tok(3)
    ));
}

#[test]
fn refused_renewal_is_lost_taken() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    drain(&mut l);
    l.handle_timeout(&mut r, at(200));
    let c = r.answer(r.last().id, refused_set(), Some(tok(7)));
    l.handle_completion(&c, &mut r, at(210));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Lost {
            reason: LostReason::Taken
        }]
    );
    assert_eq!(l.state(Instant::from_millis(211)), LeaseState::Idle);
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn fatal_renewal_error_is_lost_at_once() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    drain(&mut l);
    l.handle_timeout(&mut r, at(200));
    let e = RequestError::Service(crate::command::ServiceError::NotAuthorized);
    let c = r.answer(r.last().id, Err(e.clone()), None);
    l.handle_completion(&c, &mut r, at(210));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Lost {
            reason: LostReason::RequestFailed(e)
        }]
    );
}

#[test]
fn acquire_while_renewing_is_renewing_error() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    assert_eq!(
        l.acquire(DUR, &opts(true), &mut r, at(20)),
        Err(LeaseError::Renewing)
    );
    assert_eq!(
        l.acquire(DUR, &opts(false), &mut r, at(20)),
        Err(LeaseError::Renewing)
    );
}

#[test]
fn acquire_while_acquiring_is_busy() {
    let (mut l, mut r) = setup();
    l.acquire(DUR, &opts(false), &mut r, at(0)).unwrap();
    assert_eq!(
        l.acquire(DUR, &opts(false), &mut r, at(1)),
        Err(LeaseError::Busy)
    );
}

#[test]
fn manual_reacquire_while_held_extends_the_hold() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, false, 1);
    let op = hold(&mut l, &mut r, 500, false, 2);
    assert_eq!(
        drain(&mut l).last(),
        Some(&LeaseEvent::Acquired {
            op,
            token: tok(2),
            safe_until: Instant::from_millis(1400)
        })
    );
}

#[test]
fn config_rules_are_checked() {
    let (mut l, mut r) = setup();
    let mut o = opts(true);
    o.renew = Some(Duration::from_millis(700));
    assert_eq!(
        l.acquire(DUR, &o, &mut r, at(0)),
        Err(LeaseError::InvalidConfig(
            ConfigRule::DurationAboveRenewPlusTimeoutPlusMargin
        ))
    );
    assert_eq!(
        validate(Duration::from_micros(500), &opts(false)),
        Err(ConfigRule::DurationAtLeastOneMs)
    );
    assert_eq!(
        validate(Duration::from_millis(50), &opts(false)),
        Err(ConfigRule::DurationAboveMargin)
    );
    let mut o = opts(false);
    o.timeout = Some(Duration::ZERO);
    assert_eq!(validate(DUR, &o), Err(ConfigRule::TimeoutNonZero));
    let mut o = opts(false);
    o.renew = Some(Duration::ZERO);
    assert_eq!(validate(DUR, &o), Err(ConfigRule::RenewIntervalNonZero));
    let mut o = opts(false);
    o.session_id = Some(String::new());
    assert_eq!(validate(DUR, &o), Err(ConfigRule::SessionIdNonEmpty));
    assert_eq!(
        default_margin(Duration::from_secs(60)),
        Duration::from_secs(3)
    );
    assert_eq!(default_margin(Duration::from_secs(1)), DEFAULT_MIN_MARGIN);
    assert!(r.log.is_empty());
}

#[test]
fn empty_name_is_rejected() {
    assert!(matches!(
        Lease::new(Bytes::new()),
        Err(LeaseError::InvalidArgument(_))
    ));
}

#[test]
fn release_reports_each_vdel_outcome() {
    for (outcome, expected) in [
        (VdelOutcome::Deleted, ReleaseOutcome::Deleted),
        (VdelOutcome::NotFound, ReleaseOutcome::NotFound),
        (VdelOutcome::Mismatch, ReleaseOutcome::HeldByOther),
    ] {
        let (mut l, mut r) = setup();
        hold(&mut l, &mut r, 0, false, 1);
        drain(&mut l);
        let op = l.release(&opts(false), &mut r, at(20)).unwrap();
        let s = r.last();
        assert_eq!(
            s.request,
            Some(Request::Vdel {
                key: Bytes::from_static(NAME),
                value: Bytes::from_static(b"client1")
            })
        );
        assert_eq!(l.state(Instant::from_millis(21)), LeaseState::Releasing);
        assert_eq!(l.token(Instant::from_millis(21)), Err(LeaseError::NoLease));
        let c = r.answer(s.id, vdel(outcome), None);
        l.handle_completion(&c, &mut r, at(30));
        assert_eq!(
            drain(&mut l),
            vec![LeaseEvent::Released {
                op,
                result: Ok(expected)
            }]
        );
        assert_eq!(l.state(Instant::from_millis(31)), LeaseState::Idle);
        assert_eq!(l.poll_timeout(), None);
    }
}

#[test]
fn failed_release_of_a_held_lease_is_maybe_held() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, false, 1);
    let op = l.release(&opts(false), &mut r, at(20)).unwrap();
    let c = r.answer(r.last().id, Err(RequestError::Timeout { sent: true }), None);
    l.handle_completion(&c, &mut r, at(320));
    assert!(drain(&mut l).contains(&LeaseEvent::Released {
        op,
        result: Err(LeaseError::Request(RequestError::Timeout { sent: true }))
    }));
    assert_eq!(l.state(Instant::from_millis(321)), LeaseState::MaybeHeld);
    assert_eq!(l.token(Instant::from_millis(321)), Err(LeaseError::NoLease));
}

#[test]
fn release_while_acquiring_cancels_the_acquire() {
    let (mut l, mut r) = setup();
    let a = l.acquire(DUR, &opts(true), &mut r, at(0)).unwrap();
    let set = r.last();
    l.release(&opts(false), &mut r, at(5)).unwrap();
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::AcquireFailed {
            op: a,
            error: LeaseError::Cancelled
        }]
    );
    // The SET's late success is no hold and starts no renewal.
    let c = r.answer(set.id, ok_set(), Some(tok(1)));
    assert!(l.handle_completion(&c, &mut r, at(8)));
    assert!(drain(&mut l).is_empty());
    assert!(!l.is_renewing());
}

#[test]
fn holder_reports_get() {
    let (mut l, mut r) = setup();
    let op = l
        .holder(Some(Duration::from_secs(1)), &mut r, at(0))
        .unwrap();
    assert_eq!(r.last().kind, RequestKind::Get);
    let c = r.answer(r.last().id, get(Some(b"other")), Some(tok(1)));
    l.handle_completion(&c, &mut r, at(1));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Holder {
            op,
            result: Ok(Some(Bytes::from_static(b"other")))
        }]
    );
}

#[test]
fn get_showing_another_holder_ends_our_hold() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, false, 1);
    drain(&mut l);
    l.holder(None, &mut r, at(20)).unwrap();
    let c = r.answer(r.last().id, get(Some(b"other")), Some(tok(5)));
    l.handle_completion(&c, &mut r, at(30));
    assert_eq!(
        drain(&mut l).first(),
        Some(&LeaseEvent::Lost {
            reason: LostReason::Taken
        })
    );
}

#[test]
fn observe_reports_changes_and_delete_is_free() {
    let (mut l, mut r) = setup();
    let op = l.observe_start(None, &mut r, at(0)).unwrap();
    let s = r.last();
    assert_eq!(s.call, Call::Observe);
    assert_eq!(s.key, Bytes::from_static(NAME));
    let c = r.answer(s.id, Ok(Response::KeyNotify), None);
    l.handle_completion(&c, &mut r, at(1));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::ObserveStarted { op, result: Ok(()) }]
    );
    assert!(l.handle_notification(&note_set(NAME, b"x", tok(1)), at(2)));
    assert!(l.handle_notification(&note_del(NAME, tok(2)), at(3)));
    assert!(!l.handle_notification(&note_del(b"other-key", tok(2)), at(3)));
    assert_eq!(
        drain(&mut l),
        vec![
            LeaseEvent::Change {
                held: true,
                holder: Some(Bytes::from_static(b"x"))
            },
            LeaseEvent::Change {
                held: false,
                holder: None
            }
        ]
    );
    let stop = l.observe_stop(None, &mut r, at(4)).unwrap();
    assert_eq!(r.last().call, Call::Unobserve);
    let c = r.answer(r.last().id, Ok(Response::KeyNotifyStop(true)), None);
    l.handle_completion(&c, &mut r, at(5));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::ObserveStopped {
            op: stop,
            result: Ok(true)
        }]
    );
    assert!(!l.handle_notification(&note_del(NAME, tok(3)), at(6)));
    assert_eq!(
        l.observe_stop(None, &mut r, at(7)),
        Err(LeaseError::NotObserving)
    );
}

#[test]
fn observed_delete_of_our_lease_is_lost_but_stale_one_is_not() {
    let (mut l, mut r) = setup();
    l.observe_start(None, &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, Ok(Response::KeyNotify), None);
    l.handle_completion(&c, &mut r, at(1));
    hold(&mut l, &mut r, 2, false, 10);
    drain(&mut l);
    // A DELETE older than our token (a previous grant's expiry) changes nothing.
    l.handle_notification(&note_del(NAME, tok(5)), at(20));
    assert!(l.token(Instant::from_millis(20)).is_ok());
    l.handle_notification(&note_del(NAME, tok(10)), at(21));
    assert_eq!(
        drain(&mut l)[1],
        LeaseEvent::Lost {
            reason: LostReason::Deleted
        }
    );
}

#[test]
fn failed_observe_start_makes_the_client_forget_the_key() {
    let (mut l, mut r) = setup();
    let op = l.observe_start(None, &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, Err(RequestError::Unknown), None);
    l.handle_completion(&c, &mut r, at(1));
    assert_eq!(r.last().call, Call::Unobserve);
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::ObserveStarted {
            op,
            result: Err(LeaseError::Request(RequestError::Unknown))
        }]
    );
    assert!(!l.is_observing());
    let c = r.answer(r.last().id, Ok(Response::KeyNotifyStop(false)), None);
    assert!(l.handle_completion(&c, &mut r, at(2)));
    assert_eq!(l.outstanding(), 0);
}

#[test]
fn reregistration_gets_the_key_and_reports_a_change() {
    let (mut l, mut r) = setup();
    l.observe_start(None, &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, Ok(Response::KeyNotify), None);
    l.handle_completion(&c, &mut r, at(1));
    drain(&mut l);
    assert!(!l.handle_reregistered(b"other", true, &mut r, at(2)));
    assert!(l.handle_reregistered(NAME, true, &mut r, at(2)));
    let g = r.last();
    assert_eq!(g.kind, RequestKind::Get);
    // A second re-registration while the GET is in flight is coalesced.
    l.handle_reregistered(NAME, true, &mut r, at(3));
    assert_eq!(r.count(RequestKind::Get), 1);
    let c = r.answer(g.id, get(None), None);
    l.handle_completion(&c, &mut r, at(4));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Change {
            held: false,
            holder: None
        }]
    );
    assert_eq!(r.count(RequestKind::Get), 2);
}

/// The re-check GET after a re-registration used the 10 s default, not the caller's timeout.
#[test]
fn reregistration_get_uses_the_observation_timeout() {
    let (mut l, mut r) = setup();
    let timeout = Duration::from_millis(250);
    l.observe_start(Some(timeout), &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, Ok(Response::KeyNotify), None);
    l.handle_completion(&c, &mut r, at(1));
    assert!(l.handle_reregistered(NAME, true, &mut r, at(2)));
    let g = r.last();
    assert_eq!(g.kind, RequestKind::Get);
    assert_eq!(g.options.timeout, Some(timeout));
    // The coalesced second GET too.
    l.handle_reregistered(NAME, true, &mut r, at(3));
    let c = r.answer(g.id, get(None), None);
    l.handle_completion(&c, &mut r, at(4));
    let g2 = r.last();
    assert_eq!(
        (g2.kind, g2.options.timeout),
        (RequestKind::Get, Some(timeout))
    );
    assert_ne!(g2.id, g.id);
}

#[test]
fn reconnect_retries_a_failed_renewal_at_once() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    l.handle_timeout(&mut r, at(200));
    let c = r.answer(r.last().id, Err(RequestError::Unknown), None);
    l.handle_completion(&c, &mut r, at(210));
    assert_eq!(r.count(RequestKind::Set), 2);
    l.handle_connected(&mut r, at(220));
    assert_eq!(r.count(RequestKind::Set), 3);
    assert_eq!(r.last().at, at(220));
}

#[test]
fn synchronous_request_errors_change_nothing() {
    let (mut l, mut r) = setup();
    r.fail_next = Some(RequestError::Busy);
    assert_eq!(
        l.acquire(DUR, &opts(false), &mut r, at(0)),
        Err(LeaseError::Request(RequestError::Busy))
    );
    assert_eq!(l.state(Instant::ZERO), LeaseState::Idle);
    assert_eq!(l.outstanding(), 0);
}

// ---- Regression tests, one per official-client bug of docs/protocol.md §12 that applies to us.
// ----

/// Go 1 / .NET 3: renewals must stop at release.
#[test]
fn renew_after_release() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    drain(&mut l);
    let op = l.release(&opts(false), &mut r, at(100)).unwrap();
    let c = r.answer(r.last().id, vdel(VdelOutcome::Deleted), None);
    l.handle_completion(&c, &mut r, at(110));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Released {
            op,
            result: Ok(ReleaseOutcome::Deleted)
        }]
    );
    for t in (200..5000).step_by(100) {
        l.handle_timeout(&mut r, at(t));
    }
    assert_eq!(r.count(RequestKind::Set), 1);
    assert!(drain(&mut l).is_empty());
    assert_eq!(l.poll_timeout(), None);
}

/// Rust 1: no renewal task after a failed acquire.
#[test]
fn renew_not_started_after_failed_acquire() {
    for result in [
        refused_set(),
        Err(RequestError::Timeout { sent: true }),
        Err(RequestError::Service(
            crate::command::ServiceError::NotAuthorized,
        )),
    ] {
        let (mut l, mut r) = setup();
        l.acquire(DUR, &opts(true), &mut r, at(0)).unwrap();
        let c = r.answer(r.last().id, result, Some(tok(1)));
        l.handle_completion(&c, &mut r, at(10));
        for t in (100..5000).step_by(50) {
            l.handle_timeout(&mut r, at(t));
        }
        assert_eq!(r.count(RequestKind::Set), 1);
        assert!(!l.is_renewing());
    }
}

/// Rust 2 / Go 7: a release during an in-flight renewal must stop renewing for good.
#[test]
fn no_lost_wakeup_on_release_during_renew() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    drain(&mut l);
    l.handle_timeout(&mut r, at(200));
    let renew = r.last();
    assert_eq!(renew.kind, RequestKind::Set);
    let op = l.release(&opts(false), &mut r, at(205)).unwrap();
    let vdel_req = r.last();
    // The VDEL answers first, then the renewal that the store ran after it succeeds.
    let c = r.answer(vdel_req.id, vdel(VdelOutcome::Deleted), None);
    l.handle_completion(&c, &mut r, at(210));
    let c = r.answer(renew.id, ok_set(), Some(tok(2)));
    assert!(l.handle_completion(&c, &mut r, at(215)));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Released {
            op,
            result: Ok(ReleaseOutcome::Deleted)
        }]
    );
    assert!(l.token(Instant::from_millis(215)).is_err());
    // The late renewal is deleted again, and nothing renews afterwards.
    assert_eq!(r.last().kind, RequestKind::Vdel);
    assert_eq!(r.count(RequestKind::Vdel), 2);
    let c = r.answer(r.last().id, vdel(VdelOutcome::Deleted), None);
    l.handle_completion(&c, &mut r, at(220));
    for t in (300..5000).step_by(100) {
        l.handle_timeout(&mut r, at(t));
    }
    assert_eq!(r.count(RequestKind::Set), 2);
    assert_eq!(l.outstanding(), 0);
    assert_eq!(l.poll_timeout(), None);
}

/// Rust 3 / Go 2: the token must not outlive a failed renewal.
#[test]
fn token_cleared_after_failed_renew() {
    // A definitive failure clears it at once.
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    l.handle_timeout(&mut r, at(200));
    let c = r.answer(r.last().id, refused_set(), None);
    l.handle_completion(&c, &mut r, at(210));
    assert_eq!(
        l.token(Instant::from_millis(210)),
        Err(LeaseError::Lost(LostReason::Taken))
    );
    // A new acquire with renew is not refused as `Renewing` (Go 2).
    assert!(l.acquire(DUR, &opts(true), &mut r, at(220)).is_ok());

    // Transient failures keep it only while it is safe, then clear it.
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    let mut t = 200;
    while t < 900 {
        l.handle_timeout(&mut r, at(t));
        if let Some(s) = r
            .open_sent()
            .into_iter()
            .find(|s| s.kind == RequestKind::Set)
        {
            let c = r.answer(s.id, Err(RequestError::Timeout { sent: false }), None);
            l.handle_completion(&c, &mut r, at(t));
        }
        assert_eq!(l.token(Instant::from_millis(t)), Ok(tok(1)));
        t += 10;
    }
    assert!(r.count(RequestKind::Set) > 3);
    l.handle_timeout(&mut r, at(900));
    assert_eq!(
        l.token(Instant::from_millis(900)),
        Err(LeaseError::Lost(LostReason::Expired))
    );
}

/// .NET 2: renewals carry the session id.
#[test]
fn session_id_kept_on_renew() {
    let (mut l, mut r) = setup();
    let mut o = opts(true);
    o.session_id = Some(String::from("s1"));
    l.acquire(DUR, &o, &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(1)));
    l.handle_completion(&c, &mut r, at(10));
    for t in [200, 400, 600] {
        l.handle_timeout(&mut r, at(t));
        let s = r.last();
        assert_eq!(s.value(), Some(&Bytes::from_static(b"client1:s1")));
        assert_eq!(s.px(), Some(1000));
        let c = r.answer(s.id, ok_set(), Some(tok(t)));
        l.handle_completion(&c, &mut r, at(t + 5));
    }
    // Release uses the same holder without being told the session again.
    l.release(&opts(false), &mut r, at(700)).unwrap();
    assert_eq!(r.last().value(), Some(&Bytes::from_static(b"client1:s1")));
}

// ---- Property test: arbitrary input sequences against the safety rules. ----

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        renew: bool,
        session: bool,
    },
    Release,
    Holder,
    ObserveStart,
    ObserveStop,
    Advance(u16),
    Reply {
        pick: u8,
        kind: u8,
        version: u8,
    },
    Notify {
        delete: bool,
        ours: bool,
        version: u8,
    },
    Connected,
    Disconnected,
    Reregistered,
    FailNext(bool),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), any::<bool>()).prop_map(|(renew, session)| Op::Acquire { renew, session }),
        Just(Op::Release),
        Just(Op::Holder),
        Just(Op::ObserveStart),
        Just(Op::ObserveStop),
        (0u16..1500).prop_map(Op::Advance),
        (0u16..1500).prop_map(Op::Advance),
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(pick, kind, version)| Op::Reply {
            pick,
            kind,
            version
        }),
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(pick, kind, version)| Op::Reply {
            pick,
            kind,
            version
        }),
        (any::<bool>(), any::<bool>(), any::<u8>()).prop_map(|(delete, ours, version)| {
            Op::Notify {
                delete,
                ours,
                version,
            }
        }),
        Just(Op::Connected),
        Just(Op::Disconnected),
        Just(Op::Reregistered),
        any::<bool>().prop_map(Op::FailNext),
    ]
}

fn any_error(k: u8) -> RequestError {
    match k % 8 {
        0 => RequestError::Timeout { sent: true },
        1 => RequestError::Timeout { sent: false },
        2 => RequestError::Unknown,
        3 => RequestError::Busy,
        4 => RequestError::Service(crate::command::ServiceError::NotAuthorized),
        5 => RequestError::Status {
            status: 503,
            message: None,
        },
        6 => RequestError::ClockDrift,
        _ => RequestError::BadReply,
    }
}

fn any_reply(
    s: &Sent,
    kind: u8,
    version: Option<Hlc>,
) -> (Result<Response, RequestError>, Option<Hlc>) {
    if kind.is_multiple_of(4) {
        return (Err(any_error(kind / 4)), None);
    }
    let k = kind / 4;
    let result = match s.kind {
        RequestKind::Set => match k % 4 {
            0 | 1 => ok_set(),
            2 => refused_set(),
            _ => Ok(Response::Get(None)),
        },
        RequestKind::Vdel => match k % 4 {
            0 => vdel(VdelOutcome::Deleted),
            1 => vdel(VdelOutcome::NotFound),
            2 => vdel(VdelOutcome::Mismatch),
            _ => Ok(Response::Del(1)),
        },
        RequestKind::Get => match k % 3 {
            0 => get(None),
            1 => get(Some(b"client1")),
            _ => get(Some(b"other")),
        },
        RequestKind::KeyNotify => Ok(Response::KeyNotify),
        RequestKind::KeyNotifyStop => Ok(Response::KeyNotifyStop(k.is_multiple_of(2))),
        RequestKind::Del => Ok(Response::Del(0)),
    };
    // Sometimes a success comes without a version.
    let version = if k % 5 == 4 { None } else { version };
    (result, version)
}

/// What the test knows: for each SET answered `+OK` with a version, the latest instant the
/// safety rule allows holding on its account.
#[derive(Default)]
struct Checker {
    justified: Vec<(Hlc, Instant)>,
    term_open: bool,
    pending_ops: Vec<OpId>,
}

impl Checker {
    fn op(&mut self, op: Result<OpId, LeaseError>) {
        if let Ok(op) = op {
            assert!(!self.pending_ops.contains(&op));
            self.pending_ops.push(op);
        }
    }

    fn answered(&mut self, op: OpId) {
        let before = self.pending_ops.len();
        self.pending_ops.retain(|o| *o != op);
        assert_eq!(
            before,
            self.pending_ops.len() + 1,
            "op {op:?} answered twice or unknown"
        );
    }

    fn events(&mut self, l: &mut Lease) {
        while let Some(ev) = l.poll_event() {
            match ev {
                LeaseEvent::Acquired { op, .. } => {
                    self.answered(op);
                    self.term_open = true;
                }
                LeaseEvent::Renewed { .. } => assert!(self.term_open, "Renewed outside a term"),
                LeaseEvent::Lost { .. } => {
                    assert!(self.term_open, "Lost without Acquired");
                    self.term_open = false;
                }
                LeaseEvent::NotAcquired { op }
                | LeaseEvent::AcquireFailed { op, .. }
                | LeaseEvent::Released { op, .. }
                | LeaseEvent::Holder { op, .. }
                | LeaseEvent::ObserveStarted { op, .. }
                | LeaseEvent::ObserveStopped { op, .. } => self.answered(op),
                LeaseEvent::Change { .. } => {}
            }
        }
    }

    fn safety(&self, l: &Lease, now: Instant) {
        match l.state(now) {
            LeaseState::Held { token, safe_until } => {
                assert!(now < safe_until, "held after safe_until");
                assert!(
                    self.justified
                        .iter()
                        .any(|(t, until)| *t == token && safe_until <= *until),
                    "held without a successful SET justifying {safe_until:?}"
                );
                assert_eq!(l.token(now), Ok(token));
                assert!(self.term_open);
            }
            _ => assert!(l.token(now).is_err()),
        }
    }
}

fn run(ops: Vec<Op>) {
    let (mut l, mut r) = setup();
    let mut ck = Checker::default();
    let mut t: u64 = 0;
    let mut versions: u64 = 0;
    for op in ops {
        let now = at(t);
        match op {
            Op::Acquire { renew, session } => {
                let mut o = opts(renew);
                o.session_id = session.then(|| String::from("s"));
                ck.op(l.acquire(DUR, &o, &mut r, now));
            }
            Op::Release => {
                if l.state(now.mono) != LeaseState::Releasing {
                    // Release clears the token: the term ends without Lost.
                    let res = l.release(&opts(false), &mut r, now);
                    if !matches!(res, Err(LeaseError::Busy)) {
                        ck.events(&mut l);
                        ck.term_open = false;
                    }
                    ck.op(res);
                }
            }
            Op::Holder => ck.op(l.holder(None, &mut r, now)),
            Op::ObserveStart => ck.op(l.observe_start(None, &mut r, now)),
            Op::ObserveStop => ck.op(l.observe_stop(None, &mut r, now)),
            Op::Advance(ms) => {
                t += u64::from(ms);
                let now = at(t);
                // Deliver every due timeout, the way a driver would; a timer that fires without
                // moving on fails here instead of hanging the test.
                let mut fired = 0u32;
                while let Some(due) = l.poll_timeout() {
                    if due > now.mono {
                        break;
                    }
                    fired += 1;
                    assert!(
                        fired < 1_000,
                        "a timer keeps firing at {due:?} without moving on"
                    );
                    l.handle_timeout(&mut r, at_mono(due));
                    ck.events(&mut l);
                    ck.safety(&l, due);
                }
                l.handle_timeout(&mut r, now);
            }
            Op::Reply {
                pick,
                kind,
                version,
            } => {
                let open = r.open_sent();
                if !open.is_empty() {
                    let s = open[usize::from(pick) % open.len()].clone();
                    versions += 1 + u64::from(version % 3);
                    let (result, v) = any_reply(&s, kind, Some(tok(versions)));
                    if s.kind == RequestKind::Set && result == ok_set() && v.is_some() {
                        let px = Duration::from_millis(s.px().unwrap_or(0));
                        ck.justified
                            .push((tok(versions), (s.at.mono + px) - MARGIN));
                    }
                    let c = r.answer(s.id, result, v);
                    assert!(l.handle_completion(&c, &mut r, now));
                }
            }
            Op::Notify {
                delete,
                ours,
                version,
            } => {
                let v = tok(versions + u64::from(version % 4));
                let n = if delete {
                    note_del(NAME, v)
                } else if ours {
                    note_set(NAME, b"client1", v)
                } else {
                    note_set(NAME, b"other", v)
                };
                l.handle_notification(&n, now);
            }
            Op::Connected => l.handle_connected(&mut r, now),
            Op::Disconnected => l.handle_disconnected(now),
            Op::Reregistered => {
                l.handle_reregistered(NAME, true, &mut r, now);
            }
            Op::FailNext(busy) => {
                r.fail_next = Some(if busy {
                    RequestError::Busy
                } else {
                    RequestError::Timeout { sent: false }
                });
            }
        }
        ck.events(&mut l);
        ck.safety(&l, at(t).mono);
        assert_eq!(
            l.outstanding(),
            r.open.len(),
            "outstanding requests disagree"
        );
    }

    // Settle: stop everything, answer everything, let all timers run out.
    r.fail_next = None;
    if l.is_observing() {
        ck.op(l.observe_stop(None, &mut r, at(t)));
    }
    if l.state(at(t).mono) != LeaseState::Releasing {
        ck.op(l.release(&opts(false), &mut r, at(t)));
        ck.term_open = false;
    }
    // Answer everything, let the timers run (a final KEYNOTIFY STOP may follow), repeat.
    for _ in 0..4 {
        for _ in 0..20 {
            ck.events(&mut l);
            let open = r.open_sent();
            if open.is_empty() {
                break;
            }
            for s in open {
                let result = match s.kind {
                    RequestKind::Set => refused_set(),
                    RequestKind::Vdel => vdel(VdelOutcome::NotFound),
                    RequestKind::Get => get(None),
                    RequestKind::KeyNotify => Ok(Response::KeyNotify),
                    _ => Ok(Response::KeyNotifyStop(true)),
                };
                let c = r.answer(s.id, result, None);
                assert!(l.handle_completion(&c, &mut r, at(t)));
            }
        }
        ck.events(&mut l);
        t += 3_600_000;
        l.handle_timeout(&mut r, at(t));
        ck.events(&mut l);
    }
    assert_eq!(l.outstanding(), 0, "leaked request ids");
    assert!(r.open.is_empty());
    assert_eq!(l.poll_timeout(), None, "leaked timer");
    assert_eq!(l.state(at(t).mono), LeaseState::Idle);
    assert!(
        ck.pending_ops.is_empty(),
        "unanswered ops {:?}",
        ck.pending_ops
    );
}

proptest! {
    #[test]
    fn lease_machine_is_safe_under_arbitrary_inputs(ops in proptest::collection::vec(op_strategy(), 0..60)) {
        run(ops);
    }
}

// Regression tests for the simulator's findings (issue 3 follow-up).

fn timed_out() -> Result<Response, RequestError> {
    Err(RequestError::Timeout { sent: true })
}

/// Sim finding 1: a release VDEL that timed out could land after the same client re-acquired
/// (same holder value) and delete the new grant while we believed we held it.
#[test]
fn late_release_vdel_blocks_reacquire_until_it_can_no_longer_land() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, false, 1);
    l.release(&opts(false), &mut r, at(100)).unwrap();
    let v = r.last_of(RequestKind::Vdel);
    // Timeout 300 ms after sending: it may still be applied until 400 + 1 s + slack.
    let c = r.answer(v.id, timed_out(), None);
    assert!(l.handle_completion(&c, &mut r, at(400)));
    drain(&mut l);
    let until = Instant::from_millis(1_500);
    assert_eq!(
        l.acquire(DUR, &opts(false), &mut r, at(450)),
        Err(LeaseError::ReleasePending { until })
    );
    assert_eq!(
        r.count(RequestKind::Set),
        1,
        "no SET while the VDEL may land"
    );
    assert!(LeaseError::ReleasePending { until }.is_transient());
    l.acquire(DUR, &opts(false), &mut r, at(1_500)).unwrap();
    assert_eq!(r.count(RequestKind::Set), 2);
}

/// Holds, lets the renewal leave at 200 ms, releases at 210 (abandoning the renewal), and
/// answers the release; the abandoned renewal is then applied at 230, after the VDEL, so a
/// cleanup VDEL goes out (sent at 230, left unanswered).
fn abandoned_renewal_applied_after_release() -> (Lease, FakeRequester) {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, true, 1);
    l.handle_timeout(&mut r, at(200));
    let renew = r.last_of(RequestKind::Set);
    l.release(&opts(false), &mut r, at(210)).unwrap();
    let v = r.last_of(RequestKind::Vdel);
    let c = r.answer(v.id, vdel(VdelOutcome::Deleted), None);
    l.handle_completion(&c, &mut r, at(220));
    let c = r.answer(renew.id, ok_set(), Some(tok(2)));
    l.handle_completion(&c, &mut r, at(230));
    assert_eq!(r.count(RequestKind::Vdel), 2, "a cleanup VDEL follows");
    (l, r)
}

/// A cleanup VDEL (after an abandoned renewal succeeded) blocks re-acquiring while in flight.
#[test]
fn cleanup_vdel_in_flight_blocks_reacquire() {
    let (mut l, mut r) = abandoned_renewal_applied_after_release();
    assert!(matches!(
        l.acquire(DUR, &opts(false), &mut r, at(240)),
        Err(LeaseError::ReleasePending { .. })
    ));
    // Answered: nothing can land any more.
    let cleanup = r.last_of(RequestKind::Vdel);
    let c = r.answer(cleanup.id, vdel(VdelOutcome::Deleted), None);
    l.handle_completion(&c, &mut r, at(250));
    l.acquire(DUR, &opts(false), &mut r, at(260)).unwrap();
}

/// An abandoned VDEL whose reply never comes stops blocking once it is past its apply bound:
/// it can no longer land. Counting it refused every acquire with an `until` in the past, and
/// the lock machine, retrying at that `until`, spun on one instant (found by the lock
/// proptest in CI).
#[test]
fn unanswered_vdel_past_its_apply_bound_no_longer_blocks() {
    let (mut l, mut r) = abandoned_renewal_applied_after_release();
    let cleanup = r.last_of(RequestKind::Vdel);
    // Sent at 230 with a 300 ms timeout: it may land until 530 + 1 s + slack.
    let until = match l.acquire(DUR, &opts(false), &mut r, at(240)) {
        Err(LeaseError::ReleasePending { until }) => until,
        other => panic!("{other:?}"),
    };
    assert!(until > Instant::from_millis(530), "{until:?}");
    // Never answered, and past that bound: the acquire goes out.
    l.acquire(DUR, &opts(false), &mut r, at_mono(until))
        .unwrap();
    assert!(r.open_sent().iter().any(|s| s.id == cleanup.id));
}

/// A reconnect may publish a copy of an answered release again: a grant made since is lost,
/// since that copy would delete it.
#[test]
fn release_republished_after_reconnect_loses_the_new_grant() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, false, 1);
    l.release(&opts(false), &mut r, at(100)).unwrap();
    let v = r.last_of(RequestKind::Vdel);
    let c = r.answer(v.id, vdel(VdelOutcome::Deleted), None);
    l.handle_completion(&c, &mut r, at(110));
    hold(&mut l, &mut r, 120, false, 2);
    drain(&mut l);
    l.handle_disconnected(at(200));
    l.handle_connected(&mut r, at(300));
    assert_eq!(
        drain(&mut l),
        vec![LeaseEvent::Lost {
            reason: LostReason::ReleaseInDoubt
        }]
    );
    assert!(matches!(
        l.acquire(DUR, &opts(false), &mut r, at(310)),
        Err(LeaseError::ReleasePending { .. })
    ));
    // Once every copy is past its expiry, a drop and reconnect expose nothing.
    l.handle_disconnected(at(5_000));
    l.handle_connected(&mut r, at(5_100));
    l.acquire(DUR, &opts(false), &mut r, at(5_200)).unwrap();
}

/// Sim finding 2: a KEYNOTIFY that timed out was applied after the STOP that followed it, and
/// the store kept the registration for good.
#[test]
fn keynotify_that_may_land_after_its_stop_gets_another_stop() {
    let (mut l, mut r) = setup();
    l.observe_start(Some(Duration::from_millis(300)), &mut r, at(0))
        .unwrap();
    let kn = r.last();
    let c = r.answer(kn.id, timed_out(), None);
    l.handle_completion(&c, &mut r, at(300));
    assert_eq!(r.count(RequestKind::KeyNotifyStop), 1);
    let first = r.last();
    let c = r.answer(first.id, Ok(Response::KeyNotifyStop(false)), None);
    l.handle_completion(&c, &mut r, at(310));
    // The KEYNOTIFY may be applied until 300 + 1 s + slack: then one more STOP.
    assert_eq!(l.poll_timeout(), Some(Instant::from_millis(1_400)));
    l.handle_timeout(&mut r, at(1_400));
    assert_eq!(r.count(RequestKind::KeyNotifyStop), 2);
    let sweep = r.last();
    let c = r.answer(sweep.id, Ok(Response::KeyNotifyStop(true)), None);
    assert!(l.handle_completion(&c, &mut r, at(1_410)));
    assert_eq!(l.poll_timeout(), None);
    assert_eq!(l.outstanding(), 0);
}

/// A STOP lost on the way (timeout after sending) is repeated until the store answers it.
#[test]
fn lost_stop_is_repeated_until_answered() {
    let (mut l, mut r) = setup();
    l.observe_start(None, &mut r, at(0)).unwrap();
    let kn = r.last();
    let c = r.answer(kn.id, Ok(Response::KeyNotify), None);
    l.handle_completion(&c, &mut r, at(10));
    drain(&mut l);
    l.observe_stop(Some(Duration::from_millis(300)), &mut r, at(20))
        .unwrap();
    let stop = r.last();
    let c = r.answer(stop.id, timed_out(), None);
    l.handle_completion(&c, &mut r, at(320));
    let retry = l.poll_timeout().expect("the STOP is retried");
    l.handle_timeout(&mut r, at_mono(retry));
    assert_eq!(r.count(RequestKind::KeyNotifyStop), 2);
    let again = r.last();
    let c = r.answer(again.id, Ok(Response::KeyNotifyStop(true)), None);
    l.handle_completion(&c, &mut r, at_mono(retry));
    assert_eq!(l.poll_timeout(), None);
}

/// A STOP that never reaches the store is repeated a bounded number of times: the client
/// re-sends a STOP that may be lost by itself, and an endless repeat would keep the machine
/// of a dropped handle alive for as long as the store is unreachable.
#[test]
fn a_stop_that_keeps_failing_is_repeated_a_bounded_number_of_times() {
    let (mut l, mut r) = setup();
    l.observe_start(None, &mut r, at(0)).unwrap();
    let kn = r.last();
    let c = r.answer(kn.id, Ok(Response::KeyNotify), None);
    l.handle_completion(&c, &mut r, at(10));
    l.observe_stop(Some(Duration::from_millis(300)), &mut r, at(20))
        .unwrap();
    let mut now = at(320);
    loop {
        let stop = r.last();
        assert_eq!(stop.kind, RequestKind::KeyNotifyStop);
        let c = r.answer(stop.id, timed_out(), None);
        l.handle_completion(&c, &mut r, now);
        let Some(retry) = l.poll_timeout() else { break };
        l.handle_timeout(&mut r, at_mono(retry));
        now = at_mono(retry + Duration::from_millis(300));
    }
    assert_eq!(
        r.count(RequestKind::KeyNotifyStop),
        usize::from(SWEEP_ATTEMPTS)
    );
    assert!(!l.unregistration_pending());
    assert_eq!(l.outstanding(), 0);
}

/// Observing again cancels a pending final STOP: it would remove the new registration.
#[test]
fn observing_again_cancels_the_final_stop() {
    let (mut l, mut r) = setup();
    l.observe_start(Some(Duration::from_millis(300)), &mut r, at(0))
        .unwrap();
    let kn = r.last();
    let c = r.answer(kn.id, timed_out(), None);
    l.handle_completion(&c, &mut r, at(300));
    l.observe_start(None, &mut r, at(400)).unwrap();
    l.handle_timeout(&mut r, at(10_000));
    assert_eq!(r.count(RequestKind::KeyNotifyStop), 1);
}

fn held_until(l: &Lease, t: u64) -> Option<Instant> {
    match l.state(Instant::from_millis(t)) {
        LeaseState::Held { safe_until, .. } => Some(safe_until),
        _ => None,
    }
}

/// A re-acquire with a shorter duration, sent while held, shortens the store's TTL as soon as
/// it runs, and its outcome may never be known. `safe_until` follows it from the moment it is
/// sent, stays there after a timeout, and caps a grant made while it may still land (from the
/// earliest instant it could land); once it can no longer land, grants are full again.
#[test]
fn shorter_reacquire_with_unknown_outcome_caps_safe_until() {
    let (mut l, mut r) = setup();
    let long = Duration::from_secs(10);
    let o = opts(false);
    l.acquire(long, &o, &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(1)));
    l.handle_completion(&c, &mut r, at(10));
    assert_eq!(held_until(&l, 10), Some(Instant::from_millis(9_900)));
    drain(&mut l);

    l.acquire(DUR, &o, &mut r, at(1_000)).unwrap();
    let short = r.last();
    assert_eq!(short.px(), Some(1_000));
    // It may run right away: the store's TTL would then end at 2 000 at the earliest.
    assert_eq!(held_until(&l, 1_001), Some(Instant::from_millis(1_900)));
    let c = r.answer(short.id, Err(RequestError::Timeout { sent: true }), None);
    l.handle_completion(&c, &mut r, at(1_300));
    assert_eq!(held_until(&l, 1_300), Some(Instant::from_millis(1_900)));

    // It may land until 1 300 + 1 s expiry + slack = 2 400: a long grant issued before then is
    // capped at its issue time + 900.
    l.acquire(long, &o, &mut r, at(1_400)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(2)));
    l.handle_completion(&c, &mut r, at(1_410));
    assert_eq!(held_until(&l, 1_410), Some(Instant::from_millis(2_300)));
    l.acquire(long, &o, &mut r, at(2_000)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(3)));
    l.handle_completion(&c, &mut r, at(2_010));
    assert_eq!(held_until(&l, 2_010), Some(Instant::from_millis(2_900)));
    // From 2 400 on it cannot land any more.
    l.acquire(long, &o, &mut r, at(2_500)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(4)));
    l.handle_completion(&c, &mut r, at(2_510));
    assert_eq!(held_until(&l, 2_510), Some(Instant::from_millis(12_400)));
}

/// Without a reply, the shorter SET still ends the hold at its own bound.
#[test]
fn shorter_reacquire_without_reply_ends_the_hold_at_its_bound() {
    let (mut l, mut r) = setup();
    let long = Duration::from_secs(10);
    l.acquire(long, &opts(false), &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(1)));
    l.handle_completion(&c, &mut r, at(10));
    drain(&mut l);
    l.acquire(DUR, &opts(false), &mut r, at(1_000)).unwrap();
    assert_eq!(l.poll_timeout(), Some(Instant::from_millis(1_900)));
    l.handle_timeout(&mut r, at(1_900));
    assert_eq!(
        drain(&mut l),
        [LeaseEvent::Lost {
            reason: LostReason::Expired
        }]
    );
    assert!(l.token(Instant::from_millis(1_900)).is_err());
}

/// A SET of ours that may be published again by a reconnect lands from the reconnect on: a
/// grant held then is capped at reconnect + the shortest such duration − margin.
#[test]
fn reconnect_republishing_a_shorter_set_caps_the_grant() {
    let (mut l, mut r) = setup();
    let long = Duration::from_secs(10);
    let o = opts(false);
    l.acquire(long, &o, &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(1)));
    l.handle_completion(&c, &mut r, at(10));
    l.acquire(DUR, &o, &mut r, at(100)).unwrap();
    let short = r.last();
    l.handle_disconnected(at(150));
    let c = r.answer(short.id, Err(RequestError::Unknown), None);
    l.handle_completion(&c, &mut r, at(160));
    // A long grant made well after the short SET's bound...
    l.handle_connected(&mut r, at(200));
    l.acquire(long, &o, &mut r, at(3_000)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(2)));
    l.handle_completion(&c, &mut r, at(3_010));
    assert_eq!(held_until(&l, 3_010), Some(Instant::from_millis(12_900)));
    // ...is capped when a reconnect may publish the short SET again (it was exposed at the
    // drop before): nothing of this connection was exposed at this drop, so no cap.
    l.handle_disconnected(at(3_100));
    l.handle_connected(&mut r, at(3_200));
    assert_eq!(held_until(&l, 3_200), Some(Instant::from_millis(12_900)));
    // A drop while the short SET's copy (re-exposed at 200 until 1 300 + slack) was out.
    let (mut l, mut r) = setup();
    l.acquire(long, &o, &mut r, at(0)).unwrap();
    let c = r.answer(r.last().id, ok_set(), Some(tok(1)));
    l.handle_completion(&c, &mut r, at(10));
    l.acquire(DUR, &o, &mut r, at(100)).unwrap();
    let short = r.last();
    let c = r.answer(short.id, Err(RequestError::Unknown), None);
    l.handle_completion(&c, &mut r, at(160));
    l.handle_disconnected(at(170));
    l.handle_connected(&mut r, at(180));
    assert_eq!(held_until(&l, 180), Some(Instant::from_millis(1_000)));
}

fn wall_step(l: &mut Lease, r: &mut FakeRequester, mono_ms: u64, wall_ms: u64) {
    l.handle_timeout(
        r,
        Now::new(Instant::from_millis(mono_ms), 1_700_000_000_000 + wall_ms),
    );
}

/// The monotonic clock stood still (suspend, frozen VM) while the wall clock went on: the
/// store's TTL ran out unseen, so the grant ends as `Lost` with its own reason.
#[test]
fn wall_clock_jump_beyond_the_margin_loses_the_grant() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, false, 1);
    drain(&mut l);
    // 100 ms on the monotonic clock, 5 s on the wall clock.
    wall_step(&mut l, &mut r, 110, 5_110);
    assert_eq!(
        drain(&mut l),
        [LeaseEvent::Lost {
            reason: LostReason::ClockJump {
                wall: Duration::from_millis(5_100),
                mono: Duration::from_millis(100),
            }
        }]
    );
    assert!(l.token(Instant::from_millis(110)).is_err());
}

/// Slewing, small steps within the margin and backward steps keep the grant.
#[test]
fn small_wall_clock_steps_keep_the_grant() {
    let (mut l, mut r) = setup();
    hold(&mut l, &mut r, 0, false, 1);
    drain(&mut l);
    // 101 ms ahead of the monotonic clock over 10 ms: margin (100 ms) + resolution (1 ms).
    wall_step(&mut l, &mut r, 20, 121);
    wall_step(&mut l, &mut r, 30, 20);
    wall_step(&mut l, &mut r, 400, 395);
    wall_step(&mut l, &mut r, 800, 800);
    assert!(drain(&mut l).is_empty());
    assert_eq!(l.token(Instant::from_millis(800)), Ok(tok(1)));
    // One millisecond more is a jump.
    wall_step(&mut l, &mut r, 810, 912);
    assert!(matches!(
        drain(&mut l).as_slice(),
        [LeaseEvent::Lost {
            reason: LostReason::ClockJump { .. }
        }]
    ));
}

proptest! {
    /// Between two inputs the wall clock moves by the monotonic step plus `extra` ms: the grant
    /// is lost exactly when some `extra` exceeds margin + resolution (101 ms).
    #[test]
    fn only_wall_jumps_beyond_the_margin_lose_the_grant(
        steps in proptest::collection::vec((0u64..400, -300i64..300), 1..20),
    ) {
        let (mut l, mut r) = setup();
        let long = Duration::from_secs(30);
        l.acquire(long, &opts(false), &mut r, at(0)).unwrap();
        let c = r.answer(r.last().id, ok_set(), Some(tok(1)));
        l.handle_completion(&c, &mut r, at(0));
        drain(&mut l);
        let (mut mono, mut wall) = (0u64, 1_700_000_000_000i64);
        let mut jumped = false;
        for (step, extra) in steps {
            mono += step;
            wall += i64::try_from(step).unwrap() + extra;
            jumped |= extra > 101;
            l.handle_timeout(&mut r, Now::new(Instant::from_millis(mono), u64::try_from(wall).unwrap()));
            let lost = drain(&mut l).iter().any(|e| matches!(e, LeaseEvent::Lost { reason: LostReason::ClockJump { .. } }));
            prop_assert_eq!(lost, jumped);
            prop_assert_eq!(l.token(Instant::from_millis(mono)).is_ok(), !jumped);
            if jumped {
                break;
            }
        }
    }
}
