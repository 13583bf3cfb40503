use proptest::prelude::*;

use super::*;
use crate::commands::well_formed;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn mark(at: u64, who: usize, kind: MarkKind) -> Mark {
    Mark {
        at: ms(at),
        who,
        kind,
    }
}

fn acquired(at: u64, who: usize, token: &str, safe_until: Option<u64>) -> Mark {
    mark(
        at,
        who,
        MarkKind::Acquired {
            token: token.into(),
            safe_until: safe_until.map(ms),
        },
    )
}

/// Three contenders over 10 s: demo-0 holds 1–2 s with a renewal, demo-1 is killed at 4 s
/// (safe until 4.95 s), demo-2 takes over at 5.003 s and has a write refused at 6 s.
fn run() -> Timeline {
    Timeline {
        title: "leasedlock demo".into(),
        lanes: vec!["demo-0".into(), "demo-1".into(), "demo-2".into()],
        end: ms(10_000),
        marks: vec![
            acquired(1_000, 0, "100:1", Some(1_950)),
            mark(1_300, 0, MarkKind::Renewed),
            mark(2_000, 0, MarkKind::Released),
            acquired(3_000, 1, "200:0", Some(3_950)),
            mark(3_300, 1, MarkKind::Renewed),
            mark(3_600, 1, MarkKind::Renewed),
            mark(
                4_000,
                1,
                MarkKind::Killed {
                    could_act_until: Some(ms(4_950)),
                },
            ),
            acquired(5_003, 2, "300:0", Some(5_953)),
            mark(6_000, 2, MarkKind::WriteRefused { stale_probe: false }),
            mark(9_000, 2, MarkKind::Released),
        ],
    }
}

fn count(doc: &str, needle: &str) -> usize {
    doc.matches(needle).count()
}

#[test]
fn one_lane_per_contender_with_its_name() {
    let doc = render(&run());
    assert_eq!(count(&doc, "class=\"lane\""), 3);
    for name in ["demo-0", "demo-1", "demo-2"] {
        assert!(
            doc.contains(&format!("data-contender=\"{name}\"")),
            "{name}"
        );
    }
    well_formed::check(&doc).expect("well-formed");
}

#[test]
fn bars_sit_at_their_times_on_their_lane() {
    let doc = render(&run());
    assert_eq!(count(&doc, "class=\"hold\""), 3);
    // 1 s to 2 s of 10 s on lane 0: x = 90 + 1100 × 0.1, width 110, y = 70 + 15.
    assert!(
        doc.contains(&format!(
            "<rect x=\"200\" y=\"85\" width=\"110\" height=\"16\" fill=\"{HOLD_FILL}\"/>"
        )),
        "{doc}"
    );
    // The killed hold on lane 1 (y = 70 + 46 + 15), 3 s to 4 s, in the kill colour, then its
    // dashed could-have-acted part to 4.95 s.
    assert!(
        doc.contains(&format!(
            "<rect x=\"420\" y=\"131\" width=\"110\" height=\"16\" fill=\"{KILLED_FILL}\"/>"
        )),
        "{doc}"
    );
    assert!(
        doc.contains("class=\"could-act\" x=\"530\" y=\"134\" width=\"104.5\""),
        "{doc}"
    );
    for token in ["100:1", "200:0", "300:0"] {
        assert!(doc.contains(&format!(">{token}</text>")), "{token}");
    }
}

#[test]
fn renewals_kills_and_refused_writes_are_marked() {
    let doc = render(&run());
    assert_eq!(count(&doc, "class=\"renewal\""), 3);
    assert_eq!(count(&doc, "class=\"kill\""), 1);
    assert!(doc.contains(">kill demo-1 at 4.000 s</text>"), "{doc}");
    assert_eq!(count(&doc, "class=\"refused\""), 1);
}

#[test]
fn the_failover_gap_runs_from_the_old_safe_end_to_the_new_acquisition() {
    let doc = render(&run());
    assert_eq!(count(&doc, "class=\"failover-gap\""), 1);
    assert!(
        doc.contains(">failover gap 53 ms (kill to demo-2 acquiring: 1003 ms)</text>"),
        "{doc}"
    );
    // From 4.95 s (x = 634.5) to 5.003 s (x = 640.33).
    assert!(
        doc.contains("<rect x=\"634.5\" y=\"36\" width=\"5.83\""),
        "{doc}"
    );
}

#[test]
fn an_acquisition_before_the_old_safe_end_is_shown_as_no_gap() {
    let mut timeline = run();
    for m in &mut timeline.marks {
        if m.who == 2 && matches!(m.kind, MarkKind::Acquired { .. }) {
            m.at = ms(4_500);
        }
    }
    let doc = render(&timeline);
    assert!(
        doc.contains(
            ">NO failover gap: demo-2 acquired 450 ms before the killed holder&apos;s safe end"
        ),
        "{doc}"
    );
}

#[test]
fn no_kill_no_gap() {
    let mut timeline = run();
    timeline
        .marks
        .retain(|m| !matches!(m.kind, MarkKind::Killed { .. }));
    let doc = render(&timeline);
    assert_eq!(count(&doc, "class=\"failover-gap\""), 0);
    // demo-1's hold, never ended, lasts to the end of the run.
    assert!(
        doc.contains(&format!(
            "<rect x=\"420\" y=\"131\" width=\"770\" height=\"16\" fill=\"{HOLD_FILL}\"/>"
        )),
        "{doc}"
    );
}

#[test]
fn the_axis_has_labelled_ticks() {
    let doc = render(&run());
    assert_eq!(count(&doc, "class=\"tick\""), 11);
    assert!(doc.contains(">0 s</text>") && doc.contains(">10 s</text>"));
    assert_eq!(tick_step(ms(2_500)), 0.5);
    assert_eq!(tick_label(0.5, 3), "1.5 s");
    assert_eq!(tick_step(ms(60)), 0.005);
    assert_eq!(tick_label(0.005, 2), "0.010 s");
    assert_eq!(tick_step(ms(3_600_000)), 500.0);
}

#[test]
fn crowded_labels_give_way_to_tooltips() {
    // Holds 10 ms apart on a 10 s axis: bars 1 px apart, no room for most labels.
    let marks = (0..100)
        .flat_map(|i| {
            [
                acquired(i * 10, 0, &format!("{i:06}:0"), None),
                mark(i * 10 + 5, 0, MarkKind::Released),
            ]
        })
        .collect();
    let timeline = Timeline {
        title: "t".into(),
        lanes: vec!["a".into()],
        end: ms(10_000),
        marks,
    };
    let doc = render(&timeline);
    assert_eq!(count(&doc, "class=\"hold\""), 100);
    assert_eq!(count(&doc, "<title>"), 100);
    let labels = count(&doc, "class=\"token\"");
    assert!((1..10).contains(&labels), "{labels} labels");
}

#[test]
fn a_label_that_would_run_off_the_picture_is_left_to_the_tooltip() {
    let timeline = Timeline {
        title: "t".into(),
        lanes: vec!["a".into()],
        end: ms(10_000),
        marks: vec![
            acquired(9_000, 0, "1796615872004:0", None),
            mark(9_100, 0, MarkKind::Released),
            acquired(9_950, 0, "1796615872108:0", None),
        ],
    };
    let doc = render(&timeline);
    // At 9 s the label (15 characters, 90 px) ends at 1180 px, inside the 1220 px picture; at
    // 9.95 s it would end at 1274.5 px.
    assert!(doc.contains(">1796615872004:0</text>"), "{doc}");
    assert!(!doc.contains(">1796615872108:0</text>"), "{doc}");
    assert!(doc.contains("<title>a held 1796615872108:0 from 9.950 s to 10.000 s</title>"));
}

#[test]
fn markup_in_names_and_tokens_is_escaped() {
    let mut timeline = run();
    timeline.lanes[0] = "<script>&\"'".into();
    timeline.title = "a]]>b".into();
    timeline.marks[0] = acquired(1_000, 0, "</text>", None);
    let doc = render(&timeline);
    assert!(!doc.contains("<script>"));
    well_formed::check(&doc).expect("well-formed");
}

#[test]
fn marks_of_unknown_contenders_and_an_empty_run_are_harmless() {
    let timeline = Timeline {
        title: String::new(),
        lanes: vec![],
        end: Duration::ZERO,
        marks: vec![acquired(5, 7, "x", None), mark(1, 3, MarkKind::Released)],
    };
    let doc = render(&timeline);
    assert_eq!(count(&doc, "class=\"lane\""), 0);
    well_formed::check(&doc).expect("well-formed");
}

fn any_kind() -> impl Strategy<Value = MarkKind> {
    let time = prop::option::of((0u64..u64::MAX).prop_map(Duration::from_nanos));
    prop_oneof![
        (".{0,20}", time.clone())
            .prop_map(|(token, safe_until)| MarkKind::Acquired { token, safe_until }),
        Just(MarkKind::Renewed),
        Just(MarkKind::Released),
        time.prop_map(|could_act_until| MarkKind::Killed { could_act_until }),
        any::<bool>().prop_map(|stale_probe| MarkKind::WriteRefused { stale_probe }),
    ]
}

fn any_timeline() -> impl Strategy<Value = Timeline> {
    let at = prop_oneof![
        (0u64..20_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_nanos),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ];
    (
        ".{0,20}",
        prop::collection::vec(".{0,12}", 0..6),
        at.clone(),
        prop::collection::vec(
            (at, 0usize..8, any_kind()).prop_map(|(at, who, kind)| Mark { at, who, kind }),
            0..40,
        ),
    )
        .prop_map(|(title, lanes, end, marks)| Timeline {
            title,
            lanes,
            end,
            marks,
        })
}

proptest! {
    #[test]
    fn any_marks_give_a_well_formed_picture(timeline in any_timeline()) {
        let doc = render(&timeline);
        prop_assert_eq!(well_formed::check(&doc), Ok(()));
        prop_assert_eq!(
            count(&doc, "class=\"lane\""),
            timeline.lanes.len()
        );
    }
}
