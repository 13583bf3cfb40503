//! Lock contention with fenced writes in the critical section.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::{later, min_opt, route, tampered, Tamper, Timing};
use crate::client::{Output, RequestError, RequestId, RequestOptions};
use crate::command::{Request, Response, ServiceError, SetCondition, SetOutcome};
use crate::hlc::Hlc;
use crate::lock::{Lock, LockError, LockEvent, LockOptions};
use crate::sim::agent::{Agent, Ctx, Report, Workload, WriteOutcome};
use crate::time::Instant;

/// Every node locks `key`, does one to three fenced writes (`SET resource .. __ft=token`) in
/// its critical section, unlocks, thinks, and locks again. Feeds S1–S4, L1, L2.
#[derive(Clone)]
pub struct LockContention {
    key: Bytes,
    resource: Bytes,
    proto: Lock,
    /// Timings.
    pub timing: Timing,
    /// Lock options (built from the timings; tests may change them, e.g. the fallback).
    pub options: LockOptions,
    /// L1 bound (see [`Workload::liveness_bound`]); `None` disables the check.
    pub liveness: Option<Duration>,
    /// A fixed pause after unlocking, before the random think time and the next `lock`
    /// (zero by default). The handover benchmark sets it so that the node that just unlocked
    /// does not compete for the very handover its unlock started.
    pub rest: Duration,
    /// Hooks for broken variants.
    pub tamper: Tamper<LockEvent>,
    /// After each unlock, write the resource once more with the token just given up, this
    /// long later: a process that stalled between checking its token and its write reaching
    /// the store, the case fencing exists for. Once a later holder has written, a correct
    /// store refuses it; a store that forgets fencing accepts it and S3 fires. `None` (the
    /// default): no such write.
    pub straggler: Option<Duration>,
}

impl LockContention {
    /// Contention on the lock `key` protecting `resource` (both non-empty).
    pub fn new(key: Bytes, resource: Bytes, timing: Timing) -> Result<LockContention, LockError> {
        if resource.is_empty() {
            return Err(LockError::NotLocked);
        }
        let options = LockOptions {
            lease: timing.lease_options(),
            ..LockOptions::default()
        };
        Ok(LockContention {
            proto: Lock::new(key.clone(), 0)?,
            key,
            resource,
            timing,
            options,
            liveness: Some(timing.liveness_bound()),
            rest: Duration::ZERO,
            tamper: Tamper::default(),
            straggler: None,
        })
    }

    /// With these hooks.
    pub fn with_tamper(mut self, tamper: Tamper<LockEvent>) -> LockContention {
        self.tamper = tamper;
        self
    }
}

struct LockAgent {
    w: LockContention,
    lock: Lock,
    waiting: bool,
    held: bool,
    writes_left: u32,
    write_at: Option<Instant>,
    pending: Option<(RequestId, Hlc)>,
    attempt_at: Option<Instant>,
    stopped: bool,
    /// The straggling write due, with the token it uses (see [`LockContention::straggler`]).
    straggle_at: Option<(Instant, Hlc)>,
    /// The straggling write in flight.
    straggling: Option<(RequestId, Hlc)>,
}

fn write_outcome(result: &Result<Response, RequestError>, version: &Option<Hlc>) -> WriteOutcome {
    match (result, version) {
        (Ok(Response::Set(SetOutcome::Applied)), Some(v)) => {
            WriteOutcome::Accepted { version: v.clone() }
        }
        (Err(RequestError::Service(ServiceError::FencingTokenLowerVersion)), _) => {
            WriteOutcome::Fenced
        }
        _ => WriteOutcome::Failed,
    }
}

impl LockAgent {
    fn step(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        if !self.stopped
            && !self.waiting
            && !self.held
            && self.attempt_at.is_some_and(|t| t <= now.mono)
        {
            self.attempt_at = None;
            let options = self.w.options.clone();
            let lease = self.w.timing.lease;
            let result = self.lock.lock(
                lease,
                &options,
                &mut tampered(&self.w.tamper.request, ctx),
                now,
            );
            match result {
                Ok(()) => self.waiting = true,
                Err(_) => self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think)),
            }
        }
        if self.straggling.is_none()
            && self
                .straggle_at
                .as_ref()
                .is_some_and(|(t, _)| *t <= now.mono)
        {
            if let Some((_, token)) = self.straggle_at.take() {
                self.straggling = self.send_write(token, ctx);
            }
        }
        if self.held && self.pending.is_none() && self.write_at.is_some_and(|t| t <= now.mono) {
            self.write_at = None;
            if self.writes_left == 0 {
                self.unlock(ctx);
            } else {
                self.write(ctx);
            }
        }
        self.events(ctx);
    }

    fn write(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let Ok(token) = self.lock.token(now.mono) else {
            return;
        };
        self.writes_left -= 1;
        self.pending = self.send_write(token, ctx);
    }

    /// A fenced `SET resource` with `token`; the request and its token, if it was issued.
    fn send_write(&mut self, token: Hlc, ctx: &mut Ctx<'_>) -> Option<(RequestId, Hlc)> {
        let now = ctx.now();
        let request = Request::Set {
            key: self.w.resource.clone(),
            value: Bytes::copy_from_slice(ctx.client_id().as_bytes()),
            condition: SetCondition::Always,
            px_ms: None,
        };
        let options = RequestOptions {
            timeout: Some(self.w.timing.timeout),
            fencing_token: Some(token.clone()),
            persist: false,
        };
        let mut r = tampered(&self.w.tamper.request, ctx);
        crate::client::Requester::request(&mut r, request, options, now)
            .ok()
            .map(|id| (id, token))
    }

    fn unlock(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        if let (Some(after), false, None) = (self.w.straggler, self.stopped, &self.straggle_at) {
            if let Ok(token) = self.lock.token(now.mono) {
                self.straggle_at = Some((now.mono + after, token));
            }
        }
        if self.held {
            self.held = false;
            ctx.report(Report::Released {
                key: self.w.key.clone(),
            });
        }
        self.write_at = None;
        let options = self.w.options.lease.clone();
        let _ = self
            .lock
            .unlock(&options, &mut tampered(&self.w.tamper.request, ctx), now);
        if !self.stopped {
            let at = later(now, ctx.rng(), self.w.timing.think);
            self.attempt_at = Some(at + self.w.rest);
        }
    }

    fn events(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        while let Some(mut e) = self.lock.poll_event() {
            if !self.w.tamper.keep(&mut e, now) {
                continue;
            }
            let key = self.w.key.clone();
            match e {
                LockEvent::Locked { token, safe_until } => {
                    self.waiting = false;
                    self.held = true;
                    ctx.report(Report::Acquired {
                        key,
                        token,
                        safe_until,
                        renewing: true,
                    });
                    if self.stopped {
                        self.unlock(ctx);
                        continue;
                    }
                    self.writes_left = 1 + ctx.rng().below(3) as u32;
                    self.write_at = Some(later(now, ctx.rng(), self.w.timing.hold / 4));
                }
                LockEvent::LockFailed { .. } => {
                    self.waiting = false;
                    if !self.stopped {
                        self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think));
                    }
                }
                LockEvent::Renewed { token, safe_until } if self.held => {
                    ctx.report(Report::Renewed {
                        key,
                        token,
                        safe_until,
                    });
                }
                LockEvent::Lost { .. } if self.held => {
                    self.held = false;
                    self.write_at = None;
                    ctx.report(Report::Lost { key });
                    if !self.stopped {
                        self.attempt_at = Some(later(now, ctx.rng(), self.w.timing.think));
                    }
                }
                _ => {}
            }
        }
    }
}

impl Agent for LockAgent {
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.attempt_at = Some(ctx.now().mono);
        self.step(ctx);
    }

    fn handle_output(&mut self, output: &Output, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        if let (Output::Completion(c), Some((id, token))) = (output, &self.straggling) {
            if c.id == *id {
                ctx.report(Report::Write {
                    key: self.w.resource.clone(),
                    lease: self.w.key.clone(),
                    token: token.clone(),
                    outcome: write_outcome(&c.result, &c.version),
                });
                self.straggling = None;
                self.step(ctx);
                return;
            }
        }
        if let (Output::Completion(c), Some((id, token))) = (output, &self.pending) {
            if c.id == *id {
                ctx.report(Report::Write {
                    key: self.w.resource.clone(),
                    lease: self.w.key.clone(),
                    token: token.clone(),
                    outcome: write_outcome(&c.result, &c.version),
                });
                self.pending = None;
                if self.held {
                    self.write_at = Some(later(now, ctx.rng(), self.w.timing.hold / 4));
                }
                self.step(ctx);
                return;
            }
        }
        route(
            &mut self.lock,
            output,
            &mut tampered(&self.w.tamper.request, ctx),
            now,
        );
        self.events(ctx);
    }

    fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.lock
            .handle_timeout(&mut tampered(&self.w.tamper.request, ctx), now);
        self.events(ctx);
        self.step(ctx);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mine = if self.stopped {
            None
        } else if self.held {
            if self.pending.is_none() {
                self.write_at
            } else {
                None
            }
        } else if self.waiting {
            None
        } else {
            self.attempt_at
        };
        let straggle = match (&self.straggle_at, &self.straggling) {
            (Some((t, _)), None) => Some(*t),
            _ => None,
        };
        min_opt(min_opt(mine, straggle), self.lock.poll_timeout())
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.stopped = true;
        self.attempt_at = None;
        self.straggle_at = None;
        if self.waiting {
            let now = ctx.now();
            self.lock
                .cancel(&mut tampered(&self.w.tamper.request, ctx), now);
            self.waiting = false;
        }
        if self.held {
            self.unlock(ctx);
        }
        self.events(ctx);
    }

    fn outstanding(&self) -> usize {
        self.lock.outstanding()
            + usize::from(self.pending.is_some())
            + usize::from(self.straggling.is_some())
    }
}

impl Workload for LockContention {
    fn agent(&mut self, _node: usize, _incarnation: u32, seed: u64) -> Box<dyn Agent> {
        let lock = Lock::new(self.key.clone(), seed).unwrap_or_else(|_| self.proto.clone());
        Box::new(LockAgent {
            w: self.clone(),
            lock,
            waiting: false,
            held: false,
            writes_left: 0,
            write_at: None,
            pending: None,
            attempt_at: None,
            stopped: false,
            straggle_at: None,
            straggling: None,
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
