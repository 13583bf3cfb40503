//! Replay and budget from the environment, for tests of any workload:
//!
//! - `LEASEDLOCK_REPLAY="seed=.. clients=.. run_for=.. ..."`: rerun one exact configuration of
//!   your own workload, as a failing [`sweep`](super::sweep) prints it ([`replay_config`]);
//! - `LEASEDLOCK_SEED=<u64>`: rerun one seed (through your seed-to-configuration function,
//!   or [`Scenario::from_seed`] for the ready-made workloads);
//! - `LEASEDLOCK_SCENARIO="seed=.. workload=.. ..."`: rerun a ready-made workload's
//!   [`Scenario`] line ([`replay_request`]);
//! - `LEASEDLOCK_SIM_CASES=<n>`: cases per property or seeds per sweep ([`cases`]).
//!
//! A malformed value is an error naming the variable, never a silent fallback (a typo must
//! not turn a replay into a different run, or a test into a no-op).

use alloc::string::{String, ToString};
use core::fmt;

use super::{ConfigParseError, Replay, Scenario, ScenarioParseError, Sim, SimConfig};

/// The variable holding the case budget.
pub const CASES_VAR: &str = "LEASEDLOCK_SIM_CASES";
/// The variable naming a ready-made workload's scenario line to replay.
pub const SCENARIO_VAR: &str = "LEASEDLOCK_SCENARIO";
/// The variable naming a seed to replay.
pub const SEED_VAR: &str = "LEASEDLOCK_SEED";
/// The variable naming a configuration line ([`SimConfig`]'s `Display`) to replay.
pub const REPLAY_VAR: &str = "LEASEDLOCK_REPLAY";

/// A variable that cannot be used as given.
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
    /// `LEASEDLOCK_REPLAY` is not a configuration line.
    BadReplay {
        /// The value as given.
        line: String,
        /// Why it did not parse.
        source: ConfigParseError,
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
            EnvError::BadReplay { line, source } => write!(
                f,
                "{REPLAY_VAR}={line:?} is not a configuration line ({source}); use the line a failing sweep prints, e.g. \"seed=7 clients=3 run_for=30s\""
            ),
        }
    }
}

impl core::error::Error for EnvError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            EnvError::BadScenario { source, .. } => Some(source),
            EnvError::BadReplay { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The budget from the value of `LEASEDLOCK_SIM_CASES` (`None`: unset), or `default`.
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

/// Cases per property (or seeds per sweep): `LEASEDLOCK_SIM_CASES` or `default`. Panics with
/// the reason if the variable is set to something unusable (a test helper: the test should
/// stop, not run with a budget nobody asked for).
pub fn cases(default: u32) -> u32 {
    let value = std::env::var(CASES_VAR).ok();
    parse_cases(value.as_deref(), default).unwrap_or_else(|e| panic!("{e}"))
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
    parse_seed(seed).map(|s| s.map(Scenario::from_seed))
}

fn parse_seed(seed: Option<&str>) -> Result<Option<u64>, EnvError> {
    seed.map(|v| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| EnvError::BadSeed(v.to_string()))
    })
    .transpose()
}

/// The ready-made workload's scenario named by `LEASEDLOCK_SCENARIO` or `LEASEDLOCK_SEED`.
pub fn replay_request() -> Result<Option<Scenario>, EnvError> {
    let scenario = std::env::var(SCENARIO_VAR).ok();
    let seed = std::env::var(SEED_VAR).ok();
    parse_replay(scenario.as_deref(), seed.as_deref())
}

/// The configuration named by the values of `LEASEDLOCK_REPLAY` (a whole line) and
/// `LEASEDLOCK_SEED` (a seed, turned into a configuration by `from_seed`); the line wins when
/// both are set, `None` when neither is.
pub fn parse_config_replay(
    line: Option<&str>,
    seed: Option<&str>,
    from_seed: impl FnOnce(u64) -> SimConfig,
) -> Result<Option<SimConfig>, EnvError> {
    if let Some(line) = line {
        return line
            .parse()
            .map(Some)
            .map_err(|source| EnvError::BadReplay {
                line: line.to_string(),
                source,
            });
    }
    parse_seed(seed).map(|s| s.map(from_seed))
}

/// The configuration of your own workload that `LEASEDLOCK_REPLAY` or `LEASEDLOCK_SEED`
/// names, if any (see [`parse_config_replay`]).
pub fn replay_config(
    from_seed: impl FnOnce(u64) -> SimConfig,
) -> Result<Option<SimConfig>, EnvError> {
    let line = std::env::var(REPLAY_VAR).ok();
    let seed = std::env::var(SEED_VAR).ok();
    parse_config_replay(line.as_deref(), seed.as_deref(), from_seed)
}

/// Replays a ready-made workload's `scenario` and prints its whole trace.
pub fn replay_and_print(scenario: &Scenario) -> Replay {
    let r = Sim::replay_scenario(scenario);
    std::println!("replaying {}", r.scenario);
    for line in &r.trace {
        std::println!("{line}");
    }
    match &r.result {
        Ok(s) => std::println!(
            "ok: {} events, trace hash {:016x}, {:?} virtual",
            s.events,
            s.trace_hash,
            s.virtual_time
        ),
        Err(v) => std::println!("{v}"),
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::error::Error as _;
    use core::time::Duration;

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

    #[test]
    fn a_config_line_or_a_seed_names_a_user_replay() {
        let from_seed = |seed| SimConfig::new(seed, 2, Duration::from_secs(9));
        assert_eq!(parse_config_replay(None, None, from_seed), Ok(None));
        assert_eq!(
            parse_config_replay(None, Some("5"), from_seed),
            Ok(Some(from_seed(5)))
        );
        let line = "seed=7 clients=3 run_for=30s drop=0.02";
        let expected: SimConfig = line.parse().unwrap();
        assert_eq!(
            parse_config_replay(Some(line), Some("5"), from_seed),
            Ok(Some(expected))
        );
        match parse_config_replay(Some("seed=7 clients=3"), None, from_seed) {
            Err(e @ EnvError::BadReplay { .. }) => {
                assert!(e.to_string().contains(REPLAY_VAR), "{e}");
                assert!(e.source().is_some());
            }
            other => panic!("{other:?}"),
        }
    }
}
