//! The event queue: a min-heap ordered by (time, sequence number), plus one re-armable timer
//! per slot (a node, or the store).
//!
//! Two events at the same instant run in the order they were scheduled, so a run depends only
//! on the seed, never on heap internals. Timers live outside the heap so that re-arming one
//! replaces it instead of leaving a stale entry behind: every event popped is real work.

use alloc::collections::BinaryHeap;
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

/// A timer as `(time, seq, slot)`; [`DISARMED`] for none.
type Timer = (u64, u64, usize);

/// Orders after every armed timer (no armed timer has this sequence number).
const DISARMED: Timer = (u64::MAX, u64::MAX, usize::MAX);

/// Events keyed by global time (ns) with a deterministic tie-break, and timers.
pub(crate) struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    /// The timers as a tournament tree: leaf `width + slot` holds the slot's timer, every
    /// inner node `i` the earlier of nodes `2i` and `2i + 1`, so the root (node 1) is the
    /// earliest. Re-arming, which the world does after nearly every event, is one pass from
    /// a leaf to the root.
    tree: Vec<Timer>,
    width: usize,
    slots: usize,
}

impl<E> EventQueue<E> {
    /// A queue with timer slots `0..slots`.
    pub(crate) fn new(slots: usize) -> Self {
        let width = slots.max(1).next_power_of_two();
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
            tree: vec![DISARMED; 2 * width],
            width,
            slots,
        }
    }

    /// Arms (or re-arms, or with `None` disarms) the timer of `slot`; it orders among events
    /// as if it had been pushed now. Unknown slots are ignored.
    pub(crate) fn set_timer(&mut self, slot: usize, at: Option<u64>) {
        if slot >= self.slots {
            return;
        }
        let timer = match at {
            Some(at) => {
                self.seq += 1;
                (at, self.seq, slot)
            }
            None => DISARMED,
        };
        let mut i = self.width + slot;
        if let Some(leaf) = self.tree.get_mut(i) {
            *leaf = timer;
        }
        while i > 1 {
            i /= 2;
            let earlier = match (self.tree.get(2 * i), self.tree.get(2 * i + 1)) {
                (Some(a), Some(b)) => *a.min(b),
                _ => DISARMED,
            };
            if let Some(node) = self.tree.get_mut(i) {
                *node = earlier;
            }
        }
    }

    /// When the earliest event or timer is due.
    pub(crate) fn peek_time(&self) -> Option<u64> {
        let event = self.heap.peek().map(|e| e.time);
        let timer = self
            .tree
            .get(1)
            .copied()
            .filter(|t| *t != DISARMED)
            .map(|t| t.0);
        match (event, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest event or timer (a popped timer is disarmed).
    pub(crate) fn pop_due(&mut self) -> Option<(u64, Due<E>)> {
        let event = self.heap.peek().map(|e| (e.time, e.seq));
        let timer = self.tree.get(1).copied().filter(|t| *t != DISARMED);
        match (event, timer) {
            (Some(e), Some((t, s, _))) if e < (t, s) => self.pop().map(|(t, e)| (t, Due::Event(e))),
            (_, Some((t, _, slot))) => {
                self.set_timer(slot, None);
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

    /// The obvious queue: everything in one list, the least (time, seq) popped first.
    #[derive(Default)]
    struct Model {
        items: Vec<(u64, u64, Due<u32>)>,
        seq: u64,
    }

    impl Model {
        fn set_timer(&mut self, slot: usize, at: Option<u64>, slots: usize) {
            if slot >= slots {
                return;
            }
            self.items.retain(|(_, _, d)| *d != Due::Timer(slot));
            if let Some(at) = at {
                self.seq += 1;
                self.items.push((at, self.seq, Due::Timer(slot)));
            }
        }

        fn pop(&mut self) -> Option<(u64, Due<u32>)> {
            let i = (0..self.items.len()).min_by_key(|&i| (self.items[i].0, self.items[i].1))?;
            let (t, _, d) = self.items.swap_remove(i);
            Some((t, d))
        }
    }

    proptest::proptest! {
        #[test]
        fn pops_like_a_sorted_list(
            slots in 0usize..12,
            ops in proptest::collection::vec((0u8..3, 0u64..50, 0usize..14, proptest::bool::ANY), 0..120),
        ) {
            let mut q = EventQueue::new(slots);
            let mut m = Model::default();
            for (n, (op, at, slot, arm)) in ops.into_iter().enumerate() {
                match op {
                    0 => {
                        q.push(at, n as u32);
                        m.seq += 1;
                        m.items.push((at, m.seq, Due::Event(n as u32)));
                    }
                    1 => {
                        let at = arm.then_some(at);
                        q.set_timer(slot, at);
                        m.set_timer(slot, at, slots);
                    }
                    _ => proptest::prop_assert_eq!(q.pop_due(), m.pop()),
                }
            }
            loop {
                let (got, want) = (q.pop_due(), m.pop());
                proptest::prop_assert_eq!(&got, &want);
                if got.is_none() {
                    break;
                }
            }
        }
    }
}
