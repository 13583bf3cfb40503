//! [`SimConfig`] as one printable line, and back: the replay line of any workload.
//!
//! The line is `key=value` words separated by spaces. `seed`, `clients` and `run_for` always
//! come first; every other field is printed only when it differs from what
//! [`SimConfig::new`] gives for those three, so a typical line stays short. Durations carry
//! their unit (`s`, `ms`, `us`, `ns`, the largest that is exact), probabilities are decimal
//! numbers printed exactly, recurring faults are `mean_gap/min_len/max_len` or `off`, and
//! scripted faults are `script=<fault>` words (see [`Scripted`]).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use super::config::Recurring;
use super::SimConfig;

/// Why a configuration line did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigParseError {
    /// A word is not `key=value`.
    NotKeyValue(String),
    /// No such key.
    UnknownKey(String),
    /// `seed`, `clients` or `run_for` is missing.
    Missing(&'static str),
    /// The value of `key` is not what the key takes.
    BadValue {
        /// The key.
        key: String,
        /// The value as given.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },
}

impl fmt::Display for ConfigParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigParseError::NotKeyValue(w) => write!(f, "{w:?} is not key=value"),
            ConfigParseError::UnknownKey(k) => write!(f, "unknown key {k:?}"),
            ConfigParseError::Missing(k) => write!(f, "{k}= is missing"),
            ConfigParseError::BadValue {
                key,
                value,
                expected,
            } => write!(f, "{key}={value:?} is not {expected}"),
        }
    }
}

impl core::error::Error for ConfigParseError {}

/// A duration in the largest unit that keeps it exact.
pub(crate) struct Dur(pub(crate) Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ns = d.as_nanos();
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if ns.is_multiple_of(1_000_000) {
            write!(f, "{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1_000) {
            write!(f, "{}us", ns / 1_000)
        } else {
            write!(f, "{ns}ns")
        }
    }
}

/// Parses what [`Dur`] prints.
pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = v.split_at(split);
    let n: u128 = num.parse().ok()?;
    let per_sec: u128 = match unit {
        "s" => 1,
        "ms" => 1_000,
        "us" => 1_000_000,
        "ns" => 1_000_000_000,
        _ => return None,
    };
    let secs = u64::try_from(n / per_sec).ok()?;
    let nanos = u32::try_from((n % per_sec) * (1_000_000_000 / per_sec)).ok()?;
    Some(Duration::new(secs, nanos))
}

struct Rec(Option<Recurring>);

impl fmt::Display for Rec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(r) => write!(
                f,
                "{}/{}/{}",
                Dur(r.mean_gap),
                Dur(r.min_len),
                Dur(r.max_len)
            ),
        }
    }
}

fn parse_recurring(v: &str) -> Option<Option<Recurring>> {
    if v == "off" {
        return Some(None);
    }
    let mut parts = v.split('/').map(parse_duration);
    let (gap, min, max) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() {
        return None;
    }
    Some(Some(Recurring::new(gap, min, max)))
}

fn parse_probability(v: &str) -> Option<f64> {
    let p: f64 = v.parse().ok()?;
    (0.0..=1.0).contains(&p).then_some(p)
}

impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={} clients={} run_for={}",
            self.seed,
            self.clients,
            Dur(self.run_for)
        )?;
        let base = SimConfig::new(self.seed, self.clients, self.run_for);
        let mut field = |key: &str, differs: bool, value: &dyn fmt::Display| {
            if differs {
                write!(f, " {key}={value}")
            } else {
                Ok(())
            }
        };
        let (c, b) = (self, &base);
        field("heal_at", c.heal_at != b.heal_at, &Dur(c.heal_at))?;
        field("drain", c.drain != b.drain, &Dur(c.drain))?;
        field("settle", c.settle != b.settle, &Dur(c.settle))?;
        field(
            "request_timeout",
            c.request_timeout != b.request_timeout,
            &Dur(c.request_timeout),
        )?;
        field(
            "max_in_flight",
            c.max_in_flight != b.max_in_flight,
            &c.max_in_flight,
        )?;
        field("max_events", c.max_events != b.max_events, &c.max_events)?;
        field(
            "trace_capacity",
            c.trace_capacity != b.trace_capacity,
            &c.trace_capacity,
        )?;
        field(
            "report_lines",
            c.report_lines != b.report_lines,
            &c.report_lines,
        )?;
        let (n, bn) = (&c.network, &b.network);
        field("min_delay", n.min_delay != bn.min_delay, &Dur(n.min_delay))?;
        field("jitter", n.jitter != bn.jitter, &Dur(n.jitter))?;
        field("fifo", n.fifo != bn.fifo, &n.fifo)?;
        field(
            "suback_delay",
            n.suback_delay != bn.suback_delay,
            &Dur(n.suback_delay),
        )?;
        let (k, bk) = (&c.clocks, &b.clocks);
        field(
            "max_rate_ppm",
            k.max_rate_ppm != bk.max_rate_ppm,
            &k.max_rate_ppm,
        )?;
        field(
            "max_wall_skew",
            k.max_wall_skew != bk.max_wall_skew,
            &Dur(k.max_wall_skew),
        )?;
        let (x, bx) = (&c.faults, &b.faults);
        field("drop", x.drop != bx.drop, &x.drop)?;
        field("duplicate", x.duplicate != bx.duplicate, &x.duplicate)?;
        field("reorder", x.reorder != bx.reorder, &x.reorder)?;
        field("tail", x.tail != bx.tail, &x.tail)?;
        field(
            "tail_delay",
            x.tail_delay != bx.tail_delay,
            &Dur(x.tail_delay),
        )?;
        field(
            "notification_loss",
            x.notification_loss != bx.notification_loss,
            &x.notification_loss,
        )?;
        field("late_reply", x.late_reply != bx.late_reply, &x.late_reply)?;
        field("partition", x.partition != bx.partition, &Rec(x.partition))?;
        field(
            "disconnect",
            x.disconnect != bx.disconnect,
            &Rec(x.disconnect),
        )?;
        field(
            "session_loss",
            x.session_loss != bx.session_loss,
            &x.session_loss,
        )?;
        field("pause", x.pause != bx.pause, &Rec(x.pause))?;
        field("crash", x.crash != bx.crash, &Rec(x.crash))?;
        field(
            "expiry_lateness",
            x.expiry_lateness != bx.expiry_lateness,
            &Dur(x.expiry_lateness),
        )?;
        for s in &c.script {
            field("script", true, s)?;
        }
        Ok(())
    }
}

impl FromStr for SimConfig {
    type Err = ConfigParseError;

    /// Parses the [`Display`](fmt::Display) form. `seed`, `clients` and `run_for` are
    /// required; every field not given keeps [`SimConfig::new`]'s value.
    fn from_str(line: &str) -> Result<SimConfig, ConfigParseError> {
        let mut words = Vec::new();
        for word in line.split_whitespace() {
            let (k, v) = word
                .split_once('=')
                .ok_or_else(|| ConfigParseError::NotKeyValue(word.to_string()))?;
            words.push((k, v));
        }
        let bad = |key: &str, value: &str, expected: &'static str| ConfigParseError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        };
        let find = |key: &'static str| {
            words
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or(ConfigParseError::Missing(key))
        };
        let seed = find("seed")?;
        let seed = seed.parse().map_err(|_| bad("seed", seed, "a u64"))?;
        let clients = find("clients")?;
        let clients = clients
            .parse()
            .map_err(|_| bad("clients", clients, "a number of nodes"))?;
        let run_for = find("run_for")?;
        let run_for =
            parse_duration(run_for).ok_or_else(|| bad("run_for", run_for, "a duration"))?;
        let mut c = SimConfig::new(seed, clients, run_for);
        for (k, v) in words {
            const DUR: &str = "a duration such as 1500ms";
            const NUM: &str = "a number";
            const PROB: &str = "a probability in 0..=1";
            const BOOL: &str = "true or false";
            const REC: &str = "mean_gap/min_len/max_len durations, or off";
            let dur = |v: &str| parse_duration(v).ok_or_else(|| bad(k, v, DUR));
            let prob = |v: &str| parse_probability(v).ok_or_else(|| bad(k, v, PROB));
            let flag = |v: &str| v.parse::<bool>().map_err(|_| bad(k, v, BOOL));
            let rec = |v: &str| parse_recurring(v).ok_or_else(|| bad(k, v, REC));
            match k {
                "seed" | "clients" | "run_for" => {}
                "heal_at" => c.heal_at = dur(v)?,
                "drain" => c.drain = dur(v)?,
                "settle" => c.settle = dur(v)?,
                "request_timeout" => c.request_timeout = dur(v)?,
                "max_in_flight" => c.max_in_flight = v.parse().map_err(|_| bad(k, v, NUM))?,
                "max_events" => c.max_events = v.parse().map_err(|_| bad(k, v, NUM))?,
                "trace_capacity" => c.trace_capacity = v.parse().map_err(|_| bad(k, v, NUM))?,
                "report_lines" => c.report_lines = v.parse().map_err(|_| bad(k, v, NUM))?,
                "min_delay" => c.network.min_delay = dur(v)?,
                "jitter" => c.network.jitter = dur(v)?,
                "fifo" => c.network.fifo = flag(v)?,
                "suback_delay" => c.network.suback_delay = dur(v)?,
                "max_rate_ppm" => c.clocks.max_rate_ppm = v.parse().map_err(|_| bad(k, v, NUM))?,
                "max_wall_skew" => c.clocks.max_wall_skew = dur(v)?,
                "drop" => c.faults.drop = prob(v)?,
                "duplicate" => c.faults.duplicate = prob(v)?,
                "reorder" => c.faults.reorder = flag(v)?,
                "tail" => c.faults.tail = prob(v)?,
                "tail_delay" => c.faults.tail_delay = dur(v)?,
                "notification_loss" => c.faults.notification_loss = prob(v)?,
                "late_reply" => c.faults.late_reply = prob(v)?,
                "partition" => c.faults.partition = rec(v)?,
                "disconnect" => c.faults.disconnect = rec(v)?,
                "session_loss" => c.faults.session_loss = prob(v)?,
                "pause" => c.faults.pause = rec(v)?,
                "crash" => c.faults.crash = rec(v)?,
                "expiry_lateness" => c.faults.expiry_lateness = dur(v)?,
                "script" => c.script.push(
                    v.parse()
                        .map_err(|e| bad(k, v, super::script::expected_form(&e)))?,
                ),
                other => return Err(ConfigParseError::UnknownKey(other.to_string())),
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::FaultMix;
    use proptest::prelude::*;

    #[test]
    fn a_default_config_is_three_words() {
        let c = SimConfig::new(7, 4, Duration::from_secs(20));
        assert_eq!(c.to_string(), "seed=7 clients=4 run_for=20s");
        assert_eq!("seed=7 clients=4 run_for=20s".parse::<SimConfig>(), Ok(c));
    }

    #[test]
    fn a_fault_mix_prints_its_parameters() {
        let run = Duration::from_secs(30);
        let mut c = SimConfig::new(1, 3, run);
        c.faults = FaultMix::ALL.config(Duration::from_secs(2), 3, run);
        c.request_timeout = Duration::from_millis(650);
        let line = c.to_string();
        assert!(line.contains("pause=2500ms/2200ms/4s"), "{line}");
        assert!(line.contains("request_timeout=650ms"), "{line}");
        assert_eq!(line.parse::<SimConfig>(), Ok(c));
    }

    #[test]
    fn bad_lines_are_typed_errors() {
        type IsExpected = fn(&ConfigParseError) -> bool;
        let cases: [(&str, IsExpected); 7] = [
            ("clients=3 run_for=1s", |e| {
                *e == ConfigParseError::Missing("seed")
            }),
            ("seed=1 clients=3 run_for=1s junk", |e| {
                matches!(e, ConfigParseError::NotKeyValue(_))
            }),
            ("seed=1 clients=3 run_for=1s nope=2", |e| {
                matches!(e, ConfigParseError::UnknownKey(_))
            }),
            ("seed=1 clients=3 run_for=1h", |e| {
                matches!(e, ConfigParseError::BadValue { .. })
            }),
            ("seed=1 clients=3 run_for=1s drop=1.5", |e| {
                matches!(e, ConfigParseError::BadValue { .. })
            }),
            ("seed=1 clients=3 run_for=1s drop=NaN", |e| {
                matches!(e, ConfigParseError::BadValue { .. })
            }),
            ("seed=1 clients=3 run_for=1s pause=1s/2s", |e| {
                matches!(e, ConfigParseError::BadValue { .. })
            }),
        ];
        for (line, ok) in cases {
            let e = line.parse::<SimConfig>().unwrap_err();
            assert!(ok(&e), "{line}: {e:?}");
            assert!(!e.to_string().is_empty());
        }
    }

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (0u64..100_000).prop_map(Duration::from_secs),
            (0u64..100_000_000).prop_map(Duration::from_millis),
            any::<u64>().prop_map(Duration::from_nanos),
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        ]
    }

    fn recurring() -> impl Strategy<Value = Option<Recurring>> {
        proptest::option::of(
            (duration(), duration(), duration()).prop_map(|(g, a, b)| Recurring::new(g, a, b)),
        )
    }

    fn probability() -> impl Strategy<Value = f64> {
        prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0]
    }

    fn config() -> impl Strategy<Value = SimConfig> {
        let base = (
            any::<u64>(),
            0usize..200,
            duration(),
            duration(),
            duration(),
        );
        let limits = (any::<usize>(), any::<u64>(), any::<usize>(), any::<usize>());
        let net = (
            duration(),
            duration(),
            any::<bool>(),
            duration(),
            any::<u32>(),
            duration(),
        );
        let faults = (
            (probability(), probability(), any::<bool>(), probability()),
            (duration(), probability(), probability(), probability()),
            (recurring(), recurring(), recurring(), recurring()),
            duration(),
        );
        let script = proptest::collection::vec(super::super::script::tests::scripted(), 0..3);
        (base, limits, net, faults, script).prop_map(|(base, limits, net, faults, script)| {
            let mut c = SimConfig::new(base.0, base.1, base.2);
            (c.heal_at, c.drain) = (base.3, base.4);
            (
                c.max_in_flight,
                c.max_events,
                c.trace_capacity,
                c.report_lines,
            ) = limits;
            c.network.min_delay = net.0;
            c.network.jitter = net.1;
            c.network.fifo = net.2;
            c.network.suback_delay = net.3;
            c.clocks.max_rate_ppm = net.4;
            c.clocks.max_wall_skew = net.5;
            let ((drop, dup, reorder, tail), (tail_delay, nl, late, sl), recs, late_exp) = faults;
            let f = &mut c.faults;
            (f.drop, f.duplicate, f.reorder, f.tail) = (drop, dup, reorder, tail);
            (f.tail_delay, f.notification_loss, f.late_reply) = (tail_delay, nl, late);
            f.session_loss = sl;
            (f.partition, f.disconnect, f.pause, f.crash) = recs;
            f.expiry_lateness = late_exp;
            c.script = script;
            c
        })
    }

    proptest! {
        #[test]
        fn every_config_round_trips_through_its_line(c in config()) {
            let line = c.to_string();
            prop_assert!(!line.contains('\n'));
            prop_assert_eq!(line.parse::<SimConfig>(), Ok(c), "{}", line);
        }

        #[test]
        fn no_line_panics_the_parser(line in "[a-z_=0-9./ ]{0,80}") {
            let _ = line.parse::<SimConfig>();
        }
    }
}
