//! `core::server::Store` fed an arbitrary sequence of requests from a few clients (well-formed
//! ones built with core's encoders, with fuzzer-chosen `__ts`/`__ft`, redeliveries, raw
//! messages), time jumps, wall-clock steps and disconnects, with a differential check against
//! the store's documented invariants:
//!
//! - no panic, and every answerable request gets exactly one reply on its response topic,
//!   which the client side decodes without a protocol error;
//! - versions strictly increase (every SET version exceeds every earlier one, its request's
//!   `__ts` and is at least its `__ft`; the store clock never goes back);
//! - fencing never accepts a lower token: a write that succeeds on a key protected by token T
//!   carried `__ft` ≥ T, and after a fenced SET the key's token is at least `__ft`;
//! - expired keys are gone and no deadline is left due after `handle_timeout`;
//! - the reply cache answers a redelivery (same `__srcId` and correlation data, from the
//!   structured clients or from raw messages with any ids) with exactly the reply its last
//!   execution got, payload and `__ts`, never another entry's (the cache is a keyed-hash index);
//! - notifications (`NotificationFanout`, keys of any bytes): every notification to one of the
//!   clients parses for that client; a write that succeeded notifies each client registered for
//!   its key, a SET exactly once with its own version and value, and nobody else;
//! - bounded memory: keys, bytes, registrations and cached replies stay within the config.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use core::time::Duration;
use leasedlock_core::command::{
    decode_reply, NotifyPayload, ReplyError, Request, Response, SetCondition, SetOutcome,
    VdelOutcome,
};
use leasedlock_core::envelope::{
    self, build_request, notification_topic, parse_notification, prop, Message,
    NotificationEnvelope, RequestEnvelope,
};
use leasedlock_core::hlc::Hlc;
use leasedlock_core::resp3::Limits;
use leasedlock_core::server::{Store, StoreConfig, StoreOutput};
use leasedlock_core::{Instant, Now};
use leasedlock_fuzz::message::{ArbHlc, ArbKey, FuzzMessage};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

const CLIENTS: [&str; 3] = ["client-a", "client-b", "client-c"];

#[derive(Debug, Arbitrary)]
enum Stamp {
    /// Near the store's wall clock.
    Near {
        delta_ms: i32,
        counter: u16,
    },
    /// A version the store handed out earlier (by index), possibly bumped down or up.
    Seen {
        index: u8,
        lower: bool,
    },
    Text(ArbHlc),
}

#[derive(Debug, Arbitrary)]
enum Op {
    Request {
        client: u8,
        verb: u8,
        key: ArbKey,
        value: u8,
        px_ms: Option<u16>,
        ts: Option<Stamp>,
        ft: Option<Stamp>,
        persist: bool,
        /// Reuse the correlation data of an earlier request (a redelivery) instead of a fresh one.
        redeliver: Option<u8>,
        expiry_s: u8,
    },
    Raw(FuzzMessage),
    Advance {
        ms: u16,
    },
    ToDeadline,
    WallStep {
        delta_ms: i32,
    },
    Disconnect {
        client: u8,
    },
}

struct Harness {
    store: Store,
    now: Now,
    versions: Vec<Hlc>,
    max_version: Option<Hlc>,
    correlations: Vec<(usize, [u8; 16])>,
    next_corr: u128,
    config: StoreConfig,
    /// (`__srcId`, correlation data) → payload and `__ts` of the reply its last execution got.
    executed: BTreeMap<(Bytes, Bytes), (Bytes, Option<Bytes>)>,
}

/// The notifications among `outs` addressed to client `c`, parsed; panics if one does not parse.
fn notifications_to(outs: &[StoreOutput], c: usize) -> Vec<NotificationEnvelope> {
    let prefix = notification_topic(CLIENTS[c], b"");
    outs.iter()
        .filter_map(|o| match o {
            StoreOutput::Publish(m) if m.topic.starts_with(prefix.as_bytes()) => Some(
                parse_notification(m, CLIENTS[c])
                    .unwrap_or_else(|e| panic!("notification to {} unparsable: {e:?}", CLIENTS[c])),
            ),
            _ => None,
        })
        .collect()
}

impl Harness {
    fn stamp(&self, s: &Stamp) -> Bytes {
        match s {
            Stamp::Near { delta_ms, counter } => Hlc::new(
                self.now.wall_ms.saturating_add_signed(i64::from(*delta_ms)),
                u64::from(*counter),
                "client",
            )
            .map(|h| h.to_bytes())
            .unwrap_or_default(),
            Stamp::Seen { index, lower } => {
                let Some(v) = self
                    .versions
                    .get(usize::from(*index) % self.versions.len().max(1))
                else {
                    return Bytes::from_static(b"0:0:none");
                };
                let counter = if *lower {
                    v.counter.saturating_sub(1)
                } else {
                    v.counter
                };
                let millis = if *lower && v.counter == 0 {
                    v.millis.saturating_sub(1)
                } else {
                    v.millis
                };
                Hlc::new(millis, counter, v.node_bytes().clone())
                    .map(|h| h.to_bytes())
                    .unwrap_or_default()
            }
            Stamp::Text(t) => t.bytes(),
        }
    }

    fn drain(&mut self) -> Vec<StoreOutput> {
        let mut outs = Vec::new();
        while let Some(o) = self.store.poll_output() {
            outs.push(o);
            assert!(outs.len() < 10_000, "store outputs never drain");
        }
        for c in 0..CLIENTS.len() {
            notifications_to(&outs, c);
        }
        outs
    }

    /// Hands `msg` to the store and checks the reply cache against `executed`: a replayed
    /// reply is the one the last execution of the same (`__srcId`, correlation) got.
    fn handle(&mut self, msg: &Message) -> (Vec<StoreOutput>, bool) {
        let parsed = envelope::parse_request(msg).ok();
        let replayed_before = self.store.stats().replayed;
        let clock_before = self.store.clock();
        self.store.handle_request(msg, self.now);
        let outs = self.drain();
        assert!(self.store.clock() >= clock_before, "store clock went back");
        let replayed = self.store.stats().replayed > replayed_before;
        let Some(req) = parsed else {
            assert!(!replayed, "a rejected request was answered from the cache");
            return (outs, replayed);
        };
        let replies: Vec<_> = outs
            .iter()
            .filter_map(|o| match o {
                StoreOutput::Publish(m)
                    if m.topic == req.response_topic
                        && m.correlation_data.as_ref() == Some(&req.correlation) =>
                {
                    Some(m)
                }
                _ => None,
            })
            .collect();
        assert_eq!(replies.len(), 1, "expected exactly one reply: {outs:?}");
        let got = (
            replies[0].payload.clone(),
            replies[0].user_property(prop::TIMESTAMP).cloned(),
        );
        let pair = (req.source_id.clone(), req.correlation.clone());
        if replayed {
            assert_eq!(
                self.executed.get(&pair),
                Some(&got),
                "a redelivery got another reply than its last execution"
            );
        } else {
            // At most one entry per op, and ops are capped at 256.
            self.executed.insert(pair, got);
        }
        (outs, replayed)
    }

    fn check_bounds(&self) {
        let c = &self.config;
        assert!(self.store.len() <= c.max_keys);
        assert!(self.store.data_bytes() <= c.max_data_bytes);
        assert!(self.store.registration_count() <= c.max_registrations);
        assert!(self.store.cached_replies() <= c.max_cached_replies);
        let mut bytes = 0;
        for (key, info) in self.store.iter() {
            bytes += key.len() + info.value.len();
            if let Some(at) = info.expires_at {
                assert!(at > self.now.mono, "expired key still stored");
            }
        }
        assert_eq!(bytes, self.store.data_bytes(), "data byte count drifted");
        if let Some(t) = self.store.poll_timeout() {
            assert!(t > self.now.mono, "a deadline is still due");
        }
    }

    fn note_version(&mut self, v: Hlc) {
        if let Some(max) = &self.max_version {
            assert!(&v > max, "version {v} not above earlier {max}");
        }
        self.max_version = Some(v.clone());
        if self.versions.len() < 64 {
            self.versions.push(v);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        client: usize,
        request: Request,
        ts: Option<Bytes>,
        ft: Option<Bytes>,
        persist: bool,
        redeliver: Option<u8>,
        expiry_s: u8,
    ) {
        let client_id = CLIENTS[client];
        let correlation = match redeliver {
            Some(i) if !self.correlations.is_empty() => {
                self.correlations[usize::from(i) % self.correlations.len()].1
            }
            _ => {
                self.next_corr += 1;
                self.next_corr.to_be_bytes()
            }
        };
        self.correlations.push((client, correlation));
        if self.correlations.len() > 32 {
            self.correlations.remove(0);
        }
        let mut payload = Vec::new();
        request.encode(&mut payload);
        let topic = envelope::response_topic(client_id);
        let placeholder = Hlc::new(0, 0, "x").expect("valid");
        let mut msg = build_request(&RequestEnvelope {
            client_id,
            response_topic: &topic,
            correlation,
            timestamp: &placeholder,
            fencing_token: None,
            persist,
            timeout: Duration::from_secs(u64::from(expiry_s)),
            payload: Bytes::from(payload),
        });
        msg.user_properties.retain(|(k, _)| {
            k.as_ref() != prop::TIMESTAMP.as_bytes() && k.as_ref() != prop::FENCING_TOKEN.as_bytes()
        });
        if let Some(ts) = &ts {
            msg.user_properties
                .push((Bytes::from_static(prop::TIMESTAMP.as_bytes()), ts.clone()));
        }
        if let Some(ft) = &ft {
            msg.user_properties.push((
                Bytes::from_static(prop::FENCING_TOKEN.as_bytes()),
                ft.clone(),
            ));
        }
        let key = request.key().clone();
        let before = self.store.get(&key);
        let watchers: Vec<bool> = CLIENTS
            .iter()
            .map(|c| self.store.registrations_of(c.as_bytes()).contains(&key))
            .collect();
        let (outs, replayed) = self.handle(&msg);

        let replies: Vec<_> = outs
            .iter()
            .filter_map(|o| match o {
                StoreOutput::Publish(m) if m.topic.as_ref() == topic.as_bytes() => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(replies.len(), 1, "expected exactly one reply: {outs:?}");
        let reply = replies[0];
        assert_eq!(
            reply.correlation_data.as_deref(),
            Some(correlation.as_slice())
        );
        let env = envelope::parse_response(reply).expect("the store's reply must parse");
        if env.status != 200 || replayed {
            return;
        }
        let decoded = decode_reply(request.kind(), &env.payload, &Limits::default());
        assert!(
            !matches!(
                decoded,
                Err(ReplyError::Decode(_)) | Err(ReplyError::Unexpected(_))
            ),
            "the client cannot understand the store's reply {:?} to {request:?}: {decoded:?}",
            env.payload
        );
        let ft_hlc = ft.as_ref().and_then(|f| Hlc::parse(f).ok());
        let protected = before.as_ref().and_then(|b| b.fencing_token.clone());
        let wrote = matches!(
            decoded,
            Ok(Response::Set(SetOutcome::Applied))
                | Ok(Response::Del(1))
                | Ok(Response::Vdel(VdelOutcome::Deleted))
        );
        if wrote {
            if let Some(t) = &protected {
                let ft = ft_hlc
                    .as_ref()
                    .expect("a protected key was written without __ft");
                assert!(ft >= t, "fencing accepted {ft} below {t}");
            }
        }
        if let Ok(Response::Set(SetOutcome::Applied)) = decoded {
            let v = env
                .timestamp
                .clone()
                .expect("a SET +OK carries its version");
            if let Some(ts) = ts.as_ref().and_then(|t| Hlc::parse(t).ok()) {
                assert!(v > ts, "SET version {v} not above the request __ts {ts}");
            }
            if let Some(ft) = &ft_hlc {
                assert!(&v >= ft, "SET version {v} below its __ft {ft}");
                let now_token = self.store.get(&key).and_then(|i| i.fencing_token);
                assert!(
                    now_token.as_ref() >= Some(ft),
                    "fenced SET did not keep the larger token"
                );
            }
            let stored = self.store.get(&key).expect("a SET key is stored");
            assert_eq!(stored.version, v);
            if let Request::Set { value, .. } = &request {
                // The version is new, so exactly the watchers got this one.
                for (c, watching) in watchers.iter().enumerate() {
                    let copies = notifications_to(&outs, c)
                        .into_iter()
                        .filter(|n| n.version == v)
                        .inspect(|n| {
                            assert_eq!(n.key, key);
                            assert_eq!(
                                n.payload,
                                NotifyPayload::Set {
                                    value: value.clone()
                                }
                            );
                        })
                        .count();
                    assert_eq!(copies, usize::from(*watching), "SET notification to {c}");
                }
            }
            self.note_version(v);
        } else if wrote {
            for (c, _) in watchers.iter().enumerate().filter(|(_, w)| **w) {
                assert!(
                    notifications_to(&outs, c)
                        .iter()
                        .any(|n| n.key == key && n.payload == NotifyPayload::Delete),
                    "no DELETE notification to watcher {c}"
                );
            }
        }
    }
}

fuzz_target!(|input: (u16, u32, Vec<Op>)| {
    let (quota, wall_s, ops) = input;
    let config = StoreConfig {
        max_keys: usize::from(quota % 8) + 1,
        max_data_bytes: usize::from(quota % 512) + 16,
        max_key_len: 64,
        max_value_len: 64,
        max_registrations: usize::from(quota % 5) + 1,
        max_cached_replies: usize::from(quota % 4),
        max_cached_bytes: 4096,
        ..StoreConfig::default()
    };
    let Ok(store) = Store::new(config.clone()) else {
        panic!("default node id rejected");
    };
    let mut h = Harness {
        store,
        now: Now::new(
            Instant::from_millis(1),
            1_600_000_000_000 + u64::from(wall_s) * 1_000,
        ),
        versions: Vec::new(),
        max_version: None,
        correlations: Vec::new(),
        next_corr: 0,
        config,
        executed: BTreeMap::new(),
    };
    for op in ops.iter().take(256) {
        match op {
            Op::Request {
                client,
                verb,
                key,
                value,
                px_ms,
                ts,
                ft,
                persist,
                redeliver,
                expiry_s,
            } => {
                let key = key.bytes();
                let value = Bytes::from(format!("v{}", value % 4));
                let request = match verb % 6 {
                    0 => Request::Set {
                        key,
                        value,
                        condition: match verb / 6 % 3 {
                            0 => SetCondition::Always,
                            1 => SetCondition::NotExists,
                            _ => SetCondition::NotExistsOrEqual,
                        },
                        px_ms: px_ms.map(u64::from),
                    },
                    1 => Request::Get { key },
                    2 => Request::Del { key },
                    3 => Request::Vdel { key, value },
                    4 => Request::KeyNotify { key },
                    _ => Request::KeyNotifyStop { key },
                };
                let ts = ts.as_ref().map(|s| h.stamp(s));
                let ft = ft.as_ref().map(|s| h.stamp(s));
                h.request(
                    usize::from(client % 3),
                    request,
                    ts,
                    ft,
                    *persist,
                    *redeliver,
                    *expiry_s,
                );
            }
            Op::Raw(m) => {
                h.handle(&m.to_message());
            }
            Op::Advance { ms } => {
                h.now = h.now.advanced(Duration::from_millis(u64::from(*ms)));
                h.store.handle_timeout(h.now);
                h.drain();
            }
            Op::ToDeadline => {
                if let Some(at) = h.store.poll_timeout() {
                    h.now = h.now.advanced(at.saturating_duration_since(h.now.mono));
                }
                h.store.handle_timeout(h.now);
                h.drain();
            }
            Op::WallStep { delta_ms } => {
                h.now = Now::new(
                    h.now.mono,
                    h.now.wall_ms.saturating_add_signed(i64::from(*delta_ms)),
                );
            }
            Op::Disconnect { client } => {
                h.store
                    .handle_client_disconnected(CLIENTS[usize::from(client % 3)].as_bytes());
                assert!(h
                    .store
                    .registrations_of(CLIENTS[usize::from(client % 3)].as_bytes())
                    .is_empty());
            }
        }
        h.check_bounds();
    }
});
