//! The shared log and the checks run over it.
//!
//! One record per line, fields separated by single spaces, stamps in nanoseconds on
//! [`crate::clock`]:
//!
//! ```text
//! HELD  <at> <who> <session> <token> [pg=<pgid>]   `who` acted as the holder at <at>
//! WRITE <start> <end> <who> <token> <outcome>       a fenced SET while holding
//! STALE <start> <end> <who> <token> <outcome>       a fenced SET with a token `who` has lost
//! NOTE  <at> <who> <text…>                          anything else worth reading in a failure
//! ```
//!
//! `session` tells one hold of `who` from the next (a contender's round, the CLI's token).
//! Outcomes: `applied`, `refused` (the store's fencing rejection) or `unknown:<why>`. Each
//! record goes out in one `write` to a file opened with `O_APPEND`, so records of concurrent
//! writers never interleave. A reader can still see the start of a record whose write is under
//! way (the kernel copies an appended write page by page and readers do not wait for it), so
//! [`Log::read`] leaves out a last line that has no newline yet.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use leasedlock_core::hlc::Hlc;

/// What the store did with a fenced write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The store applied it.
    Applied,
    /// The store refused it: its token is lower than the one protecting the key.
    Refused,
    /// No definite answer (timeout, connection lost, another error): the text says which.
    Unknown(String),
}

impl fmt::Display for WriteOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteOutcome::Applied => f.write_str("applied"),
            WriteOutcome::Refused => f.write_str("refused"),
            WriteOutcome::Unknown(why) => write!(f, "unknown:{}", why.replace(['\n', ' '], "_")),
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `who` acted as the holder of the lock at `at`.
    Held {
        /// When.
        at: u64,
        /// The participant (its client id / holder value).
        who: String,
        /// Which hold of `who` this is.
        session: String,
        /// The fencing token it held then.
        token: Hlc,
        /// Process group of the recording process (the CLI's command), for cleanup.
        group: Option<i32>,
    },
    /// A fenced write made while holding (`stale: false`) or deliberately with a lost token
    /// (`stale: true`).
    Write {
        /// Sent after this stamp.
        start: u64,
        /// Answered (or given up) before this stamp.
        end: u64,
        /// The writer.
        who: String,
        /// The fencing token it wrote with.
        token: Hlc,
        /// What the store said.
        outcome: WriteOutcome,
        /// Whether the writer knew the token was lost.
        stale: bool,
    },
    /// Free text.
    Note {
        /// When.
        at: u64,
        /// Who wrote it.
        who: String,
        /// What happened.
        text: String,
    },
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::Held {
                at,
                who,
                session,
                token,
                group,
            } => {
                write!(f, "HELD {at} {who} {session} {token}")?;
                if let Some(g) = group {
                    write!(f, " pg={g}")?;
                }
                Ok(())
            }
            Record::Write {
                start,
                end,
                who,
                token,
                outcome,
                stale,
            } => {
                let kind = if *stale { "STALE" } else { "WRITE" };
                write!(f, "{kind} {start} {end} {who} {token} {outcome}")
            }
            Record::Note { at, who, text } => {
                write!(f, "NOTE {at} {who} {}", text.replace('\n', " | "))
            }
        }
    }
}

fn field<'a>(fields: &mut impl Iterator<Item = &'a str>, what: &str) -> Result<&'a str, String> {
    fields.next().ok_or_else(|| format!("missing {what}"))
}

fn stamp<'a>(fields: &mut impl Iterator<Item = &'a str>, what: &str) -> Result<u64, String> {
    let text = field(fields, what)?;
    text.parse()
        .map_err(|_| format!("{what} `{text}` is not a stamp"))
}

fn token<'a>(fields: &mut impl Iterator<Item = &'a str>) -> Result<Hlc, String> {
    let text = field(fields, "token")?;
    Hlc::parse_slice(text.as_bytes()).map_err(|e| format!("token `{text}`: {e}"))
}

impl Record {
    /// Parses one line.
    pub fn parse(line: &str) -> Result<Record, String> {
        let mut fields = line.split(' ');
        let kind = field(&mut fields, "kind")?;
        let record = match kind {
            "HELD" => {
                let at = stamp(&mut fields, "stamp")?;
                let who = field(&mut fields, "who")?.to_string();
                let session = field(&mut fields, "session")?.to_string();
                let token = token(&mut fields)?;
                let group = match fields.next() {
                    None => None,
                    Some(g) => Some(
                        g.strip_prefix("pg=")
                            .and_then(|g| g.parse().ok())
                            .ok_or_else(|| format!("`{g}` is not pg=<group>"))?,
                    ),
                };
                Record::Held {
                    at,
                    who,
                    session,
                    token,
                    group,
                }
            }
            "WRITE" | "STALE" => {
                let start = stamp(&mut fields, "start")?;
                let end = stamp(&mut fields, "end")?;
                let who = field(&mut fields, "who")?.to_string();
                let token = token(&mut fields)?;
                let outcome = match field(&mut fields, "outcome")? {
                    "applied" => WriteOutcome::Applied,
                    "refused" => WriteOutcome::Refused,
                    other => match other.strip_prefix("unknown:") {
                        Some(why) => WriteOutcome::Unknown(why.to_string()),
                        None => return Err(format!("outcome `{other}`")),
                    },
                };
                Record::Write {
                    start,
                    end,
                    who,
                    token,
                    outcome,
                    stale: kind == "STALE",
                }
            }
            "NOTE" => {
                let at = stamp(&mut fields, "stamp")?;
                let who = field(&mut fields, "who")?.to_string();
                let text = fields.collect::<Vec<_>>().join(" ");
                return Ok(Record::Note { at, who, text });
            }
            other => return Err(format!("unknown record kind `{other}`")),
        };
        match fields.next() {
            None => Ok(record),
            Some(extra) => Err(format!("unexpected `{extra}` at the end")),
        }
    }
}

/// The shared log file.
#[derive(Debug, Clone)]
pub struct Log {
    path: PathBuf,
}

impl Log {
    /// The log at `path` (created on the first append).
    pub fn new(path: impl Into<PathBuf>) -> Log {
        Log { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record in one `write` (see the module docs for why).
    pub fn append(&self, record: &Record) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(format!("{record}\n").as_bytes())
    }

    /// Every complete record so far. A missing file is an empty log; a last line without its
    /// newline is a write still under way and is left out; any other line that does not parse is
    /// an error (a torn or foreign write would make every check meaningless).
    pub fn read(&self) -> Result<Vec<Record>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        parse_complete_lines(&text)
    }

    /// The raw text, for failure messages.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

/// The records of the newline-terminated lines of `text`.
fn parse_complete_lines(text: &str) -> Result<Vec<Record>, String> {
    let complete = match text.rfind('\n') {
        Some(last) => &text[..=last],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| Record::parse(l).map_err(|e| format!("line {}: {e}: `{l}`", i + 1)))
        .collect()
}

/// One hold as the log shows it: from the first to the last `HELD` stamp of a (who, session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The holder.
    pub who: String,
    /// Which of its holds.
    pub session: String,
    /// First stamp.
    pub from: u64,
    /// Last stamp.
    pub until: u64,
    /// Token at the first stamp.
    pub first_token: Hlc,
    /// Highest token seen in the hold (renewals may raise it).
    pub last_token: Hlc,
    /// Number of `HELD` records.
    pub beats: usize,
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} [{} .. {}] ({} beats, token {})",
            self.who, self.session, self.from, self.until, self.beats, self.first_token
        )
    }
}

/// The holds in the log, ordered by their first stamp. Tokens must not go down within a hold;
/// that is reported as an error.
pub fn holds(records: &[Record]) -> Result<Vec<Hold>, String> {
    let mut beats: BTreeMap<(String, String), Vec<(u64, Hlc)>> = BTreeMap::new();
    for r in records {
        if let Record::Held {
            at,
            who,
            session,
            token,
            ..
        } = r
        {
            beats
                .entry((who.clone(), session.clone()))
                .or_default()
                .push((*at, token.clone()));
        }
    }
    let mut out = Vec::new();
    for ((who, session), mut list) in beats {
        list.sort_by_key(|(at, _)| *at);
        for pair in list.windows(2) {
            if pair[1].1 < pair[0].1 {
                return Err(format!(
                    "{who}/{session}: token went down within one hold: {} at {} after {} at {}",
                    pair[1].1, pair[1].0, pair[0].1, pair[0].0
                ));
            }
        }
        let (from, first_token) = list[0].clone();
        let (until, last_token) = list[list.len() - 1].clone();
        out.push(Hold {
            who,
            session,
            from,
            until,
            first_token,
            last_token,
            beats: list.len(),
        });
    }
    out.sort_by_key(|h| h.from);
    Ok(out)
}

/// No two holds overlap: each hold starts after every earlier hold's last stamp.
pub fn check_no_overlap(holds: &[Hold]) -> Result<(), String> {
    let mut latest: Option<&Hold> = None;
    for h in holds {
        if let Some(prev) = latest {
            if h.from <= prev.until {
                return Err(format!(
                    "overlapping critical sections: {prev} and {h}: {} ms together",
                    (prev.until.min(h.until) - h.from) as f64 / 1e6
                ));
            }
        }
        if latest.is_none_or(|p| h.until > p.until) {
            latest = Some(h);
        }
    }
    Ok(())
}

/// Fencing tokens strictly increase from one hold to the next (in the order the holds began).
pub fn check_tokens_increase(holds: &[Hold]) -> Result<(), String> {
    for pair in holds.windows(2) {
        if pair[1].first_token <= pair[0].last_token {
            return Err(format!(
                "fencing token did not increase: {} after {}",
                pair[1], pair[0]
            ));
        }
    }
    Ok(())
}

/// The store never applies a write fenced with a lower token once a write with a higher token
/// was applied: for every applied write, no applied write with a higher token had been
/// answered before it was sent.
pub fn check_fencing(records: &[Record]) -> Result<(), String> {
    let applied: Vec<(u64, u64, &str, &Hlc, bool)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Write {
                start,
                end,
                who,
                token,
                outcome: WriteOutcome::Applied,
                stale,
            } => Some((*start, *end, who.as_str(), token, *stale)),
            _ => None,
        })
        .collect();
    for &(start, _, who, token, stale) in &applied {
        if let Some(&(_, end, other, newer, _)) = applied
            .iter()
            .find(|&&(_, end, _, newer, _)| newer > token && end < start)
        {
            let kind = if stale { "stale write" } else { "write" };
            return Err(format!(
                "the store applied {who}'s {kind} with token {token} sent at {start} after \
                 {other}'s write with the newer token {newer} was applied (answered at {end})"
            ));
        }
    }
    Ok(())
}

/// How many deliberate stale writes the store refused and applied.
pub fn stale_writes(records: &[Record]) -> (usize, usize) {
    let mut refused = 0;
    let mut applied = 0;
    for r in records {
        if let Record::Write {
            stale: true,
            outcome,
            ..
        } = r
        {
            match outcome {
                WriteOutcome::Refused => refused += 1,
                WriteOutcome::Applied => applied += 1,
                WriteOutcome::Unknown(_) => {}
            }
        }
    }
    (refused, applied)
}

/// The safety checks every scenario runs: holds well formed and not overlapping, tokens
/// strictly increasing, fencing respected. Returns the holds for scenario-specific checks.
pub fn check_safety(records: &[Record]) -> Result<Vec<Hold>, String> {
    let holds = holds(records)?;
    check_no_overlap(&holds)?;
    check_tokens_increase(&holds)?;
    check_fencing(records)?;
    Ok(holds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(ms: u64, counter: u64) -> Hlc {
        Hlc::new(ms, counter, "emu").expect("valid hlc")
    }

    fn held(at: u64, who: &str, session: &str, token: Hlc) -> Record {
        Record::Held {
            at,
            who: who.into(),
            session: session.into(),
            token,
            group: None,
        }
    }

    fn write(start: u64, end: u64, who: &str, token: Hlc, outcome: WriteOutcome) -> Record {
        Record::Write {
            start,
            end,
            who: who.into(),
            token,
            outcome,
            stale: false,
        }
    }

    #[test]
    fn records_round_trip_through_text() {
        let records = vec![
            Record::Held {
                at: 5,
                who: "cli-a".into(),
                session: "1".into(),
                token: tok(1000, 2),
                group: Some(4242),
            },
            held(6, "a", "0", tok(1, 0)),
            write(7, 9, "a", tok(1, 0), WriteOutcome::Applied),
            Record::Write {
                start: 10,
                end: 11,
                who: "b".into(),
                token: tok(1, 0),
                outcome: WriteOutcome::Unknown("timeout_sent".into()),
                stale: true,
            },
            write(7, 9, "a", tok(1, 0), WriteOutcome::Refused),
            Record::Note {
                at: 12,
                who: "b".into(),
                text: "lost the lock: expired".into(),
            },
        ];
        for r in records {
            let line = r.to_string();
            assert_eq!(Record::parse(&line), Ok(r), "{line}");
        }
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "",
            "HELD",
            "HELD x a 0 000000000000001:00000:emu",
            "HELD 1 a 0 not-a-token",
            "HELD 1 a 0 000000000000001:00000:emu pg=x",
            "HELD 1 a 0 000000000000001:00000:emu extra",
            "WRITE 1 2 a 000000000000001:00000:emu maybe",
            "BEAT 1",
        ] {
            assert!(Record::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_record_still_being_written_is_left_out_but_a_torn_line_inside_is_an_error() {
        // The CI failure: a reader saw the first page of an append that crossed a page boundary.
        let done = "HELD 1 a 0 001796611343397:00001:emu\n";
        let under_way = format!("{done}HELD 2 a 0 001796611343397:");
        let records = parse_complete_lines(&under_way).expect("the complete record parses");
        assert_eq!(records.len(), 1);
        assert_eq!(parse_complete_lines("HELD 2 a 0 00179"), Ok(Vec::new()));
        let torn_inside = format!("HELD 2 a 0 00179\n{done}");
        assert!(parse_complete_lines(&torn_inside).is_err());
    }

    #[test]
    fn overlap_is_found_even_behind_a_short_hold() {
        // b's hold sits inside a's; c starts before a ends but after b ends.
        let records = vec![
            held(10, "a", "0", tok(1, 0)),
            held(100, "a", "0", tok(1, 0)),
            held(20, "b", "0", tok(2, 0)),
            held(30, "b", "0", tok(2, 0)),
        ];
        let hs = holds(&records).expect("well formed");
        assert!(check_no_overlap(&hs).is_err());
        let records = vec![
            held(10, "a", "0", tok(1, 0)),
            held(100, "a", "0", tok(1, 0)),
            held(101, "b", "0", tok(2, 0)),
        ];
        let hs = holds(&records).expect("well formed");
        assert_eq!(check_no_overlap(&hs), Ok(()));
        let records = vec![held(10, "a", "0", tok(1, 0)), held(10, "b", "0", tok(2, 0))];
        let hs = holds(&records).expect("well formed");
        assert!(check_no_overlap(&hs).is_err(), "equal stamps overlap");
    }

    #[test]
    fn tokens_must_increase_between_holds_and_not_fall_within_one() {
        let ok = vec![
            held(10, "a", "0", tok(1, 0)),
            held(20, "a", "0", tok(3, 0)),
            held(30, "b", "0", tok(4, 0)),
        ];
        assert!(check_safety(&ok).is_ok());
        let equal = vec![held(10, "a", "0", tok(3, 0)), held(30, "b", "0", tok(3, 0))];
        assert!(check_tokens_increase(&holds(&equal).expect("ok")).is_err());
        let below_renewed = vec![
            held(10, "a", "0", tok(1, 0)),
            held(20, "a", "0", tok(5, 0)),
            held(30, "b", "0", tok(4, 0)),
        ];
        assert!(check_tokens_increase(&holds(&below_renewed).expect("ok")).is_err());
        let falling = vec![held(10, "a", "0", tok(5, 0)), held(20, "a", "0", tok(4, 0))];
        assert!(holds(&falling).is_err());
    }

    #[test]
    fn fencing_fails_on_an_older_write_applied_after_a_newer_one() {
        let newer_first = vec![
            write(10, 20, "b", tok(2, 0), WriteOutcome::Applied),
            write(30, 40, "a", tok(1, 0), WriteOutcome::Applied),
        ];
        assert!(check_fencing(&newer_first).is_err());
        // Concurrent (sent before the newer one was answered): the store may order either way.
        let concurrent = vec![
            write(10, 20, "b", tok(2, 0), WriteOutcome::Applied),
            write(15, 40, "a", tok(1, 0), WriteOutcome::Applied),
        ];
        assert_eq!(check_fencing(&concurrent), Ok(()));
        let refused = vec![
            write(10, 20, "b", tok(2, 0), WriteOutcome::Applied),
            Record::Write {
                start: 30,
                end: 40,
                who: "a".into(),
                token: tok(1, 0),
                outcome: WriteOutcome::Refused,
                stale: true,
            },
        ];
        assert_eq!(check_fencing(&refused), Ok(()));
        assert_eq!(stale_writes(&refused), (1, 0));
    }
}
