//! Helpers for the simulator race tests: the CI budget and the replay environment variables.
//!
//! - `LEASEDLOCK_SIM_CASES=<n>`: proptest cases per property (default: the CI budget; `0` or
//!   anything that is not a number is refused, so a typo never turns a test into a no-op).
//! - `LEASEDLOCK_SEED=<u64>`: replay `Scenario::from_seed(seed)` with its full trace.
//! - `LEASEDLOCK_SCENARIO="seed=.. workload=.. clients=.. ..."`: replay an exact (shrunk)
//!   scenario line as printed by a failing test.
//!
//! A malformed value is an error naming the variable, never a silent fallback.

use std::fmt;
use std::time::Duration;

use leasedlock_core::sim::{Replay, Scenario, ScenarioParseError, Sim};
use proptest::test_runner::Config as ProptestConfig;

/// The variable holding the proptest budget.
pub const CASES_VAR: &str = "LEASEDLOCK_SIM_CASES";
/// The variable naming a scenario line to replay.
pub const SCENARIO_VAR: &str = "LEASEDLOCK_SCENARIO";
/// The variable naming a seed to replay.
pub const SEED_VAR: &str = "LEASEDLOCK_SEED";

/// How long proptest may spend shrinking one failure. A simulated run takes up to a few seconds
/// (64 clients, 40 s of virtual time), so a minute finds a much smaller case without letting a
/// failing CI run grow without bound; the unshrunk failure is reported either way.
pub const MAX_SHRINK_TIME: Duration = Duration::from_secs(60);

/// A test-environment variable that cannot be used as given.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvError {
    /// `LEASEDLOCK_SIM_CASES` is `0`: the properties would check nothing.
    ZeroCases,
    /// `LEASEDLOCK_SIM_CASES` is not a decimal `u32`.
    BadCases(String),
    /// `LEASEDLOCK_SEED` is not a decimal `u64`.
    BadSeed(String),
    /// `LEASEDLOCK_SCENARIO` is not a scenario line.
    BadScenario {
        /// The value as given.
        line: String,
        /// Why it did not parse.
        source: ScenarioParseError,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::ZeroCases => write!(
                f,
                "{CASES_VAR}=0 would run no cases at all; unset it for the default budget or give a positive number"
            ),
            EnvError::BadCases(v) => {
                write!(f, "{CASES_VAR}={v:?} is not a number of cases (a positive integer)")
            }
            EnvError::BadSeed(v) => write!(f, "{SEED_VAR}={v:?} is not a seed (a u64)"),
            EnvError::BadScenario { line, source } => write!(
                f,
                "{SCENARIO_VAR}={line:?} is not a scenario line ({source}); use a line as a failing test prints it, e.g. \"seed=7 workload=lock clients=3\""
            ),
        }
    }
}

impl std::error::Error for EnvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EnvError::BadScenario { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The proptest budget from the value of `LEASEDLOCK_SIM_CASES` (`None`: unset), or `default`.
pub fn parse_cases(value: Option<&str>, default: u32) -> Result<u32, EnvError> {
    let Some(v) = value else {
        return Ok(default);
    };
    match v.trim().parse::<u32>() {
        Ok(0) => Err(EnvError::ZeroCases),
        Ok(n) => Ok(n),
        Err(_) => Err(EnvError::BadCases(v.to_string())),
    }
}

/// Proptest cases per property: `LEASEDLOCK_SIM_CASES` or `default`. Panics with the reason if
/// the variable is set to something unusable.
pub fn cases(default: u32) -> u32 {
    let value = std::env::var(CASES_VAR).ok();
    parse_cases(value.as_deref(), default).unwrap_or_else(|e| panic!("{e}"))
}

/// The proptest configuration of every simulator property: [`cases`] and [`MAX_SHRINK_TIME`].
pub fn proptest_config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        max_shrink_time: u32::try_from(MAX_SHRINK_TIME.as_millis()).unwrap_or(u32::MAX),
        ..ProptestConfig::default()
    }
}

/// The scenario named by the values of `LEASEDLOCK_SCENARIO` and `LEASEDLOCK_SEED` (`None`:
/// unset); the scenario line wins when both are set.
pub fn parse_replay(
    scenario: Option<&str>,
    seed: Option<&str>,
) -> Result<Option<Scenario>, EnvError> {
    if let Some(line) = scenario {
        return line
            .parse()
            .map(Some)
            .map_err(|source| EnvError::BadScenario {
                line: line.to_string(),
                source,
            });
    }
    seed.map(|v| {
        v.trim()
            .parse::<u64>()
            .map(Scenario::from_seed)
            .map_err(|_| EnvError::BadSeed(v.to_string()))
    })
    .transpose()
}

/// The scenario named by `LEASEDLOCK_SCENARIO` or `LEASEDLOCK_SEED`, if any.
pub fn replay_request() -> Result<Option<Scenario>, EnvError> {
    let scenario = std::env::var(SCENARIO_VAR).ok();
    let seed = std::env::var(SEED_VAR).ok();
    parse_replay(scenario.as_deref(), seed.as_deref())
}

/// Replays `scenario` and prints its whole trace.
pub fn replay_and_print(scenario: &Scenario) -> Replay {
    let r = Sim::replay_scenario(scenario);
    println!("replaying {}", r.scenario);
    for line in &r.trace {
        println!("{line}");
    }
    match &r.result {
        Ok(s) => println!(
            "ok: {} events, trace hash {:016x}, {:?} virtual",
            s.events, s.trace_hash, s.virtual_time
        ),
        Err(v) => println!("{v}"),
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn unset_cases_take_the_default_and_a_number_wins() {
        assert_eq!(parse_cases(None, 24), Ok(24));
        assert_eq!(parse_cases(Some("500"), 24), Ok(500));
        assert_eq!(parse_cases(Some(" 7 "), 24), Ok(7));
    }

    #[test]
    fn zero_or_garbage_cases_are_refused() {
        assert_eq!(parse_cases(Some("0"), 24), Err(EnvError::ZeroCases));
        assert!(EnvError::ZeroCases.to_string().contains(CASES_VAR));
        for v in ["", "-3", "ten", "1e3", "99999999999"] {
            assert_eq!(
                parse_cases(Some(v), 24),
                Err(EnvError::BadCases(v.to_string())),
                "{v:?}"
            );
        }
    }

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

    #[test]
    fn a_scenario_line_or_a_seed_names_the_replay() {
        assert_eq!(parse_replay(None, None), Ok(None));
        assert_eq!(
            parse_replay(None, Some("42")),
            Ok(Some(Scenario::from_seed(42)))
        );
        let line = "seed=9 workload=lock clients=3";
        let expected: Scenario = line.parse().unwrap();
        assert_eq!(parse_replay(Some(line), Some("42")), Ok(Some(expected)));
    }

    #[test]
    fn a_malformed_replay_request_is_an_error_not_seed_0() {
        for line in [
            "",
            "seed=",
            "sed=5",
            "seed=5 workload=nope",
            "seed=5 clients",
        ] {
            match parse_replay(Some(line), None) {
                Err(e @ EnvError::BadScenario { .. }) => {
                    assert!(e.to_string().contains(SCENARIO_VAR), "{e}");
                    assert!(e.source().is_some(), "the parse error is kept");
                }
                other => panic!("{line:?}: {other:?}"),
            }
        }
        assert_eq!(
            parse_replay(None, Some("0x10")),
            Err(EnvError::BadSeed("0x10".to_string()))
        );
    }
}
