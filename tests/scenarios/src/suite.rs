//! [`scenario_tests!`](crate::scenario_tests): every scenario of [`scenarios`](crate::scenarios)
//! as one `#[test]` each, so that every adapter runs the whole suite under the same names.

/// Generates one `#[test]` per scenario for the runtime value `$rt` (a [`Runtime`]), each
/// blocking on its scenario with `$run` (a function taking the future). Scenarios that need
/// the emulator get one on the shared broker; `broker_restart_mid_lease` gets a
/// [`PrivateBroker`] it may stop and restart.
///
/// ```ignore
/// fn run(f: impl std::future::Future<Output = ()>) {
///     async_std::task::block_on(f);
/// }
/// leasedlock_scenarios::scenario_tests!(AsyncStd, run);
/// ```
///
/// [`Runtime`]: crate::Runtime
/// [`PrivateBroker`]: crate::PrivateBroker
#[macro_export]
macro_rules! scenario_tests {
    ($rt:expr, $run:path) => {
        $crate::scenario_tests!(@emulator $rt, $run,
            store_operations,
            lease_operations,
            lock_operations,
            leader_operations,
            contention_with_fenced_writes,
            failover_when_holder_dies,
            dropped_futures_leave_nothing_behind,
            same_connection_holders_are_distinct
        );

        #[test]
        fn broker_restart_mid_lease() {
            let mut broker = $crate::PrivateBroker::start();
            let env = $crate::Env::on("127.0.0.1", broker.port(), true);
            $run($crate::scenarios::broker_restart_mid_lease(
                &$rt,
                &env,
                &mut broker,
            ));
        }

        #[test]
        fn garbage_replies_give_typed_errors() {
            let env = $crate::Env::bare();
            $run($crate::scenarios::garbage_replies_give_typed_errors(
                &$rt, &env,
            ));
        }
    };
    (@emulator $rt:expr, $run:path, $($name:ident),+) => {
        $(
            #[test]
            fn $name() {
                let env = $crate::Env::with_emulator();
                $run($crate::scenarios::$name(&$rt, &env));
            }
        )+
    };
}
