//! The inputs every lease, lock, edit and leader machine takes, in one object-safe trait
//! ([`Machine`]). The client host ([`crate::host`]) routes to machines through it: a
//! completion to the machine that sent the request, a notification or re-registration to the
//! machines named after the key, a reconnect to all, a timeout to those whose deadline came.

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
