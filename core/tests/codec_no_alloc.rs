//! Checks that decoding scalar replies does not allocate, with a counting global allocator.
//!
//! This lives in its own test binary (with a single test) because a global allocator applies to
//! the whole binary and the library itself forbids `unsafe`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use leasedlock_core::command::{decode_reply, RequestKind, Response};
use leasedlock_core::resp3::{decode, Limits};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; we only count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn scalar_replies_decode_without_allocating() {
    // The counter works: an allocation inside the closure is seen.
    assert!(allocations_during(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8)))) > 0);
    let limits = Limits::default();
    let replies: [&'static [u8]; 8] = [
        b"+OK\r\n",
        b":-1\r\n",
        b":0\r\n",
        b":1\r\n",
        b"$-1\r\n",
        b"$5\r\nhello\r\n",
        b"-ERR syntax error\r\n",
        b"-ERR something else\r\n",
    ];
    let kinds = [
        RequestKind::Set,
        RequestKind::Get,
        RequestKind::Del,
        RequestKind::Vdel,
        RequestKind::KeyNotify,
        RequestKind::KeyNotifyStop,
    ];
    for reply in replies {
        // Slicing a static `Bytes` never touches the heap, so any allocation seen here would be
        // the decoder's own.
        let payload = Bytes::from_static(reply);
        let n = allocations_during(|| {
            let _ = decode(&payload, &limits);
            for kind in kinds {
                let _ = decode_reply(kind, &payload, &limits);
            }
        });
        assert_eq!(n, 0, "{:?} allocated {n} times", reply.escape_ascii());
    }
    // A hit really is returned (so the loop above exercised the success path).
    let payload = Bytes::from_static(b"$5\r\nhello\r\n");
    assert_eq!(
        decode_reply(RequestKind::Get, &payload, &limits),
        Ok(Response::Get(Some(Bytes::from_static(b"hello"))))
    );
}
