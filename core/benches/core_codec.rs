//! Core cost per operation, in nanoseconds (criterion) and in heap allocations (a counting
//! global allocator; the counts are printed before the criterion runs): request encoding,
//! server-side request parsing, reply and notification decoding on the payload shapes the lease
//! machines use, and one full client cycle.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use leasedlock_core::client::{Client, ClientConfig, Output, RequestOptions};
use leasedlock_core::command::{decode_reply, NotifyPayload, Request, RequestKind, SetCondition};
use leasedlock_core::envelope::{self, Message};
use leasedlock_core::hlc::Hlc;
use leasedlock_core::resp3::{decode, Limits};
use leasedlock_core::{Instant, Now};

/// Counts every allocation (alloc, alloc_zeroed, realloc) made through the global allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

const ITERATIONS: u64 = 10_000;
const OK: &[u8] = b"+OK\r\n";

fn set_request() -> Request {
    Request::Set {
        key: Bytes::from_static(b"name"),
        value: Bytes::from_static(b"holder"),
        condition: SetCondition::NotExistsOrEqual,
        px_ms: Some(5000),
    }
}

fn config() -> ClientConfig {
    ClientConfig {
        client_id: "bench-client".to_string(),
        seed: 1,
        max_in_flight: 64,
        max_observed: 16,
        default_timeout: Duration::from_secs(10),
        max_drift_ms: 60_000,
        hlc_node: "0190f2c4-7f3a-7c1e-9b2d-3c4d5e6f7a8b".to_string(),
    }
}

/// A connected, subscribed client.
fn ready_client(now: Now) -> Client {
    let mut client = Client::new(config()).expect("valid config");
    client.handle_connected(false, now);
    while client.poll_output().is_some() {}
    client.handle_subscribed(&envelope::response_topic("bench-client"), true, now);
    while client.poll_output().is_some() {}
    client
}

/// The reply template: built once, cloned per cycle with the request's correlation data.
fn reply_template() -> Message {
    let version = Hlc::new(1_700_000_000_000, 0, "StateStore").expect("valid node");
    envelope::build_response(
        Bytes::from(envelope::response_topic("bench-client")),
        Bytes::from_static(&[0; 16]),
        Some(10),
        Bytes::from_static(OK),
        Some(&version),
    )
}

/// Request half of a cycle: start a SET and take its PUBLISH.
fn send(client: &mut Client, now: Now) -> Message {
    client
        .request(set_request(), RequestOptions::default(), now)
        .expect("room in the table");
    match client.poll_output() {
        Some(Output::Publish(m)) => m,
        other => panic!("expected a publish, got {other:?}"),
    }
}

/// Reply half of a cycle: feed the reply and take the completion.
fn answer(client: &mut Client, reply: Message, now: Now) {
    client.handle_publish(reply, now);
    match client.poll_output() {
        Some(Output::Completion(c)) => {
            black_box(c);
        }
        other => panic!("expected a completion, got {other:?}"),
    }
}

fn reply_for(template: &Message, request: &Message) -> Message {
    let mut reply = template.clone();
    reply.correlation_data = request.correlation_data.clone();
    reply
}

fn report_allocations() {
    let request = set_request();
    let mut out = Vec::with_capacity(64);
    let before = allocations();
    for _ in 0..ITERATIONS {
        out.clear();
        black_box(&request).encode(&mut out);
        black_box(&out);
    }
    let encode = allocations() - before;

    let payload = Bytes::from_static(OK);
    let limits = Limits::default();
    let before = allocations();
    for _ in 0..ITERATIONS {
        black_box(decode_reply(RequestKind::Set, black_box(&payload), &limits)).ok();
    }
    let decode = allocations() - before;

    let now = Now::new(Instant::from_millis(1), 1_700_000_000_000);
    let mut client = ready_client(now);
    let template = reply_template();
    let (mut request_path, mut harness, mut reply_path) = (0, 0, 0);
    for _ in 0..ITERATIONS {
        let t = allocations();
        let publish = send(&mut client, now);
        let u = allocations();
        let reply = reply_for(&template, &publish);
        drop(publish);
        let v = allocations();
        answer(&mut client, reply, now);
        let w = allocations();
        request_path += u - t;
        harness += v - u;
        reply_path += w - v;
    }
    let per = |n: u64| n as f64 / ITERATIONS as f64;
    println!("allocations per operation over {ITERATIONS} iterations:");
    println!(
        "  encode SET name holder NEX PX 5000 (reused buffer): {:.2}",
        per(encode)
    );
    println!(
        "  decode_reply(+OK):                                  {:.2}",
        per(decode)
    );
    println!(
        "  client cycle, request path (request + publish):     {:.2}",
        per(request_path)
    );
    println!(
        "  client cycle, reply path (handle_publish + completion): {:.2}",
        per(reply_path)
    );
    println!(
        "  (bench harness: cloning the reply message:          {:.2})",
        per(harness)
    );
}

fn benches(c: &mut Criterion) {
    report_allocations();

    let request = set_request();
    let mut out = Vec::with_capacity(64);
    c.bench_function("encode SET NEX PX", |b| {
        b.iter(|| {
            out.clear();
            black_box(&request).encode(&mut out);
            black_box(&out);
        })
    });

    let payload = Bytes::from_static(OK);
    let limits = Limits::default();
    c.bench_function("decode_reply +OK", |b| {
        b.iter(|| black_box(decode_reply(RequestKind::Set, black_box(&payload), &limits)).ok())
    });

    let mut wire = Vec::with_capacity(128);
    request.encode(&mut wire);
    let set_wire = Bytes::from(wire);
    c.bench_function("parse SET NEX PX (server)", |b| {
        b.iter(|| Request::parse(black_box(&set_wire), &limits))
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

    let now = Now::new(Instant::from_millis(1), 1_700_000_000_000);
    let mut client = ready_client(now);
    let template = reply_template();
    c.bench_function("client cycle (request, publish, reply, completion)", |b| {
        b.iter(|| {
            let publish = send(&mut client, now);
            let reply = reply_for(&template, &publish);
            answer(&mut client, reply, now);
        })
    });

    // Setup and routine both need the client; they never run at the same time.
    let client = RefCell::new(ready_client(now));
    c.bench_function("client reply path (handle_publish + completion)", |b| {
        b.iter_batched(
            || {
                let publish = send(&mut client.borrow_mut(), now);
                reply_for(&template, &publish)
            },
            |reply| answer(&mut client.borrow_mut(), reply, now),
            // One at a time: a larger batch would fill the in-flight table.
            criterion::BatchSize::PerIteration,
        )
    });
}

criterion_group!(core_codec, benches);
criterion_main!(core_codec);
