//! What a run looks like: the number of nodes, their clocks, the network and the faults.
//!
//! Every probability is drawn from the run's seed, so a configuration plus a seed determines
//! the whole run.

use core::time::Duration;

/// How messages travel between a client and the broker (one way).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// Smallest one-way delay.
    pub min_delay: Duration,
    /// Uniform jitter added on top of `min_delay`.
    pub jitter: Duration,
    /// Deliver messages of one direction of one link in order (TCP-like). When false, each
    /// message draws its own delay and later messages may overtake earlier ones.
    pub fifo: bool,
    /// Delay before the broker acknowledges a SUBSCRIBE.
    pub suback_delay: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            min_delay: Duration::from_micros(200),
            jitter: Duration::from_millis(2),
            fifo: true,
            suback_delay: Duration::from_millis(1),
        }
    }
}

/// Clocks of the client nodes (the store's clock is perfect).
#[derive(Debug, Clone, PartialEq)]
pub struct ClockConfig {
    /// Largest monotonic-rate error, in parts per million, either way.
    pub max_rate_ppm: u32,
    /// Largest wall-clock skew, either way (keep it below the 60 s HLC drift bound).
    pub max_wall_skew: Duration,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            max_rate_ppm: 500,
            max_wall_skew: Duration::from_secs(5),
        }
    }
}

/// A recurring fault: how often it starts (mean gap between starts, over all nodes) and how
/// long it lasts (uniform between the bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recurring {
    /// Mean time between two starts (exponentially distributed).
    pub mean_gap: Duration,
    /// Shortest duration.
    pub min_len: Duration,
    /// Longest duration.
    pub max_len: Duration,
}

impl Recurring {
    /// A fault that starts every `mean_gap` on average and lasts `min_len..=max_len`.
    pub const fn new(mean_gap: Duration, min_len: Duration, max_len: Duration) -> Self {
        Recurring {
            mean_gap,
            min_len,
            max_len,
        }
    }
}

/// The faults of a run. Each is off when its probability is zero or its `Option` is `None`.
/// Faults are injected only before [`crate::sim::SimConfig::heal_at`]; after that the network
/// is clean, so liveness can be checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultConfig {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice (a QoS 1 redelivery).
    pub duplicate: f64,
    /// Per-message independent delays, so messages overtake each other (overrides
    /// [`NetworkConfig::fifo`] while faults are active).
    pub reorder: bool,
    /// Probability that a message gets an extra delay (a heavy tail), uniform up to
    /// `tail_delay`: a request can land after its sender's lease ended.
    pub tail: f64,
    /// Largest extra delay of the tail.
    pub tail_delay: Duration,
    /// Probability that a key notification is lost.
    pub notification_loss: f64,
    /// Probability that a reply is held back until after the request's timeout.
    pub late_reply: f64,
    /// Partitions between one client and the broker: half of them one-way (a random
    /// direction), half two-way. Messages sent into a partition are lost; the connection
    /// itself stays up (a half-open TCP connection).
    pub partition: Option<Recurring>,
    /// Broker disconnects of one client, reconnecting after the fault's length.
    pub disconnect: Option<Recurring>,
    /// Probability that a disconnect also loses the MQTT session.
    pub session_loss: f64,
    /// Process pauses (GC, stop-the-world) of one client; clocks keep running.
    pub pause: Option<Recurring>,
    /// Crashes of one client, restarting with the same client id (and holder) after the
    /// fault's length.
    pub crash: Option<Recurring>,
    /// The store's expiry timer fires up to this late (its precision); only the DELETE
    /// notification is late, the key is already gone for every request.
    pub expiry_lateness: Duration,
}

/// The fault classes, as switches (used to build a [`FaultConfig`] and by proptest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FaultMix {
    /// Message loss.
    pub drop: bool,
    /// Duplicated delivery.
    pub duplicate: bool,
    /// Reordering.
    pub reorder: bool,
    /// Lost notifications.
    pub notification_loss: bool,
    /// Replies after the timeout.
    pub late_reply: bool,
    /// One-way and two-way partitions.
    pub partition: bool,
    /// Broker disconnects (with and without session loss).
    pub disconnect: bool,
    /// GC pauses longer than the lease.
    pub pause: bool,
    /// Crash and restart with the same holder id.
    pub crash: bool,
    /// Late store expiry.
    pub late_expiry: bool,
}

impl FaultMix {
    /// Message loss only. Combine classes with `|`: `FaultMix::PAUSE | FaultMix::CRASH`.
    pub const DROP: FaultMix = FaultMix::from_bits(1 << 0);
    /// Duplicated delivery only. Combine classes with `|`: `FaultMix::PAUSE | FaultMix::CRASH`.
    pub const DUPLICATE: FaultMix = FaultMix::from_bits(1 << 1);
    /// Reordering (with heavy-tail delays) only. Combine classes with `|`: `FaultMix::PAUSE | FaultMix::CRASH`.
    pub const REORDER: FaultMix = FaultMix::from_bits(1 << 2);
    /// Lost notifications only. Combine classes with `|`: `FaultMix::PAUSE | FaultMix::CRASH`.
    pub const NOTIFICATION_LOSS: FaultMix = FaultMix::from_bits(1 << 3);
    /// Replies after the timeout only. Combine classes with `|`: `FaultMix::PAUSE | FaultMix::CRASH`.
    pub const LATE_REPLY: FaultMix = FaultMix::from_bits(1 << 4);
    /// Partitions only. Combine classes with `|`: `FaultMix::PAUSE | FaultMix::CRASH`.
    pub const PARTITION: FaultMix = FaultMix::from_bits(1 << 5);
    /// Broker disconnects only. Combine classes with `|`: `FaultMix::PAUSE | FaultMix::CRASH`.
    pub const DISCONNECT: FaultMix = FaultMix::from_bits(1 << 6);
    /// Process pauses longer than the lease only. Combine classes with `|`: `FaultMix::PAUSE | FaultMix::CRASH`.
    pub const PAUSE: FaultMix = FaultMix::from_bits(1 << 7);
    /// Crashes and restarts only. Combine classes with `|`: `FaultMix::PAUSE | FaultMix::CRASH`.
    pub const CRASH: FaultMix = FaultMix::from_bits(1 << 8);
    /// Late store expiry only. Combine classes with `|`: `FaultMix::PAUSE | FaultMix::CRASH`.
    pub const LATE_EXPIRY: FaultMix = FaultMix::from_bits(1 << 9);

    /// Every fault class on.
    pub const ALL: FaultMix = FaultMix {
        drop: true,
        duplicate: true,
        reorder: true,
        notification_loss: true,
        late_reply: true,
        partition: true,
        disconnect: true,
        pause: true,
        crash: true,
        late_expiry: true,
    };

    /// No faults.
    pub const NONE: FaultMix = FaultMix {
        drop: false,
        duplicate: false,
        reorder: false,
        notification_loss: false,
        late_reply: false,
        partition: false,
        disconnect: false,
        pause: false,
        crash: false,
        late_expiry: false,
    };

    /// The switches as bits (bit 0 = drop ... bit 9 = late expiry), for compact replay lines.
    pub fn bits(&self) -> u16 {
        [
            self.drop,
            self.duplicate,
            self.reorder,
            self.notification_loss,
            self.late_reply,
            self.partition,
            self.disconnect,
            self.pause,
            self.crash,
            self.late_expiry,
        ]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, on)| acc | (u16::from(*on) << i))
    }

    /// The inverse of [`FaultMix::bits`] (unknown bits are ignored).
    pub const fn from_bits(bits: u16) -> FaultMix {
        FaultMix {
            drop: bits & 1 != 0,
            duplicate: bits & (1 << 1) != 0,
            reorder: bits & (1 << 2) != 0,
            notification_loss: bits & (1 << 3) != 0,
            late_reply: bits & (1 << 4) != 0,
            partition: bits & (1 << 5) != 0,
            disconnect: bits & (1 << 6) != 0,
            pause: bits & (1 << 7) != 0,
            crash: bits & (1 << 8) != 0,
            late_expiry: bits & (1 << 9) != 0,
        }
    }

    /// Concrete fault parameters for a lease of `lease` length: pauses outlast the lease,
    /// partitions and disconnects are a fraction of it, rates are per node so that a run of
    /// `nodes` nodes over `run` sees a handful of each.
    pub fn config(&self, lease: Duration, nodes: usize, run: Duration) -> FaultConfig {
        let nodes = u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
        // About four of each recurring fault per node-lifetime, spread over all nodes.
        let gap = (run / 4 / nodes).max(Duration::from_millis(1));
        let p = |on: bool, v: f64| if on { v } else { 0.0 };
        let rec =
            |on: bool, min: Duration, max: Duration| on.then(|| Recurring::new(gap, min, max));
        FaultConfig {
            drop: p(self.drop, 0.02),
            duplicate: p(self.duplicate, 0.02),
            reorder: self.reorder,
            tail: p(self.reorder, 0.05),
            tail_delay: if self.reorder {
                lease / 2
            } else {
                Duration::ZERO
            },
            notification_loss: p(self.notification_loss, 0.2),
            late_reply: p(self.late_reply, 0.01),
            partition: rec(self.partition, lease / 4, lease * 2),
            disconnect: rec(self.disconnect, lease / 20, lease),
            session_loss: p(self.disconnect, 0.5),
            pause: rec(self.pause, lease + lease / 10, lease * 2),
            crash: rec(self.crash, lease / 10, lease * 2),
            expiry_lateness: if self.late_expiry {
                Duration::from_millis(50)
            } else {
                Duration::ZERO
            },
        }
    }
}

impl core::ops::BitOr for FaultMix {
    type Output = FaultMix;

    /// Both mixes' classes.
    fn bitor(self, other: FaultMix) -> FaultMix {
        FaultMix::from_bits(self.bits() | other.bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_constants_are_one_switch_each_and_combine() {
        assert_eq!(
            FaultMix::PAUSE,
            FaultMix {
                pause: true,
                ..FaultMix::NONE
            }
        );
        assert_eq!((FaultMix::DROP | FaultMix::LATE_EXPIRY).bits(), 1 | 1 << 9);
        let all = [
            FaultMix::DROP,
            FaultMix::DUPLICATE,
            FaultMix::REORDER,
            FaultMix::NOTIFICATION_LOSS,
            FaultMix::LATE_REPLY,
            FaultMix::PARTITION,
            FaultMix::DISCONNECT,
            FaultMix::PAUSE,
            FaultMix::CRASH,
            FaultMix::LATE_EXPIRY,
        ];
        assert_eq!(
            all.into_iter().fold(FaultMix::NONE, |a, b| a | b),
            FaultMix::ALL
        );
    }

    #[test]
    fn bits_round_trip() {
        for bits in 0..1024u16 {
            assert_eq!(FaultMix::from_bits(bits).bits(), bits);
        }
        assert_eq!(FaultMix::ALL.bits(), 1023);
        assert_eq!(FaultMix::NONE.bits(), 0);
    }

    #[test]
    fn mix_off_means_no_fault() {
        let c = FaultMix::NONE.config(Duration::from_secs(2), 4, Duration::from_secs(60));
        assert_eq!(c, FaultConfig::default());
        let c = FaultMix::ALL.config(Duration::from_secs(2), 4, Duration::from_secs(60));
        assert!(c.pause.is_some_and(|p| p.min_len > Duration::from_secs(2)));
        assert!(c.drop > 0.0 && c.reorder);
    }
}
