//! From the global options to a connected [`Connection`], and from the adapter's errors to an
//! exit code with a message.

use std::fmt;
use std::time::Duration;

use leasedlock_core::supervise as policy;
use leasedlock_tokio::{
    Authentication, ConnackRefusal, ConnectError, Connection, ConnectionOptions, LeaderError,
    LeaseError, LockError, StoreError, TlsOptions,
};

use crate::args::{BrokerAddr, GlobalOptions};
use crate::commands::common::error_chain;
use crate::exit;

/// A failed operation: the exit code it maps to and what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code (see [`crate::exit`]).
    pub code: u8,
    /// The message.
    pub message: String,
}

impl Failure {
    /// A failure with an explicit code.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: &str) -> Failure {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ConnectError> for Failure {
    fn from(e: ConnectError) -> Failure {
        let code = match e {
            ConnectError::Options(_) | ConnectError::BadClientId => exit::USAGE,
            _ => exit::UNREACHABLE,
        };
        let mut message = error_chain(&e);
        if let ConnectError::Refused(
            ConnackRefusal::NotAuthorized | ConnackRefusal::BadUserNameOrPassword,
        ) = e
        {
            message.push_str(
                " (check --username/--password-file or --sat-file: a service-account token may \
                 have expired)",
            );
        }
        Failure::new(code, message)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        let code = match e {
            StoreError::Timeout { .. }
            | StoreError::Unknown
            | StoreError::Busy
            | StoreError::SubscriptionRefused
            | StoreError::Closed => exit::UNREACHABLE,
            StoreError::InvalidArgument(_) => exit::USAGE,
            _ => exit::REFUSED,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<LeaseError> for Failure {
    fn from(e: LeaseError) -> Failure {
        match e {
            LeaseError::Request(store) => Failure::from(store),
            LeaseError::Closed => Failure::new(exit::UNREACHABLE, e.to_string()),
            LeaseError::InvalidConfig(_) | LeaseError::InvalidArgument(_) => {
                Failure::new(exit::USAGE, e.to_string())
            }
            other => Failure::new(exit::REFUSED, other.to_string()),
        }
    }
}

impl From<LockError> for Failure {
    fn from(e: LockError) -> Failure {
        match e {
            LockError::Lease(lease) => Failure::from(lease),
            LockError::Closed => Failure::new(exit::UNREACHABLE, e.to_string()),
            other => Failure::new(exit::REFUSED, other.to_string()),
        }
    }
}

impl From<LeaderError> for Failure {
    fn from(e: LeaderError) -> Failure {
        match e {
            LeaderError::Lock(lock) => Failure::from(lock),
            LeaderError::Closed => Failure::new(exit::UNREACHABLE, e.to_string()),
            LeaderError::InvalidConfig(_) => Failure::new(exit::USAGE, e.to_string()),
            other => Failure::new(exit::REFUSED, other.to_string()),
        }
    }
}

/// The client id when `--client-id` is not given: unique per process and usable in topics.
pub fn default_client_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    if host.is_empty() {
        format!("leasedlock-{}", std::process::id())
    } else {
        format!("leasedlock-{host}-{}", std::process::id())
    }
}

/// The connection options the global options describe, for `broker` with `client_id`.
pub fn connection_options(
    global: &GlobalOptions,
    broker: &BrokerAddr,
    client_id: &str,
    request_timeout: Duration,
) -> ConnectionOptions {
    let mut options = ConnectionOptions::new(broker.host.clone(), broker.port, client_id)
        .request_timeout(request_timeout)
        // One-shot commands must not leave a session behind on the broker.
        .clean_start(true)
        .session_expiry(Duration::ZERO);
    let tls_wanted =
        global.tls || broker.tls || global.tls_ca.is_some() || global.tls_cert.is_some();
    if tls_wanted {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &global.tls_ca {
            tls = tls.ca_file(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&global.tls_cert, &global.tls_key) {
            tls = tls.client_cert(cert.clone(), key.clone());
        }
        options = options.tls(tls);
    }
    if let Some(user) = &global.username {
        options = match &global.password_file {
            Some(file) => options.credentials_from_file(user.clone(), file.clone()),
            None => options.credentials(user.clone(), String::new()),
        };
    } else if let Some(token_file) = &global.sat_file {
        options = options.authentication(Authentication::K8sServiceAccountToken {
            token_file: token_file.clone(),
        });
    }
    options
}

/// Connects to `--broker` (default 127.0.0.1:1883) as `--client-id` (default unique).
pub async fn connect(
    global: &GlobalOptions,
    request_timeout: Duration,
) -> Result<Connection, Failure> {
    let broker = global
        .broker
        .clone()
        .unwrap_or_else(BrokerAddr::local_default);
    let client_id = global.client_id.clone().unwrap_or_else(default_client_id);
    connect_to(global, &broker, &client_id, request_timeout).await
}

/// Connects to `broker` as `client_id`.
pub async fn connect_to(
    global: &GlobalOptions,
    broker: &BrokerAddr,
    client_id: &str,
    request_timeout: Duration,
) -> Result<Connection, Failure> {
    let options = connection_options(global, broker, client_id, request_timeout);
    Connection::connect(options)
        .await
        .map_err(|e| Failure::from(e).context(&format!("cannot connect to {broker}")))
}

/// The `--grace` of `lock` and `elect` when none is given: a sixth of `--ttl`. With the renewal
/// every third and the margin of at most a twentieth (above 2 s), about half the lease is left
/// for a renewal to complete.
pub fn default_grace(ttl: Duration) -> Duration {
    ttl / 6
}

/// Renewal plan for a held lease of duration `ttl`: renew every third of it, keep each request
/// within another third, and a safety margin of 5 % (at least 100 ms) below that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewPlan {
    /// Renewal interval.
    pub renew: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Safety margin subtracted from the lease duration for `safe_until`.
    pub margin: Duration,
}

impl RenewPlan {
    /// The plan for `ttl`, with renewal every `renew` (default a third of `ttl`) and requests
    /// limited to `max_timeout`. Fails when the lease is too short to renew safely.
    pub fn new(
        ttl: Duration,
        renew: Option<Duration>,
        max_timeout: Duration,
    ) -> Result<RenewPlan, Failure> {
        let margin = (ttl / 20).max(Duration::from_millis(100));
        let renew = renew.unwrap_or(ttl / 3);
        // The lease machines require ttl > renew + timeout + margin.
        let slack = ttl
            .checked_sub(renew + margin)
            .filter(|s| *s > Duration::from_millis(20));
        let Some(slack) = slack else {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "a {} ms lease cannot be renewed every {} ms: leave room for a request and \
                     a {} ms margin (ttl > renew + timeout + margin)",
                    ttl.as_millis(),
                    renew.as_millis(),
                    margin.as_millis()
                ),
            ));
        };
        // Half the slack keeps the rule strict with room to spare.
        let timeout = max_timeout.min(slack / 2).max(Duration::from_millis(10));
        Ok(RenewPlan {
            renew,
            timeout,
            margin,
        })
    }

    /// The plan for a command run under a lease (`lock`, `elect`) that gets SIGTERM `grace`
    /// before the lease's safe end (default: [`default_grace`]), and the grace.
    ///
    /// A grant issued at `t` is safe until `t + ttl − margin`; SIGTERM is due `grace` before
    /// that. The next renewal is sent at `t + renew` and must be able to complete before SIGTERM
    /// is due, or a lease that is renewed normally would still stop the command. So the room
    /// `ttl − margin − renew − grace` must exceed [`policy::MIN_RENEW_ROOM`] (the
    /// core's [`policy::renewal_room`]); half of it bounds each request, the other half leaves time for
    /// a retry of a renewal that failed transiently.
    pub fn for_command(
        ttl: Duration,
        grace: Option<Duration>,
        max_timeout: Duration,
    ) -> Result<(RenewPlan, Duration), Failure> {
        let plan = RenewPlan::new(ttl, None, max_timeout).map_err(|f| f.context("--ttl"))?;
        let grace_given = grace.is_some();
        let grace = grace.unwrap_or_else(|| default_grace(ttl));
        let room = policy::renewal_room(ttl, plan.margin, plan.renew, grace);
        let Some(room) = room else {
            let which = if grace_given {
                "--grace"
            } else {
                "the default --grace (a sixth of --ttl)"
            };
            let largest = policy::grace_bound(ttl, plan.margin, plan.renew);
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "{which} of {} ms does not fit a {} ms lease: SIGTERM is due --grace before \
                     the lease's safe end (--ttl minus the {} ms margin after each renewal is \
                     sent), and the renewal sent every {} ms must be able to complete before \
                     that; use a --grace below {} ms or a longer --ttl",
                    grace.as_millis(),
                    ttl.as_millis(),
                    plan.margin.as_millis(),
                    plan.renew.as_millis(),
                    largest.as_millis()
                ),
            ));
        };
        let timeout = plan.timeout.min(room / 2).max(Duration::from_millis(10));
        Ok((RenewPlan { timeout, ..plan }, grace))
    }

    /// The adapter's acquire options for this plan.
    pub fn acquire_options(&self) -> leasedlock_tokio::AcquireOptions {
        leasedlock_tokio::AcquireOptions::new()
            .renew(self.renew)
            .timeout(self.timeout)
            .margin(self.margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasedlock_core::supervise::MIN_RENEW_ROOM;
    use proptest::prelude::*;

    #[test]
    fn default_client_id_is_topic_safe() {
        let id = default_client_id();
        assert!(id.starts_with("leasedlock-"));
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}"
        );
    }

    #[test]
    fn plans() {
        let p =
            RenewPlan::new(Duration::from_secs(10), None, Duration::from_secs(10)).expect("10s");
        assert_eq!(
            p.renew,
            Duration::from_millis(3333) + Duration::from_nanos(333_333)
        );
        assert_eq!(p.margin, Duration::from_millis(500));
        assert!(p.timeout < Duration::from_secs(4));
        let p = RenewPlan::new(
            Duration::from_secs(5),
            Some(Duration::from_secs(2)),
            Duration::from_secs(10),
        )
        .expect("5s/2s");
        assert!(p.renew + p.timeout + p.margin < Duration::from_secs(5));
        let err = RenewPlan::new(
            Duration::from_secs(2),
            Some(Duration::from_secs(2)),
            Duration::from_secs(1),
        )
        .expect_err("renew = ttl");
        assert_eq!(err.code, exit::USAGE);
        assert!(RenewPlan::new(Duration::from_millis(100), None, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn command_plans_fit_the_grace_next_to_the_renewals() {
        let ten = Duration::from_secs(10);
        // The defaults: --ttl 10s, grace 10/6 s.
        let (p, grace) = RenewPlan::for_command(ten, None, DEFAULT_TIMEOUT).expect("10s");
        assert_eq!(grace, ten / 6);
        assert!(p.renew + p.timeout < ten - p.margin - grace);
        // Commonly used leases with the default grace.
        for ttl_ms in [300, 500, 1000, 2000, 3000, 5000, 30_000, 60_000] {
            let ttl = Duration::from_millis(ttl_ms);
            assert!(
                RenewPlan::for_command(ttl, None, DEFAULT_TIMEOUT).is_ok(),
                "{ttl_ms} ms with the default grace"
            );
        }
        // A 5 s grace fits a 10 s lease (SIGTERM due 4.5 s after the grant, the renewal sent at
        // 3.3 s gets 0.58 s), but not a 5 s lease: SIGTERM would be due before the lease starts.
        let (p, _) = RenewPlan::for_command(ten, Some(Duration::from_secs(5)), DEFAULT_TIMEOUT)
            .expect("5s grace in a 10s lease");
        assert!(p.renew + 2 * p.timeout <= ten - p.margin - Duration::from_secs(5));
        let five = Duration::from_secs(5);
        let err = RenewPlan::for_command(five, Some(five), DEFAULT_TIMEOUT)
            .expect_err("5s grace in a 5s lease");
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("--grace"), "{}", err.message);
        assert!(err.message.contains("renewal"), "{}", err.message);
        // The largest grace the message offers is accepted; that plus a millisecond is not.
        let ttl = Duration::from_secs(2);
        let largest = ttl - (Duration::from_millis(100) + ttl / 3) - MIN_RENEW_ROOM;
        assert!(RenewPlan::for_command(
            ttl,
            Some(largest - Duration::from_millis(1)),
            DEFAULT_TIMEOUT
        )
        .is_ok());
        assert!(RenewPlan::for_command(ttl, Some(largest), DEFAULT_TIMEOUT).is_err());
    }

    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    proptest! {
        #[test]
        fn the_default_grace_fits_every_ttl_from_250_ms(ttl_ms in 250u64..10_000_000) {
            let ttl = Duration::from_millis(ttl_ms);
            prop_assert!(RenewPlan::for_command(ttl, None, DEFAULT_TIMEOUT).is_ok());
        }

        #[test]
        fn command_plan_leaves_room_for_a_renewal_before_sigterm(
            ttl_ms in 0u64..100_000,
            grace_ms in proptest::option::of(0u64..100_000),
            max_ms in 1u64..20_000,
        ) {
            let ttl = Duration::from_millis(ttl_ms);
            let grace = grace_ms.map(Duration::from_millis);
            if let Ok((p, g)) = RenewPlan::for_command(ttl, grace, Duration::from_millis(max_ms)) {
                // A renewal sent on schedule completes (or times out) before SIGTERM is due...
                prop_assert!(p.renew + p.timeout + g + p.margin < ttl);
                // ...with time for a retry.
                prop_assert!(p.renew + 2 * p.timeout + g + p.margin <= ttl);
                // And the core's own rule holds.
                prop_assert!(p.renew + p.timeout + p.margin < ttl);
                prop_assert_eq!(g, grace.unwrap_or(ttl / 6));
            }
        }
    }

    proptest! {
        #[test]
        fn plan_obeys_the_lease_rule(ttl_ms in 0u64..100_000, renew_ms in proptest::option::of(0u64..100_000), max_ms in 1u64..20_000) {
            let ttl = Duration::from_millis(ttl_ms);
            if let Ok(p) = RenewPlan::new(ttl, renew_ms.map(Duration::from_millis), Duration::from_millis(max_ms)) {
                prop_assert!(p.renew + p.timeout + p.margin < ttl);
                prop_assert!(p.timeout <= Duration::from_millis(max_ms).max(Duration::from_millis(10)));
            }
        }
    }
}
