//! The demo's timeline as an SVG picture, drawn from the marks the scoreboard recorded: one
//! lane per contender with its holds as bars labelled with their fencing tokens, renewals as
//! ticks, the kill, the failover gap with its duration, and writes the store refused.
//!
//! [`render`] is a pure function of the recorded marks, so any list of marks (even one that
//! makes no sense, such as a release without a hold) yields a picture and never a panic.

use std::time::Duration;

use crate::commands::svg::{num, Svg};

/// What happened to one contender at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkKind {
    /// `lock()` returned with this token (shown as `millis:counter`); safe to act until
    /// `safe_until` (time since the start).
    Acquired {
        /// The fencing token, as shown on the bar.
        token: String,
        /// Until when the new holder may act.
        safe_until: Option<Duration>,
    },
    /// A renewal moved the hold's safe end.
    Renewed,
    /// The holder stopped acting as the holder and unlocks.
    Released,
    /// The holder was killed holding the lock; had it only been cut off, it could have gone on
    /// acting until `could_act_until`.
    Killed {
        /// Its safe end at the moment of the kill.
        could_act_until: Option<Duration>,
    },
    /// The store refused a write because its fencing token was stale. `stale_probe`: the write
    /// made after the run with the killed holder's token (the others are a holder's own).
    WriteRefused {
        /// The deliberate write with the killed holder's token.
        stale_probe: bool,
    },
}

/// One recorded moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Time since the start of the run.
    pub at: Duration,
    /// The contender (its lane).
    pub who: usize,
    /// What happened.
    pub kind: MarkKind,
}

/// Everything the picture is drawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The title line.
    pub title: String,
    /// One name per contender; marks of other contenders are not drawn.
    pub lanes: Vec<String>,
    /// How long the run lasted (the axis covers at least this).
    pub end: Duration,
    /// The marks, in any order.
    pub marks: Vec<Mark>,
}

/// A hold: from acquisition to release, kill or the end of the run.
#[derive(Debug, Clone, PartialEq)]
struct Hold {
    lane: usize,
    start: Duration,
    end: Duration,
    token: String,
    /// Killed at `end`; could have acted until this.
    killed: Option<Duration>,
}

/// A failover: the last moment the killed holder could act to the next acquisition by
/// another contender.
#[derive(Debug, Clone, PartialEq)]
struct Failover {
    killed_at: Duration,
    from: Duration,
    to: Duration,
    new_lane: usize,
}

const LEFT: f64 = 90.0;
const PLOT_WIDTH: f64 = 1100.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 70.0;
const LANE_HEIGHT: f64 = 46.0;
const BAR_TOP: f64 = 15.0;
const BAR_HEIGHT: f64 = 16.0;
const AXIS_HEIGHT: f64 = 40.0;
const LEGEND_HEIGHT: f64 = 30.0;
const FONT_SIZE: f64 = 10.0;
/// Width of one character of the monospace labels at [`FONT_SIZE`] (about 0.6 em).
const CHAR_WIDTH: f64 = 6.0;
/// Lanes drawn at most: a larger list (bad input) would make a picture nobody can read.
const MAX_LANES: usize = 256;

const HOLD_FILL: &str = "#4c78a8";
const KILLED_FILL: &str = "#e45756";
const GAP_FILL: &str = "#f2cf5b";
const REFUSED: &str = "#b00020";

/// The SVG document for `timeline`.
pub fn render(timeline: &Timeline) -> String {
    let lanes = timeline.lanes.len().min(MAX_LANES);
    let mut marks: Vec<&Mark> = timeline.marks.iter().filter(|m| m.who < lanes).collect();
    marks.sort_by_key(|m| m.at);
    let holds = holds(&marks, lanes, timeline.end);
    let failovers = failovers(&marks);
    let end = axis_end(timeline.end, &marks, &holds);
    let scale = Scale { end };

    let plot_bottom = TOP + LANE_HEIGHT * lanes as f64;
    let height = plot_bottom + AXIS_HEIGHT + LEGEND_HEIGHT;
    let width = LEFT + PLOT_WIDTH + RIGHT;
    let mut svg = Svg::new(width, height);
    let size = num(FONT_SIZE);
    svg.empty(
        "rect",
        &[
            ("width", num(width)),
            ("height", num(height)),
            ("fill", "white".into()),
        ],
    );
    svg.text(
        "text",
        &[
            ("class", "title".into()),
            ("x", num(LEFT)),
            ("y", num(18.0)),
            ("font-size", num(13.0)),
        ],
        &timeline.title,
    );

    // Lanes first, so that everything else is drawn over them.
    for (lane, name) in timeline.lanes.iter().take(lanes).enumerate() {
        let y = lane_top(lane);
        svg.open(
            "g",
            &[("class", "lane".into()), ("data-contender", name.clone())],
        );
        svg.empty(
            "rect",
            &[
                ("x", num(LEFT)),
                ("y", num(y)),
                ("width", num(PLOT_WIDTH)),
                ("height", num(LANE_HEIGHT)),
                (
                    "fill",
                    if lane % 2 == 0 { "#f7f7f7" } else { "#ffffff" }.into(),
                ),
            ],
        );
        svg.text(
            "text",
            &[
                ("x", num(LEFT - 8.0)),
                ("y", num(y + BAR_TOP + BAR_HEIGHT - 4.0)),
                ("text-anchor", "end".into()),
                ("font-size", num(11.0)),
            ],
            name,
        );
        svg.close();
    }

    for failover in &failovers {
        draw_failover(&mut svg, &scale, failover, &timeline.lanes, plot_bottom);
    }

    // Token labels go above or below their bar, where they do not cover the previous label of
    // the lane (the label overhangs a short bar) and do not run off the picture; a label with no
    // room is left to the tooltip.
    let mut label_ends = vec![[f64::NEG_INFINITY; 2]; lanes];
    for hold in &holds {
        let x0 = scale.x(hold.start);
        let x1 = scale.x(hold.end).max(x0 + 1.0);
        let y = lane_top(hold.lane) + BAR_TOP;
        let tooltip = match hold.killed {
            Some(_) => format!(
                "{} held {} from {} to the kill at {}",
                timeline.lanes[hold.lane],
                hold.token,
                seconds(hold.start),
                seconds(hold.end)
            ),
            None => format!(
                "{} held {} from {} to {}",
                timeline.lanes[hold.lane],
                hold.token,
                seconds(hold.start),
                seconds(hold.end)
            ),
        };
        svg.open("g", &[("class", "hold".into())]);
        svg.text("title", &[], &tooltip);
        svg.empty(
            "rect",
            &[
                ("x", num(x0)),
                ("y", num(y)),
                ("width", num(x1 - x0)),
                ("height", num(BAR_HEIGHT)),
                (
                    "fill",
                    if hold.killed.is_some() {
                        KILLED_FILL
                    } else {
                        HOLD_FILL
                    }
                    .into(),
                ),
            ],
        );
        if let Some(could_act_until) = hold.killed {
            // Killed, not merely cut off: a partitioned holder could have acted until here.
            let x2 = scale.x(could_act_until.max(hold.end));
            svg.empty(
                "rect",
                &[
                    ("class", "could-act".into()),
                    ("x", num(x1)),
                    ("y", num(y + 3.0)),
                    ("width", num((x2 - x1).max(0.0))),
                    ("height", num(BAR_HEIGHT - 6.0)),
                    ("fill", "none".into()),
                    ("stroke", KILLED_FILL.into()),
                    ("stroke-dasharray", "4 3".into()),
                ],
            );
        }
        let label_width = hold.token.chars().count() as f64 * CHAR_WIDTH;
        let rows = [y - 3.0, y + BAR_HEIGHT + FONT_SIZE + 1.0];
        let ends = &mut label_ends[hold.lane];
        let fits_the_picture = x0 + label_width <= LEFT + PLOT_WIDTH + RIGHT;
        if let Some(row) = (0..2).find(|&r| fits_the_picture && ends[r] + 4.0 <= x0) {
            ends[row] = x0 + label_width;
            svg.text(
                "text",
                &[
                    ("class", "token".into()),
                    ("x", num(x0)),
                    ("y", num(rows[row])),
                    ("font-size", size.clone()),
                ],
                &hold.token,
            );
        }
        svg.close();
    }

    for mark in &marks {
        let x = scale.x(mark.at);
        let y = lane_top(mark.who) + BAR_TOP;
        match &mark.kind {
            MarkKind::Renewed => {
                svg.empty(
                    "line",
                    &[
                        ("class", "renewal".into()),
                        ("x1", num(x)),
                        ("x2", num(x)),
                        ("y1", num(y - 3.0)),
                        ("y2", num(y + BAR_HEIGHT + 3.0)),
                        ("stroke", "#222".into()),
                        ("stroke-width", "1.5".into()),
                    ],
                );
            }
            MarkKind::Killed { .. } => {
                svg.open("g", &[("class", "kill".into())]);
                svg.empty(
                    "line",
                    &[
                        ("x1", num(x)),
                        ("x2", num(x)),
                        ("y1", num(TOP - 12.0)),
                        ("y2", num(plot_bottom)),
                        ("stroke", KILLED_FILL.into()),
                        ("stroke-width", "2".into()),
                    ],
                );
                svg.text(
                    "text",
                    &[
                        ("x", num(x + 3.0)),
                        ("y", num(TOP - 14.0)),
                        ("font-size", size.clone()),
                        ("fill", KILLED_FILL.into()),
                    ],
                    &format!("kill {} at {}", timeline.lanes[mark.who], seconds(mark.at)),
                );
                svg.close();
            }
            MarkKind::WriteRefused { stale_probe } => {
                let what = if *stale_probe {
                    "the killed holder's token: write refused by fencing"
                } else {
                    "write refused by fencing"
                };
                let (cy, r) = (y + BAR_HEIGHT / 2.0, 5.0);
                svg.open("g", &[("class", "refused".into())]);
                svg.text(
                    "title",
                    &[],
                    &format!(
                        "{} at {}: {what}",
                        timeline.lanes[mark.who],
                        seconds(mark.at)
                    ),
                );
                svg.empty(
                    "path",
                    &[
                        (
                            "d",
                            format!(
                                "M{} {} L{} {} M{} {} L{} {}",
                                num(x - r),
                                num(cy - r),
                                num(x + r),
                                num(cy + r),
                                num(x - r),
                                num(cy + r),
                                num(x + r),
                                num(cy - r)
                            ),
                        ),
                        ("stroke", REFUSED.into()),
                        ("stroke-width", "2.5".into()),
                    ],
                );
                svg.close();
            }
            MarkKind::Acquired { .. } | MarkKind::Released => {}
        }
    }

    draw_axis(&mut svg, &scale, plot_bottom);
    draw_legend(&mut svg, plot_bottom + AXIS_HEIGHT + 16.0);
    svg.finish()
}

/// The holds of every lane, in the order they started. An acquisition while the lane still
/// holds ends the earlier hold there; a hold still open at the end lasts to `end`.
fn holds(marks: &[&Mark], lanes: usize, end: Duration) -> Vec<Hold> {
    let mut open: Vec<Option<Hold>> = vec![None; lanes];
    let mut done = Vec::new();
    for mark in marks {
        let slot = &mut open[mark.who];
        match &mark.kind {
            MarkKind::Acquired { token, .. } => {
                if let Some(mut hold) = slot.take() {
                    hold.end = mark.at;
                    done.push(hold);
                }
                *slot = Some(Hold {
                    lane: mark.who,
                    start: mark.at,
                    end: mark.at,
                    token: token.clone(),
                    killed: None,
                });
            }
            MarkKind::Released => {
                if let Some(mut hold) = slot.take() {
                    hold.end = mark.at;
                    done.push(hold);
                }
            }
            MarkKind::Killed { could_act_until } => {
                if let Some(mut hold) = slot.take() {
                    hold.end = mark.at;
                    hold.killed = Some(could_act_until.unwrap_or(mark.at));
                    done.push(hold);
                }
            }
            MarkKind::Renewed | MarkKind::WriteRefused { .. } => {}
        }
    }
    for mut hold in open.into_iter().flatten() {
        hold.end = end.max(hold.start);
        done.push(hold);
    }
    done.sort_by_key(|h| h.start);
    done
}

/// For each kill, the gap to the first acquisition by another contender after it (none when
/// nobody took over before the end).
fn failovers(marks: &[&Mark]) -> Vec<Failover> {
    let mut found = Vec::new();
    for (i, kill) in marks.iter().enumerate() {
        let MarkKind::Killed { could_act_until } = kill.kind else {
            continue;
        };
        let next = marks[i + 1..]
            .iter()
            .find(|m| m.who != kill.who && matches!(m.kind, MarkKind::Acquired { .. }));
        if let Some(next) = next {
            found.push(Failover {
                killed_at: kill.at,
                from: could_act_until.unwrap_or(kill.at).max(kill.at),
                to: next.at,
                new_lane: next.who,
            });
        }
    }
    found
}

/// Where the axis ends: the run's end or the last thing drawn, whichever is later.
fn axis_end(end: Duration, marks: &[&Mark], holds: &[Hold]) -> Duration {
    let last_mark = marks.iter().map(|m| m.at).max().unwrap_or_default();
    let last_hold = holds
        .iter()
        .map(|h| h.killed.unwrap_or(h.end).max(h.end))
        .max()
        .unwrap_or_default();
    let end = end.max(last_mark).max(last_hold);
    if end.is_zero() {
        Duration::from_secs(1)
    } else {
        end
    }
}

struct Scale {
    end: Duration,
}

impl Scale {
    fn x(&self, at: Duration) -> f64 {
        LEFT + PLOT_WIDTH * (at.as_secs_f64() / self.end.as_secs_f64()).clamp(0.0, 1.0)
    }
}

fn lane_top(lane: usize) -> f64 {
    TOP + LANE_HEIGHT * lane as f64
}

fn draw_failover(
    svg: &mut Svg,
    scale: &Scale,
    failover: &Failover,
    lanes: &[String],
    plot_bottom: f64,
) {
    let (a, b) = (scale.x(failover.from), scale.x(failover.to));
    let (left, right) = (a.min(b), a.max(b));
    let text = if failover.to >= failover.from {
        format!(
            "failover gap {} ms (kill to {} acquiring: {} ms)",
            millis(failover.to - failover.from),
            lanes[failover.new_lane],
            millis(failover.to.saturating_sub(failover.killed_at))
        )
    } else {
        // The new holder's acquisition came before the old holder's safe end by this
        // process's clock: no gap at all, which the picture must not hide.
        format!(
            "NO failover gap: {} acquired {} ms before the killed holder's safe end",
            lanes[failover.new_lane],
            millis(failover.from - failover.to)
        )
    };
    let y = TOP - 34.0;
    svg.open("g", &[("class", "failover-gap".into())]);
    svg.text("title", &[], &text);
    svg.empty(
        "rect",
        &[
            ("x", num(left)),
            ("y", num(y)),
            ("width", num((right - left).max(1.0))),
            ("height", num(plot_bottom - y)),
            ("fill", GAP_FILL.into()),
            ("fill-opacity", "0.35".into()),
        ],
    );
    svg.empty(
        "path",
        &[
            (
                "d",
                format!(
                    "M{l} {y1} L{l} {y0} L{r} {y0} L{r} {y1}",
                    l = num(left),
                    r = num(right.max(left + 1.0)),
                    y0 = num(y),
                    y1 = num(y + 6.0)
                ),
            ),
            ("fill", "none".into()),
            ("stroke", "#8a6d00".into()),
        ],
    );
    // The annotation reads leftwards from the gap's end when it would run off the right edge.
    let width = text.chars().count() as f64 * CHAR_WIDTH;
    let (x, anchor) = if left + width > LEFT + PLOT_WIDTH + RIGHT {
        (right, "end")
    } else {
        (left, "start")
    };
    svg.text(
        "text",
        &[
            ("class", "gap-label".into()),
            ("x", num(x)),
            ("y", num(y - 4.0)),
            ("text-anchor", anchor.into()),
            ("font-size", num(FONT_SIZE)),
            ("fill", "#6b5500".into()),
        ],
        &text,
    );
    svg.close();
}

/// The time axis below the lanes, with ticks at 1, 2 or 5 × a power of ten seconds.
fn draw_axis(svg: &mut Svg, scale: &Scale, plot_bottom: f64) {
    let step = tick_step(scale.end);
    svg.open("g", &[("class", "axis".into())]);
    svg.empty(
        "line",
        &[
            ("x1", num(LEFT)),
            ("x2", num(LEFT + PLOT_WIDTH)),
            ("y1", num(plot_bottom)),
            ("y2", num(plot_bottom)),
            ("stroke", "#333".into()),
        ],
    );
    let ticks = (scale.end.as_secs_f64() / step).floor() as u64;
    for i in 0..=ticks {
        // Past the largest Duration only when the axis ends there (bad input): no tick.
        let Ok(at) = Duration::try_from_secs_f64(step * i as f64) else {
            break;
        };
        let x = scale.x(at);
        svg.empty(
            "line",
            &[
                ("x1", num(x)),
                ("x2", num(x)),
                ("y1", num(plot_bottom)),
                ("y2", num(plot_bottom + 5.0)),
                ("stroke", "#333".into()),
            ],
        );
        svg.text(
            "text",
            &[
                ("class", "tick".into()),
                ("x", num(x)),
                ("y", num(plot_bottom + 17.0)),
                ("text-anchor", "middle".into()),
                ("font-size", num(FONT_SIZE)),
            ],
            &tick_label(step, i),
        );
    }
    svg.close();
}

fn draw_legend(svg: &mut Svg, y: f64) {
    svg.open("g", &[("class", "legend".into())]);
    let items: [(&str, &str); 5] = [
        (HOLD_FILL, "hold (fencing token above or below)"),
        ("#222", "renewal"),
        (KILLED_FILL, "killed hold, dashed: could have acted until"),
        (GAP_FILL, "failover gap"),
        (REFUSED, "write refused by fencing"),
    ];
    let mut x = LEFT;
    for (colour, label) in items {
        svg.empty(
            "rect",
            &[
                ("x", num(x)),
                ("y", num(y - 9.0)),
                ("width", num(12.0)),
                ("height", num(10.0)),
                ("fill", colour.into()),
            ],
        );
        svg.text(
            "text",
            &[
                ("x", num(x + 16.0)),
                ("y", num(y)),
                ("font-size", num(FONT_SIZE)),
            ],
            label,
        );
        x += 16.0 + label.len() as f64 * CHAR_WIDTH + 18.0;
    }
    svg.close();
}

/// Seconds between ticks: the smallest of 1, 2, 5 × 10^k giving at most 12 ticks.
fn tick_step(end: Duration) -> f64 {
    let span = end.as_secs_f64().max(1e-3);
    let mut power = 10f64.powi((span / 12.0).log10().floor() as i32);
    loop {
        for m in [1.0, 2.0, 5.0] {
            if span / (m * power) <= 12.0 {
                return m * power;
            }
        }
        power *= 10.0;
    }
}

/// The label of tick `i`, with as many decimals as the step needs.
fn tick_label(step: f64, i: u64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{:.*} s", decimals, step * i as f64)
}

fn seconds(at: Duration) -> String {
    format!("{:.3} s", at.as_secs_f64())
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

#[cfg(test)]
mod tests;
