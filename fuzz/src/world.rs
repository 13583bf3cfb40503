//! The harness of the `client_machines` target: one [`Client`] with a [`Lease`], a [`Lock`], an
//! [`Edit`] and a [`Leader`] on top, driven by a fuzzer-chosen list of [`Op`]s (user commands,
//! broker replies, notifications, connects, disconnects, time jumps, raw messages), with the
//! invariants of docs/architecture.md §7 (every request ends in exactly one outcome, no leaked
//! table entries, well-ordered events, deadlines in the future) checked after every step.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use bytes::Bytes;
use core::time::Duration;
use leasedlock_core::client::{
    Client, ClientConfig, Completion, Output, RequestError, RequestId, RequestOptions, Requester,
};
use leasedlock_core::command::NotifyPayload;
use leasedlock_core::command::{Request, RequestKind, SetCondition};
use leasedlock_core::edit::{Edit, EditDecision, EditEvent};
use leasedlock_core::envelope::{self, build_notification, build_response, prop, Message};
use leasedlock_core::hlc::Hlc;
use leasedlock_core::leader::{Leader, LeaderEvent, LeaderOptions};
use leasedlock_core::lease::{Lease, LeaseEvent, LeaseOptions};
use leasedlock_core::lock::{Lock, LockEvent, LockOptions};
use leasedlock_core::machine::{self, Machine};
use leasedlock_core::{Instant, Now};

use crate::message::{ArbHlc, ArbKey, ArbPayload, FuzzMessage, CLIENT_ID};

const LEASE: &[u8] = b"lease";
const LOCK: &[u8] = b"lock";
const EDIT_LOCK: &[u8] = b"edit-lock";
const EDIT_KEY: &[u8] = b"edit-key";
const LEADER: &[u8] = b"leader";
/// Upper bound of every timeout and duration the ops can choose, so the final drain knows how
/// far to run the clock.
const MAX_WAIT: Duration = Duration::from_secs(70);

/// A key the ops talk about.
#[derive(Debug, Clone, Arbitrary)]
pub enum KeySel {
    /// The lease's key.
    Lease,
    /// The lock's key.
    Lock,
    /// The edit's lock key.
    EditLock,
    /// The edited key.
    EditKey,
    /// The leader's key.
    Leader,
    /// Some other key.
    Other(ArbKey),
}

impl KeySel {
    fn bytes(&self) -> Bytes {
        match self {
            KeySel::Lease => Bytes::from_static(LEASE),
            KeySel::Lock => Bytes::from_static(LOCK),
            KeySel::EditLock => Bytes::from_static(EDIT_LOCK),
            KeySel::EditKey => Bytes::from_static(EDIT_KEY),
            KeySel::Leader => Bytes::from_static(LEADER),
            KeySel::Other(k) => k.bytes(),
        }
    }
}

/// A holder value: ours or someone else's.
#[derive(Debug, Clone, Arbitrary)]
pub enum HolderSel {
    /// Our client id.
    Us,
    /// Another client.
    Them,
    /// Any bytes.
    Raw(Vec<u8>),
}

impl HolderSel {
    fn bytes(&self) -> Bytes {
        match self {
            HolderSel::Us => Bytes::from_static(CLIENT_ID.as_bytes()),
            HolderSel::Them => Bytes::from_static(b"someone-else"),
            HolderSel::Raw(raw) => Bytes::from(raw.clone()),
        }
    }
}

/// A `__ts` on a reply or notification.
#[derive(Debug, Clone, Arbitrary)]
pub enum VersionSel {
    /// Close to our wall clock (so drift checks pass).
    Near {
        /// Offset from the wall clock in ms.
        delta_ms: i16,
        /// Counter.
        counter: u8,
    },
    /// No `__ts`.
    Absent,
    /// Any text.
    Text(ArbHlc),
}

/// A reply body.
#[derive(Debug, Clone, Arbitrary)]
pub enum ReplyBody {
    /// A reply that fits the request's verb (the selector picks among the forms).
    Natural(u8, HolderSel),
    /// Anything.
    Payload(ArbPayload),
}

/// One step of the world.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// The connection comes up.
    Connect {
        /// Whether the broker kept the session.
        session_present: bool,
    },
    /// The broker answers the oldest unanswered SUBSCRIBE.
    SubAck {
        /// Granted or refused.
        granted: bool,
    },
    /// The connection drops.
    Disconnect,
    /// The store answers a published request (selected by index among those not answered yet,
    /// or among all ever published with `stale`).
    Reply {
        /// Which request.
        index: u8,
        /// Answer one already answered (a duplicate or late reply).
        stale: bool,
        /// `__stat`, 200 when `None`.
        status: Option<u16>,
        /// Body.
        body: ReplyBody,
        /// `__ts`.
        version: VersionSel,
    },
    /// The store notifies a key change.
    Notify {
        /// Key.
        key: KeySel,
        /// New value, or a DELETE.
        value: Option<HolderSel>,
        /// `__ts`.
        version: VersionSel,
    },
    /// Any message arrives.
    Raw(FuzzMessage),
    /// Time passes (monotonic and wall together).
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// Jump to the earliest deadline.
    ToDeadline,
    /// The wall clock jumps (NTP step); monotonic time does not move.
    WallStep {
        /// Signed milliseconds.
        delta_ms: i32,
    },
    /// A direct client request.
    Request {
        /// Verb selector.
        verb: u8,
        /// Key.
        key: KeySel,
        /// Value for SET/VDEL.
        value: HolderSel,
        /// PX for SET.
        px_ms: Option<u16>,
        /// Timeout in ms (0 gives an InvalidArgument), default when `None`.
        timeout_ms: Option<u16>,
        /// Attach a fencing token.
        fenced: bool,
        /// Ask for persistence.
        persist: bool,
    },
    /// Observe a key.
    Observe(KeySel),
    /// Stop observing a key.
    Unobserve(KeySel),
    /// Lease: acquire.
    LeaseAcquire {
        /// Duration in ms.
        duration_ms: u16,
        /// Auto-renew interval in ms.
        renew_ms: Option<u16>,
    },
    /// Lease: release.
    LeaseRelease,
    /// Lease: query holder.
    LeaseHolder,
    /// Lease: observe on/off.
    LeaseObserve(bool),
    /// Lock: lock.
    Lock {
        /// Duration in ms.
        duration_ms: u16,
        /// Wait timeout in ms.
        wait_ms: Option<u16>,
        /// Keep watching the holder.
        watch: bool,
    },
    /// Lock: cancel.
    LockCancel,
    /// Lock: unlock.
    Unlock,
    /// Edit: start.
    EditStart {
        /// Lock duration in ms.
        duration_ms: u16,
    },
    /// Edit: decide.
    EditDecide(Option<Option<HolderSel>>),
    /// Edit: cancel.
    EditCancel,
    /// Leader: campaign.
    Campaign {
        /// Duration in ms.
        duration_ms: u16,
        /// Campaign again after losing.
        recampaign: bool,
    },
    /// Leader: resign.
    Resign,
    /// Leader: done draining.
    Drained,
}

/// Records every id handed out through the [`Requester`] interface.
struct Tracked<'a> {
    client: &'a mut Client,
    issued: &'a mut BTreeSet<RequestId>,
}

impl Requester for Tracked<'_> {
    fn request(
        &mut self,
        request: Request,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let id = self.client.request(request, options, now)?;
        assert!(self.issued.insert(id), "request id {id:?} handed out twice");
        Ok(id)
    }
    fn observe(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let id = self.client.observe(key, options, now)?;
        assert!(self.issued.insert(id), "request id {id:?} handed out twice");
        Ok(id)
    }
    fn unobserve(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let id = self.client.unobserve(key, options, now)?;
        assert!(self.issued.insert(id), "request id {id:?} handed out twice");
        Ok(id)
    }
    fn client_id(&self) -> &str {
        self.client.client_id()
    }
}

/// A published request the store may answer.
#[derive(Debug, Clone)]
struct Published {
    correlation: Bytes,
    kind: Option<RequestKind>,
}

/// Held-ness as the events tell it, to check their order.
#[derive(Debug, Default)]
struct EventOrder {
    lease_held: bool,
    lease_duration: Duration,
    lock_held: bool,
    leading: bool,
}

/// The whole world.
pub struct World {
    client: Client,
    lease: Lease,
    lock: Lock,
    edit: Edit,
    leader: Leader,
    now: Now,
    issued: BTreeSet<RequestId>,
    completed: BTreeSet<RequestId>,
    /// Filters subscribed and not yet acknowledged, oldest first.
    pending_subs: Vec<String>,
    unanswered: Vec<Published>,
    answered: Vec<Published>,
    order: EventOrder,
    edit_token: Option<Hlc>,
}

fn ms(n: u16) -> Duration {
    Duration::from_millis(u64::from(n))
}

impl World {
    /// A fresh world at wall time `wall_ms`, with client capacities from `caps`.
    pub fn new(seed: u64, wall_ms: u64, caps: (u8, u8)) -> World {
        let client = Client::new(ClientConfig {
            client_id: CLIENT_ID.into(),
            seed,
            max_in_flight: usize::from(caps.0 % 16) + 1,
            max_observed: usize::from(caps.1 % 8) + 1,
            default_timeout: Duration::from_secs(5),
            max_drift_ms: 60_000,
            hlc_node: "node-1".into(),
        })
        .expect("valid config");
        World {
            client,
            lease: Lease::new(Bytes::from_static(LEASE)).expect("lease"),
            lock: Lock::new(Bytes::from_static(LOCK), seed).expect("lock"),
            edit: Edit::new(
                Bytes::from_static(EDIT_LOCK),
                Bytes::from_static(EDIT_KEY),
                seed,
            )
            .expect("edit"),
            leader: Leader::new(Bytes::from_static(LEADER), seed).expect("leader"),
            now: Now::new(Instant::from_millis(1_000), wall_ms),
            issued: BTreeSet::new(),
            completed: BTreeSet::new(),
            pending_subs: Vec::new(),
            unanswered: Vec::new(),
            answered: Vec::new(),
            order: EventOrder::default(),
            edit_token: None,
        }
    }

    fn version(&self, sel: &VersionSel) -> Option<Bytes> {
        match sel {
            VersionSel::Near { delta_ms, counter } => {
                let millis = self.now.wall_ms.saturating_add_signed(i64::from(*delta_ms));
                Hlc::new(millis, u64::from(*counter), "StateStore")
                    .ok()
                    .map(|h| h.to_bytes())
            }
            VersionSel::Absent => None,
            VersionSel::Text(t) => Some(t.bytes()),
        }
    }

    /// Applies one op, then drains everything it caused and checks the invariants.
    pub fn step(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Connect { session_present } => self.client.handle_connected(*session_present, now),
            Op::SubAck { granted } => {
                if !self.pending_subs.is_empty() {
                    let filter = self.pending_subs.remove(0);
                    self.client.handle_subscribed(&filter, *granted, now);
                }
            }
            Op::Disconnect => self.client.handle_disconnected(now),
            Op::Reply {
                index,
                stale,
                status,
                body,
                version,
            } => self.reply(usize::from(*index), *stale, *status, body, version),
            Op::Notify {
                key,
                value,
                version,
            } => {
                let payload = match value {
                    Some(v) => NotifyPayload::Set { value: v.bytes() },
                    None => NotifyPayload::Delete,
                };
                let mut msg = build_notification(
                    CLIENT_ID.as_bytes(),
                    &key.bytes(),
                    &Hlc::new(0, 0, "x").expect("valid"),
                    &payload,
                );
                msg.user_properties
                    .retain(|(k, _)| k.as_ref() != prop::TIMESTAMP.as_bytes());
                if let Some(v) = self.version(version) {
                    msg.user_properties
                        .push((Bytes::from_static(prop::TIMESTAMP.as_bytes()), v));
                }
                self.client.handle_publish(msg, now);
            }
            Op::Raw(m) => self.client.handle_publish(m.to_message(), now),
            Op::Advance { ms: n } => {
                self.now = now.advanced(ms(*n));
                self.timeouts();
            }
            Op::ToDeadline => {
                let machines_next = {
                    let ms: [&dyn MachineRef; 4] =
                        [&self.lease, &self.lock, &self.edit, &self.leader];
                    ms.iter().filter_map(|m| m.next()).min()
                };
                let next = [self.client.poll_timeout(), machines_next]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(at) = next {
                    if at > now.mono {
                        self.now = now.advanced(at.saturating_duration_since(now.mono));
                    }
                }
                self.timeouts();
            }
            Op::WallStep { delta_ms } => {
                self.now = Now::new(
                    now.mono,
                    now.wall_ms.saturating_add_signed(i64::from(*delta_ms)),
                );
            }
            Op::Request {
                verb,
                key,
                value,
                px_ms,
                timeout_ms,
                fenced,
                persist,
            } => {
                let key = key.bytes();
                let request = match verb % 6 {
                    0 => Request::Set {
                        key,
                        value: value.bytes(),
                        condition: match verb / 6 % 3 {
                            0 => SetCondition::Always,
                            1 => SetCondition::NotExists,
                            _ => SetCondition::NotExistsOrEqual,
                        },
                        px_ms: px_ms.map(u64::from),
                    },
                    1 => Request::Get { key },
                    2 => Request::Del { key },
                    3 => Request::Vdel {
                        key,
                        value: value.bytes(),
                    },
                    4 => Request::KeyNotify { key },
                    _ => Request::KeyNotifyStop { key },
                };
                let options = RequestOptions {
                    timeout: timeout_ms.map(ms),
                    fencing_token: fenced
                        .then(|| Hlc::new(now.wall_ms, 0, "StateStore").ok())
                        .flatten(),
                    persist: *persist,
                };
                let _ = self.tracked().request(request, options, now);
            }
            Op::Observe(key) => {
                let _ = self
                    .tracked()
                    .observe(key.bytes(), RequestOptions::default(), now);
            }
            Op::Unobserve(key) => {
                let _ = self
                    .tracked()
                    .unobserve(key.bytes(), RequestOptions::default(), now);
            }
            Op::LeaseAcquire {
                duration_ms,
                renew_ms,
            } => {
                let options = LeaseOptions {
                    timeout: Some(Duration::from_secs(2)),
                    renew: renew_ms.map(ms),
                    ..LeaseOptions::default()
                };
                let duration = ms(*duration_ms);
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                if self.lease.acquire(duration, &options, &mut t, now).is_ok() {
                    self.order.lease_duration = duration;
                }
            }
            Op::LeaseRelease => {
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                let _ = self.lease.release(&LeaseOptions::default(), &mut t, now);
            }
            Op::LeaseHolder => {
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                let _ = self.lease.holder(None, &mut t, now);
            }
            Op::LeaseObserve(on) => {
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                let _ = if *on {
                    self.lease.observe_start(None, &mut t, now)
                } else {
                    self.lease.observe_stop(None, &mut t, now)
                };
            }
            Op::Lock {
                duration_ms,
                wait_ms,
                watch,
            } => {
                let options = LockOptions {
                    wait_timeout: wait_ms.map(ms),
                    watch_holder: *watch,
                    ..LockOptions::default()
                };
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                let _ = self.lock.lock(ms(*duration_ms), &options, &mut t, now);
            }
            Op::LockCancel => {
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                self.lock.cancel(&mut t, now);
            }
            Op::Unlock => {
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                let _ = self.lock.unlock(&LeaseOptions::default(), &mut t, now);
            }
            Op::EditStart { duration_ms } => {
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                let _ = self
                    .edit
                    .start(ms(*duration_ms), &LockOptions::default(), &mut t, now);
            }
            Op::EditDecide(decision) => {
                let decision = match decision {
                    None => EditDecision::Abort,
                    Some(None) => EditDecision::Delete,
                    Some(Some(v)) => EditDecision::Set(v.bytes()),
                };
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                let _ = self.edit.decide(decision, &mut t, now);
            }
            Op::EditCancel => {
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                self.edit.cancel(&mut t, now);
            }
            Op::Campaign {
                duration_ms,
                recampaign,
            } => {
                let options = LeaderOptions {
                    recampaign: *recampaign,
                    ..LeaderOptions::default()
                };
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                let _ = self
                    .leader
                    .campaign(ms(*duration_ms), &options, &mut t, now);
            }
            Op::Resign => {
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                let _ = self.leader.resign(&mut t, now);
            }
            Op::Drained => {
                let mut t = Tracked {
                    client: &mut self.client,
                    issued: &mut self.issued,
                };
                let _ = self.leader.drained(&mut t, now);
            }
        }
        self.drain();
        self.check();
    }

    fn tracked(&mut self) -> Tracked<'_> {
        Tracked {
            client: &mut self.client,
            issued: &mut self.issued,
        }
    }

    fn reply(
        &mut self,
        index: usize,
        stale: bool,
        status: Option<u16>,
        body: &ReplyBody,
        version: &VersionSel,
    ) {
        let list = if stale {
            &self.answered
        } else {
            &self.unanswered
        };
        if list.is_empty() {
            return;
        }
        let i = index % list.len();
        let target = if stale {
            self.answered[i].clone()
        } else {
            let t = self.unanswered.remove(i);
            self.answered.push(t.clone());
            if self.answered.len() > 64 {
                self.answered.remove(0);
            }
            t
        };
        let payload = match body {
            ReplyBody::Natural(sel, holder) => natural_reply(target.kind, *sel, holder),
            ReplyBody::Payload(p) => p.bytes(),
        };
        let mut msg = build_response(
            Bytes::from(envelope::response_topic(CLIENT_ID)),
            target.correlation.clone(),
            None,
            payload,
            None,
        );
        if let Some(v) = self.version(version) {
            msg.user_properties
                .push((Bytes::from_static(prop::TIMESTAMP.as_bytes()), v));
        }
        if let Some(s) = status {
            for (k, v) in msg.user_properties.iter_mut() {
                if k.as_ref() == prop::STATUS.as_bytes() {
                    *v = Bytes::from(s.to_string());
                }
            }
        }
        self.client.handle_publish(msg, self.now);
    }

    fn timeouts(&mut self) {
        let now = self.now;
        if self.client.poll_timeout().is_some_and(|t| t <= now.mono) {
            self.client.handle_timeout(now);
        }
        if let Some(t) = self.client.poll_timeout() {
            assert!(
                t > now.mono,
                "client deadline {t:?} still due after handle_timeout"
            );
        }
        self.drain();
        let mut t = Tracked {
            client: &mut self.client,
            issued: &mut self.issued,
        };
        let mut ms: [&mut dyn Machine; 4] = [
            &mut self.lease,
            &mut self.lock,
            &mut self.edit,
            &mut self.leader,
        ];
        machine::route_timeout(&mut ms, &mut t, now);
    }

    /// Routes every client output to the machines until nothing more happens.
    fn drain(&mut self) {
        let now = self.now;
        for _ in 0..10_000 {
            let Some(output) = self.client.poll_output() else {
                self.drain_events();
                if self.client.poll_output().is_none() {
                    return;
                }
                continue;
            };
            if let Output::Completion(c) = &output {
                check_completion(c, &self.issued, &mut self.completed);
            }
            let mut t = Tracked {
                client: &mut self.client,
                issued: &mut self.issued,
            };
            let mut ms: [&mut dyn Machine; 4] = [
                &mut self.lease,
                &mut self.lock,
                &mut self.edit,
                &mut self.leader,
            ];
            match output {
                Output::Publish(msg) => {
                    record_publish(&msg, &mut self.unanswered);
                }
                Output::Subscribe(filter) => self.pending_subs.push(filter),
                Output::Completion(c) => {
                    machine::route_completion(&mut ms, &c, &mut t, now);
                }
                Output::Notification(n) => {
                    machine::route_notification(&mut ms, &n, &mut t, now);
                }
                Output::Connected { .. } => machine::route_connected(&mut ms, &mut t, now),
                // Requests published before a disconnect stay answerable (the client machine
                // decides that); the lease machines still learn of the drop, as in the adapters.
                Output::Disconnected => machine::route_disconnected(&mut ms, now),
                Output::Reregistered { key, result } => {
                    machine::route_reregistered(&mut ms, &key, result.is_ok(), &mut t, now);
                }
                _ => {}
            }
        }
        panic!("outputs never drained: a feedback loop between the client and the machines");
    }

    fn drain_events(&mut self) {
        let now = self.now.mono;
        while let Some(e) = self.lease.poll_event() {
            match e {
                LeaseEvent::Acquired { safe_until, .. }
                | LeaseEvent::Renewed { safe_until, .. } => {
                    if matches!(e, LeaseEvent::Renewed { .. }) {
                        assert!(self.order.lease_held, "Renewed without Acquired");
                    }
                    assert!(
                        safe_until <= now.saturating_add(self.order.lease_duration),
                        "safe_until beyond send time + duration"
                    );
                    self.order.lease_held = true;
                }
                LeaseEvent::Lost { .. } => {
                    assert!(self.order.lease_held, "Lost without a grant");
                    self.order.lease_held = false;
                }
                LeaseEvent::Released { .. } => self.order.lease_held = false,
                _ => {}
            }
        }
        while let Some(e) = self.lock.poll_event() {
            match e {
                LockEvent::Locked { .. } => self.order.lock_held = true,
                LockEvent::Renewed { .. } => assert!(self.order.lock_held, "lock Renewed unlocked"),
                LockEvent::Lost { .. } => {
                    assert!(self.order.lock_held, "lock Lost without Locked");
                    self.order.lock_held = false;
                }
                LockEvent::Unlocked { .. } => self.order.lock_held = false,
                _ => {}
            }
        }
        while let Some(e) = self.edit.poll_event() {
            match e {
                EditEvent::Requested { token, .. } => self.edit_token = Some(token),
                EditEvent::Done { .. } => self.edit_token = None,
                _ => {}
            }
        }
        while let Some(e) = self.leader.poll_event() {
            match e {
                LeaderEvent::Elected { .. } => {
                    assert!(!self.order.leading, "Elected twice without Deposed");
                    self.order.leading = true;
                }
                LeaderEvent::Renewed { .. } => assert!(self.order.leading, "Renewed not leading"),
                LeaderEvent::Deposed { .. } => {
                    assert!(self.order.leading, "Deposed without Elected");
                    self.order.leading = false;
                }
                LeaderEvent::Stopped { .. } => self.order.leading = false,
                _ => {}
            }
        }
    }

    fn check(&self) {
        let open = self.issued.len() - self.completed.len();
        assert_eq!(
            self.client.in_flight(),
            open,
            "client in-flight count disagrees with the ids without a completion"
        );
        let waiting = self.lease.outstanding()
            + self.lock.outstanding()
            + self.edit.outstanding()
            + self.leader.outstanding();
        assert!(
            waiting <= open,
            "machines wait for {waiting} requests but only {open} can still complete"
        );
        let now = self.now.mono;
        if let Ok(token) = self.lease.token(now) {
            assert!(
                self.order.lease_held,
                "token {token} without an Acquired event"
            );
        }
    }

    /// Ends the run: disconnects and lets every deadline pass; every request issued before
    /// must then have its single completion.
    pub fn finish(&mut self) {
        self.client.handle_disconnected(self.now);
        self.drain();
        let before: BTreeSet<RequestId> = self.issued.clone();
        let end = self.now.mono.saturating_add(MAX_WAIT);
        for _ in 0..1_000 {
            if self.now.mono > end {
                break;
            }
            let next = self
                .client
                .poll_timeout()
                .unwrap_or(end)
                .max(self.now.mono.saturating_add(Duration::from_millis(1)));
            self.now = self
                .now
                .advanced(next.saturating_duration_since(self.now.mono));
            self.timeouts();
            self.drain();
            self.check();
        }
        let missing: Vec<_> = before.difference(&self.completed).collect();
        assert!(
            missing.is_empty() || self.now.mono <= end,
            "requests without an outcome after every deadline passed: {missing:?}"
        );
    }
}

/// Deadlines of the four machines through one interface.
trait MachineRef {
    fn next(&self) -> Option<Instant>;
}

macro_rules! machine_ref {
    ($($t:ty),*) => {$(
        impl MachineRef for $t {
            fn next(&self) -> Option<Instant> {
                self.poll_timeout()
            }
        }
    )*};
}
machine_ref!(Lease, Lock, Edit, Leader);

fn record_publish(msg: &Message, unanswered: &mut Vec<Published>) {
    let Some(correlation) = msg.correlation_data.clone() else {
        return;
    };
    let kind = leasedlock_core::command::Request::parse(
        &msg.payload,
        &leasedlock_core::resp3::Limits::default(),
    )
    .ok()
    .map(|r| r.kind());
    unanswered.push(Published { correlation, kind });
    // Bounded, oldest first out: a long run must not make the harness itself slow.
    if unanswered.len() > 64 {
        unanswered.remove(0);
    }
}

fn check_completion(
    c: &Completion,
    issued: &BTreeSet<RequestId>,
    completed: &mut BTreeSet<RequestId>,
) {
    assert!(
        issued.contains(&c.id),
        "completion for an id never handed out: {c:?}"
    );
    assert!(completed.insert(c.id), "second completion for {:?}", c.id);
}

fn natural_reply(kind: Option<RequestKind>, sel: u8, holder: &HolderSel) -> Bytes {
    let forms: &[&[u8]] = match kind {
        Some(RequestKind::Set) => &[b"+OK\r\n", b":-1\r\n"],
        Some(RequestKind::Get) => &[b"$-1\r\n", b""],
        Some(RequestKind::Del) => &[b":1\r\n", b":0\r\n"],
        Some(RequestKind::Vdel) => &[b":1\r\n", b":0\r\n", b":-1\r\n"],
        Some(RequestKind::KeyNotify) => &[b"+OK\r\n"],
        Some(RequestKind::KeyNotifyStop) => &[b"+OK\r\n", b":0\r\n"],
        _ => &[b"-ERR syntax error\r\n"],
    };
    let form = forms[usize::from(sel) % forms.len()];
    if form.is_empty() {
        let mut out = Vec::new();
        leasedlock_core::resp3::Value::Blob(holder.bytes()).encode(&mut out);
        return Bytes::from(out);
    }
    Bytes::from_static(form)
}

/// Counts of what a run did, for the seed test.
pub fn summary(world: &World) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("issued", world.issued.len()),
        ("completed", world.completed.len()),
        ("answered", world.answered.len()),
        ("unanswered", world.unanswered.len()),
        ("subs", world.pending_subs.len()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::Unstructured;

    /// Deterministic pseudo-random bytes (xorshift), so the harness itself is exercised by
    /// `cargo test` without a fuzzer.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn harness_runs_random_schedules() {
        let mut total = BTreeMap::new();
        for seed in 0..300u64 {
            let bytes = noise(seed, 4096);
            let mut u = Unstructured::new(&bytes);
            let mut ops = Vec::new();
            while let Ok(op) = u.arbitrary::<Op>() {
                if u.is_empty() || ops.len() >= 256 {
                    break;
                }
                ops.push(op);
            }
            let mut world = World::new(seed, 1_700_000_000_000, (seed as u8, 3));
            // Start connected most of the time so replies have somewhere to go.
            if seed % 4 != 0 {
                world.step(&Op::Connect {
                    session_present: false,
                });
                world.step(&Op::SubAck { granted: true });
            }
            for op in ops.iter().take(256) {
                world.step(op);
            }
            world.finish();
            for (k, v) in summary(&world) {
                *total.entry(k).or_insert(0) += v;
            }
        }
        assert!(total["issued"] > 0 && total["answered"] > 0, "{total:?}");
    }

    #[test]
    fn scripted_lease_round_trip_completes_everything() {
        let mut world = World::new(7, 1_700_000_000_000, (4, 4));
        let script = [
            Op::LeaseAcquire {
                duration_ms: 5_000,
                renew_ms: Some(1_000),
            },
            Op::Connect {
                session_present: false,
            },
            Op::SubAck { granted: true },
            Op::Reply {
                index: 0,
                stale: false,
                status: None,
                body: ReplyBody::Natural(0, HolderSel::Us),
                version: VersionSel::Near {
                    delta_ms: 0,
                    counter: 1,
                },
            },
            Op::Advance { ms: 1_500 },
            Op::LeaseRelease,
        ];
        for op in &script {
            world.step(op);
        }
        assert!(!world.issued.is_empty());
        world.finish();
        assert_eq!(world.issued, world.completed);
    }
}
