//! Scripted faults: a fault at a chosen time on a chosen node, on top of (or instead of) the
//! random ones. "Pause node 0 at 12 s for 3 s" is `Scripted::pause(0, secs(12), secs(3))`;
//! "partition nodes 1 and 2 from 20 s to 25 s" is `Scripted::partition(&[1, 2], secs(20),
//! secs(25))`. Unlike random faults they also happen after [`SimConfig::heal_at`]; the
//! liveness check (L1) counts from the end of the last one.
//!
//! In a configuration line each is one word, `script=<kind>:<node>@<at>+<len>`, with kinds
//! `pause`, `crash`, `partition` (both ways), `partition-to-store` (requests lost),
//! `partition-to-client` (replies and notifications lost), `disconnect` (session kept) and
//! `disconnect-lost` (session lost).
//!
//! [`SimConfig::heal_at`]: super::SimConfig::heal_at

use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use super::config_line::{parse_duration, Dur};

/// What a scripted fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScriptedKind {
    /// The node's process stops (a GC pause); its clocks keep running.
    Pause,
    /// The node crashes and restarts (same client id) after the fault's length.
    Crash,
    /// The link between the node and the broker is cut in the given directions; the
    /// connection stays up (half-open), messages sent into the cut are lost.
    Partition {
        /// Requests are lost.
        to_store: bool,
        /// Replies and notifications are lost.
        to_client: bool,
    },
    /// The broker drops the node's connection; it reconnects after the fault's length.
    Disconnect {
        /// The MQTT session is lost too.
        session_lost: bool,
    },
}

/// One fault at a chosen time on a chosen node. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scripted {
    /// The node.
    pub node: usize,
    /// When it starts (global time since the start of the run).
    pub at: Duration,
    /// How long it lasts.
    pub len: Duration,
    /// What it is.
    pub kind: ScriptedKind,
}

impl Scripted {
    /// Pauses `node` at `at` for `len`.
    pub fn pause(node: usize, at: Duration, len: Duration) -> Scripted {
        Scripted {
            node,
            at,
            len,
            kind: ScriptedKind::Pause,
        }
    }

    /// Crashes `node` at `at`; it restarts `down_for` later.
    pub fn crash(node: usize, at: Duration, down_for: Duration) -> Scripted {
        Scripted {
            node,
            at,
            len: down_for,
            kind: ScriptedKind::Crash,
        }
    }

    /// Drops `node`'s connection at `at`; it reconnects `len` later.
    pub fn disconnect(node: usize, at: Duration, len: Duration, session_lost: bool) -> Scripted {
        Scripted {
            node,
            at,
            len,
            kind: ScriptedKind::Disconnect { session_lost },
        }
    }

    /// Cuts each of `nodes` off the broker (both ways) from `from` until `until`.
    pub fn partition(nodes: &[usize], from: Duration, until: Duration) -> Vec<Scripted> {
        nodes
            .iter()
            .map(|&node| Scripted {
                node,
                at: from,
                len: until.saturating_sub(from),
                kind: ScriptedKind::Partition {
                    to_store: true,
                    to_client: true,
                },
            })
            .collect()
    }

    /// When it is over.
    pub fn end(&self) -> Duration {
        self.at.saturating_add(self.len)
    }
}

impl fmt::Display for Scripted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ScriptedKind::Pause => "pause",
            ScriptedKind::Crash => "crash",
            ScriptedKind::Partition {
                to_store: true,
                to_client: true,
            } => "partition",
            ScriptedKind::Partition {
                to_store: true,
                to_client: false,
            } => "partition-to-store",
            ScriptedKind::Partition {
                to_store: false,
                to_client: true,
            } => "partition-to-client",
            ScriptedKind::Partition { .. } => "partition-none",
            ScriptedKind::Disconnect {
                session_lost: false,
            } => "disconnect",
            ScriptedKind::Disconnect { session_lost: true } => "disconnect-lost",
        };
        write!(f, "{kind}:{}@{}+{}", self.node, Dur(self.at), Dur(self.len))
    }
}

/// Why a scripted fault did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScriptParseError {
    /// Not `<kind>:<node>@<at>+<len>`.
    Form,
    /// Not a known kind.
    Kind,
    /// The node is not a number.
    Node,
    /// `at` or `len` is not a duration.
    Duration,
}

impl fmt::Display for ScriptParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(expected_form(self))
    }
}

impl core::error::Error for ScriptParseError {}

/// What was expected, for error messages.
pub(crate) fn expected_form(e: &ScriptParseError) -> &'static str {
    match e {
        ScriptParseError::Form => "<kind>:<node>@<at>+<len>, e.g. pause:0@12s+3s",
        ScriptParseError::Kind => {
            "a kind among pause, crash, partition, partition-to-store, partition-to-client, disconnect, disconnect-lost"
        }
        ScriptParseError::Node => "a node index after the kind",
        ScriptParseError::Duration => "durations such as 12s or 1500ms after @ and +",
    }
}

impl FromStr for Scripted {
    type Err = ScriptParseError;

    fn from_str(s: &str) -> Result<Scripted, ScriptParseError> {
        let (kind, rest) = s.split_once(':').ok_or(ScriptParseError::Form)?;
        let (node, times) = rest.split_once('@').ok_or(ScriptParseError::Form)?;
        let (at, len) = times.split_once('+').ok_or(ScriptParseError::Form)?;
        let kind = match kind {
            "pause" => ScriptedKind::Pause,
            "crash" => ScriptedKind::Crash,
            "partition" => ScriptedKind::Partition {
                to_store: true,
                to_client: true,
            },
            "partition-to-store" => ScriptedKind::Partition {
                to_store: true,
                to_client: false,
            },
            "partition-to-client" => ScriptedKind::Partition {
                to_store: false,
                to_client: true,
            },
            "partition-none" => ScriptedKind::Partition {
                to_store: false,
                to_client: false,
            },
            "disconnect" => ScriptedKind::Disconnect {
                session_lost: false,
            },
            "disconnect-lost" => ScriptedKind::Disconnect { session_lost: true },
            _ => return Err(ScriptParseError::Kind),
        };
        Ok(Scripted {
            node: node.parse().map_err(|_| ScriptParseError::Node)?,
            at: parse_duration(at).ok_or(ScriptParseError::Duration)?,
            len: parse_duration(len).ok_or(ScriptParseError::Duration)?,
            kind,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::string::{String, ToString};
    use proptest::prelude::*;

    fn describe(script: &[Scripted]) -> String {
        let words: Vec<String> = script.iter().map(|x| x.to_string()).collect();
        words.join(" ")
    }

    pub(crate) fn scripted() -> impl Strategy<Value = Scripted> {
        let kind = prop_oneof![
            Just(ScriptedKind::Pause),
            Just(ScriptedKind::Crash),
            (any::<bool>(), any::<bool>()).prop_map(|(to_store, to_client)| {
                ScriptedKind::Partition {
                    to_store,
                    to_client,
                }
            }),
            any::<bool>().prop_map(|session_lost| ScriptedKind::Disconnect { session_lost }),
        ];
        (
            0usize..64,
            0u64..1_000_000_000_000,
            0u64..100_000_000_000,
            kind,
        )
            .prop_map(|(node, at, len, kind)| Scripted {
                node,
                at: Duration::from_nanos(at),
                len: Duration::from_nanos(len),
                kind,
            })
    }

    #[test]
    fn the_issue_examples_read_as_written() {
        let secs = Duration::from_secs;
        assert_eq!(
            Scripted::pause(0, secs(12), secs(3)).to_string(),
            "pause:0@12s+3s"
        );
        let p = Scripted::partition(&[1, 2], secs(20), secs(25));
        assert_eq!(describe(&p), "partition:1@20s+5s partition:2@20s+5s");
        assert_eq!(
            "crash:3@1500ms+2s".parse(),
            Ok(Scripted::crash(3, Duration::from_millis(1500), secs(2)))
        );
        assert_eq!(
            "pause:0@12s".parse::<Scripted>(),
            Err(ScriptParseError::Form)
        );
        assert_eq!(
            "nap:0@1s+1s".parse::<Scripted>(),
            Err(ScriptParseError::Kind)
        );
        assert_eq!(
            "pause:x@1s+1s".parse::<Scripted>(),
            Err(ScriptParseError::Node)
        );
        assert_eq!(
            "pause:0@1h+1s".parse::<Scripted>(),
            Err(ScriptParseError::Duration)
        );
    }

    proptest! {
        #[test]
        fn scripted_faults_round_trip(s in scripted()) {
            prop_assert_eq!(s.to_string().parse::<Scripted>(), Ok(s));
        }
    }
}
