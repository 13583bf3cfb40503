//! A runtime-neutral watch channel: one writer (the engine) publishes a value, any number of
//! readers look at the latest one or wait for the next change. Built on `event-listener`, so it
//! wakes tasks of any executor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use event_listener::Event;

#[derive(Debug)]
struct Slot<T> {
    value: T,
    /// Bumped on every change, so a reader knows whether it has seen the current value.
    version: u64,
}

#[derive(Debug)]
struct Shared<T> {
    slot: Mutex<Slot<T>>,
    /// The sender is gone: no change will ever come again.
    closed: AtomicBool,
    changed: Event,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        // A panic while holding the lock cannot leave a half-written value (every write is one
        // assignment), so a poisoned lock is still consistent.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writing side. Dropping it closes the channel (readers see [`Closed`]).
#[derive(Debug)]
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A reading side; clone it for another reader with its own "seen" mark.
#[derive(Debug)]
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

/// The sender is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

/// A channel holding `initial`.
pub(crate) fn channel<T>(initial: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            value: initial,
            version: 0,
        }),
        closed: AtomicBool::new(false),
        changed: Event::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared, seen: 0 },
    )
}

impl<T> Sender<T> {
    /// Replaces the value and wakes every waiting reader.
    pub(crate) fn send_replace(&self, value: T) {
        self.send_modify(|v| *v = value);
    }

    /// Modifies the value in place and wakes every waiting reader.
    pub(crate) fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        self.send_if_modified(|v| {
            modify(v);
            true
        });
    }

    /// Modifies the value in place; wakes readers only when `modify` returns `true`.
    pub(crate) fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) {
        let changed = {
            let mut slot = self.shared.lock();
            let changed = modify(&mut slot.value);
            if changed {
                slot.version = slot.version.wrapping_add(1);
            }
            changed
        };
        if changed {
            self.shared.changed.notify(usize::MAX);
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.changed.notify(usize::MAX);
    }
}

impl<T> Receiver<T> {
    /// Runs `f` on the current value without marking it seen.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.shared.lock().value)
    }

    /// Runs `f` on the current value and marks it seen.
    pub(crate) fn with_and_update<R>(&mut self, f: impl FnOnce(&T) -> R) -> R {
        let slot = self.shared.lock();
        self.seen = slot.version;
        f(&slot.value)
    }

    /// Whether the sender is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    fn unseen(&self) -> bool {
        self.shared.lock().version != self.seen
    }

    /// Waits until the value changes after the last one this reader marked seen (returns at
    /// once if it already has), then marks it seen. `Err(Closed)` when the sender is gone.
    pub(crate) async fn changed(&mut self) -> Result<(), Closed> {
        loop {
            if self.unseen() {
                self.seen = self.shared.lock().version;
                return Ok(());
            }
            if self.is_closed() {
                return Err(Closed);
            }
            let listener = self.shared.changed.listen();
            // A change between the check above and `listen` would otherwise be missed.
            if self.unseen() || self.is_closed() {
                continue;
            }
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn readers_see_the_latest_value_and_each_change_once() {
        let (tx, mut rx) = channel(1);
        assert_eq!(rx.with(|v| *v), 1);
        tx.send_replace(2);
        tx.send_replace(3);
        block_on(rx.changed()).unwrap();
        assert_eq!(rx.with_and_update(|v| *v), 3);
        tx.send_if_modified(|_| false);
        assert!(!rx.unseen(), "an unmodified send wakes nobody");
        let mut other = rx.clone();
        tx.send_modify(|v| *v += 1);
        block_on(other.changed()).unwrap();
        block_on(rx.changed()).unwrap();
        assert_eq!(rx.with(|v| *v), 4);
    }

    #[test]
    fn a_waiting_reader_wakes_on_a_change_from_another_thread() {
        let (tx, mut rx) = channel(0u32);
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send_replace(7);
            tx
        });
        block_on(rx.changed()).unwrap();
        assert_eq!(rx.with(|v| *v), 7);
        drop(t.join().unwrap());
        assert_eq!(block_on(rx.changed()), Err(Closed));
        assert!(rx.is_closed());
    }
}
