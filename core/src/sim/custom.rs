//! The user's own invariants: a [`Check`] sees every report with global time and judges the
//! run at its end; a failure is a [`Violation`](super::Violation) like the built-in ones (seed,
//! event index, trace), named [`Invariant::Custom`](super::Invariant::Custom).

use alloc::string::String;
use core::time::Duration;

use super::agent::Report;
use super::check::Who;
use crate::server::Store;

/// An invariant of the user's own. Register it with [`Workload::checks`](super::Workload::checks)
/// (a fresh one per run) or [`Sim::with_check`](super::Sim::with_check).
///
/// Reports reach it after the built-in checkers accepted them, in the order they were made;
/// agents can make facts of their own with [`Report::Custom`]. Return `Err(message)` to stop
/// the run: the violation names [`Check::name`].
pub trait Check {
    /// The invariant's name, as violations show it.
    fn name(&self) -> &'static str;

    /// `who` reported `report` at global time `at` (since the start of the run).
    fn on_report(&mut self, at: Duration, who: Who, report: &Report) -> Result<(), String> {
        let _ = (at, who, report);
        Ok(())
    }

    /// The run ended (every node stopped and drained) at global time `at`; `store` is the
    /// state store as it was left, for invariants about the data (a counter's final value).
    fn at_end(&mut self, at: Duration, store: &Store) -> Result<(), String> {
        let _ = (at, store);
        Ok(())
    }
}

/// A [`Check`] from a name and a closure called per report (no end-of-run judgement): keep
/// the invariant's state in the closure.
///
/// ```
/// use std::collections::BTreeSet;
/// use leasedlock_core::sim::{check_fn, Check};
///
/// fn no_value_twice() -> impl Check {
///     let mut seen = BTreeSet::new();
///     check_fn("no value twice", move |_at, who, report| match report.custom("wrote") {
///         Some(v) if !seen.insert(v) => Err(format!("{who} wrote {v} twice")),
///         _ => Ok(()),
///     })
/// }
/// ```
pub fn check_fn<F>(name: &'static str, f: F) -> CheckFn<F>
where
    F: FnMut(Duration, Who, &Report) -> Result<(), String>,
{
    CheckFn { name, f }
}

/// See [`check_fn`].
pub struct CheckFn<F> {
    name: &'static str,
    f: F,
}

impl<F> Check for CheckFn<F>
where
    F: FnMut(Duration, Who, &Report) -> Result<(), String>,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn on_report(&mut self, at: Duration, who: Who, report: &Report) -> Result<(), String> {
        (self.f)(at, who, report)
    }
}
