//! Edit contention on a shared counter.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::{later, min_opt, route, tampered, Tamper, Timing};
use crate::client::{Output, RequestError};
use crate::edit::{Edit, EditDecision, EditError, EditEvent, EditOutcome};
use crate::lease::LeaseState;
use crate::lock::LockOptions;
use crate::sim::agent::{Agent, Ctx, Report, Workload};
use crate::time::Instant;

/// Every node increments the decimal counter at `key` under the lock `lock`, with the edit
/// machine (lock, GET, decide, fenced SET, unlock). At the end the counter must equal the
/// number of committed edits (plus at most the number whose write had an unknown outcome).
/// Feeds S1, S2, S4 and the counter check.
#[derive(Clone)]
pub struct EditCounter {
    lock: Bytes,
    key: Bytes,
    proto: Edit,
    /// Timings.
    pub timing: Timing,
    /// Lock options (built from the timings).
    pub options: LockOptions,
    /// L1 bound (see [`Workload::liveness_bound`]); `None` disables the check.
    pub liveness: Option<Duration>,
    /// Hooks for broken variants.
    pub tamper: Tamper<EditEvent>,
}

impl EditCounter {
    /// Edits of the counter `key` under the lock `lock` (both non-empty).
    pub fn new(lock: Bytes, key: Bytes, timing: Timing) -> Result<EditCounter, EditError> {
        let options = LockOptions {
            lease: timing.lease_options(),
            ..LockOptions::default()
        };
        Ok(EditCounter {
            proto: Edit::new(lock.clone(), key.clone(), 0)?,
            lock,
            key,
            timing,
            options,
            liveness: Some(timing.liveness_bound()),
            tamper: Tamper::default(),
        })
    }

    /// With these hooks.
    pub fn with_tamper(mut self, tamper: Tamper<EditEvent>) -> EditCounter {
        self.tamper = tamper;
        self
    }
}

struct EditAgent {
    w: EditCounter,
    edit: Edit,
    active: bool,
    holding: bool,
    decide: Option<(Instant, u64)>,
    attempt_at: Option<Instant>,
    stopped: bool,
    /// A write was handed to the edit machine and its `Done` has not come yet.
    writing: bool,
}

/// Whether a failed write may still have been applied.
fn maybe_applied(e: &EditError) -> bool {
    match e {
        EditError::Request(r) => !matches!(
            r,
            RequestError::Service(_)
                | RequestError::InvalidArgument(_)
                | RequestError::Busy
                | RequestError::Timeout { sent: false }
        ),
        EditError::UnexpectedReply | EditError::OutcomeUnknown { .. } => true,
        _ => false,
    }
}

impl EditAgent {
    fn step(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        if !self.stopped && !self.active && self.attempt_at.is_some_and(|t| t <= now.mono) {
            self.attempt_at = None;
            let options = self.w.options.clone();
            let lease = self.w.timing.lease;
            let mut r = tampered(&self.w.tamper.request, ctx);
            match self.edit.start(lease, &options, &mut r, now) {
                Ok(()) => self.active = true,
                Err(_) => self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think)),
            }
        }
        if let Some((at, value)) = self.decide {
            if at <= now.mono {
                self.decide = None;
                let decision = EditDecision::Set(Bytes::from(format!("{}", value + 1)));
                self.writing = true;
                let mut r = tampered(&self.w.tamper.request, ctx);
                let _ = self.edit.decide(decision, &mut r, now);
            }
        }
        self.events(ctx);
    }

    /// The belief ends as soon as the lease is no longer held (the unlock clears the token
    /// before its VDEL leaves, and `Done` only follows the VDEL's reply).
    fn check_hold(&mut self, ctx: &mut Ctx<'_>) {
        if self.holding
            && !matches!(
                self.edit.lock().lease().state(ctx.now().mono),
                LeaseState::Held { .. }
            )
        {
            self.holding = false;
            ctx.report(Report::Released {
                key: self.w.lock.clone(),
            });
        }
    }

    fn events(&mut self, ctx: &mut Ctx<'_>) {
        self.check_hold(ctx);
        let now = ctx.now();
        while let Some(mut e) = self.edit.poll_event() {
            if !self.w.tamper.keep(&mut e, now) {
                continue;
            }
            match e {
                EditEvent::Requested { current, token } => {
                    if let LeaseState::Held { safe_until, .. } =
                        self.edit.lock().lease().state(now.mono)
                    {
                        ctx.report(Report::Acquired {
                            key: self.w.lock.clone(),
                            token,
                            safe_until,
                            renewing: false,
                        });
                        self.holding = true;
                    }
                    let value = current
                        .as_ref()
                        .and_then(|v| core::str::from_utf8(v).ok())
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0);
                    let at = later(now, ctx.rng(), self.w.timing.renew / 2);
                    self.decide = Some((at, value));
                }
                EditEvent::Done { result } => {
                    self.active = false;
                    self.writing = false;
                    self.decide = None;
                    if self.holding {
                        self.holding = false;
                        ctx.report(Report::Released {
                            key: self.w.lock.clone(),
                        });
                    }
                    match &result {
                        Ok(EditOutcome::Set) => ctx.report(Report::EditCommitted {
                            key: self.w.key.clone(),
                        }),
                        Err(e) if maybe_applied(e) => ctx.report(Report::EditUnknown {
                            key: self.w.key.clone(),
                            may_still_land: matches!(
                                e,
                                EditError::OutcomeUnknown {
                                    may_still_land: true,
                                    ..
                                }
                            ),
                        }),
                        _ => {}
                    }
                    if !self.stopped {
                        self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think));
                    }
                }
            }
        }
    }
}

impl Agent for EditAgent {
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.attempt_at = Some(ctx.now().mono);
        self.step(ctx);
    }

    fn handle_output(&mut self, output: &Output, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        route(
            &mut self.edit,
            output,
            &mut tampered(&self.w.tamper.request, ctx),
            now,
        );
        self.events(ctx);
    }

    fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.edit
            .handle_timeout(&mut tampered(&self.w.tamper.request, ctx), now);
        self.events(ctx);
        self.step(ctx);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mine = if self.stopped {
            None
        } else if self.active {
            self.decide.map(|(t, _)| t)
        } else {
            self.attempt_at
        };
        min_opt(mine, self.edit.poll_timeout())
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.stopped = true;
        self.attempt_at = None;
        self.decide = None;
        if self.active {
            let now = ctx.now();
            self.edit
                .cancel(&mut tampered(&self.w.tamper.request, ctx), now);
        }
        self.events(ctx);
    }

    fn outstanding(&self) -> usize {
        self.edit.outstanding()
    }

    fn in_doubt_at_crash(&self) -> Vec<Report> {
        if self.writing {
            vec![Report::EditUnknown {
                key: self.w.key.clone(),
                may_still_land: true,
            }]
        } else {
            Vec::new()
        }
    }
}

impl Workload for EditCounter {
    fn agent(&mut self, _node: usize, _incarnation: u32, seed: u64) -> Box<dyn Agent> {
        let edit = Edit::new(self.lock.clone(), self.key.clone(), seed)
            .unwrap_or_else(|_| self.proto.clone());
        Box::new(EditAgent {
            w: self.clone(),
            edit,
            active: false,
            holding: false,
            decide: None,
            attempt_at: None,
            stopped: false,
            writing: false,
        })
    }

    fn lease_keys(&self) -> Vec<Bytes> {
        vec![self.lock.clone()]
    }

    fn counter_keys(&self) -> Vec<Bytes> {
        vec![self.key.clone()]
    }

    fn liveness_bound(&self) -> Option<Duration> {
        self.liveness
    }

    fn quiet_window(&self) -> Option<Duration> {
        None
    }

    fn lease_timing(&self) -> Option<Timing> {
        Some(self.timing)
    }
}
