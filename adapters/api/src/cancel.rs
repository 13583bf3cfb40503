//! A runtime-neutral cancellation token: set once, observed by any number of tasks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use event_listener::Event;

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    event: Event,
}

/// A token that is cancelled once and stays cancelled; clones share it. A leader's
/// [`Term`](crate::Term) holds one that is cancelled when the term ends.
///
/// ```
/// use leasedlock_api::CancellationToken;
///
/// let token = CancellationToken::new();
/// let seen_by_worker = token.clone();
/// assert!(!seen_by_worker.is_cancelled());
/// token.cancel();
/// assert!(seen_by_worker.is_cancelled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancellationToken {
    inner: Arc<Inner>,
}

impl CancellationToken {
    /// A token that is not cancelled.
    pub fn new() -> CancellationToken {
        CancellationToken::default()
    }

    /// Cancels the token and wakes everyone waiting in [`CancellationToken::cancelled`].
    pub fn cancel(&self) {
        if !self.inner.cancelled.swap(true, Ordering::AcqRel) {
            self.inner.event.notify(usize::MAX);
        }
    }

    /// Whether the token is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Resolves once the token is cancelled (at once if it already is). Cancel-safe.
    pub async fn cancelled(&self) {
        loop {
            if self.is_cancelled() {
                return;
            }
            let listener = self.inner.event.listen();
            // A cancel between the check above and `listen` would otherwise be missed.
            if self.is_cancelled() {
                return;
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
    fn waiters_on_other_threads_wake_once_cancelled() {
        let token = CancellationToken::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let t = token.clone();
                std::thread::spawn(move || block_on(t.cancelled()))
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        token.cancel();
        token.cancel();
        for w in waiters {
            w.join().unwrap();
        }
        assert!(token.is_cancelled());
        block_on(token.cancelled());
    }
}
