//! Helpers for the simulator race tests: the proptest configuration every property shares.
//!
//! The replay and budget variables (`LEASEDLOCK_SIM_CASES`, `LEASEDLOCK_SEED`,
//! `LEASEDLOCK_SCENARIO`, `LEASEDLOCK_REPLAY`) are read by `leasedlock_core::sim::env`, the
//! same helpers users of the published crate get.

use std::time::Duration;

use leasedlock_core::sim::env::cases;
use proptest::test_runner::Config as ProptestConfig;

/// How long proptest may spend shrinking one failure. A simulated run takes up to a few seconds
/// (64 clients, 40 s of virtual time), so a minute finds a much smaller case without letting a
/// failing CI run grow without bound; the unshrunk failure is reported either way.
pub const MAX_SHRINK_TIME: Duration = Duration::from_secs(60);

/// The proptest configuration of every simulator property: [`cases`] and [`MAX_SHRINK_TIME`].
pub fn proptest_config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        max_shrink_time: u32::try_from(MAX_SHRINK_TIME.as_millis()).unwrap_or(u32::MAX),
        ..ProptestConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_gets_a_shrink_budget() {
        let c = proptest_config(3);
        assert_eq!(c.cases, cases(3));
        assert_eq!(
            u64::from(c.max_shrink_time),
            u64::try_from(MAX_SHRINK_TIME.as_millis()).unwrap()
        );
        assert!(c.max_shrink_time > 0, "0 means no limit in proptest");
    }
}
