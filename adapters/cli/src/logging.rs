//! Log lines on stderr: which ones (`-v`/`-q`, `LEASEDLOCK_LOG`, `RUST_LOG`) and whether they
//! are coloured (only on a terminal, and never with `NO_COLOR`).

use std::ffi::OsString;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The levels `-q`/`-v` step through, from `-qq` to `-vvv`; the default is `warn`.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
const DEFAULT_LEVEL: usize = 2;

/// The level `-v` × `verbose` and `-q` × `quiet` select, `None` when neither was given.
pub fn level_from_flags(verbose: u8, quiet: u8) -> Option<&'static str> {
    if verbose == 0 && quiet == 0 {
        return None;
    }
    let level = (DEFAULT_LEVEL + usize::from(verbose))
        .saturating_sub(usize::from(quiet))
        .min(LEVELS.len() - 1);
    Some(LEVELS[level])
}

/// Where the filter comes from: the flags, else `LEASEDLOCK_LOG`, else `RUST_LOG`, else
/// warnings and errors only. Returns the filter and, when a variable held no valid filter, a
/// note saying so.
fn filter(verbose: u8, quiet: u8) -> (EnvFilter, Option<String>) {
    if let Some(level) = level_from_flags(verbose, quiet) {
        return (EnvFilter::new(level), None);
    }
    for var in ["LEASEDLOCK_LOG", "RUST_LOG"] {
        match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => match EnvFilter::try_new(&text) {
                Ok(filter) => return (filter, None),
                Err(e) => {
                    let note = format!("{var}={text:?} is not a log filter ({e}); using warn");
                    return (EnvFilter::new(LEVELS[DEFAULT_LEVEL]), Some(note));
                }
            },
            _ => {}
        }
    }
    (EnvFilter::new(LEVELS[DEFAULT_LEVEL]), None)
}

/// Whether log lines get ANSI colours: only when stderr is a terminal and `NO_COLOR` is unset
/// or empty (<https://no-color.org>).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the subscriber: log lines to stderr, filtered and coloured as above.
pub fn init(verbose: u8, quiet: u8) {
    let (filter, note) = filter(verbose, quiet);
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    );
    // A second initialisation (tests) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(note) = note {
        tracing::warn!("{note}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_step_through_the_levels() {
        assert_eq!(level_from_flags(0, 0), None);
        assert_eq!(level_from_flags(1, 0), Some("info"));
        assert_eq!(level_from_flags(2, 0), Some("debug"));
        assert_eq!(level_from_flags(3, 0), Some("trace"));
        assert_eq!(level_from_flags(9, 0), Some("trace"));
        assert_eq!(level_from_flags(0, 1), Some("error"));
        assert_eq!(level_from_flags(0, 2), Some("off"));
        assert_eq!(level_from_flags(0, 200), Some("off"));
        assert_eq!(level_from_flags(255, 255), Some("warn"));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(
            use_colour(true, Some(OsString::new())),
            "empty NO_COLOR is unset"
        );
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some("1".into())));
    }
}
