//! [`Leader`]: leader election on a lease, with a [`CancellationToken`](crate::CancellationToken) scoped to each term.
//!
//! Campaigning waits for the lease (the lock machine's herd control and fallback), renews it
//! automatically, reports every leader seen, and campaigns again after a loss unless told
//! otherwise. Resigning is "drain, then release": the term's token is cancelled first, the
//! application's leader work stops, and only then is the lease released.
//!
//! ```no_run
//! # async fn demo(conn: leasedlock_api::Connection) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use leasedlock_api::LeaderOptions;
//!
//! let leader = conn.leader("scheduler")?;
//! leader.campaign(&LeaderOptions::new(Duration::from_secs(9))).await?;
//! let term = leader.elected().await?;
//! // ... leader work, fenced with term.token(), until term.cancelled() resolves ...
//! term.cancelled().await;
//! leader.resign().await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::leader as core_leader;

pub use leasedlock_core::leader::DeposedReason;

pub use crate::error::LeaderError;
pub use crate::view::Term;

use crate::engine::{Cmd, MachineKind, Op};
use crate::error::LockError;
use crate::handle::call;
use crate::lease::AcquireOptions;
use crate::shared::Shared;
use crate::view::LeaderView;
use crate::watch;

/// Options of a campaign.
///
/// ```
/// use std::time::Duration;
/// use leasedlock_api::LeaderOptions;
///
/// // A 9 s term lease renewed every 3 s; do not campaign again after a loss.
/// let options = LeaderOptions::new(Duration::from_secs(9)).recampaign(false);
/// # let _ = options;
/// ```
// Not core's `LeaderOptions` on purpose: a builder over `AcquireOptions` (connection defaults
// filled in by `to_core`) with the duration the core takes as an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderOptions {
    pub(crate) duration: Duration,
    pub(crate) acquire: AcquireOptions,
    pub(crate) recampaign: bool,
    pub(crate) max_jitter: Option<Duration>,
}

impl LeaderOptions {
    /// A term lease of `duration`, renewed every third of it with requests timing out after a
    /// quarter of it; campaign again after a loss.
    pub fn new(duration: Duration) -> LeaderOptions {
        let suggested = core_leader::suggested_lease_options(duration);
        let mut acquire = AcquireOptions::new();
        acquire.timeout = suggested.timeout;
        acquire.renew = suggested.renew;
        LeaderOptions {
            duration,
            acquire,
            recampaign: true,
            max_jitter: None,
        }
    }
    /// Renew interval, request timeout and margin of the term lease (renew is required).
    pub fn acquire(mut self, acquire: AcquireOptions) -> LeaderOptions {
        self.acquire = acquire;
        self
    }
    /// Campaign again after losing the lease (default `true`).
    pub fn recampaign(mut self, again: bool) -> LeaderOptions {
        self.recampaign = again;
        self
    }
    /// Upper bound of the random delay before attempting after a release (herd control).
    pub fn max_jitter(mut self, jitter: Duration) -> LeaderOptions {
        self.max_jitter = Some(jitter);
        self
    }

    fn to_core(&self, default_timeout: Duration, session: &str) -> core_leader::LeaderOptions {
        core_leader::LeaderOptions {
            lock: leasedlock_core::lock::LockOptions {
                lease: self.acquire.to_core(default_timeout, Some(session)),
                max_jitter: self.max_jitter,
                ..Default::default()
            },
            recampaign: self.recampaign,
        }
    }
}

/// A participant in the election of one name. Dropping it resigns (releasing the lease if it
/// leads).
///
/// ```no_run
/// # async fn demo(conn: leasedlock_api::Connection) -> Result<(), leasedlock_api::LeaderError> {
/// use std::time::Duration;
/// use leasedlock_api::LeaderOptions;
///
/// let leader = conn.leader("ingest-coordinator")?;
/// leader.campaign(&LeaderOptions::new(Duration::from_secs(9))).await?;
/// println!("current leader: {:?}", leader.leader());
/// let term = leader.elected().await?;
/// // ... lead until term.cancelled() ...
/// leader.resign_after(async { /* wait for leader work to wind down */ }).await?;
/// # let _ = term; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Leader {
    shared: Arc<Shared>,
    id: u64,
    name: Bytes,
    /// The generated session of this participant's holder value.
    session: String,
    view: watch::Receiver<LeaderView>,
}

impl Leader {
    pub(crate) fn create(shared: Arc<Shared>, name: Bytes) -> Result<Leader, LeaderError> {
        if name.is_empty() {
            return Err(LeaderError::Lock(LockError::Lease(
                crate::lease::LeaseError::InvalidArgument("election name must not be empty"),
            )));
        }
        let id = shared.next_id();
        let (view_tx, view) = watch::channel(LeaderView {
            stopped: Some(None),
            ..LeaderView::default()
        });
        shared.send(Cmd::Create {
            id,
            kind: MachineKind::Leader {
                name: name.clone(),
                view: view_tx,
            },
        })?;
        let session = shared.generated_session(id);
        Ok(Leader {
            shared,
            id,
            name,
            session,
            view,
        })
    }

    /// The election's lease key.
    pub fn name(&self) -> &Bytes {
        &self.name
    }

    /// The holder value this participant stores while leading (`clientId:instance.handle`,
    /// unique to this handle): what [`Leader::leader`] shows everyone while it leads.
    pub fn holder_value(&self) -> Bytes {
        leasedlock_core::lease::holder_value(self.shared.client_id(), Some(&self.session))
    }

    /// Starts campaigning (returns once the campaign started; see [`Leader::elected`]).
    pub async fn campaign(&self, options: &LeaderOptions) -> Result<(), LeaderError> {
        let duration = options.duration;
        let options = options.to_core(self.shared.request_timeout, &self.session);
        call(&self.shared, self.id, |reply| Op::Campaign {
            duration,
            options,
            reply,
        })
        .await?
    }

    /// Waits until this participant leads and returns the term. Fails when the campaign
    /// stops before that.
    pub async fn elected(&self) -> Result<Term, LeaderError> {
        let mut view = self.view.clone();
        loop {
            let done = view.with_and_update(|v| {
                if let Some(term) = &v.term {
                    return Some(Ok(term.clone()));
                }
                v.stopped
                    .as_ref()
                    .map(|stopped| Err(stopped.clone().unwrap_or(LeaderError::NotCampaigning)))
            });
            if let Some(done) = done {
                return done;
            }
            view.changed().await.map_err(|_| LeaderError::Closed)?;
        }
    }

    /// Waits until the current term (or, when not leading, the next one) ends and says why.
    pub async fn deposed(&self) -> Result<DeposedReason, LeaderError> {
        let mut view = self.view.clone();
        let target = view.with_and_update(|v| match &v.term {
            Some(t) => t.number(),
            None => v.terms + 1,
        });
        loop {
            let done = view.with_and_update(|v| {
                if let Some((n, reason)) = &v.deposed {
                    if *n >= target {
                        return Some(Ok(reason.clone()));
                    }
                }
                if v.term.is_none() {
                    if let Some(stopped) = &v.stopped {
                        return Some(Err(stopped.clone().unwrap_or(LeaderError::NotCampaigning)));
                    }
                }
                None
            });
            if let Some(done) = done {
                return done;
            }
            view.changed().await.map_err(|_| LeaderError::Closed)?;
        }
    }

    /// The current term, if leading.
    pub fn term(&self) -> Option<Term> {
        self.view.with(|v| v.term.clone())
    }

    /// Whether this participant leads now (`now < safe_until`).
    pub fn is_leader(&self) -> bool {
        self.view
            .with(|v| v.term.as_ref().is_some_and(Term::is_safe_now))
    }

    /// The leader last seen in the store (`None`: nobody).
    pub fn leader(&self) -> Option<Bytes> {
        self.view.with(|v| v.leader.clone())
    }

    /// Waits until the leader seen in the store changes and returns the new one.
    pub async fn leader_changed(&self) -> Result<Option<Bytes>, LeaderError> {
        let mut view = self.view.clone();
        let current = view.with_and_update(|v| v.leader.clone());
        loop {
            view.changed().await.map_err(|_| LeaderError::Closed)?;
            let now = view.with_and_update(|v| v.leader.clone());
            if now != current {
                return Ok(now);
            }
        }
    }

    /// Resigns: cancels the term's token, releases the lease at once, and waits until the
    /// campaign stopped. While only campaigning, the wait is cancelled.
    pub async fn resign(&self) -> Result<(), LeaderError> {
        call(&self.shared, self.id, |reply| Op::Resign {
            drain_now: true,
            reply,
        })
        .await?
    }

    /// Drain, then release: cancels the term's token, waits for `drain` (the application's
    /// leader work winding down; the lease keeps being renewed meanwhile), then releases.
    pub async fn resign_after<F: Future>(&self, drain: F) -> Result<(), LeaderError> {
        let (reply, wait) = oneshot::channel();
        self.shared.send(Cmd::Machine {
            id: self.id,
            op: Op::Resign {
                drain_now: false,
                reply,
            },
        })?;
        drain.await;
        self.shared.send(Cmd::Machine {
            id: self.id,
            op: Op::Drained,
        })?;
        wait.await.map_err(|_| LeaderError::Closed)?
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let _ = self.shared.send(Cmd::Machine {
            id: self.id,
            op: Op::Drop { release: true },
        });
    }
}
