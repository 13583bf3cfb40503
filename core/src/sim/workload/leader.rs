//! Leader election with resign and crash.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::{later, min_opt, route, tampered, Tamper, Timing};
use crate::client::Output;
use crate::leader::{DeposedReason, Leader, LeaderError, LeaderEvent, LeaderOptions};
use crate::lock::LockOptions;
use crate::sim::agent::{Agent, Ctx, Report, Workload};
use crate::time::Instant;

/// Every node campaigns for `key`; a leader resigns after a random term (drain, then
/// release) and campaigns again after thinking. Crashes come from the fault mix. Feeds S1,
/// S2, S4 (no `Deposed` without `Elected`), L1, L2.
#[derive(Clone)]
pub struct LeaderElection {
    key: Bytes,
    proto: Leader,
    /// Timings.
    pub timing: Timing,
    /// Campaign options (built from the timings).
    pub options: LeaderOptions,
    /// L1 bound (see [`Workload::liveness_bound`]); `None` disables the check.
    pub liveness: Option<Duration>,
    /// Hooks for broken variants.
    pub tamper: Tamper<LeaderEvent>,
}

impl LeaderElection {
    /// An election on `key` (non-empty).
    pub fn new(key: Bytes, timing: Timing) -> Result<LeaderElection, LeaderError> {
        let options = LeaderOptions {
            lock: LockOptions {
                lease: timing.lease_options(),
                ..LockOptions::default()
            },
            recampaign: true,
        };
        Ok(LeaderElection {
            proto: Leader::new(key.clone(), 0)?,
            key,
            timing,
            options,
            liveness: Some(timing.liveness_bound()),
            tamper: Tamper::default(),
        })
    }

    /// With these hooks.
    pub fn with_tamper(mut self, tamper: Tamper<LeaderEvent>) -> LeaderElection {
        self.tamper = tamper;
        self
    }
}

struct LeaderAgent {
    w: LeaderElection,
    leader: Leader,
    campaigning: bool,
    leading: bool,
    resign_at: Option<Instant>,
    campaign_at: Option<Instant>,
    stopped: bool,
}

impl LeaderAgent {
    fn step(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        if !self.stopped && !self.campaigning && self.campaign_at.is_some_and(|t| t <= now.mono) {
            self.campaign_at = None;
            let options = self.w.options.clone();
            let lease = self.w.timing.lease;
            let mut r = tampered(&self.w.tamper.request, ctx);
            match self.leader.campaign(lease, &options, &mut r, now) {
                Ok(()) => self.campaigning = true,
                Err(_) => self.campaign_at = Some(later(now, ctx.rng(), self.w.timing.think)),
            }
        }
        if self.leading && self.resign_at.is_some_and(|t| t <= now.mono) {
            self.resign_at = None;
            let mut r = tampered(&self.w.tamper.request, ctx);
            let _ = self.leader.resign(&mut r, now);
        }
        self.events(ctx);
    }

    fn events(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        while let Some(mut e) = self.leader.poll_event() {
            if !self.w.tamper.keep(&mut e, now) {
                continue;
            }
            let key = self.w.key.clone();
            match e {
                LeaderEvent::Elected { token, safe_until } => {
                    ctx.report(Report::Acquired {
                        key: key.clone(),
                        token,
                        safe_until,
                        renewing: true,
                    });
                    ctx.report(Report::Elected { key });
                    self.leading = true;
                    self.resign_at = if self.stopped {
                        Some(now.mono)
                    } else {
                        Some(later(now, ctx.rng(), self.w.timing.hold))
                    };
                }
                LeaderEvent::Renewed { token, safe_until } if self.leading => {
                    ctx.report(Report::Renewed {
                        key,
                        token,
                        safe_until,
                    });
                }
                LeaderEvent::Draining => {
                    // Leader work stops at once; the release follows (token cleared first).
                    if self.leading {
                        self.leading = false;
                        ctx.report(Report::Released { key });
                    }
                    let mut r = tampered(&self.w.tamper.request, ctx);
                    let _ = self.leader.drained(&mut r, now);
                }
                LeaderEvent::Deposed { reason } => {
                    if let DeposedReason::Lost(_) = reason {
                        if self.leading {
                            ctx.report(Report::Lost { key: key.clone() });
                        }
                    }
                    self.leading = false;
                    self.resign_at = None;
                    ctx.report(Report::Deposed { key });
                }
                LeaderEvent::Stopped { .. } => {
                    self.campaigning = false;
                    self.leading = false;
                    if !self.stopped {
                        self.campaign_at = Some(later(now, ctx.rng(), self.w.timing.think));
                    }
                }
                _ => {}
            }
        }
        if self.resign_at.is_some_and(|t| t <= now.mono) && self.leading {
            self.resign_at = None;
            let mut r = tampered(&self.w.tamper.request, ctx);
            if self.leader.resign(&mut r, now).is_ok() {
                self.events(ctx);
            }
        }
    }
}

impl Agent for LeaderAgent {
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.campaign_at = Some(ctx.now().mono);
        self.step(ctx);
    }

    fn handle_output(&mut self, output: &Output, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        route(
            &mut self.leader,
            output,
            &mut tampered(&self.w.tamper.request, ctx),
            now,
        );
        self.events(ctx);
    }

    fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.leader
            .handle_timeout(&mut tampered(&self.w.tamper.request, ctx), now);
        self.events(ctx);
        self.step(ctx);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mine = if self.stopped {
            None
        } else if self.leading {
            self.resign_at
        } else if self.campaigning {
            None
        } else {
            self.campaign_at
        };
        min_opt(mine, self.leader.poll_timeout())
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.stopped = true;
        self.campaign_at = None;
        if self.campaigning {
            let now = ctx.now();
            let mut r = tampered(&self.w.tamper.request, ctx);
            let _ = self.leader.resign(&mut r, now);
        }
        self.events(ctx);
    }

    fn outstanding(&self) -> usize {
        self.leader.outstanding()
    }
}

impl Workload for LeaderElection {
    fn agent(&mut self, _node: usize, _incarnation: u32, seed: u64) -> Box<dyn Agent> {
        let leader = Leader::new(self.key.clone(), seed).unwrap_or_else(|_| self.proto.clone());
        Box::new(LeaderAgent {
            w: self.clone(),
            leader,
            campaigning: false,
            leading: false,
            resign_at: None,
            campaign_at: None,
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

    fn lease_timing(&self) -> Option<Timing> {
        Some(self.timing)
    }
}
