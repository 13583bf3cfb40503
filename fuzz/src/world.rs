//! The harness of the `client_machines` target: one [`Client`] and the client host
//! ([`Host`]) on top, exactly the composition every adapter runs, driven by a fuzzer-chosen
//! list of [`Op`]s: user operations on two lease handles and two lock handles sharing a name
//! each, an edit and a leader; abandoned calls (dropped futures), dropped and re-created
//! handles, a close in the middle of it all; direct requests and observation streams; broker
//! replies, notifications, connects, disconnects, time jumps and raw messages. Checked after
//! every step and at the end: every request id completes exactly once, every host call ends
//! exactly once (answer, refusal, or its handle's end), no machine outlives its handle, the
//! client's in-flight count matches the open ids, no deadline is left due after a timeout,
//! `safe_until` never exceeds now plus the longest duration asked, leader events are well
//! ordered, and outputs always drain.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use bytes::Bytes;
use core::time::Duration;
use leasedlock_core::client::{
    Client, ClientConfig, Completion, Output, Recording, RequestId, RequestOptions,
};
use leasedlock_core::command::NotifyPayload;
use leasedlock_core::command::{Request, RequestKind, SetCondition};
use leasedlock_core::edit::EditDecision;
use leasedlock_core::envelope::{self, build_notification, build_response, prop, Message};
use leasedlock_core::hlc::Hlc;
use leasedlock_core::host::{
    CallId, Create, HandleId, Host, HostConfig, HostOutput, Op as HostOp, Refused, Status, StreamId,
};
use leasedlock_core::leader::{LeaderEvent, LeaderOptions};
use leasedlock_core::lease::LeaseOptions;
use leasedlock_core::lock::LockOptions;
use leasedlock_core::{Instant, Now};

use crate::message::{ArbHlc, ArbKey, ArbPayload, FuzzMessage, CLIENT_ID};

const LEASE: &[u8] = b"lease";
const LOCK: &[u8] = b"lock";
const EDIT_LOCK: &[u8] = b"edit-lock";
const EDIT_KEY: &[u8] = b"edit-key";
const LEADER: &[u8] = b"leader";
/// Upper bound of every timeout and duration the ops can choose.
const MAX_WAIT: Duration = Duration::from_secs(70);
/// The host's own request timeout (releases of dropped handles, STOPs, re-reads).
const HOST_TIMEOUT: Duration = Duration::from_secs(2);

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

/// One of the user's handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Arbitrary)]
pub enum HandleSel {
    /// One of the two lease handles on the lease key (holders `…:l0`, `…:l1`).
    Lease(bool),
    /// One of the two lock handles on the lock key (holders `…:k0`, `…:k1`).
    Lock(bool),
    /// The current edit.
    Edit,
    /// The leader handle.
    Leader,
}

impl HandleSel {
    fn session(self) -> Option<String> {
        match self {
            HandleSel::Lease(b) => Some(format!("l{}", u8::from(b))),
            HandleSel::Lock(b) => Some(format!("k{}", u8::from(b))),
            _ => None,
        }
    }
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
    /// A direct request of a caller.
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
    /// An observation stream of a key starts (stream ids 0–3).
    Observe(u8, KeySel),
    /// An observation stream goes away.
    Unobserve(u8),
    /// Lease: acquire.
    LeaseAcquire {
        /// Which lease handle.
        second: bool,
        /// Duration in ms.
        duration_ms: u16,
        /// Auto-renew interval in ms.
        renew_ms: Option<u16>,
    },
    /// Lease: release.
    LeaseRelease(bool),
    /// Lease: query holder.
    LeaseHolder(bool),
    /// Lease: observe its holder.
    LeaseObserve(bool),
    /// Lock: lock.
    Lock {
        /// Which lock handle.
        second: bool,
        /// Duration in ms.
        duration_ms: u16,
        /// Wait timeout in ms.
        wait_ms: Option<u16>,
        /// Keep watching the holder.
        watch: bool,
    },
    /// Lock: unlock.
    Unlock(bool),
    /// Edit: start a new edit (the handle of the previous one is dropped).
    EditStart {
        /// Lock duration in ms.
        duration_ms: u16,
    },
    /// Edit: decide.
    EditDecide(Option<Option<HolderSel>>),
    /// Leader: campaign.
    Campaign {
        /// Duration in ms.
        duration_ms: u16,
        /// Campaign again after losing.
        recampaign: bool,
    },
    /// Leader: resign.
    Resign {
        /// Release as soon as draining starts.
        drain_now: bool,
    },
    /// Leader: done draining.
    Drained,
    /// The caller of a handle's latest call stops waiting (its future is dropped).
    Abandon(HandleSel),
    /// A handle is dropped (releasing unless `detach`); the next operation on it makes a new
    /// one.
    DropHandle {
        /// Which.
        handle: HandleSel,
        /// Leave the lease to expire instead of releasing.
        detach: bool,
    },
    /// The connection is closed by the application: every handle goes.
    Close,
}

/// The client, recording every id it hands out (each exactly once).
fn tracked<'a>(
    client: &'a mut Client,
    issued: &'a mut BTreeSet<RequestId>,
) -> Recording<'a, impl FnMut(RequestId) + 'a> {
    Recording::new(client, move |id| {
        assert!(issued.insert(id), "request id {id:?} handed out twice");
    })
}

/// A published request the store may answer.
#[derive(Debug, Clone)]
struct Published {
    correlation: Bytes,
    kind: Option<RequestKind>,
}

/// The whole world.
pub struct World {
    client: Client,
    host: Host,
    now: Now,
    issued: BTreeSet<RequestId>,
    completed: BTreeSet<RequestId>,
    /// Filters subscribed and not yet acknowledged, oldest first.
    pending_subs: Vec<String>,
    unanswered: Vec<Published>,
    answered: Vec<Published>,
    /// The live handle of each selector.
    handles: BTreeMap<HandleSel, HandleId>,
    next_handle: u64,
    next_call: u64,
    /// Calls without their end yet, and each handle's latest call.
    open_calls: BTreeSet<(HandleId, CallId)>,
    latest: BTreeMap<HandleId, CallId>,
    /// Calls whose caller gave up, and calls that get no answer: they may still be answered
    /// or refused once (an answer on its way; a refused decision).
    abandoned: BTreeSet<(HandleId, CallId)>,
    /// Direct requests without their reply yet.
    open_requests: BTreeSet<CallId>,
    /// Observation streams: id → key.
    streams: BTreeMap<u8, Bytes>,
    /// The longest lease duration ever asked (bounds every `safe_until`).
    longest: Duration,
    /// Leader handles that are elected.
    leading: BTreeSet<HandleId>,
    closed: bool,
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
            host: Host::new(HostConfig {
                seed,
                request_timeout: HOST_TIMEOUT,
            }),
            now: Now::new(Instant::from_millis(1_000), wall_ms),
            issued: BTreeSet::new(),
            completed: BTreeSet::new(),
            pending_subs: Vec::new(),
            unanswered: Vec::new(),
            answered: Vec::new(),
            handles: BTreeMap::new(),
            next_handle: 0,
            next_call: 0,
            open_calls: BTreeSet::new(),
            latest: BTreeMap::new(),
            abandoned: BTreeSet::new(),
            open_requests: BTreeSet::new(),
            streams: BTreeMap::new(),
            longest: Duration::ZERO,
            leading: BTreeSet::new(),
            closed: false,
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

    /// The handle of `sel`, made if there is none (`create` builds its machine).
    fn handle(&mut self, sel: HandleSel) -> HandleId {
        if let Some(h) = self.handles.get(&sel) {
            return *h;
        }
        self.next_handle += 1;
        let handle = HandleId(self.next_handle);
        self.handles.insert(sel, handle);
        let create = match sel {
            HandleSel::Lease(_) => Create::Lease {
                name: Bytes::from_static(LEASE),
            },
            HandleSel::Lock(_) => Create::Lock {
                name: Bytes::from_static(LOCK),
            },
            HandleSel::Leader => Create::Leader {
                name: Bytes::from_static(LEADER),
            },
            // Edits are made by `EditStart` only.
            HandleSel::Edit => return handle,
        };
        let now = self.now;
        self.host.create(
            handle,
            create,
            &mut tracked(&mut self.client, &mut self.issued),
            now,
        );
        handle
    }

    /// Operation `op` on `sel`'s handle, as a new call.
    fn call(&mut self, sel: HandleSel, op: HostOp) {
        let handle = self.handle(sel);
        self.next_call += 1;
        let call = CallId(self.next_call);
        self.open_calls.insert((handle, call));
        self.latest.insert(handle, call);
        let now = self.now;
        self.host.op(
            handle,
            call,
            op,
            &mut tracked(&mut self.client, &mut self.issued),
            now,
        );
    }

    fn lease_options(
        &self,
        sel: HandleSel,
        timeout: Option<Duration>,
        renew: Option<Duration>,
    ) -> LeaseOptions {
        LeaseOptions {
            timeout,
            renew,
            session_id: sel.session(),
            margin: None,
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
                let next = [self.client.poll_timeout(), self.host.poll_timeout()]
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
                self.next_call += 1;
                let call = CallId(self.next_call);
                self.open_requests.insert(call);
                self.host.request(
                    call,
                    request,
                    options,
                    &mut tracked(&mut self.client, &mut self.issued),
                    now,
                );
            }
            Op::Observe(id, key) => {
                let id = id % 4;
                if let std::collections::btree_map::Entry::Vacant(e) = self.streams.entry(id) {
                    let key = key.bytes();
                    e.insert(key.clone());
                    self.host.observe(
                        StreamId(id.into()),
                        key,
                        &mut tracked(&mut self.client, &mut self.issued),
                        now,
                    );
                }
            }
            Op::Unobserve(id) => {
                if let Some(key) = self.streams.remove(&(id % 4)) {
                    self.host.unobserve(
                        StreamId((id % 4).into()),
                        &key,
                        &mut tracked(&mut self.client, &mut self.issued),
                        now,
                    );
                }
            }
            Op::LeaseAcquire {
                second,
                duration_ms,
                renew_ms,
            } => {
                let sel = HandleSel::Lease(*second);
                let duration = ms(*duration_ms);
                self.longest = self.longest.max(duration);
                let options =
                    self.lease_options(sel, Some(Duration::from_secs(2)), renew_ms.map(ms));
                self.call(sel, HostOp::Acquire { duration, options });
            }
            Op::LeaseRelease(second) => {
                let sel = HandleSel::Lease(*second);
                let options = self.lease_options(sel, None, None);
                self.call(sel, HostOp::Release { options });
            }
            Op::LeaseHolder(second) => {
                self.call(HandleSel::Lease(*second), HostOp::Holder { timeout: None })
            }
            Op::LeaseObserve(second) => self.call(HandleSel::Lease(*second), HostOp::Observe),
            Op::Lock {
                second,
                duration_ms,
                wait_ms,
                watch,
            } => {
                let sel = HandleSel::Lock(*second);
                let duration = ms(*duration_ms);
                self.longest = self.longest.max(duration);
                let options = LockOptions {
                    lease: self.lease_options(sel, None, None),
                    wait_timeout: wait_ms.map(ms),
                    watch_holder: *watch,
                    ..LockOptions::default()
                };
                self.call(sel, HostOp::Lock { duration, options });
            }
            Op::Unlock(second) => {
                let sel = HandleSel::Lock(*second);
                let options = self.lease_options(sel, None, None);
                self.call(sel, HostOp::Unlock { options });
            }
            Op::EditStart { duration_ms } => {
                self.drop_handle(HandleSel::Edit, false);
                let handle = self.handle(HandleSel::Edit);
                let duration = ms(*duration_ms);
                self.longest = self.longest.max(duration);
                let create = Create::Edit {
                    lock_name: Bytes::from_static(EDIT_LOCK),
                    key: Bytes::from_static(EDIT_KEY),
                    duration,
                    options: Box::default(),
                };
                self.host.create(
                    handle,
                    create,
                    &mut tracked(&mut self.client, &mut self.issued),
                    now,
                );
            }
            Op::EditDecide(decision) => {
                let decision = match decision {
                    None => EditDecision::Abort,
                    Some(None) => EditDecision::Delete,
                    Some(Some(v)) => EditDecision::Set(v.bytes()),
                };
                if self.handles.contains_key(&HandleSel::Edit) {
                    self.call(HandleSel::Edit, HostOp::Decide { decision });
                    // No answer comes for a decision (its events follow), only a refusal.
                    self.silent();
                }
            }
            Op::Campaign {
                duration_ms,
                recampaign,
            } => {
                let duration = ms(*duration_ms);
                self.longest = self.longest.max(duration);
                let options = LeaderOptions {
                    recampaign: *recampaign,
                    ..LeaderOptions::default()
                };
                self.call(HandleSel::Leader, HostOp::Campaign { duration, options });
            }
            Op::Resign { drain_now } => self.call(
                HandleSel::Leader,
                HostOp::Resign {
                    drain_now: *drain_now,
                },
            ),
            Op::Drained => {
                self.call(HandleSel::Leader, HostOp::Drained);
                self.silent();
            }
            Op::Abandon(sel) => {
                if let Some(handle) = self.handles.get(sel).copied() {
                    if let Some(call) = self.latest.remove(&handle) {
                        if self.open_calls.remove(&(handle, call)) {
                            self.abandoned.insert((handle, call));
                        }
                        self.host.abandon(
                            handle,
                            call,
                            &mut tracked(&mut self.client, &mut self.issued),
                            now,
                        );
                    }
                }
            }
            Op::DropHandle { handle, detach } => self.drop_handle(*handle, *detach),
            Op::Close => {
                self.closed = true;
                self.host
                    .close(&mut tracked(&mut self.client, &mut self.issued), now);
            }
        }
        self.drain();
        self.check();
    }

    /// The last call gets no answer, only possibly a refusal.
    fn silent(&mut self) {
        let call = CallId(self.next_call);
        if let Some(key) = self.open_calls.iter().find(|(_, c)| *c == call).copied() {
            self.open_calls.remove(&key);
            self.abandoned.insert(key);
        }
    }

    fn drop_handle(&mut self, sel: HandleSel, detach: bool) {
        if let Some(handle) = self.handles.remove(&sel) {
            let now = self.now;
            self.host.drop_handle(
                handle,
                !detach,
                &mut tracked(&mut self.client, &mut self.issued),
                now,
            );
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
        self.host
            .handle_timeout(&mut tracked(&mut self.client, &mut self.issued), now);
        self.drain();
        if let Some(t) = self.host.poll_timeout() {
            assert!(
                t > now.mono,
                "host deadline {t:?} still due after handle_timeout"
            );
        }
    }

    /// Moves client outputs to the host and host outputs to the checks until nothing more
    /// happens, as the adapters' engine does.
    fn drain(&mut self) {
        let now = self.now;
        for _ in 0..10_000 {
            let mut any = false;
            while let Some(output) = self.client.poll_output() {
                any = true;
                if let Output::Completion(c) = &output {
                    check_completion(c, &self.issued, &mut self.completed);
                }
                match output {
                    Output::Publish(msg) => record_publish(&msg, &mut self.unanswered),
                    Output::Subscribe(filter) => self.pending_subs.push(filter),
                    Output::Unsubscribe(_) => {}
                    other => {
                        self.host.handle_output(
                            other,
                            &mut tracked(&mut self.client, &mut self.issued),
                            now,
                        );
                    }
                }
            }
            while let Some(out) = self.host.poll_output() {
                any = true;
                self.on_host_output(out);
            }
            if !any {
                return;
            }
        }
        panic!("outputs never drained: a feedback loop between the client and the host");
    }

    fn end_call(&mut self, handle: HandleId, call: CallId) {
        let key = (handle, call);
        assert!(
            self.open_calls.remove(&key) || self.abandoned.remove(&key),
            "call {key:?} ended twice, or was never made"
        );
    }

    fn on_host_output(&mut self, out: HostOutput) {
        match out {
            HostOutput::Answer { handle, call, .. } => self.end_call(handle, call),
            HostOutput::Refused(Refused::Op(handle, call)) => self.end_call(handle, call),
            HostOutput::Refused(Refused::Request(call)) | HostOutput::Reply { call, .. } => {
                assert!(
                    self.open_requests.remove(&call),
                    "request {call:?} ended twice"
                );
            }
            HostOutput::Refused(Refused::Observe(stream))
            | HostOutput::Observed {
                stream,
                result: Err(_),
            } => {
                self.streams.remove(&(stream.0 as u8));
            }
            HostOutput::Status {
                status: Status::Held { safe_until, .. },
                ..
            } => {
                assert!(
                    safe_until <= self.now.mono.saturating_add(self.longest),
                    "safe_until beyond now + the longest duration asked"
                );
            }
            HostOutput::Leader { handle, event } => match event {
                LeaderEvent::Elected { .. } => {
                    assert!(self.leading.insert(handle), "Elected twice without Deposed");
                }
                LeaderEvent::Renewed { .. } => {
                    assert!(self.leading.contains(&handle), "Renewed while not leading")
                }
                LeaderEvent::Deposed { .. } => {
                    assert!(self.leading.remove(&handle), "Deposed without Elected")
                }
                LeaderEvent::Stopped { .. } => {
                    self.leading.remove(&handle);
                }
                _ => {}
            },
            HostOutput::Gone { handle } => {
                // Calls still open end with their handle.
                self.open_calls.retain(|(h, _)| *h != handle);
                self.abandoned.retain(|(h, _)| *h != handle);
                // Only a dropped handle's machine goes, an edit's once it is done, or all of
                // them after a close.
                let live = self.handles.iter().find(|(_, h)| **h == handle);
                assert!(
                    self.closed || matches!(live, None | Some((HandleSel::Edit, _))),
                    "the machine of live handle {live:?} went away"
                );
            }
            _ => {}
        }
    }

    fn check(&self) {
        let open = self.issued.len() - self.completed.len();
        assert_eq!(
            self.client.in_flight(),
            open,
            "client in-flight count disagrees with the ids without a completion"
        );
    }

    /// Lets every deadline pass (long enough for any lease that may still be held to run out),
    /// answering nothing, until nothing is left in flight.
    fn run_out(&mut self) {
        // Long enough for any lease that may still be held to run out.
        let end = self.now.mono.saturating_add(MAX_WAIT * 3);
        for _ in 0..2_000 {
            if self.now.mono > end {
                break;
            }
            let next = [self.client.poll_timeout(), self.host.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t > self.now.mono)
                .min()
                .unwrap_or(end)
                .max(self.now.mono.saturating_add(Duration::from_millis(1)));
            self.now = self
                .now
                .advanced(next.saturating_duration_since(self.now.mono));
            self.timeouts();
            self.drain();
            self.check();
            if self.host.machines() == 0 && self.client.in_flight() == 0 {
                break;
            }
        }
    }

    /// Ends the run: every handle is dropped, the connection drops, and every deadline passes
    /// (then, if a machine waits for it, the connection comes back and they pass again); then
    /// every request has its single completion, every call its end, and no machine is left.
    pub fn finish(&mut self) {
        let live: Vec<HandleSel> = self.handles.keys().copied().collect();
        for sel in live {
            self.drop_handle(sel, false);
        }
        self.drain();
        self.client.handle_disconnected(self.now);
        self.drain();
        let before: BTreeSet<RequestId> = self.issued.clone();
        self.run_out();
        // A dropped handle's machine waits for the reconnect when a KEYNOTIFY of its own was
        // on its way at the drop: that reconnect may publish it again, and the machine STOPs
        // it afterwards. So the connection comes back (without its session, as after a long
        // outage), and then nothing may be left.
        if self.host.machines() > 0 {
            self.client.handle_connected(false, self.now);
            self.drain();
            for filter in core::mem::take(&mut self.pending_subs) {
                self.client.handle_subscribed(&filter, true, self.now);
            }
            self.drain();
            self.run_out();
        }
        let missing: Vec<_> = before.difference(&self.completed).collect();
        assert!(
            missing.is_empty(),
            "requests without an outcome after every deadline passed: {missing:?}"
        );
        assert_eq!(
            self.host.machines(),
            0,
            "a machine outlived its handle: {:#?}",
            self.host
        );
        assert!(
            self.open_calls.is_empty(),
            "calls never ended: {:?}",
            self.open_calls
        );
        assert!(
            self.open_requests.is_empty(),
            "direct requests never answered: {:?}",
            self.open_requests
        );
    }
}

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
        ("calls", world.next_call as usize),
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
                second: false,
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
            Op::LeaseRelease(false),
        ];
        for op in &script {
            world.step(op);
        }
        assert!(!world.issued.is_empty());
        world.finish();
        assert_eq!(world.issued, world.completed);
    }
}
