//! Lease contention, with auto-renew or with manual re-acquires of varied durations.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::{later, min_opt, route, tampered, Tamper, Timing};
use crate::client::Output;
use crate::lease::{Lease, LeaseError, LeaseEvent, LeaseOptions, LeaseState};
use crate::sim::agent::{Agent, Ctx, Report, Workload};
use crate::time::Instant;

/// Every node competes for the lease `key`: acquire with auto-renew, hold for a random time,
/// release, think, again. Feeds S1, S2, S4, L1, L2.
///
/// With [`LeaseContention::reacquire`] the holder does not auto-renew: it re-acquires by hand
/// at random moments with a random duration (a quarter of the lease up to all of it), so a
/// shorter SET of its own may shorten the store's TTL, answered or not. It reports every
/// lowering of its `safe_until` ([`Report::SafeUntilLowered`]), and S2 checks each new grant
/// against the holders' beliefs.
#[derive(Clone)]
pub struct LeaseContention {
    key: Bytes,
    proto: Lease,
    /// Timings.
    pub timing: Timing,
    /// L1 bound (see [`Workload::liveness_bound`]); `None` disables the check.
    pub liveness: Option<Duration>,
    /// Hooks for broken variants.
    pub tamper: Tamper<LeaseEvent>,
    /// Manual re-acquires with varied durations instead of auto-renew.
    pub reacquire: bool,
}

impl LeaseContention {
    /// Contention on the lease `key` (non-empty) with these timings.
    pub fn new(key: Bytes, timing: Timing) -> Result<LeaseContention, LeaseError> {
        Ok(LeaseContention {
            proto: Lease::new(key.clone())?,
            key,
            timing,
            liveness: Some(timing.liveness_bound()),
            tamper: Tamper::default(),
            reacquire: false,
        })
    }

    /// Holders re-acquire by hand with varied durations (see the type's documentation).
    pub fn with_reacquire(mut self) -> LeaseContention {
        self.reacquire = true;
        self
    }

    /// With these hooks.
    pub fn with_tamper(mut self, tamper: Tamper<LeaseEvent>) -> LeaseContention {
        self.tamper = tamper;
        self
    }
}

struct LeaseAgent {
    w: LeaseContention,
    options: LeaseOptions,
    lease: Lease,
    held: bool,
    release_at: Option<Instant>,
    attempt_at: Option<Instant>,
    attempting: bool,
    stopped: bool,
    /// Manual mode: when to re-acquire next, and the `safe_until` last reported.
    reacquire_at: Option<Instant>,
    reported_until: Option<Instant>,
}

impl LeaseAgent {
    fn step(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        if !self.stopped && !self.attempting && self.attempt_at.is_some_and(|t| t <= now.mono) {
            self.attempt_at = None;
            let mut r = tampered(&self.w.tamper.request, ctx);
            match self
                .lease
                .acquire(self.w.timing.lease, &self.options, &mut r, now)
            {
                Ok(_) => self.attempting = true,
                Err(_) => self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think)),
            }
        }
        if self.held && !self.attempting && self.reacquire_at.is_some_and(|t| t <= now.mono) {
            self.reacquire_at = None;
            let lease = self.w.timing.lease;
            let quarter = u64::try_from((lease / 4).as_millis()).unwrap_or(u64::MAX);
            let ms = quarter + ctx.rng().below(quarter.saturating_mul(3).max(1));
            let mut r = tampered(&self.w.tamper.request, ctx);
            match self
                .lease
                .acquire(Duration::from_millis(ms), &self.options, &mut r, now)
            {
                Ok(_) => self.attempting = true,
                Err(_) => self.schedule_reacquire(ctx),
            }
            self.report_lowered(ctx);
        }
        if self.held && self.release_at.is_some_and(|t| t <= now.mono) {
            self.release(ctx);
            if !self.stopped {
                self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think));
            }
        }
        self.events(ctx);
    }

    /// Manual mode: the next re-acquire, at a random moment in the first half of what is
    /// left of the hold.
    fn schedule_reacquire(&mut self, ctx: &mut Ctx<'_>) {
        if !self.w.reacquire || !self.held {
            return;
        }
        let now = ctx.now();
        if let LeaseState::Held { safe_until, .. } = self.lease.state(now.mono) {
            self.reacquire_at = Some(later(now, ctx.rng(), (safe_until - now.mono) / 2));
        }
    }

    /// Manual mode: tells the checkers when the machine lowered its `safe_until` (a SET of
    /// ours with a shorter duration left).
    fn report_lowered(&mut self, ctx: &mut Ctx<'_>) {
        if !self.held {
            return;
        }
        let now = ctx.now();
        if let LeaseState::Held { safe_until, .. } = self.lease.state(now.mono) {
            if self.reported_until.is_some_and(|u| safe_until < u) {
                ctx.report(Report::SafeUntilLowered {
                    key: self.w.key.clone(),
                    safe_until,
                });
            }
            self.reported_until = Some(safe_until);
        }
    }

    fn release(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.release_at = None;
        self.reacquire_at = None;
        if self.held {
            self.held = false;
            ctx.report(Report::Released {
                key: self.w.key.clone(),
            });
        }
        let mut r = tampered(&self.w.tamper.request, ctx);
        let _ = self.lease.release(&self.options, &mut r, now);
    }

    fn events(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        while let Some(mut e) = self.lease.poll_event() {
            if !self.w.tamper.keep(&mut e, now) {
                continue;
            }
            let key = self.w.key.clone();
            match e {
                LeaseEvent::Acquired {
                    token, safe_until, ..
                } if self.held => {
                    // A manual re-acquire while held.
                    self.attempting = false;
                    ctx.report(Report::Renewed {
                        key,
                        token,
                        safe_until,
                    });
                    self.reported_until = Some(safe_until);
                    self.schedule_reacquire(ctx);
                }
                LeaseEvent::Acquired {
                    token, safe_until, ..
                } => {
                    self.attempting = false;
                    if self.stopped {
                        self.release(ctx);
                        continue;
                    }
                    ctx.report(Report::Acquired {
                        key,
                        token,
                        safe_until,
                        renewing: !self.w.reacquire,
                    });
                    self.held = true;
                    self.reported_until = Some(safe_until);
                    self.release_at = Some(later(now, ctx.rng(), self.w.timing.hold));
                    self.schedule_reacquire(ctx);
                }
                LeaseEvent::Renewed { token, safe_until } if self.held => {
                    ctx.report(Report::Renewed {
                        key,
                        token,
                        safe_until,
                    });
                }
                LeaseEvent::Lost { .. } if self.held => {
                    self.held = false;
                    self.release_at = None;
                    self.reacquire_at = None;
                    ctx.report(Report::Lost { key });
                    // A manual re-acquire still in flight answers first (and may hold again).
                    if !self.stopped && !self.attempting {
                        self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think));
                    }
                }
                LeaseEvent::NotAcquired { .. } | LeaseEvent::AcquireFailed { .. } if self.held => {
                    // A manual re-acquire failed; the hold goes on until its safe_until.
                    self.attempting = false;
                    self.schedule_reacquire(ctx);
                }
                LeaseEvent::NotAcquired { .. } | LeaseEvent::AcquireFailed { .. } => {
                    self.attempting = false;
                    if !self.stopped {
                        self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think));
                    }
                }
                _ => {}
            }
        }
        self.report_lowered(ctx);
    }
}

impl Agent for LeaseAgent {
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.attempt_at = Some(ctx.now().mono);
        self.step(ctx);
    }

    fn handle_output(&mut self, output: &Output, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let mut r = tampered(&self.w.tamper.request, ctx);
        route(&mut self.lease, output, &mut r, now);
        self.events(ctx);
    }

    fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let mut r = tampered(&self.w.tamper.request, ctx);
        self.lease.handle_timeout(&mut r, now);
        self.events(ctx);
        self.step(ctx);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mine = if self.stopped {
            None
        } else {
            min_opt(min_opt(self.attempt_at, self.release_at), self.reacquire_at)
        };
        min_opt(mine, self.lease.poll_timeout())
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.stopped = true;
        self.attempt_at = None;
        if self.held || self.attempting {
            self.release(ctx);
        }
        self.events(ctx);
    }

    fn outstanding(&self) -> usize {
        self.lease.outstanding()
    }
}

impl Workload for LeaseContention {
    fn agent(&mut self, _node: usize, _incarnation: u32, _seed: u64) -> Box<dyn Agent> {
        let lease = self.proto.clone();
        let mut options = self.timing.lease_options();
        if self.reacquire {
            options.renew = None;
        }
        Box::new(LeaseAgent {
            options,
            w: self.clone(),
            lease,
            held: false,
            release_at: None,
            attempt_at: None,
            attempting: false,
            stopped: false,
            reacquire_at: None,
            reported_until: None,
        })
    }

    fn lease_keys(&self) -> Vec<Bytes> {
        vec![self.key.clone()]
    }

    fn liveness_bound(&self) -> Option<Duration> {
        self.liveness
    }

    fn quiet_window(&self) -> Option<Duration> {
        Some(self.timing.lease + self.timing.timeout * 2)
    }

    fn lease_timing(&self) -> Option<Timing> {
        Some(self.timing)
    }
}
