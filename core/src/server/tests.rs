//! The test vectors of docs/protocol.md §13 as a table test, plus property tests over random
//! request sequences and hostile messages.

use super::*;
use crate::envelope::{QoS, CONTENT_TYPE, NOTIFY_TOPIC_PREFIX, REQUEST_TOPIC};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use proptest::prelude::*;

const WALL0: u64 = 1_700_000_000_000;
const RESPONSE_TOPIC: &str =
    "clients/c/services/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke/response";

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A RESP3 array of blob strings (built here so the table does not depend on the encoder).
fn cmd(parts: &[&[u8]]) -> Bytes {
    let mut v = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        v.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
        v.extend_from_slice(p);
        v.extend_from_slice(b"\r\n");
    }
    Bytes::from(v)
}

/// How a test request carries `__ts`.
#[derive(Clone)]
enum Ts {
    /// The client's clock: the harness wall clock, counter 0.
    Now,
    None,
    Raw(String),
}

struct Reply {
    msg: Message,
    notes: Vec<Message>,
}

impl Reply {
    fn payload(&self) -> &[u8] {
        &self.msg.payload
    }
    fn ts(&self) -> Option<Hlc> {
        self.msg
            .user_property("__ts")
            .map(|t| Hlc::parse(t).expect("reply __ts parses"))
    }
    fn status(&self) -> Option<&[u8]> {
        self.msg.user_property("__stat").map(|v| &v[..])
    }
}

struct Harness {
    store: Store,
    now: Now,
    next_corr: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(StoreConfig::default())
    }

    fn with(config: StoreConfig) -> Harness {
        Harness {
            store: Store::new(config).unwrap(),
            now: Now::new(Instant::from_millis(1_000), WALL0),
            next_corr: 1,
        }
    }

    fn client_ts(&self, client: &str) -> String {
        format!("{:015}:00000:{}", self.now.wall_ms, client)
    }

    fn request(&mut self, client: &str, payload: Bytes, ts: Ts, ft: Option<&str>) -> Message {
        let mut props = Vec::new();
        if let Some(ft) = ft {
            props.push((b("__ft"), b(ft)));
        }
        props.push((b("__srcId"), b(client)));
        match ts {
            Ts::Now => props.push((b("__ts"), b(&self.client_ts(client)))),
            Ts::Raw(s) => props.push((b("__ts"), b(&s))),
            Ts::None => {}
        }
        props.push((b("__protVer"), b("1.0")));
        props.push((b("$partition"), b(client)));
        let mut corr = [0u8; 16];
        corr[..8].copy_from_slice(&self.next_corr.to_be_bytes());
        self.next_corr += 1;
        Message {
            topic: b(REQUEST_TOPIC),
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            correlation_data: Some(Bytes::copy_from_slice(&corr)),
            response_topic: Some(b(
                &RESPONSE_TOPIC.replace("clients/c/", &format!("clients/{client}/"))
            )),
            message_expiry_secs: Some(10),
            content_type: Some(b(CONTENT_TYPE)),
            payload_format_indicator: None,
            user_properties: props,
        }
    }

    /// Sends a message and collects the outputs: the reply (if any) and the notifications.
    fn send(&mut self, msg: &Message) -> Option<Reply> {
        self.store.handle_request(msg, self.now);
        let mut reply = None;
        let mut notes = Vec::new();
        while let Some(o) = self.store.poll_output() {
            match o {
                StoreOutput::Publish(m) if m.topic.starts_with(NOTIFY_TOPIC_PREFIX.as_bytes()) => {
                    notes.push(m)
                }
                StoreOutput::Publish(m) => {
                    assert!(reply.is_none(), "one reply per request");
                    assert_eq!(Some(&m.topic), msg.response_topic.as_ref());
                    assert_eq!(m.correlation_data, msg.correlation_data);
                    reply = Some(m);
                }
                _ => {}
            }
        }
        reply.map(|msg| Reply { msg, notes })
    }

    fn call(&mut self, client: &str, parts: &[&[u8]]) -> Reply {
        self.call_with(client, parts, Ts::Now, None)
    }

    fn call_with(&mut self, client: &str, parts: &[&[u8]], ts: Ts, ft: Option<&str>) -> Reply {
        let msg = self.request(client, cmd(parts), ts, ft);
        let r = self.send(&msg).expect("a reply");
        assert_eq!(r.status(), Some(&b"200"[..]));
        r
    }

    fn advance(&mut self, ms: u64) -> Vec<Message> {
        self.now = self.now.advanced(Duration::from_millis(ms));
        self.store.handle_timeout(self.now);
        let mut notes = Vec::new();
        while let Some(o) = self.store.poll_output() {
            if let StoreOutput::Publish(m) = o {
                notes.push(m);
            }
        }
        notes
    }
}

const OK: &[u8] = b"+OK\r\n";
const NA: &[u8] = b":-1\r\n";
const ZERO: &[u8] = b":0\r\n";
const ONE: &[u8] = b":1\r\n";
const NIL: &[u8] = b"$-1\r\n";
const DELETE_NOTE: &[u8] = b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n";

fn err(text: &str) -> Vec<u8> {
    format!("-ERR {text}\r\n").into_bytes()
}

fn note_ts(m: &Message) -> Hlc {
    Hlc::parse(m.user_property("__ts").expect("notification __ts")).unwrap()
}

#[test]
fn rows_1_to_3_set_get_miss() {
    let mut h = Harness::new();
    let req_ts = Hlc::parse(&b(&h.client_ts("c"))).unwrap();
    let r1 = h.call("c", &[b"SET", b"k1", b"v1"]);
    assert_eq!(r1.payload(), OK);
    let v1 = r1.ts().expect("SET +OK carries the new version");
    assert!(v1 > req_ts);
    let r2 = h.call("c", &[b"GET", b"k1"]);
    assert_eq!(r2.payload(), b"$2\r\nv1\r\n");
    assert_eq!(r2.ts(), Some(v1));
    let r3 = h.call("c", &[b"GET", b"nope"]);
    assert_eq!((r3.payload(), r3.ts()), (NIL, None));
}

#[test]
fn rows_4_to_7_nx_nex() {
    let mut h = Harness::new();
    let v1 = h.call("c", &[b"SET", b"k1", b"v1"]).ts().unwrap();
    let r4 = h.call("c", &[b"SET", b"k1", b"v1", b"NX"]);
    assert_eq!((r4.payload(), r4.ts()), (NA, Some(v1.clone())));
    let r5 = h.call("c", &[b"SET", b"k1", b"v2", b"NEX"]);
    assert_eq!((r5.payload(), r5.ts()), (NA, Some(v1.clone())));
    h.call("w", &[b"KEYNOTIFY", b"k1"]);
    let r6 = h.call("c", &[b"SET", b"k1", b"v1", b"NEX"]);
    assert_eq!(r6.payload(), OK);
    let v2 = r6.ts().unwrap();
    assert!(v2 > v1);
    assert_eq!(r6.notes.len(), 1, "observers get a SET notification");
    assert_eq!(
        &r6.notes[0].payload[..],
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$2\r\nv1\r\n"
    );
    assert_eq!(note_ts(&r6.notes[0]), v2);
    let r7 = h.call("c", &[b"SET", b"k2", b"v1", b"NEX"]);
    assert_eq!(r7.payload(), OK);
    assert!(r7.ts().unwrap() > v2);
}

#[test]
fn rows_8_to_11_vdel_del() {
    let mut h = Harness::new();
    let v1 = h.call("c", &[b"SET", b"k1", b"v1"]).ts().unwrap();
    h.call("w", &[b"KEYNOTIFY", b"k1"]);
    let r8 = h.call("c", &[b"VDEL", b"k1", b"v9"]);
    assert_eq!((r8.payload(), r8.notes.len()), (NA, 0));
    assert!(h.store.get(b"k1").is_some(), "key kept");
    let r9 = h.call("c", &[b"VDEL", b"k1", b"v1"]);
    assert_eq!(r9.payload(), ONE);
    assert_eq!(r9.ts(), Some(v1.clone()), "the deleted key's version");
    assert_eq!(r9.notes.len(), 1);
    assert_eq!(&r9.notes[0].payload[..], DELETE_NOTE);
    assert!(note_ts(&r9.notes[0]) > v1);
    let r10 = h.call("c", &[b"VDEL", b"k1", b"v1"]);
    assert_eq!((r10.payload(), r10.ts(), r10.notes.len()), (ZERO, None, 0));
    h.call("c", &[b"SET", b"k1", b"v1"]);
    let r11 = h.call("c", &[b"DEL", b"k1"]);
    assert_eq!(r11.payload(), ONE);
    assert_eq!(r11.notes.len(), 1);
    let again = h.call("c", &[b"DEL", b"k1"]);
    assert_eq!((again.payload(), again.ts()), (ZERO, None));
}

#[test]
fn row_12_expiry_fires_on_time_and_notifies() {
    let mut h = Harness::new();
    h.call("w", &[b"KEYNOTIFY", b"k1"]);
    let set_at = h.now.mono;
    let r = h.call("c", &[b"SET", b"k1", b"v1", b"PX", b"1000"]);
    assert_eq!(r.payload(), OK);
    assert_eq!(
        h.store.poll_timeout(),
        Some(set_at + Duration::from_millis(1000))
    );
    assert!(h.advance(999).is_empty());
    assert!(h.store.get(b"k1").is_some());
    let notes = h.advance(1);
    assert_eq!(notes.len(), 1, "DELETE exactly at the deadline");
    assert_eq!(&notes[0].payload[..], DELETE_NOTE);
    assert_eq!(
        &notes[0].topic[..],
        format!("{NOTIFY_TOPIC_PREFIX}/77/command/notify/6B31").as_bytes()
    );
    assert_eq!(h.store.poll_timeout(), None);
    let g = h.call("c", &[b"GET", b"k1"]);
    assert_eq!((g.payload(), g.ts()), (NIL, None));
    assert_eq!(h.store.stats().expired, 1);
}

#[test]
fn row_13_expired_keys_are_absent_before_the_timer_runs() {
    for (verb, expect) in [
        (&[&b"SET"[..], b"k1", b"x", b"NX"][..], OK),
        (&[&b"SET"[..], b"k1", b"x", b"NEX"][..], OK),
        (&[&b"VDEL"[..], b"k1", b"v1"][..], ZERO),
        (&[&b"DEL"[..], b"k1"][..], ZERO),
    ] {
        let mut h = Harness::new();
        h.call("w", &[b"KEYNOTIFY", b"k1"]);
        h.call("c", &[b"SET", b"k1", b"v1", b"PX", b"100"]);
        // Time passes without handle_timeout.
        h.now = h.now.advanced(Duration::from_millis(150));
        let r = h.call("c", verb);
        assert_eq!(r.payload(), expect);
        // The expiry's DELETE went out first.
        assert_eq!(&r.notes[0].payload[..], DELETE_NOTE);
    }
}

#[test]
fn row_14_empty_value() {
    let mut h = Harness::new();
    let v = h.call("c", &[b"SET", b"k1", b""]).ts().unwrap();
    let g = h.call("c", &[b"GET", b"k1"]);
    assert_eq!((g.payload(), g.ts()), (&b"$0\r\n\r\n"[..], Some(v)));
}

/// Rows 15–21: the lock and fencing sequence.
#[test]
fn rows_15_to_21_fencing() {
    let mut h = Harness::new();
    let r15 = h.call(
        "client1",
        &[b"SET", b"lock1", b"client1:s1", b"NEX", b"PX", b"10000"],
    );
    assert_eq!(r15.payload(), OK);
    let t1 = r15.ts().unwrap();
    let r16 = h.call(
        "client2",
        &[b"SET", b"lock1", b"client2:s1", b"NEX", b"PX", b"10000"],
    );
    assert_eq!((r16.payload(), r16.ts()), (NA, Some(t1.clone())));
    let t1s = t1.to_string();
    let r17 = h.call_with("client1", &[b"SET", b"p1", b"v"], Ts::Now, Some(&t1s));
    assert_eq!(r17.payload(), OK);
    let v17 = r17.ts().unwrap();
    assert!(v17 >= t1);
    assert_eq!(h.store.get(b"p1").unwrap().fencing_token, Some(t1.clone()));
    let missing = err("a fencing token is required for this request");
    for parts in [
        &[&b"SET"[..], b"p1", b"w"][..],
        &[&b"DEL"[..], b"p1"][..],
        &[&b"VDEL"[..], b"p1", b"v"][..],
    ] {
        assert_eq!(h.call("client1", parts).payload(), &missing[..]);
    }
    let t0 = Hlc::new(t1.millis - 1, 0, "client1").unwrap().to_string();
    let lower = err(
        "the request fencing token is a lower version than the fencing token protecting the resource",
    );
    for parts in [&[&b"SET"[..], b"p1", b"w"][..], &[&b"DEL"[..], b"p1"][..]] {
        let r = h.call_with("client1", parts, Ts::Now, Some(&t0));
        assert_eq!(r.payload(), &lower[..]);
    }
    let r20 = h.call_with("client1", &[b"SET", b"p1", b"w"], Ts::Now, Some(&t1s));
    assert_eq!(r20.payload(), OK, "equal token accepted");
    let r21 = h.call_with("client1", &[b"VDEL", b"p1", b"zz"], Ts::Now, Some(&t1s));
    assert_eq!(r21.payload(), NA, "valid token, wrong value");
    // A higher token replaces the stored one; DEL removes key and token together.
    let t2 = Hlc::new(t1.millis + 1, 0, "x").unwrap().to_string();
    assert_eq!(
        h.call_with("c", &[b"SET", b"p1", b"y"], Ts::Now, Some(&t2))
            .payload(),
        OK
    );
    assert_eq!(
        h.call_with("c", &[b"SET", b"p1", b"y"], Ts::Now, Some(&t1s))
            .payload(),
        &lower[..]
    );
    assert_eq!(
        h.call_with("c", &[b"DEL", b"p1"], Ts::Now, Some(&t2))
            .payload(),
        ONE
    );
    assert_eq!(h.call("c", &[b"SET", b"p1", b"free"]).payload(), OK);
}

#[test]
fn rows_22_to_25_timestamps() {
    let mut h = Harness::new();
    let ten_years = Hlc::new(h.now.wall_ms + 10 * 365 * 86_400_000, 0, "c")
        .unwrap()
        .to_string();
    assert_eq!(
        h.call_with("c", &[b"SET", b"k", b"v"], Ts::Now, Some(&ten_years)).payload(),
        &err("the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized")[..]
    );
    let two_min = Hlc::new(h.now.wall_ms + 120_000, 0, "c")
        .unwrap()
        .to_string();
    assert_eq!(
        h.call_with("c", &[b"SET", b"k", b"v"], Ts::Raw(two_min), None).payload(),
        &err("the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized")[..]
    );
    assert_eq!(
        h.call_with("c", &[b"SET", b"k", b"v"], Ts::None, None)
            .payload(),
        &err("missing timestamp")[..]
    );
    let malformed = err("malformed timestamp");
    assert_eq!(
        h.call_with("c", &[b"SET", b"k", b"v"], Ts::Raw("abc".into()), None)
            .payload(),
        &malformed[..]
    );
    assert_eq!(
        h.call_with("c", &[b"SET", b"k", b"v"], Ts::Now, Some("1:2"))
            .payload(),
        &malformed[..]
    );
    let huge_counter = format!("{:015}:{}:c", h.now.wall_ms, u64::from(u32::MAX));
    assert_eq!(
        h.call_with("c", &[b"SET", b"k", b"v"], Ts::Raw(huge_counter), None)
            .payload(),
        &malformed[..]
    );
    // Just within the skew is accepted, and the version exceeds it.
    let ahead = Hlc::new(h.now.wall_ms + 59_000, 3, "c").unwrap();
    let r = h.call_with("c", &[b"SET", b"k", b"v"], Ts::Raw(ahead.to_string()), None);
    assert_eq!(r.payload(), OK);
    assert!(r.ts().unwrap() > ahead);
    assert!(h.store.get(b"k").is_some());
    // GET needs no timestamp.
    assert_eq!(
        h.call_with("c", &[b"GET", b"k"], Ts::None, None).payload(),
        b"$1\r\nv\r\n"
    );
}

#[test]
fn rows_26_to_30_payload_errors() {
    let mut h = Harness::new();
    assert_eq!(
        h.call("c", &[b"GET", b""]).payload(),
        &err("the key length is zero")[..]
    );
    assert_eq!(
        h.call("c", &[b"PING", b"k"]).payload(),
        &err("unknown command")[..]
    );
    assert_eq!(
        h.call("c", &[b"SET", b"k1"]).payload(),
        &err("wrong number of arguments")[..]
    );
    let syntax = err("syntax error");
    for raw in [
        &b"SET k1 v1\r\n"[..],
        b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$9\r\nv1\r\n",
    ] {
        let msg = h.request("c", Bytes::from_static(raw), Ts::Now, None);
        assert_eq!(h.send(&msg).unwrap().payload(), &syntax[..]);
    }
    for px in [&b"abc"[..], b"1500.5", b"0"] {
        assert_eq!(
            h.call("c", &[b"SET", b"k", b"v", b"PX", px]).payload(),
            &syntax[..]
        );
    }
    assert!(h.store.is_empty());
}

#[test]
fn rows_31_to_35_keynotify() {
    let mut h = Harness::new();
    assert_eq!(h.call("client-id1", &[b"KEYNOTIFY", b"k1"]).payload(), OK);
    assert_eq!(
        h.call("client-id1", &[b"KEYNOTIFY", b"k1"]).payload(),
        OK,
        "idempotent"
    );
    assert_eq!(h.store.registrations_of(b"client-id1"), vec![b("k1")]);
    assert_eq!(
        h.call("client-id1", &[b"KEYNOTIFY", b"k1", b"STOP"])
            .payload(),
        OK
    );
    assert_eq!(h.call("client-id1", &[b"SET", b"k1", b"v"]).notes.len(), 0);
    assert_eq!(
        h.call("client-id1", &[b"KEYNOTIFY", b"k1", b"STOP"])
            .payload(),
        ZERO
    );

    // Row 34.
    h.call("client-id1", &[b"KEYNOTIFY", b"SOMEKEY"]);
    let r = h.call("other", &[b"SET", b"SOMEKEY", b"abc"]);
    assert_eq!(r.payload(), OK);
    assert_eq!(r.notes.len(), 1);
    let n = &r.notes[0];
    assert_eq!(
        &n.topic[..],
        &b"clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559"[..]
    );
    assert_eq!(
        &n.payload[..],
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n"
    );
    assert_eq!(Some(note_ts(n)), r.ts());
    assert_eq!(n.qos, QoS::AtLeastOnce);

    // Row 35: a disconnect drops the registrations until KEYNOTIFY is sent again.
    assert_eq!(h.store.handle_client_disconnected(b"client-id1"), 1);
    assert_eq!(h.call("other", &[b"SET", b"SOMEKEY", b"x"]).notes.len(), 0);
    h.call("client-id1", &[b"KEYNOTIFY", b"SOMEKEY"]);
    assert_eq!(h.call("other", &[b"SET", b"SOMEKEY", b"y"]).notes.len(), 1);
}

#[test]
fn row_36_unsupported_version_and_row_37_unanswerable() {
    let mut h = Harness::new();
    let mut msg = h.request("c", cmd(&[b"GET", b"k"]), Ts::Now, None);
    for p in &mut msg.user_properties {
        if &p.0[..] == b"__protVer" {
            p.1 = b("2.0");
        }
    }
    let r = h.send(&msg).unwrap();
    assert_eq!(r.status(), Some(&b"505"[..]));
    assert_eq!(
        r.msg.user_property("__supProtMajVer").map(|v| &v[..]),
        Some(&b"1"[..])
    );
    assert_eq!(
        r.msg.user_property("__requestProtVer").map(|v| &v[..]),
        Some(&b"2.0"[..])
    );

    let mut no_corr = h.request("c", cmd(&[b"SET", b"k", b"v"]), Ts::Now, None);
    no_corr.correlation_data = None;
    assert!(h.send(&no_corr).is_none());
    let mut no_topic = h.request("c", cmd(&[b"SET", b"k", b"v"]), Ts::Now, None);
    no_topic.response_topic = None;
    assert!(h.send(&no_topic).is_none());
    assert!(h.store.is_empty(), "nothing ran");
    assert_eq!(h.store.stats().dropped, 2);
}

#[test]
fn bad_header_gets_400_with_prop_name() {
    let mut h = Harness::new();
    let mut msg = h.request("c", cmd(&[b"GET", b"k"]), Ts::Now, None);
    msg.message_expiry_secs = None;
    let r = h.send(&msg).unwrap();
    assert_eq!(r.status(), Some(&b"400"[..]));
    assert!(r.msg.user_property("__propName").is_some());
}

#[test]
fn redelivery_is_served_from_the_cache() {
    let mut h = Harness::new();
    h.call("w", &[b"KEYNOTIFY", b"k"]);
    let msg = h.request("c", cmd(&[b"SET", b"k", b"v", b"NX"]), Ts::Now, None);
    let first = h.send(&msg).unwrap();
    assert_eq!((first.payload(), first.notes.len()), (OK, 1));
    h.now = h.now.advanced(Duration::from_millis(3_500));
    let again = h.send(&msg).unwrap();
    assert_eq!(
        again.payload(),
        OK,
        "not run twice (a second NX would answer :-1)"
    );
    assert_eq!(again.ts(), first.ts());
    assert_eq!(again.notes.len(), 0);
    assert_eq!(again.msg.message_expiry_secs, Some(7));
    assert_eq!(h.store.stats().replayed, 1);
    // After the request's expiry it is a new request.
    h.now = h.now.advanced(Duration::from_secs(7));
    assert_eq!(h.send(&msg).unwrap().payload(), NA);
}

#[test]
fn replies_carry_remaining_expiry_and_versions_per_spec_table() {
    let mut h = Harness::new();
    let r = h.call("c", &[b"KEYNOTIFY", b"k"]);
    assert_eq!((r.ts(), r.msg.message_expiry_secs), (None, Some(10)));
    assert_eq!(h.call("c", &[b"DEL", b"k"]).ts(), None);
    assert_eq!(h.call("c", &[b"VDEL", b"k", b"v"]).ts(), None);
    assert_eq!(h.call("c", &[b"GET", b""]).ts(), None);
}

#[test]
fn quotas_answer_with_the_quota_error() {
    let quota = err("the quota has been exceeded");
    let mut h = Harness::with(StoreConfig {
        max_keys: 2,
        max_data_bytes: 19,
        max_key_len: 8,
        max_value_len: 8,
        max_registrations: 1,
        ..StoreConfig::default()
    });
    assert_eq!(h.call("c", &[b"SET", b"k1", b"v"]).payload(), OK);
    assert_eq!(h.call("c", &[b"SET", b"k2", b"v"]).payload(), OK);
    assert_eq!(h.call("c", &[b"SET", b"k3", b"v"]).payload(), &quota[..]);
    assert_eq!(
        h.call("c", &[b"SET", b"k1", b"123456789"]).payload(),
        &quota[..]
    );
    assert_eq!(
        h.call("c", &[b"SET", b"123456789", b"v"]).payload(),
        &quota[..]
    );
    assert_eq!(h.call("c", &[b"SET", b"k1", b"12345678"]).payload(), OK);
    assert_eq!(
        h.call("c", &[b"SET", b"k2", b"12345678"]).payload(),
        &quota[..],
        "19 data bytes at most"
    );
    assert_eq!(h.call("c", &[b"KEYNOTIFY", b"a"]).payload(), OK);
    assert_eq!(h.call("c", &[b"KEYNOTIFY", b"a"]).payload(), OK);
    assert_eq!(h.call("c", &[b"KEYNOTIFY", b"b"]).payload(), &quota[..]);
    assert_eq!(h.store.data_bytes(), 2 + 8 + 2 + 1);
}

#[test]
fn persistence_outputs_precede_the_reply_and_restore_round_trips() {
    let mut h = Harness::new();
    let mut msg = h.request(
        "c",
        cmd(&[b"SET", b"pk", b"pv", b"PX", b"60000"]),
        Ts::Now,
        None,
    );
    msg.user_properties.push((b("aio-persistence"), b("true")));
    h.store.handle_request(&msg, h.now);
    let rec = match h.store.poll_output() {
        Some(StoreOutput::Persist(rec)) => rec,
        other => panic!("expected Persist first, got {other:?}"),
    };
    assert!(matches!(
        h.store.poll_output(),
        Some(StoreOutput::Publish(_))
    ));
    assert_eq!((&rec.key[..], &rec.value[..]), (&b"pk"[..], &b"pv"[..]));
    assert_eq!(rec.expires_at_wall_ms, Some(h.now.wall_ms + 60_000));

    // Overwriting without persistence forgets the record before replying.
    let overwrite = h.request("c", cmd(&[b"SET", b"pk", b"x"]), Ts::Now, None);
    h.store.handle_request(&overwrite, h.now);
    assert_eq!(h.store.poll_output(), Some(StoreOutput::Forget(b("pk"))));

    let mut fresh = Harness::new();
    fresh.now = h.now.advanced(Duration::from_secs(30));
    assert_eq!(fresh.store.restore(&rec, fresh.now), Ok(true));
    let info = fresh.store.get(b"pk").unwrap();
    assert_eq!(
        (info.version.clone(), info.persisted),
        (rec.version.clone(), true)
    );
    assert_eq!(
        info.expires_at,
        Some(fresh.now.mono + Duration::from_secs(30))
    );
    assert!(fresh.store.clock() >= rec.version);
    let later = fresh.now.advanced(Duration::from_secs(31));
    let mut gone = Harness::new();
    assert_eq!(gone.store.restore(&rec, later), Ok(false));
    // Expiry of a persisted key forgets it.
    let notes: Vec<_> = {
        fresh.now = fresh.now.advanced(Duration::from_secs(30));
        fresh.store.handle_timeout(fresh.now);
        core::iter::from_fn(|| fresh.store.poll_output()).collect()
    };
    assert_eq!(notes, vec![StoreOutput::Forget(b("pk"))]);
}

#[test]
fn persist_expiring_keeps_leases_across_a_restart() {
    let config = StoreConfig {
        persist_expiring: true,
        ..StoreConfig::default()
    };
    let mut h = Harness::with(config.clone());
    // A lease (a SET with PX, no aio-persistence) is persisted before its reply.
    let set = h.request(
        "a",
        cmd(&[b"SET", b"lock", b"holder-a", b"NEX", b"PX", b"2000"]),
        Ts::Now,
        None,
    );
    h.store.handle_request(&set, h.now);
    let rec = match h.store.poll_output() {
        Some(StoreOutput::Persist(rec)) => rec,
        other => panic!("a key with an expiry must be persisted, got {other:?}"),
    };
    assert_eq!(rec.expires_at_wall_ms, Some(h.now.wall_ms + 2000));
    // A plain SET (no expiry, no aio-persistence) is still not persisted.
    let plain = h.request("a", cmd(&[b"SET", b"data", b"v"]), Ts::Now, None);
    h.store.handle_request(&plain, h.now);
    assert!(matches!(
        h.store.poll_output(),
        Some(StoreOutput::Publish(_))
    ));

    // The restarted store still knows the holder: a newcomer's NEX is refused.
    let mut restarted = Harness::with(config);
    restarted.now = h.now.advanced(Duration::from_millis(500));
    assert_eq!(restarted.store.restore(&rec, restarted.now), Ok(true));
    let refused = restarted.call("b", &[b"SET", b"lock", b"holder-b", b"NEX", b"PX", b"2000"]);
    assert_eq!(refused.payload(), b":-1\r\n");
    let info = restarted.store.get(b"lock").unwrap();
    assert_eq!(
        info.expires_at,
        Some(restarted.now.mono + Duration::from_millis(1500))
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests.

#[derive(Debug, Clone)]
enum Op {
    Set {
        key: u8,
        val: u8,
        cond: u8,
        px: Option<u16>,
        ft: Option<u8>,
        persist: bool,
    },
    Get {
        key: u8,
    },
    Del {
        key: u8,
        ft: Option<u8>,
    },
    Vdel {
        key: u8,
        val: u8,
        ft: Option<u8>,
    },
    Notify {
        key: u8,
        stop: bool,
    },
    Disconnect,
    Redeliver,
    Advance {
        ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..4;
    let ft = proptest::option::of(0u8..6);
    prop_oneof![
        (
            key.clone(),
            0u8..3,
            0u8..3,
            proptest::option::of(1u16..500),
            ft.clone(),
            any::<bool>()
        )
            .prop_map(|(key, val, cond, px, ft, persist)| Op::Set {
                key,
                val,
                cond,
                px,
                ft,
                persist
            }),
        key.clone().prop_map(|key| Op::Get { key }),
        (key.clone(), ft.clone()).prop_map(|(key, ft)| Op::Del { key, ft }),
        (key.clone(), 0u8..3, ft).prop_map(|(key, val, ft)| Op::Vdel { key, val, ft }),
        (key, any::<bool>()).prop_map(|(key, stop)| Op::Notify { key, stop }),
        Just(Op::Disconnect),
        Just(Op::Redeliver),
        (0u16..400).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// What the protocol asks for in reply to a request PUBLISH.
#[derive(Debug)]
enum Expect {
    /// No reply: nowhere to send it, or a response topic in the store's own namespace.
    Nothing,
    /// An RPC error status, with the header named in `__propName` when there is one.
    Status(&'static str, Option<&'static str>),
    /// A 200 whose payload answers the command.
    Payload,
}

/// `<major>.<minor>`, both decimal.
fn version_major(v: &[u8]) -> Option<u32> {
    let text = core::str::from_utf8(v).ok()?;
    let (major, minor) = text.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    major.parse().ok()
}

/// The protocol's rules, checked in its order (written out here, not taken from the store).
fn expected_reply(msg: &Message) -> Expect {
    let (Some(topic), Some(corr)) = (&msg.response_topic, &msg.correlation_data) else {
        return Expect::Nothing;
    };
    let unpublishable = topic.is_empty()
        || topic.iter().any(|&c| matches!(c, b'+' | b'#' | 0))
        || core::str::from_utf8(topic).is_err();
    if corr.is_empty() || unpublishable {
        return Expect::Nothing;
    }
    if topic.as_ref() == REQUEST_TOPIC.as_bytes()
        || topic.starts_with(NOTIFY_TOPIC_PREFIX.as_bytes())
    {
        return Expect::Nothing;
    }
    if let Some(v) = msg.user_property("__protVer") {
        match version_major(v) {
            Some(1) => {}
            Some(_) => return Expect::Status("505", None),
            None => return Expect::Status("400", Some("__protVer")),
        }
    }
    if msg.message_expiry_secs.is_none() {
        return Expect::Status("400", Some("Message Expiry"));
    }
    if msg.user_property("__srcId").is_none_or(|id| id.is_empty()) {
        return Expect::Status("400", Some("__srcId"));
    }
    if msg
        .content_type
        .as_ref()
        .is_some_and(|ct| ct.as_ref() != CONTENT_TYPE.as_bytes())
    {
        return Expect::Status("415", Some("Content Type"));
    }
    Expect::Payload
}

/// A 200 reply's payload is one RESP3 value; a payload that is no valid command gets an error
/// value, and a SET gets `+OK`, `:-1` or an error.
fn check_payload_reply(h: &Harness, msg: &Message, reply: &[u8]) -> Result<(), TestCaseError> {
    let value = crate::resp3::decode(
        &Bytes::copy_from_slice(reply),
        &crate::resp3::Limits::default(),
    );
    prop_assert!(value.is_ok(), "malformed reply {:?}", reply);
    let value = value.unwrap();
    match Request::parse(&msg.payload, &h.store.config().limits) {
        Err(_) => prop_assert!(
            matches!(value, crate::resp3::Value::Error(_)),
            "{:?}",
            value
        ),
        Ok(Request::Set { .. }) => prop_assert!(
            matches!(
                &value,
                crate::resp3::Value::Error(_) | crate::resp3::Value::Integer(-1)
            ) || matches!(&value, crate::resp3::Value::Simple(t) if t.as_ref() == b"OK"),
            "{:?}",
            value
        ),
        Ok(_) => {}
    }
    Ok(())
}

proptest! {
    /// Random request sequences: versions strictly increase, a SET version exceeds its request
    /// `__ts`, fencing never accepts a lower token, the store matches a simple reference model,
    /// the bounds hold and every request gets exactly one reply.
    #[test]
    fn random_sequences_keep_the_invariants(ops in proptest::collection::vec((0u8..3, op()), 1..80)) {
        let config = StoreConfig { max_keys: 3, max_data_bytes: 12, max_registrations: 4, max_cached_replies: 3, ..StoreConfig::default() };
        let mut h = Harness::with(config.clone());
        let mut last_version: Option<Hlc> = None;
        // The last request, when it was sent, and its reply (payload, `__ts`).
        let mut last: Option<(Message, Now, Vec<u8>, Option<Hlc>)> = None;
        // Reference: key -> value (no quotas modelled when a quota error comes back).
        let mut model: alloc::collections::BTreeMap<u8, u8> = alloc::collections::BTreeMap::new();
        let tokens: Vec<String> = (0..6u64).map(|i| Hlc::new(WALL0 + i * 50, i, "t").unwrap().to_string()).collect();
        for (client_no, op) in ops {
            let client = ["a", "b", "c"][usize::from(client_no)];
            let kname = |k: u8| [b'k', b'0' + k];
            let before = |h: &Harness, k: u8| h.store.get(&kname(k));
            let (parts, ft, persist, key): (Vec<Vec<u8>>, Option<u8>, bool, Option<u8>) = match &op {
                Op::Set { key, val, cond, px, ft, persist } => {
                    let mut p = vec![b"SET".to_vec(), kname(*key).to_vec(), vec![b'v', b'0' + val]];
                    match cond { 1 => p.push(b"NX".to_vec()), 2 => p.push(b"NEX".to_vec()), _ => {} }
                    if let Some(px) = px { p.push(b"PX".to_vec()); p.push(px.to_string().into_bytes()); }
                    (p, *ft, *persist, Some(*key))
                }
                Op::Get { key } => (vec![b"GET".to_vec(), kname(*key).to_vec()], None, false, Some(*key)),
                Op::Del { key, ft } => (vec![b"DEL".to_vec(), kname(*key).to_vec()], *ft, false, Some(*key)),
                Op::Vdel { key, val, ft } => (vec![b"VDEL".to_vec(), kname(*key).to_vec(), vec![b'v', b'0' + val]], *ft, false, Some(*key)),
                Op::Notify { key, stop } => {
                    let mut p = vec![b"KEYNOTIFY".to_vec(), kname(*key).to_vec()];
                    if *stop { p.push(b"STOP".to_vec()); }
                    (p, None, false, None)
                }
                Op::Disconnect => { h.store.handle_client_disconnected(client.as_bytes()); continue; }
                Op::Redeliver => {
                    if let Some((m, sent_at, payload, ts)) = last.clone() {
                        let snapshot = |h: &Harness| {
                            let mut keys: Vec<(Bytes, KeyInfo)> = h.store.iter().collect();
                            keys.sort_by(|a, b| a.0.cmp(&b.0));
                            (keys, h.store.clock(), h.store.registration_count())
                        };
                        let before = snapshot(&h);
                        let replayed = h.store.stats().replayed;
                        let is_get = Request::parse(&m.payload, &config.limits)
                            .is_ok_and(|r| matches!(r, Request::Get { .. }));
                        let again = h.send(&m);
                        prop_assert!(again.is_some());
                        let again = again.unwrap();
                        // Within its Message Expiry (10 s) a copy is the same request: answered
                        // from the cache with the very reply, and not run a second time. A GET
                        // is not cached (running it again changes nothing).
                        let live = h.now.mono < sent_at.mono + Duration::from_secs(10);
                        if live && !is_get {
                            prop_assert_eq!(h.store.stats().replayed, replayed + 1);
                            prop_assert_eq!(again.payload(), &payload[..]);
                            prop_assert_eq!(again.ts(), ts);
                            prop_assert!(again.notes.is_empty(), "a replay notified again");
                            prop_assert!(snapshot(&h) == before, "the request ran twice");
                        }
                        if is_get {
                            prop_assert!(snapshot(&h) == before, "a GET changed the store");
                        }
                    }
                    continue;
                }
                Op::Advance { ms } => {
                    h.advance(u64::from(*ms));
                    model.retain(|k, _| h.store.get(&kname(*k)).is_some());
                    continue;
                }
            };
            let stored_before = key.and_then(|k| before(&h, k));
            let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            let ft_text = ft.map(|i| tokens[usize::from(i)].clone());
            let mut msg = h.request(client, cmd(&refs), Ts::Now, ft_text.as_deref());
            if persist { msg.user_properties.push((b("aio-persistence"), b("true"))); }
            let req_ts = Hlc::parse(msg.user_property("__ts").unwrap()).unwrap();
            let r = h.send(&msg);
            prop_assert!(r.is_some());
            let r = r.unwrap();
            last = Some((msg, h.now, r.payload().to_vec(), r.ts()));
            let mutated = matches!(r.payload(), OK | ONE) && matches!(op, Op::Set{..} | Op::Del{..} | Op::Vdel{..});
            if mutated {
                if let Some(stored) = stored_before.as_ref().and_then(|s| s.fencing_token.clone()) {
                    let ft = ft_text.as_deref().map(|t| Hlc::parse(&b(t)).unwrap());
                    prop_assert!(ft.is_some_and(|f| f >= stored), "fencing accepted a lower or missing token");
                }
            }
            if matches!(op, Op::Set{..}) && r.payload() == OK {
                let v = r.ts().unwrap();
                prop_assert!(v > req_ts);
                if let Some(last) = &last_version { prop_assert!(&v > last); }
                last_version = Some(v);
            }
            for n in &r.notes {
                let v = note_ts(n);
                if let Some(last) = &last_version { prop_assert!(&v >= last); }
                last_version = Some(v);
            }
            // Reference model of values.
            match (&op, r.payload()) {
                (Op::Set { key, val, .. }, OK) => { model.insert(*key, *val); }
                (Op::Del { key, .. } | Op::Vdel { key, .. }, ONE) => { model.remove(key); }
                (Op::Get { key }, p) => {
                    let expect = model.get(key).map(|v| format!("$2\r\nv{v}\r\n").into_bytes()).unwrap_or(NIL.to_vec());
                    prop_assert_eq!(p, &expect[..]);
                }
                _ => {}
            }
            prop_assert!(h.store.len() <= config.max_keys);
            prop_assert!(h.store.data_bytes() <= config.max_data_bytes);
            prop_assert!(h.store.registration_count() <= config.max_registrations);
            prop_assert!(h.store.cached_replies() <= config.max_cached_replies);
        }
        // Every stored key has a pending expiry or none; the timer names the earliest.
        let earliest = h.store.iter().filter_map(|(_, i)| i.expires_at).min();
        prop_assert_eq!(h.store.poll_timeout(), earliest);
    }

    /// Random payloads and random mutations of a valid request never panic, and each gets the
    /// reply the protocol asks for: none when there is nowhere to reply, an RPC status for a
    /// bad header (the first one that fails, in the protocol's order), else a 200 with a
    /// well-formed RESP3 value (an error value when the payload is not a valid command). A
    /// second copy gets the same answer.
    #[test]
    fn hostile_messages_get_the_reply_the_protocol_asks_for(
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        prop_mut in proptest::collection::vec((0usize..10, proptest::collection::vec(any::<u8>(), 0..24)), 0..4),
        expiry in proptest::option::of(any::<u32>()),
    ) {
        let mut h = Harness::new();
        let mut msg = h.request("c", Bytes::from(payload), Ts::Now, Some("1:2:x"));
        let first = h.send(&msg);
        prop_assert!(first.is_some());
        let first = first.unwrap();
        prop_assert_eq!(first.status(), Some(&b"200"[..]));
        check_payload_reply(&h, &msg, first.payload())?;
        let mut valid = cmd(&[b"SET", b"k", b"v", b"NEX", b"PX", b"100"]).to_vec();
        for (pos, byte) in flips {
            let i = pos % valid.len();
            valid[i] = byte;
        }
        msg.payload = Bytes::from(valid);
        msg.message_expiry_secs = expiry;
        for (i, v) in prop_mut {
            let v = Bytes::from(v);
            match i {
                0 => msg.correlation_data = Some(v),
                1 => msg.response_topic = Some(v),
                2 => msg.content_type = Some(v),
                3 => msg.topic = v,
                4 => {
                    // Drop one header (by the first byte of `v`).
                    let idx = usize::from(v.first().copied().unwrap_or(0)) % msg.user_properties.len().max(1);
                    if idx < msg.user_properties.len() {
                        msg.user_properties.remove(idx);
                    }
                }
                _ => {
                    let idx = (i - 5) % msg.user_properties.len().max(1);
                    if let Some(p) = msg.user_properties.get_mut(idx) { p.1 = v; }
                }
            }
        }
        let expect = expected_reply(&msg);
        let one = h.send(&msg);
        let two = h.send(&msg);
        for reply in [&one, &two] {
            match (&expect, reply) {
                (Expect::Nothing, None) => {}
                (Expect::Status(status, name), Some(r)) => {
                    prop_assert_eq!(r.status(), Some(status.as_bytes()));
                    prop_assert_eq!(r.msg.user_property("__propName").map(|v| &v[..]), name.map(str::as_bytes));
                    prop_assert!(r.payload().is_empty());
                }
                (Expect::Payload, Some(r)) => {
                    prop_assert_eq!(r.status(), Some(&b"200"[..]));
                    check_payload_reply(&h, &msg, r.payload())?;
                }
                (e, r) => prop_assert!(false, "expected {:?}, got {:?}", e, r.as_ref().map(|r| r.status())),
            }
        }
        if let (Some(one), Some(two)) = (&one, &two) {
            prop_assert_eq!(one.payload(), two.payload());
            prop_assert_eq!(one.status(), two.status());
        }
        h.advance(200);
    }
}

/// A PX whose deadline does not fit the store's clock is refused like any other bad PX, and a
/// SET + DEL loop with such PX values leaves nothing behind: before, the saturated deadline
/// equalled the "no expiry" marker, so the key's index entry was never removed again and the
/// index grew by one entry per loop.
#[test]
fn huge_px_is_refused_and_the_expiry_index_stays_bounded() {
    let mut h = Harness::new();
    let huge = [
        u64::MAX.to_string(),
        (u64::MAX / 1_000_000).to_string(),
        (MAX_PX_MS + 1).to_string(),
    ];
    let mut accepted = Vec::new();
    for round in 0..300u32 {
        let px = &huge[round as usize % huge.len()];
        let key = format!("k{}", round % 7);
        let r = h.call("c", &[b"SET", key.as_bytes(), b"v", b"PX", px.as_bytes()]);
        h.call("c", &[b"DEL", key.as_bytes()]);
        assert!(
            h.store.expiry.len() <= 1,
            "expiry index grew to {}",
            h.store.expiry.len()
        );
        assert!(h.store.len() <= 1);
        if r.payload() != &err("syntax error")[..] {
            accepted.push(px.clone());
        }
    }
    assert!(accepted.is_empty(), "huge PX accepted: {accepted:?}");
    assert_eq!((h.store.expiry.len(), h.store.len()), (0, 0));
    // The largest accepted PX still expires on its deadline and leaves nothing behind.
    let max = MAX_PX_MS.to_string();
    assert_eq!(
        h.call("c", &[b"SET", b"k", b"v", b"PX", max.as_bytes()])
            .payload(),
        OK
    );
    assert_eq!(h.store.expiry.len(), 1);
    h.call("c", &[b"DEL", b"k"]);
    assert_eq!((h.store.expiry.len(), h.store.len()), (0, 0));
}

/// A restored record whose expiry lies beyond what a SET can ask for is refused before it
/// replaces anything, and leaves no index entry behind.
#[test]
fn restore_refuses_an_unrepresentable_expiry() {
    let mut h = Harness::new();
    h.call("c", &[b"SET", b"k", b"old"]);
    let rec = PersistedKey {
        key: b("k"),
        value: b("v"),
        version: Hlc::new(WALL0, 1, "store").unwrap(),
        fencing_token: None,
        expires_at_wall_ms: Some(u64::MAX),
    };
    assert_eq!(h.store.restore(&rec, h.now), Err(StoreError::BadRecord));
    assert_eq!(h.store.get(b"k").map(|i| i.value), Some(b("old")));
    assert_eq!(h.store.expiry.len(), 0);
}
