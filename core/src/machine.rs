//! Routing inputs from the state-store client to lease, lock, edit and leader machines.
//!
//! Every machine has the same inputs; [`Machine`] names them object-safely so an adapter can
//! keep a heterogeneous list and use the `route_*` helpers:
//! - a completion goes to the first machine that owns its request id;
//! - a notification, a reconnect or a re-registration goes to every machine (several machines
//!   may watch one key);
//! - timeouts go to every machine whose deadline has come.

use crate::client::{Completion, Notification, Requester};
use crate::edit::Edit;
use crate::leader::Leader;
use crate::lease::Lease;
use crate::lock::Lock;
use crate::time::{Instant, Now};

/// The inputs every machine takes, in object-safe form.
pub trait Machine {
    /// A completion; returns whether it answered one of this machine's requests.
    fn on_completion(&mut self, c: &Completion, r: &mut dyn Requester, now: Now) -> bool;
    /// A key notification; returns whether this machine cared.
    fn on_notification(&mut self, n: &Notification, r: &mut dyn Requester, now: Now) -> bool;
    /// The connection is up again.
    fn on_connected(&mut self, r: &mut dyn Requester, now: Now);
    /// The connection dropped. Drivers should report it: requests on their way may be
    /// published again at the reconnect, and the machines bound that more tightly when they
    /// know when the drop happened.
    fn on_disconnected(&mut self, now: Now);
    /// The client re-registered `key`; returns whether this machine cared.
    fn on_reregistered(&mut self, key: &[u8], ok: bool, r: &mut dyn Requester, now: Now) -> bool;
    /// Time passed.
    fn on_timeout(&mut self, r: &mut dyn Requester, now: Now);
    /// The earliest deadline.
    fn next_timeout(&self) -> Option<Instant>;
}

macro_rules! impl_machine {
    ($t:ty) => {
        impl Machine for $t {
            fn on_completion(&mut self, c: &Completion, r: &mut dyn Requester, now: Now) -> bool {
                self.handle_completion(c, r, now)
            }
            fn on_notification(
                &mut self,
                n: &Notification,
                r: &mut dyn Requester,
                now: Now,
            ) -> bool {
                self.notification(n, r, now)
            }
            fn on_connected(&mut self, r: &mut dyn Requester, now: Now) {
                self.handle_connected(r, now)
            }
            fn on_disconnected(&mut self, now: Now) {
                self.handle_disconnected(now)
            }
            fn on_reregistered(
                &mut self,
                key: &[u8],
                ok: bool,
                r: &mut dyn Requester,
                now: Now,
            ) -> bool {
                self.handle_reregistered(key, ok, r, now)
            }
            fn on_timeout(&mut self, r: &mut dyn Requester, now: Now) {
                self.handle_timeout(r, now)
            }
            fn next_timeout(&self) -> Option<Instant> {
                self.poll_timeout()
            }
        }
    };
}

/// Uniform notification entry point (the lease needs no requester for it).
trait NotificationInput {
    fn notification(&mut self, n: &Notification, r: &mut dyn Requester, now: Now) -> bool;
}

impl NotificationInput for Lease {
    fn notification(&mut self, n: &Notification, _r: &mut dyn Requester, now: Now) -> bool {
        self.handle_notification(n, now)
    }
}

macro_rules! impl_notification_input {
    ($t:ty) => {
        impl NotificationInput for $t {
            fn notification(&mut self, n: &Notification, r: &mut dyn Requester, now: Now) -> bool {
                self.handle_notification(n, r, now)
            }
        }
    };
}

impl_notification_input!(Lock);
impl_notification_input!(Edit);
impl_notification_input!(Leader);
impl_machine!(Lease);
impl_machine!(Lock);
impl_machine!(Edit);
impl_machine!(Leader);

/// Gives `c` to the first machine that owns it; returns whether one did.
pub fn route_completion(
    machines: &mut [&mut dyn Machine],
    c: &Completion,
    r: &mut dyn Requester,
    now: Now,
) -> bool {
    machines.iter_mut().any(|m| m.on_completion(c, r, now))
}

/// Gives `n` to every machine; returns whether any cared.
pub fn route_notification(
    machines: &mut [&mut dyn Machine],
    n: &Notification,
    r: &mut dyn Requester,
    now: Now,
) -> bool {
    let mut any = false;
    for m in machines.iter_mut() {
        any |= m.on_notification(n, r, now);
    }
    any
}

/// Tells every machine that the connection is up again.
pub fn route_connected(machines: &mut [&mut dyn Machine], r: &mut dyn Requester, now: Now) {
    for m in machines.iter_mut() {
        m.on_connected(r, now);
    }
}

/// Tells every machine that the connection dropped.
pub fn route_disconnected(machines: &mut [&mut dyn Machine], now: Now) {
    for m in machines.iter_mut() {
        m.on_disconnected(now);
    }
}

/// Tells every machine that `key` was re-registered; returns whether any cared.
pub fn route_reregistered(
    machines: &mut [&mut dyn Machine],
    key: &[u8],
    ok: bool,
    r: &mut dyn Requester,
    now: Now,
) -> bool {
    let mut any = false;
    for m in machines.iter_mut() {
        any |= m.on_reregistered(key, ok, r, now);
    }
    any
}

/// Runs the timeouts of every machine whose deadline is due.
pub fn route_timeout(machines: &mut [&mut dyn Machine], r: &mut dyn Requester, now: Now) {
    for m in machines.iter_mut() {
        if m.next_timeout().is_some_and(|t| t <= now.mono) {
            m.on_timeout(r, now);
        }
    }
}

/// The earliest deadline of all machines.
pub fn next_timeout(machines: &[&mut dyn Machine]) -> Option<Instant> {
    machines.iter().filter_map(|m| m.next_timeout()).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{RequestKind, Response};
    use crate::lease::{LeaseEvent, LeaseOptions};
    use crate::testkit::*;
    use bytes::Bytes;
    use core::time::Duration;

    #[test]
    fn completions_go_to_their_owner_and_notifications_to_all() {
        let mut r = FakeRequester::new("c1");
        let mut a = Lease::new(Bytes::from_static(b"a")).unwrap();
        let mut b = Lease::new(Bytes::from_static(b"a")).unwrap();
        let o = LeaseOptions {
            margin: Some(Duration::from_millis(100)),
            ..LeaseOptions::default()
        };
        b.acquire(Duration::from_secs(1), &o, &mut r, at(0))
            .unwrap();
        a.observe_start(None, &mut r, at(0)).unwrap();
        b.observe_start(None, &mut r, at(0)).unwrap();
        let set = r.last_of(RequestKind::Set);
        let c = r.answer(set.id, ok_set(), Some(tok(1)));
        {
            let mut ms: [&mut dyn Machine; 2] = [&mut a, &mut b];
            assert!(route_completion(&mut ms, &c, &mut r, at(1)));
            let unknown = set.reply(ok_set(), None);
            let unknown = crate::client::Completion {
                id: crate::client::RequestId(999),
                ..unknown
            };
            assert!(!route_completion(&mut ms, &unknown, &mut r, at(1)));
            for s in r.open_sent() {
                let c = r.answer(s.id, Ok(Response::KeyNotify), None);
                assert!(route_completion(&mut ms, &c, &mut r, at(2)));
            }
            assert!(route_notification(
                &mut ms,
                &note_del(b"a", tok(0)),
                &mut r,
                at(3)
            ));
            assert_eq!(next_timeout(&ms), Some(crate::Instant::from_millis(900)));
            route_timeout(&mut ms, &mut r, at(900));
        }
        assert!(matches!(b.poll_event(), Some(LeaseEvent::Acquired { .. })));
        let changes = |l: &mut Lease| {
            core::iter::from_fn(|| l.poll_event())
                .filter(|e| matches!(e, LeaseEvent::Change { .. }))
                .count()
        };
        assert_eq!(changes(&mut a), 1);
        assert_eq!(changes(&mut b), 1);
        assert!(b.token(crate::Instant::from_millis(900)).is_err());
    }
}
