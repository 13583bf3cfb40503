//! Codec throughput: request encoding, server-side request parsing, reply decoding and
//! notification parsing, on the payload shapes the lease machines use.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use leasedlock_core::command::{decode_reply, NotifyPayload, Request, RequestKind, SetCondition};
use leasedlock_core::resp3::{decode, Limits};

fn lease_set() -> Request {
    Request::Set {
        key: Bytes::from_static(b"cap-lease"),
        value: Bytes::from_static(b"cap-lease-holder"),
        condition: SetCondition::NotExistsOrEqual,
        px_ms: Some(5000),
    }
}

fn codec(c: &mut Criterion) {
    let limits = Limits::default();
    let set = lease_set();
    let mut wire = Vec::with_capacity(128);
    set.encode(&mut wire);
    let set_wire = Bytes::from(wire.clone());

    c.bench_function("encode SET NEX PX", |b| {
        b.iter(|| {
            wire.clear();
            black_box(&set).encode(&mut wire);
            black_box(wire.len())
        })
    });
    c.bench_function("parse SET NEX PX (server)", |b| {
        b.iter(|| Request::parse(black_box(&set_wire), &limits))
    });
    let ok = Bytes::from_static(b"+OK\r\n");
    c.bench_function("decode_reply SET +OK", |b| {
        b.iter(|| decode_reply(RequestKind::Set, black_box(&ok), &limits))
    });
    let hit = Bytes::from_static(b"$16\r\ncap-lease-holder\r\n");
    c.bench_function("decode_reply GET hit", |b| {
        b.iter(|| decode_reply(RequestKind::Get, black_box(&hit), &limits))
    });
    let err = Bytes::from_static(
        b"-ERR the request fencing token is a lower version than the fencing token protecting the resource\r\n",
    );
    c.bench_function("decode_reply -ERR fencing", |b| {
        b.iter(|| decode_reply(RequestKind::Set, black_box(&err), &limits))
    });
    let notify =
        Bytes::from_static(b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n");
    c.bench_function("parse NOTIFY SET", |b| {
        b.iter(|| NotifyPayload::parse(black_box(&notify), &limits))
    });
    let big = Bytes::from({
        let mut v = b"$65536\r\n".to_vec();
        v.resize(v.len() + 65536, b'x');
        v.extend_from_slice(b"\r\n");
        v
    });
    c.bench_function("decode 64 KiB blob", |b| {
        b.iter(|| decode(black_box(&big), &limits))
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
