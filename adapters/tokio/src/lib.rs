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
//! of the same run (p50 ratios; medians of 3 runs on 2 shared, loaded cores, where the echo
//! itself is 115–170 µs): adapter GET about 1.1–1.6×, lease acquire about 1.3–1.9×, lock
//! handover without jitter about 5–7× and with the default jitter about 14×.
//!
//! A handover is the holder's VDEL, the DELETE notification to the waiter and the waiter's SET:
//! one notification hop plus one round trip plus the release's own hop, and nothing else (no
//! timer, no GET; `LEASEDLOCK_BENCH_TRACE=1` prints the per-hop timeline). It follows an idle
//! pause, and on this machine one echo after 30 ms of idleness alone costs about 3× a
//! back-to-back one (parked threads and broker wake up per hop), which is where most of the
//! rest goes. The default jitter adds a random delay below 1 ms for a lone waiter (herd control,
//! see [`LockOptions::max_jitter`]); the driver's timer meets such sub-millisecond deadlines
//! within tens of µs instead of rounding them up to tokio's next millisecond tick.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod connection;
mod convert;
mod driver;
mod options;
mod subscriptions;
mod timer;

pub use connection::Connection;
pub use leasedlock_api::{edit, leader, lease, lock, state_store};
pub use leasedlock_api::{
    AcquireOptions, Authentication, CancellationToken, Change, ConnectError, ConnectionOptions,
    ConnectionState, DelOptions, DeposedReason, EditDecision, EditError, EditOutcome, Hlc,
    KeyChange, Leader, LeaderError, LeaderOptions, Lease, LeaseError, LeaseObservation, Lock,
    LockError, LockOptions, LostReason, Observation, ObserveError, OptionsError, ReleaseOutcome,
    Secret, SetOptions, SetResult, StateStore, StoreError, Term, TlsOptions, VdelOutcome,
    Versioned, K8S_SAT_METHOD,
};

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_sync_and_cheap_to_share() {
        fn check<T: Send + Sync>() {}
        check::<crate::Connection>();
        check::<crate::StateStore>();
        check::<crate::Lease>();
        check::<crate::Lock>();
        check::<crate::Leader>();
        check::<crate::Observation>();
        check::<crate::LeaseObservation>();
    }
}
