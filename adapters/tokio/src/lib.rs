//! `leasedlock-tokio`: distributed leases, locks and leader election on the Azure IoT
//! Operations state store, for tokio, over rumqttc's MQTT 5 client.
//!
//! The adapter is thin: a background task owns the rumqttc event loop and the timers and drives
//! the sans-IO engine of `leasedlock-api`, which hosts the machines of `leasedlock-core`, where
//! all protocol and lease logic lives. The handles, options and errors are `leasedlock-api`'s,
//! re-exported here, so they are the same types under every runtime adapter. Handles are cheap
//! to clone and `Send + Sync`; dropping any future leaves no state behind on the server.
//!
//! Start with a [`Connection`]; from it make [`Lease`], [`Lock`] and [`Leader`] handles, or
//! [`StateStore`] handles for the raw operations.
//!
//! # Latency
//!
//! `cargo bench -p leasedlock-tokio --bench latency` measures, over Mosquitto on loopback with
//! the emulator in the same process, each operation against a bare rumqttc request/reply echo
//! of the same run. Medians over 6 runs of the p50 ratios (2 shared cores under a load of
//! 3.5–5; the echo itself 115–200 µs; single runs scatter by ±30 %): adapter GET 1.23×, lease
//! acquire 1.48×, lock handover without jitter 6.6×, with the default jitter 13.7× (23.5×
//! before the driver's timer stopped rounding sub-millisecond deadlines up to tokio's next
//! tick), and the echo itself after 30 ms of idleness 2.9×.
//!
//! A handover is the holder's VDEL, the DELETE notification to the waiter and the waiter's SET:
//! one notification hop plus one round trip plus the release's own hop, and nothing else
//! (without jitter no timer and no GET; `LEASEDLOCK_BENCH_TRACE=1` prints the per-hop timeline). It follows an idle
//! pause, and on this machine one echo after 30 ms of idleness alone costs about 3× a
//! back-to-back one (parked threads and broker wake up per hop), which is where most of the
//! rest goes. The default jitter adds a random delay below 1 ms for a lone waiter (herd control,
//! see [`LockOptions::max_jitter`]); the driver's timer meets such sub-millisecond deadlines
//! about 0.15 ms late here (a hand-off to the blocking pool and back on busy cores) instead of
//! the 1–2 ms of tokio's millisecond wheel.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod connection;
mod convert;
mod driver;
mod options;
mod subscriptions;
mod timer;

pub use connection::Connection;
pub use leasedlock_api::adapter::exports::*;

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_sync_and_cheap_to_share() {
        fn check<T: Send + Sync>() {}
        // The other handles are leasedlock-api's, checked there.
        check::<crate::Connection>();
    }
}
