//! Cost of the envelope per request/response: building a request PUBLISH, parsing a response,
//! and (store side) parsing a request and building its response.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use leasedlock_core::envelope::{
    build_request, build_response, parse_request, parse_response, response_topic, RequestEnvelope,
};
use leasedlock_core::hlc::Hlc;

fn bench_envelope(c: &mut Criterion) {
    let ts = Hlc::new(1_696_374_425_000, 3, "0190f2c4-7f3a-7c1e-9b2d-3c4d5e6f7a8b").unwrap();
    let topic = response_topic("client-id1");
    let payload = Bytes::from_static(
        b"*6\r\n$3\r\nSET\r\n$9\r\ncap-lease\r\n$16\r\ncap-lease-holder\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$4\r\n5000\r\n",
    );
    let req = RequestEnvelope {
        client_id: "client-id1",
        response_topic: &topic,
        correlation: [7; 16],
        timestamp: &ts,
        fencing_token: None,
        persist: false,
        timeout: Duration::from_secs(10),
        payload,
    };
    let request = build_request(&req);
    let response = build_response(
        Bytes::from(topic.clone()),
        Bytes::from_static(&[7; 16]),
        Some(10),
        Bytes::from_static(b"+OK\r\n"),
        Some(&ts),
    );

    c.bench_function("envelope/build_request", |b| {
        b.iter(|| build_request(black_box(&req)))
    });
    c.bench_function("envelope/parse_response", |b| {
        b.iter(|| parse_response(black_box(&response)))
    });
    c.bench_function("envelope/parse_request", |b| {
        b.iter(|| parse_request(black_box(&request)))
    });
    c.bench_function("envelope/build_response", |b| {
        b.iter(|| {
            build_response(
                black_box(Bytes::from_static(b"clients/x/response")),
                Bytes::from_static(&[7; 16]),
                Some(10),
                Bytes::from_static(b"+OK\r\n"),
                Some(black_box(&ts)),
            )
        })
    });
}

criterion_group!(benches, bench_envelope);
criterion_main!(benches);
