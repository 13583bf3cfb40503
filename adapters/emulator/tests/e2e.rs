//! The test vectors of docs/protocol.md §13 end to end: a raw MQTT 5 client → Mosquitto → the
//! emulator → back. Needs the broker at `LEASEDLOCK_TEST_BROKER` (`bash scripts/mosquitto.sh
//! start`).

mod common;

use std::time::{Duration, Instant};

use common::{emulator, stat, ts_of, unique, wall_ms, TestClient, Ts};
use leasedlock_core::envelope::{notification_topic, CONTENT_TYPE};
use leasedlock_core::hlc::Hlc;

const OK: &[u8] = b"+OK\r\n";
const NA: &[u8] = b":-1\r\n";
const ZERO: &[u8] = b":0\r\n";
const ONE: &[u8] = b":1\r\n";
const NIL: &[u8] = b"$-1\r\n";
const DELETE_NOTE: &[u8] = b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n";

fn err(text: &str) -> Vec<u8> {
    format!("-ERR {text}\r\n").into_bytes()
}

#[tokio::test]
async fn spec_table_rows_1_to_14() {
    emulator();
    let mut c = TestClient::connect("e2e-a").await;
    let mut w = TestClient::connect("e2e-w").await;
    let k1 = unique("k1");
    let k1 = k1.as_bytes();
    // Rows 1–3.
    let r1 = c.call(&[b"SET", k1, b"v1"]).await;
    assert_eq!((&r1.payload[..], stat(&r1)), (OK, &b"200"[..]));
    assert_eq!(r1.content_type.as_deref(), Some(CONTENT_TYPE.as_bytes()));
    let v1 = ts_of(&r1).unwrap();
    assert!(v1.millis >= wall_ms() - 5_000);
    let r2 = c.call(&[b"GET", k1]).await;
    assert_eq!(
        (&r2.payload[..], ts_of(&r2)),
        (&b"$2\r\nv1\r\n"[..], Some(v1.clone()))
    );
    let r3 = c.call(&[b"GET", b"e2e-absent-key"]).await;
    assert_eq!((&r3.payload[..], ts_of(&r3)), (NIL, None));
    // Rows 4–7.
    let r4 = c.call(&[b"SET", k1, b"v1", b"NX"]).await;
    assert_eq!((&r4.payload[..], ts_of(&r4)), (NA, Some(v1.clone())));
    let r5 = c.call(&[b"SET", k1, b"v2", b"NEX"]).await;
    assert_eq!((&r5.payload[..], ts_of(&r5)), (NA, Some(v1.clone())));
    assert_eq!(&w.call(&[b"KEYNOTIFY", k1]).await.payload[..], OK);
    let r6 = c.call(&[b"SET", k1, b"v1", b"NEX"]).await;
    assert_eq!(&r6.payload[..], OK);
    let v2 = ts_of(&r6).unwrap();
    assert!(v2 > v1);
    let n6 = w
        .notification(Duration::from_secs(5))
        .await
        .expect("SET notification");
    assert_eq!(&n6.topic[..], notification_topic(&w.id, k1).as_bytes());
    assert_eq!(
        &n6.payload[..],
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$2\r\nv1\r\n"
    );
    assert_eq!(ts_of(&n6), Some(v2.clone()));
    let k7 = unique("k7");
    assert_eq!(
        &c.call(&[b"SET", k7.as_bytes(), b"v1", b"NEX"])
            .await
            .payload[..],
        OK
    );
    // Rows 8–11.
    assert_eq!(&c.call(&[b"VDEL", k1, b"v9"]).await.payload[..], NA);
    let r9 = c.call(&[b"VDEL", k1, b"v1"]).await;
    assert_eq!((&r9.payload[..], ts_of(&r9)), (ONE, Some(v2)));
    let n9 = w
        .notification(Duration::from_secs(5))
        .await
        .expect("DELETE notification");
    assert_eq!(&n9.payload[..], DELETE_NOTE);
    assert_eq!(&c.call(&[b"VDEL", k1, b"v1"]).await.payload[..], ZERO);
    c.call(&[b"SET", k1, b"v1"]).await;
    assert_eq!(&c.call(&[b"DEL", k1]).await.payload[..], ONE);
    assert_eq!(&c.call(&[b"DEL", k1]).await.payload[..], ZERO);
    // Row 13: an expired key is absent even before anyone asks.
    c.call(&[b"SET", k1, b"v1", b"PX", b"50"]).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(&c.call(&[b"SET", k1, b"x", b"NX"]).await.payload[..], OK);
    // Row 14.
    let k14 = unique("k14");
    let v14 = ts_of(&c.call(&[b"SET", k14.as_bytes(), b""]).await).unwrap();
    let g = c.call(&[b"GET", k14.as_bytes()]).await;
    assert_eq!((&g.payload[..], ts_of(&g)), (&b"$0\r\n\r\n"[..], Some(v14)));
}

/// Row 12 and the expiry test: a key with PX 200 is gone, and its DELETE notification
/// reaches an observer, with no further request from anyone.
#[tokio::test]
async fn expiry_notifies_an_observer_without_any_request() {
    emulator();
    let mut c = TestClient::connect("e2e-x").await;
    let mut w = TestClient::connect("e2e-xw").await;
    let k = unique("px");
    assert_eq!(&w.call(&[b"KEYNOTIFY", k.as_bytes()]).await.payload[..], OK);
    let start = Instant::now();
    assert_eq!(
        &c.call(&[b"SET", k.as_bytes(), b"v", b"PX", b"200"])
            .await
            .payload[..],
        OK
    );
    let set = w
        .notification(Duration::from_secs(2))
        .await
        .expect("SET notification");
    assert!(set.payload.starts_with(b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET"));
    let del = w
        .notification(Duration::from_secs(2))
        .await
        .expect("DELETE notification within 2 s");
    let after = start.elapsed();
    assert_eq!(&del.payload[..], DELETE_NOTE);
    assert!(ts_of(&del).is_some(), "notifications carry __ts");
    assert!(
        after >= Duration::from_millis(200),
        "not before the deadline ({after:?})"
    );
    assert_eq!(&c.call(&[b"GET", k.as_bytes()]).await.payload[..], NIL);
}

#[tokio::test]
async fn spec_table_rows_15_to_30_fencing_and_errors() {
    emulator();
    let mut c1 = TestClient::connect("e2e-c1").await;
    let mut c2 = TestClient::connect("e2e-c2").await;
    let lock = unique("lock1");
    let p1 = unique("p1");
    let (lock, p1) = (lock.as_bytes(), p1.as_bytes());
    let r15 = c1
        .call(&[b"SET", lock, b"client1:s1", b"NEX", b"PX", b"10000"])
        .await;
    assert_eq!(&r15.payload[..], OK);
    let t1 = ts_of(&r15).unwrap();
    let r16 = c2
        .call(&[b"SET", lock, b"client2:s1", b"NEX", b"PX", b"10000"])
        .await;
    assert_eq!((&r16.payload[..], ts_of(&r16)), (NA, Some(t1.clone())));
    let t1s = t1.to_string();
    assert_eq!(
        &c1.call_with(&[b"SET", p1, b"v"], Ts::Now, Some(&t1s))
            .await
            .payload[..],
        OK
    );
    let missing = err("a fencing token is required for this request");
    assert_eq!(
        &c1.call(&[b"SET", p1, b"w"]).await.payload[..],
        &missing[..]
    );
    assert_eq!(&c1.call(&[b"DEL", p1]).await.payload[..], &missing[..]);
    assert_eq!(
        &c1.call(&[b"VDEL", p1, b"v"]).await.payload[..],
        &missing[..]
    );
    let t0 = Hlc::new(t1.millis - 1, 0, "e2e").unwrap().to_string();
    let lower = err("the request fencing token is a lower version than the fencing token protecting the resource");
    assert_eq!(
        &c1.call_with(&[b"SET", p1, b"w"], Ts::Now, Some(&t0))
            .await
            .payload[..],
        &lower[..]
    );
    assert_eq!(
        &c1.call_with(&[b"DEL", p1], Ts::Now, Some(&t0))
            .await
            .payload[..],
        &lower[..]
    );
    assert_eq!(
        &c1.call_with(&[b"SET", p1, b"w"], Ts::Now, Some(&t1s))
            .await
            .payload[..],
        OK
    );
    assert_eq!(
        &c1.call_with(&[b"VDEL", p1, b"zz"], Ts::Now, Some(&t1s))
            .await
            .payload[..],
        NA
    );
    // Rows 22–25.
    let k = unique("k");
    let k = k.as_bytes();
    let far = Hlc::new(wall_ms() + 10 * 365 * 86_400_000, 0, "x")
        .unwrap()
        .to_string();
    assert_eq!(
        &c1.call_with(&[b"SET", k, b"v"], Ts::Now, Some(&far)).await.payload[..],
        &err("the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized")[..]
    );
    let ahead = Hlc::new(wall_ms() + 120_000, 0, "x").unwrap().to_string();
    assert_eq!(
        &c1.call_with(&[b"SET", k, b"v"], Ts::Raw(ahead), None).await.payload[..],
        &err("the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized")[..]
    );
    assert_eq!(
        &c1.call_with(&[b"SET", k, b"v"], Ts::None, None)
            .await
            .payload[..],
        &err("missing timestamp")[..]
    );
    assert_eq!(
        &c1.call_with(&[b"SET", k, b"v"], Ts::Raw("abc".into()), None)
            .await
            .payload[..],
        &err("malformed timestamp")[..]
    );
    // Rows 26–30.
    assert_eq!(
        &c1.call(&[b"GET", b""]).await.payload[..],
        &err("the key length is zero")[..]
    );
    assert_eq!(
        &c1.call(&[b"PING", b"k"]).await.payload[..],
        &err("unknown command")[..]
    );
    assert_eq!(
        &c1.call(&[b"SET", k]).await.payload[..],
        &err("wrong number of arguments")[..]
    );
    let mut bad = c1.build(&[b"GET", k], Ts::Now, None, false);
    bad.payload = bytes::Bytes::from_static(b"SET k1 v1\r\n");
    assert_eq!(
        &c1.roundtrip(bad).await.payload[..],
        &err("syntax error")[..]
    );
    for px in [&b"abc"[..], b"1500.5", b"0"] {
        assert_eq!(
            &c1.call(&[b"SET", k, b"v", b"PX", px]).await.payload[..],
            &err("syntax error")[..]
        );
    }
}

#[tokio::test]
async fn spec_table_rows_31_to_37_keynotify_and_rpc() {
    emulator();
    let mut c = TestClient::connect("e2e-n").await;
    let mut other = TestClient::connect("e2e-o").await;
    let k = unique("watched");
    let k = k.as_bytes();
    assert_eq!(&c.call(&[b"KEYNOTIFY", k]).await.payload[..], OK);
    assert_eq!(&c.call(&[b"KEYNOTIFY", k]).await.payload[..], OK);
    other.call(&[b"SET", k, b"abc"]).await;
    let n = c.notification(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        &n.payload[..],
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n"
    );
    assert!(n
        .topic
        .ends_with(leasedlock_core::hex::encode_upper(k).as_bytes()));
    assert_eq!(&c.call(&[b"KEYNOTIFY", k, b"STOP"]).await.payload[..], OK);
    other.call(&[b"SET", k, b"x"]).await;
    assert_eq!(&c.call(&[b"KEYNOTIFY", k, b"STOP"]).await.payload[..], ZERO);
    assert!(
        c.notifications(Duration::from_millis(200)).await.is_empty(),
        "no notification after STOP"
    );
    // Row 36.
    let mut v2 = c.build(&[b"GET", k], Ts::Now, None, false);
    for p in &mut v2.user_properties {
        if &p.0[..] == b"__protVer" {
            p.1 = bytes::Bytes::from_static(b"2.0");
        }
    }
    let r = c.roundtrip(v2).await;
    assert_eq!(stat(&r), b"505");
    assert_eq!(
        r.user_property("__supProtMajVer").map(|v| &v[..]),
        Some(&b"1"[..])
    );
    // Row 37: no correlation data: no reply; the emulator keeps serving.
    let mut nocorr = c.build(&[b"SET", k, b"v"], Ts::Now, None, false);
    nocorr.correlation_data = None;
    c.publish(nocorr).await;
    assert!(c
        .wait_reply_within(None, Duration::from_millis(300))
        .await
        .is_none());
    assert_eq!(&c.call(&[b"GET", k]).await.payload[..], b"$1\r\nx\r\n");
}
