//! Where the adapter's background tasks run: the connection's driver, and the short task that
//! flushes a closing socket.
//!
//! Nothing here names a runtime. An application hands its executor over as a [`Spawn`] (any
//! `Fn(Task)`, e.g. `|task| { async_std::task::spawn(task); }` or
//! `|task| smol::spawn(task).detach()`) to [`Connection::start_with`] or
//! [`Connection::connect_with`]; without one, the tasks run on one thread of this crate's own,
//! an `async-executor` driven by `async-io` (the reactor async-std and smol share), started the
//! first time it is needed.
//!
//! [`Connection::start_with`]: crate::Connection::start_with
//! [`Connection::connect_with`]: crate::Connection::connect_with

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_executor::Executor;

/// A background task of the adapter: it runs to completion (it ends by itself when its
/// connection closes or is dropped) and its output is `()`.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// An executor the adapter spawns its background tasks on. Every `Fn(Task) + Send + Sync`
/// closure is one; the task must be polled to completion (detached, not cancelled when a
/// handle is dropped).
pub trait Spawn: Send + Sync + 'static {
    /// Starts `task` in the background.
    fn spawn(&self, task: Task);
}

impl<F> Spawn for F
where
    F: Fn(Task) + Send + Sync + 'static,
{
    fn spawn(&self, task: Task) {
        self(task);
    }
}

/// The spawner a connection keeps for its tasks.
#[derive(Clone)]
pub(crate) enum Spawner {
    /// This crate's own executor thread.
    Default,
    /// The application's executor.
    Given(Arc<dyn Spawn>),
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spawner::Default => f.write_str("Spawner::Default"),
            Spawner::Given(_) => f.write_str("Spawner::Given(..)"),
        }
    }
}

/// The thread behind [`Spawner::Default`] could not be started.
#[derive(Debug)]
pub(crate) struct NoThread(pub(crate) std::io::Error);

/// The executor behind [`Spawner::Default`]; tasks queue here until its thread runs them.
static EXECUTOR: Executor<'static> = Executor::new();
/// Whether that thread runs (a failed start is retried by the next connection).
static THREAD: Mutex<bool> = Mutex::new(false);

impl Spawner {
    /// Makes sure the tasks will run: for [`Spawner::Default`], starts its thread if that has
    /// not happened yet. Called before a connection starts, so a failure is the caller's error
    /// rather than a task that never runs.
    pub(crate) fn ready(&self) -> Result<(), NoThread> {
        if let Spawner::Given(_) = self {
            return Ok(());
        }
        // A poisoned lock only means another thread panicked while holding it; the flag is
        // still accurate.
        let mut running = THREAD.lock().unwrap_or_else(|e| e.into_inner());
        if !*running {
            std::thread::Builder::new()
                .name("leasedlock-async-io".into())
                .spawn(|| async_io::block_on(EXECUTOR.run(std::future::pending::<()>())))
                .map_err(NoThread)?;
            *running = true;
        }
        Ok(())
    }

    /// Starts `task` in the background.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match self {
            Spawner::Default => EXECUTOR.spawn(task).detach(),
            Spawner::Given(spawn) => spawn.spawn(Box::pin(task)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_default_spawner_runs_tasks_without_any_runtime() {
        let spawner = Spawner::Default;
        spawner.ready().unwrap();
        let (done, finished) = async_channel::bounded(1);
        spawner.spawn(async move {
            // A timer needs the async-io reactor the executor thread drives.
            async_io::Timer::after(std::time::Duration::from_millis(5)).await;
            let _ = done.send(()).await;
        });
        // Waits on a channel, not a sleep: the task signals that it ran.
        futures_lite::future::block_on(finished.recv()).unwrap();
    }

    #[test]
    fn a_given_spawner_gets_every_task() {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let spawner = Spawner::Given(Arc::new(move |task: Task| {
            seen.fetch_add(1, Ordering::Relaxed);
            futures_lite::future::block_on(task);
        }));
        spawner.ready().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        spawner.spawn(async move {
            r.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 1);
        assert_eq!(ran.load(Ordering::Relaxed), 1);
    }
}
