//! Lease contention with auto-renew.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::{later, min_opt, route, tampered, Tamper, Timing};
use crate::client::Output;
use crate::lease::{Lease, LeaseError, LeaseEvent, LeaseOptions};
use crate::sim::agent::{Agent, Ctx, Report, Workload};
use crate::time::Instant;

/// Every node competes for the lease `key`: acquire with auto-renew, hold for a random time,
/// release, think, again. Feeds S1, S2, S4, L1, L2.
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
        })
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
        if self.held && self.release_at.is_some_and(|t| t <= now.mono) {
            self.release(ctx);
            if !self.stopped {
                self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think));
            }
        }
        self.events(ctx);
    }

    fn release(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.release_at = None;
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
                        renewing: true,
                    });
                    self.held = true;
                    self.release_at = Some(later(now, ctx.rng(), self.w.timing.hold));
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
                    ctx.report(Report::Lost { key });
                    if !self.stopped {
                        self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think));
                    }
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
            min_opt(self.attempt_at, self.release_at)
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
        Box::new(LeaseAgent {
            options: self.timing.lease_options(),
            w: self.clone(),
            lease,
            held: false,
            release_at: None,
            attempt_at: None,
            attempting: false,
            stopped: false,
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
}
