//! `leasedlock-api`: the runtime-independent half of leasedlock's async API — option types,
//! handles, errors — and the sans-IO [`Engine`] that every runtime adapter drives.
//!
//! Applications use an adapter (`leasedlock-tokio`, `leasedlock-async-std`), which re-exports
//! everything here under the same names; this crate is where those names are defined, once.
//!
//! # The seam between this crate and an adapter
//!
//! Everything that is not I/O or time lives here: the handles ([`StateStore`], [`Lease`],
//! [`Lock`], [`Leader`], [`Term`], [`Observation`], [`LeaseObservation`]) and the
//! runtime-independent [`Connection`] they are made from; their options and errors; and the
//! [`Engine`], which owns the core client and machines. Handles talk to the engine over
//! runtime-neutral channels (`async-channel`, `futures-channel`, and the small watch channel and
//! [`CancellationToken`] of this crate, built on `event-listener`), and never need a runtime
//! timer: every deadline is a core machine timer that the engine runs.
//!
//! An adapter provides the rest:
//!
//! - its own `Connection` type, a wrapper around this crate's [`Connection`] with the
//!   runtime-specific entry points: `Connection::start(options)` builds the engine with
//!   [`Engine::new`] and spawns one task driving it; `Connection::connect(options)` is `start`
//!   plus waiting (with the runtime's timer, at most the connect timeout) for
//!   [`Connection::wait_connected`]; `abort()` kills that task. Every other method
//!   (`state`, `wait_connected`, `client_id`, `state_store`, `lease`, `lease_with_session`,
//!   `lease_as_client_id`, `lock`, `lock_with_session`, `leader`, `close`) forwards to this crate's [`Connection`], so
//!   handles are the same types under every runtime ([`forward_connection_methods!`] writes the
//!   plain forwarders), and every other public name comes from re-exporting
//!   [`adapter::exports`] at the adapter's root;
//! - the task: the MQTT client's event loop, the runtime's timer set to
//!   [`Engine::poll_timeout`], and the [`Commands`] receiver, all feeding the engine (see
//!   `adapters/api/PORTING.md` for the loop);
//! - reading secret files and building its MQTT client's options from [`ConnectionOptions`]
//!   (through its accessors and [`Secret::decode_file`], [`TlsOptions::client_config`]).
//!
//! # Holder values: every handle is a holder of its own
//!
//! A lease key stores its holder's value, and acquiring is "set if absent or already ours".
//! So two handles storing the same value would both "hold" the name, and the first release
//! would delete the lease under the other. Therefore no two handles, edits or leader
//! participants of one connection ever act on one name with the same holder value:
//!
//! - [`Connection::lease`], [`Connection::lock`], every [`Lock::edit`] and every
//!   [`Connection::leader`] participant get a generated holder value,
//!   `clientId:instance.handle`: the client id, a random 12-hex-digit id drawn once per
//!   connection (so a restarted process with the same client id is someone else, and never
//!   silently re-owns what its predecessor left), and the handle's number in the connection.
//!   E.g. `worker-7:3fa91c02be4d.12`. A second handle for the same name therefore behaves
//!   exactly like another client: [`Lease::acquire`] returns `false`, [`Lock::lock`] waits for
//!   the first one's release, an edit waits for the lock. [`Lease::holder_value`],
//!   [`Lock::holder_value`] and [`Leader::holder_value`] report the value.
//! - [`Connection::lease_with_session`] / [`Connection::lock_with_session`]
//!   (`clientId:sessionId`) and [`Connection::lease_as_client_id`] (the bare `clientId`) are
//!   fixed holder values, chosen so that another process can act as the same holder (release
//!   a lease it did not take, resume one after a restart). One connection refuses to have two
//!   of them at once: making a second live handle with the same name and the same fixed
//!   holder fails with [`LeaseError::HolderInUse`] (`LockError::Lease(HolderInUse)`) until
//!   the first handle is dropped. Refusing was chosen over queueing the second handle
//!   behind the first because the two would share one identity on the store: whatever the
//!   second did after the first released would be indistinguishable from the first, so
//!   the application must decide which of them is the holder.
//!
//! # Notifications after a reconnect
//!
//! The store drops a client's notification registrations (KEYNOTIFY) with its connection, so
//! the engine registers every observed key again after each reconnect and re-reads it. If that
//! registration fails (say it times out while the store itself is still reconnecting), it is
//! retried with a jittered back-off (a quarter of a second at first, doubling up to 8 s) for
//! as long as the key is observed, and the failure is never silent: every [`Observation`] of
//! the key receives `Err(ObserveError::MayHaveMissed)`, and the lock, lease and leader
//! machines re-read the key after each attempt. Once a retry succeeds the key is read again
//! and whatever changed meanwhile arrives as a change with `resync: true`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapter;
mod backoff;
mod cancel;
mod clock;
mod connection;
pub mod edit;
mod engine;
mod handle;
pub mod leader;
pub mod lease;
pub mod lock;
mod options;
pub mod state_store;
mod watch;

pub use adapter::exports::*;
pub use backoff::Backoff;
pub use clock::{wall_ms, Clock};
pub use connection::Connection;
pub use engine::{Command, Commands, Engine, Transmit};

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
        check::<crate::Term>();
        check::<crate::Observation>();
        check::<crate::LeaseObservation>();
        check::<crate::Engine>();
        check::<crate::Commands>();
    }
}
