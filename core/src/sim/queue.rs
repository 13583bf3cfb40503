//! The event queue: a min-heap ordered by (time, sequence number), plus one re-armable timer
//! per slot (a node, or the store).
//!
//! Two events at the same instant run in the order they were scheduled, so a run depends only
//! on the seed, never on heap internals. Timers live outside the heap so that re-arming one
//! replaces it instead of leaving a stale entry behind: every event popped is real work.

use alloc::collections::{BTreeSet, BinaryHeap};
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Ordering;

struct Entry<E> {
    time: u64,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time && self.seq == other.seq
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        other
            .time
            .cmp(&self.time)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// What came due.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Due<E> {
    /// A scheduled event.
    Event(E),
    /// The timer of this slot.
    Timer(usize),
}

/// Events keyed by global time (ns) with a deterministic tie-break, and timers.
pub(crate) struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    /// Armed timers as (time, seq, slot), and each slot's (time, seq).
    timers: BTreeSet<(u64, u64, usize)>,
    armed: Vec<Option<(u64, u64)>>,
}

impl<E> EventQueue<E> {
    /// A queue with timer slots `0..slots`.
    pub(crate) fn new(slots: usize) -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
            timers: BTreeSet::new(),
            armed: vec![None; slots],
        }
    }

    /// Arms (or re-arms, or with `None` disarms) the timer of `slot`; it orders among events
    /// as if it had been pushed now. Unknown slots are ignored.
    pub(crate) fn set_timer(&mut self, slot: usize, at: Option<u64>) {
        let Some(armed) = self.armed.get_mut(slot) else {
            return;
        };
        if let Some((t, s)) = armed.take() {
            self.timers.remove(&(t, s, slot));
        }
        if let Some(at) = at {
            self.seq += 1;
            *armed = Some((at, self.seq));
            self.timers.insert((at, self.seq, slot));
        }
    }

    /// The earliest event or timer (a popped timer is disarmed).
    pub(crate) fn pop_due(&mut self) -> Option<(u64, Due<E>)> {
        let event = self.heap.peek().map(|e| (e.time, e.seq));
        let timer = self.timers.first().copied();
        match (event, timer) {
            (Some(e), Some((t, s, _))) if e < (t, s) => self.pop().map(|(t, e)| (t, Due::Event(e))),
            (_, Some((t, s, slot))) => {
                self.timers.remove(&(t, s, slot));
                if let Some(a) = self.armed.get_mut(slot) {
                    *a = None;
                }
                Some((t, Due::Timer(slot)))
            }
            (Some(_), None) => self.pop().map(|(t, e)| (t, Due::Event(e))),
            (None, None) => None,
        }
    }

    pub(crate) fn push(&mut self, time: u64, event: E) {
        self.seq += 1;
        self.heap.push(Entry {
            time,
            seq: self.seq,
            event,
        });
    }

    fn pop(&mut self) -> Option<(u64, E)> {
        self.heap.pop().map(|e| (e.time, e.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn timers_interleave_and_rearming_replaces() {
        let mut q = EventQueue::new(2);
        q.push(5, "a");
        q.set_timer(0, Some(5));
        q.set_timer(1, Some(3));
        q.push(5, "b");
        q.set_timer(1, Some(9));
        q.set_timer(0, Some(1));
        q.set_timer(0, None);
        q.set_timer(7, Some(0));
        let order: Vec<_> = core::iter::from_fn(|| q.pop_due()).collect();
        assert_eq!(
            order,
            [
                (5, Due::Event("a")),
                (5, Due::Event("b")),
                (9, Due::Timer(1))
            ]
        );
        q.set_timer(1, Some(2));
        q.push(2, "c");
        assert_eq!(q.pop_due(), Some((2, Due::Timer(1))));
        assert_eq!(q.pop_due(), Some((2, Due::Event("c"))));
        assert_eq!(q.pop_due(), None);
    }

    #[test]
    fn earliest_first_then_scheduling_order() {
        let mut q = EventQueue::new(0);
        q.push(5, "c");
        q.push(1, "a");
        q.push(5, "d");
        q.push(1, "b");
        q.push(3, "x");
        let order: Vec<_> = core::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [(1, "a"), (1, "b"), (3, "x"), (5, "c"), (5, "d")]);
    }
}
