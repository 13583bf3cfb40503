//! The walk-through of docs/simulation.md, as a test: a worker that increments a counter under
//! a lock, written as plain async code against the published `leasedlock_core::sim` API, raced
//! on three nodes with process pauses; the careless version loses an increment (caught by the
//! user's own invariant, with a one-line replay), the careful one never does.
//!
//! The user's part is the block between the `walk-through` markers (docs/simulation.md shows
//! the same lines); the tests after it only check what the doc claims.

// --- walk-through: start ---
use leasedlock_core::sim::{workload::Timing, *};
use std::{collections::BTreeSet, time::Duration};

async fn worker(node: Node, careful: bool) {
    loop {
        let Ok(lock) = node.lock("lock", Duration::from_secs(2)).await else {
            continue;
        };
        if let Ok(value) = node.get("counter").await {
            let n: u64 = value.map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0));
            node.sleep_random(Duration::from_secs(1)).await; // some work on the value
            if !careful || lock.is_safe() {
                let fence = careful.then(|| lock.token());
                if let Ok(()) = node.set("counter", (n + 1).to_string(), fence).await {
                    node.note("wrote", n + 1);
                }
            }
        }
        lock.unlock().await;
        node.sleep_random(Duration::from_secs(1)).await;
    }
}

fn no_lost_increment() -> impl Check {
    let mut written = BTreeSet::new();
    check_fn("no lost increment", move |_, who, report| {
        match report.custom("wrote") {
            Some(n) if !written.insert(n) => Err(format!("{who} wrote {n} twice: one was lost")),
            _ => Ok(()),
        }
    })
}

fn race(careful: bool) -> SweepReport {
    let timing = Timing::new(Duration::from_secs(2), Duration::from_millis(500));
    let config = |seed| SimConfig::new(seed, 3, Duration::from_secs(30));
    let config = move |seed| config(seed).with_faults(FaultMix::PAUSE, timing.lease);
    let workload = AsyncWorkload::new(timing, move |node| worker(node, careful))
        .leases(["lock"])
        .check(no_lost_increment);
    let sim = |c| Sim::new(c, workload.clone());
    sweep(0..200, Duration::from_secs(60), config, sim)
}

#[test]
fn careful_worker_never_loses_an_increment() {
    race(true).assert_ok();
}
// --- walk-through: end ---

#[test]
fn careless_worker_loses_an_increment_and_the_printed_line_replays_it() {
    let report = race(false);
    let failure = report
        .failure
        .as_ref()
        .expect("the careless worker is caught");
    let v = &failure.violation;
    assert_eq!(
        v.invariant,
        leasedlock_core::sim::Invariant::Custom("no lost increment")
    );
    let shown = failure.to_string();
    assert!(
        shown.contains("no lost increment (custom invariant)"),
        "{shown}"
    );
    assert!(shown.contains(&format!("seed {}", v.seed)), "{shown}");
    assert!(!v.trace.is_empty());
    // The printed line alone replays it: same event, same message.
    let line = failure.replay_line();
    let config: SimConfig = line
        .strip_prefix("LEASEDLOCK_REPLAY=\"")
        .and_then(|l| l.strip_suffix('"'))
        .expect("the line's form")
        .parse()
        .expect("the line parses");
    let timing = Timing::new(Duration::from_secs(2), Duration::from_millis(500));
    let w = AsyncWorkload::new(timing, |node| worker(node, false))
        .leases(["lock"])
        .check(no_lost_increment);
    let again = Sim::new(config, w).run().expect_err("the replay fails too");
    assert_eq!(&again, v);
}

#[test]
fn careful_runs_do_real_work() {
    let timing = Timing::new(Duration::from_secs(2), Duration::from_millis(500));
    let c =
        SimConfig::new(1, 3, Duration::from_secs(30)).with_faults(FaultMix::PAUSE, timing.lease);
    let w = AsyncWorkload::new(timing, |node| worker(node, true))
        .leases(["lock"])
        .check(no_lost_increment);
    let s = Sim::new(c, w).run().unwrap_or_else(|v| panic!("{v}"));
    assert!(s.checks.acquisitions > 10, "{:?}", s.checks);
    assert!(s.checks.custom > 10, "{:?}", s.checks);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

/// The lines the doc shows are the lines this file runs, and fewer than 50.
#[test]
fn the_doc_shows_exactly_the_tested_lines() {
    let this = include_str!("walkthrough.rs");
    let doc = include_str!("../../../docs/simulation.md");
    let start = this
        .find("walk-through: start ---\n")
        .expect("start marker")
        + 24;
    let end = this.find("// --- walk-through: end").expect("end marker");
    let block = &this[start..end];
    assert!(
        block.lines().count() < 50,
        "{} lines",
        block.lines().count()
    );
    assert!(
        doc.contains(&format!("```rust\n{block}```")),
        "docs/simulation.md must show the walk-through block of walkthrough.rs verbatim"
    );
    assert!(doc.contains(&format!("{} lines", block.lines().count())));
}
