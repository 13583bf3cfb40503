//! What a runtime adapter takes from this crate wholesale: [`exports`], the names it
//! re-exports at its root, and [`forward_connection_methods!`](crate::forward_connection_methods),
//! the methods its `Connection` wrapper forwards to this crate's [`Connection`](crate::Connection).
//! Both exist once here so that the adapters' public APIs cannot drift apart.

/// Every public name an adapter re-exports at its root (`pub use leasedlock_api::adapter::exports::*;`):
/// the handles, options, errors and their modules. `Connection` is not here: each adapter has
/// its own wrapper.
pub mod exports {
    pub use crate::cancel::CancellationToken;
    pub use crate::connection::{ConnackRefusal, ConnectError, ConnectionState};
    pub use crate::edit::{self, EditDecision, EditError, EditOutcome};
    pub use crate::leader::{self, DeposedReason, Leader, LeaderError, LeaderOptions, Term};
    pub use crate::lease::{
        self, AcquireOptions, Change, Lease, LeaseError, LeaseObservation, LostReason,
        ReleaseOutcome,
    };
    pub use crate::lock::{self, Lock, LockError, LockOptions};
    pub use crate::options::{
        Authentication, ConnectionOptions, OptionsError, Secret, TlsOptions, K8S_SAT_METHOD,
    };
    pub use crate::state_store::{
        self, DelOptions, KeyChange, Observation, ObserveError, SetOptions, SetResult, StateStore,
        StoreError, VdelOutcome, Versioned,
    };
    pub use leasedlock_core::hlc::Hlc;
}

/// Types the expansion of [`forward_connection_methods!`](crate::forward_connection_methods)
/// names, so that an adapter needs no dependency of its own for them.
#[doc(hidden)]
pub mod __private {
    pub use bytes::Bytes;
}

/// Generates, inside an adapter's `impl Connection { … }`, the methods that forward to the
/// [`Connection`](crate::Connection) of this crate held in the field `$inner`, with their
/// docs: `wait_connected`, `client_id`, `state_store`, `lease`, `lease_with_session`, `lease_as_client_id`, `lock`,
/// `lock_with_session`, `leader` and `as_api`. The adapter writes the rest itself (`start`,
/// `connect`, `state`, `abort`, `close`), as those need its runtime.
///
/// The docs link to `crate::Leader`, so the adapter must re-export [`exports`] at its root.
///
/// ```
/// #[derive(Debug, Clone)]
/// pub struct Connection {
///     inner: leasedlock_api::Connection,
/// }
///
/// impl Connection {
///     leasedlock_api::forward_connection_methods!(inner);
/// }
/// ```
#[macro_export]
macro_rules! forward_connection_methods {
    ($inner:ident) => {
        /// Waits until the connection is up (returns at once if it is).
        pub async fn wait_connected(&self) -> ::core::result::Result<(), $crate::ConnectError> {
            self.$inner.wait_connected().await
        }

        /// The MQTT client id (the first part of every holder value of this connection).
        pub fn client_id(&self) -> &str {
            self.$inner.client_id()
        }

        /// A handle for the raw state-store operations.
        pub fn state_store(&self) -> $crate::StateStore {
            self.$inner.state_store()
        }

        /// A handle for the lease `name` with a holder value of its own
        /// (`clientId:instance.handle`): to every other handle it is just another client.
        pub fn lease(
            &self,
            name: impl ::core::convert::Into<$crate::adapter::__private::Bytes>,
        ) -> ::core::result::Result<$crate::Lease, $crate::LeaseError> {
            self.$inner.lease(name)
        }

        /// A handle for the lease `name`, held as `clientId:sessionId` (a fixed holder value;
        /// a second live handle of this connection with the same name and session is refused
        /// with `LeaseError::HolderInUse`).
        pub fn lease_with_session(
            &self,
            name: impl ::core::convert::Into<$crate::adapter::__private::Bytes>,
            session_id: impl ::core::convert::Into<::std::string::String>,
        ) -> ::core::result::Result<$crate::Lease, $crate::LeaseError> {
            self.$inner.lease_with_session(name, session_id)
        }

        /// A handle for the lease `name`, held as the bare client id (a fixed holder value,
        /// refused like `lease_with_session` while another handle of this connection uses it).
        pub fn lease_as_client_id(
            &self,
            name: impl ::core::convert::Into<$crate::adapter::__private::Bytes>,
        ) -> ::core::result::Result<$crate::Lease, $crate::LeaseError> {
            self.$inner.lease_as_client_id(name)
        }

        /// A handle for the lock `name` with a holder value of its own: a second handle of this
        /// connection waits for this one's unlock.
        pub fn lock(
            &self,
            name: impl ::core::convert::Into<$crate::adapter::__private::Bytes>,
        ) -> ::core::result::Result<$crate::Lock, $crate::LockError> {
            self.$inner.lock(name)
        }

        /// A handle for the lock `name`, held as `clientId:sessionId` (fixed; a second live
        /// handle with the same name and session is refused).
        pub fn lock_with_session(
            &self,
            name: impl ::core::convert::Into<$crate::adapter::__private::Bytes>,
            session_id: impl ::core::convert::Into<::std::string::String>,
        ) -> ::core::result::Result<$crate::Lock, $crate::LockError> {
            self.$inner.lock_with_session(name, session_id)
        }

        /// A participant in the election `name` (call
        /// [`Leader::campaign`](crate::Leader::campaign) to run).
        pub fn leader(
            &self,
            name: impl ::core::convert::Into<$crate::adapter::__private::Bytes>,
        ) -> ::core::result::Result<$crate::Leader, $crate::LeaderError> {
            self.$inner.leader(name)
        }

        /// The runtime-independent half of this connection (the type every adapter shares).
        pub fn as_api(&self) -> &$crate::Connection {
            &self.$inner
        }
    };
}
