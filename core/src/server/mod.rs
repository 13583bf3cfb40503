//! The state store itself, as a pure model (docs/protocol.md §7–§9, §13, §14): the reference the
//! emulator serves over a real broker and the simulator drives in virtual time.
//!
//! Driven like every machine in this crate: feed [`Store::handle_request`] with each PUBLISH that
//! arrives on the request topic, [`Store::handle_timeout`] when [`Store::poll_timeout`] is due,
//! and [`Store::handle_client_disconnected`] when a client's connection is known to be gone; after
//! each call drain [`Store::poll_output`]. Outputs come in the order they must take effect:
//! durability records for a write, then its reply, then its notifications.
//!
//! Semantics, in the order the store checks a request (docs/protocol.md §8.3):
//! 1. The envelope ([`envelope::parse_request`]): a request without response topic or
//!    correlation data is dropped; a bad header gets RPC status 400, an unsupported protocol
//!    version 505. Nothing below runs.
//! 2. A redelivery (same `__srcId` and correlation data within the request's Message Expiry)
//!    gets the cached reply and is not run again.
//! 3. The RESP3 payload: `syntax error`, `unknown command`, `wrong number of arguments`,
//!    `the key length is zero`.
//! 4. `__ts`: required on SET (`missing timestamp`); where present it must parse
//!    (`malformed timestamp`) and be at most [`StoreConfig::max_skew_ms`] ahead of the store's wall
//!    clock. A counter above `i32::MAX` counts as malformed: the .NET client cannot parse such a
//!    value, so the store never lets one into its versions.
//! 5. `__ft` on SET/DEL/VDEL: must parse and must not be too far ahead.
//! 6. Fencing: a key that stores a token needs `__ft` ≥ it.
//! 7. The NX / NEX / VDEL condition, then the quotas, then the change.
//!
//! Versions come from one store clock folded with every mutating request's `__ts` and `__ft`, so
//! they increase strictly and each SET's version exceeds the request's `__ts` and `__ft`. Keys
//! written with `PX` expire exactly at their deadline: [`Store::poll_timeout`] names it, and every
//! call first removes whatever is due, so an expired key is absent everywhere and its `DELETE`
//! notification leaves on time.

mod clock;
mod dedup;
mod reply;
mod table;
mod watch;

#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::collections::{BTreeSet, VecDeque};
use alloc::vec::Vec;
use bytes::Bytes;

use crate::command::{NotifyPayload, Request, ServiceError, SetCondition};
use crate::envelope::{self, IncomingRequest, Message};
use crate::hlc::{Hlc, HlcError};
use crate::resp3::Limits;
use crate::time::{Duration, Instant, Now};

use clock::ServerClock;
use dedup::ReplyCache;
use table::{Entry, KeyTable, Version, NO_EXPIRY};
use watch::{Added, Registrations};

/// Configuration of a [`Store`]: identity, clock tolerance and the memory bounds. Past a bound a
/// request gets `-ERR the quota has been exceeded`, never a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Node id of the store's versions (`{ms}:{counter}:{node}`); must not contain `:`.
    pub node_id: Bytes,
    /// Seed of the key table's hash; pick it at random so clients cannot aim for collisions.
    pub hash_seed: u64,
    /// How far a request `__ts` or `__ft` may run ahead of the store's wall clock (docs/protocol.md
    /// §6.3: 60 s).
    pub max_skew_ms: u64,
    /// Maximum number of stored keys.
    pub max_keys: usize,
    /// Maximum total bytes of stored keys plus values.
    pub max_data_bytes: usize,
    /// Maximum length of one key (also for KEYNOTIFY).
    pub max_key_len: usize,
    /// Maximum length of one value.
    pub max_value_len: usize,
    /// Maximum number of KEYNOTIFY registrations, all clients together.
    pub max_registrations: usize,
    /// Maximum number of cached replies for redelivered requests (0 disables deduplication).
    pub max_cached_replies: usize,
    /// Maximum bytes of cached replies.
    pub max_cached_bytes: usize,
    /// Bounds for decoding request payloads.
    pub limits: Limits,
    /// Persist every key written with an expiry (`PX`), as if the SET carried
    /// `aio-persistence: true`. A store with durable storage turns this on so that leases
    /// survive its restart: a store that forgets a held lease lets a newcomer take it while the
    /// holder still believes (rightly, by its `safe_until`) that it holds it.
    pub persist_expiring: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            node_id: Bytes::from_static(b"leasedlock-store"),
            hash_seed: 0x9E37_79B9_7F4A_7C15,
            max_skew_ms: crate::hlc::DEFAULT_MAX_DRIFT_MS,
            max_keys: 1_000_000,
            max_data_bytes: 1 << 30,
            max_key_len: 64 * 1024,
            max_value_len: 4 * 1024 * 1024,
            max_registrations: 100_000,
            max_cached_replies: 100_000,
            max_cached_bytes: 64 << 20,
            limits: Limits {
                max_array_len: 8,
                ..Limits::default()
            },
            persist_expiring: false,
        }
    }
}

/// Why a store could not be built or a record not restored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The configured node id is not a valid HLC node id.
    BadNodeId(HlcError),
    /// A restored record would exceed a configured bound.
    QuotaExceeded,
    /// A restored record has an empty key or a version counter the store cannot represent.
    BadRecord,
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::BadNodeId(e) => write!(f, "invalid store node id: {e}"),
            StoreError::QuotaExceeded => f.write_str("restored key exceeds the store's bounds"),
            StoreError::BadRecord => f.write_str("restored key record is invalid"),
        }
    }
}

impl core::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            StoreError::BadNodeId(e) => Some(e),
            StoreError::QuotaExceeded | StoreError::BadRecord => None,
        }
    }
}

/// A key as written to durable storage (`aio-persistence: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedKey {
    /// Key.
    pub key: Bytes,
    /// Value.
    pub value: Bytes,
    /// Version.
    pub version: Hlc,
    /// Fencing token protecting the key, if any.
    pub fencing_token: Option<Hlc>,
    /// Wall-clock expiry (Unix milliseconds), for keys written with `PX`.
    pub expires_at_wall_ms: Option<u64>,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOutput {
    /// Publish a reply or a notification.
    Publish(Message),
    /// Durably store (or overwrite) this key before acting on any later output.
    Persist(PersistedKey),
    /// Durably remove this key before acting on any later output.
    Forget(Bytes),
}

/// Read-only view of one stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Value.
    pub value: Bytes,
    /// Version (the `__ts` a GET would carry).
    pub version: Hlc,
    /// Fencing token protecting the key.
    pub fencing_token: Option<Hlc>,
    /// Monotonic expiry, for keys written with `PX`.
    pub expires_at: Option<Instant>,
    /// Written with `aio-persistence: true`.
    pub persisted: bool,
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Requests handled (including rejected and replayed ones).
    pub requests: u64,
    /// Requests answered with an RPC error status (400 / 505).
    pub rejected: u64,
    /// Requests dropped because no reply was possible.
    pub dropped: u64,
    /// Redelivered requests answered from the reply cache.
    pub replayed: u64,
    /// Notifications published.
    pub notifications: u64,
    /// Keys removed by PX expiry.
    pub expired: u64,
}

/// What a command produced: the reply payload, its `__ts`, and the change to announce.
struct Outcome {
    payload: Bytes,
    version: Option<Version>,
    change: Option<Change>,
}

enum Change {
    Set { key: Bytes, value: Bytes },
    Delete { key: Bytes },
}

impl Outcome {
    fn fixed(payload: &'static [u8], version: Option<Version>) -> Outcome {
        Outcome {
            payload: Bytes::from_static(payload),
            version,
            change: None,
        }
    }

    fn error(e: ServiceError) -> Outcome {
        Outcome {
            payload: reply::error(&e),
            version: None,
            change: None,
        }
    }
}

/// The state store model.
#[derive(Debug, Clone)]
pub struct Store {
    config: StoreConfig,
    /// An HLC carrying the store's node id; versions are rendered by setting its numbers.
    node: Hlc,
    clock: ServerClock,
    keys: KeyTable,
    data_bytes: usize,
    expiry: BTreeSet<(Instant, Box<[u8]>)>,
    watch: Registrations,
    cache: ReplyCache,
    out: VecDeque<StoreOutput>,
    stats: StoreStats,
}

/// Counters above this are refused in `__ts` / `__ft` (the .NET client parses them as `int32`).
const MAX_COUNTER: u64 = i32::MAX as u64;

/// The longest `PX` the store accepts (about a hundred years); a longer one is a bad argument
/// (`syntax error`, like any other bad PX). Without a bound, a deadline that saturates the
/// monotonic clock would be indistinguishable from "no expiry" and stay in the expiry index
/// after its key is gone.
pub const MAX_PX_MS: u64 = 100 * 365 * 24 * 3_600 * 1_000;

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Result<Store, StoreError> {
        let node = Hlc::new(0, 0, config.node_id.clone()).map_err(StoreError::BadNodeId)?;
        Ok(Store {
            keys: KeyTable::new(config.hash_seed),
            cache: ReplyCache::new(
                config.max_cached_replies,
                config.max_cached_bytes,
                config.hash_seed,
            ),
            config,
            node,
            clock: ServerClock::default(),
            data_bytes: 0,
            expiry: BTreeSet::new(),
            watch: Registrations::default(),
            out: VecDeque::new(),
            stats: StoreStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Handles one PUBLISH received on the request topic.
    pub fn handle_request(&mut self, msg: &Message, now: Now) {
        self.advance(now);
        self.stats.requests += 1;
        let req = match envelope::parse_request(msg) {
            Ok(r) => r,
            Err(rejected) => {
                match envelope::build_error_response(&rejected) {
                    Some(reply) => {
                        self.stats.rejected += 1;
                        self.out.push_back(StoreOutput::Publish(reply));
                    }
                    None => self.stats.dropped += 1,
                }
                return;
            }
        };
        if let Some(cached) = self
            .cache
            .replay(&req.source_id, &req.correlation, now.mono)
        {
            self.stats.replayed += 1;
            let version = cached.version.map(|v| self.hlc(v));
            // Answer where this copy asks, in case only the original's topic differed.
            let reply = envelope::build_response(
                req.response_topic,
                req.correlation,
                Some(cached.remaining_secs),
                cached.payload,
                version.as_ref(),
            );
            self.out.push_back(StoreOutput::Publish(reply));
            return;
        }
        let (outcome, cacheable) = self.execute(&req, now);
        let expiry = (req.expiry_secs > 0).then_some(req.expiry_secs);
        let version = outcome.version.map(|v| self.hlc(v));
        if cacheable {
            self.cache.insert(
                &req.source_id,
                &req.correlation,
                outcome.payload.clone(),
                outcome.version,
                now.mono,
                Duration::from_secs(u64::from(req.expiry_secs)),
            );
        }
        let reply = envelope::build_response(
            req.response_topic,
            req.correlation,
            expiry,
            outcome.payload,
            version.as_ref(),
        );
        self.out.push_back(StoreOutput::Publish(reply));
        match outcome.change {
            Some(Change::Set { key, value }) => {
                if let Some(v) = version {
                    self.notify(&key, &NotifyPayload::Set { value }, &v);
                }
            }
            Some(Change::Delete { key }) => self.notify_delete(&key, now),
            None => {}
        }
    }

    /// Handles the expiry of [`Store::poll_timeout`] (or any later time).
    pub fn handle_timeout(&mut self, now: Now) {
        self.advance(now);
    }

    /// Drops every KEYNOTIFY registration of `client_id` (its connection is gone; docs/protocol.md
    /// §9.1). Returns how many there were.
    pub fn handle_client_disconnected(&mut self, client_id: &[u8]) -> usize {
        self.watch.remove_client(client_id)
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<StoreOutput> {
        self.out.pop_front()
    }

    /// When [`Store::handle_timeout`] must next be called: the earliest PX deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiry.first().map(|(t, _)| *t)
    }

    /// Restores a key from durable storage (before serving). Returns `Ok(false)` if it expired
    /// while the store was down; the driver should then forget it.
    pub fn restore(&mut self, rec: &PersistedKey, now: Now) -> Result<bool, StoreError> {
        if rec.key.is_empty() {
            return Err(StoreError::BadRecord);
        }
        let counter = u32::try_from(rec.version.counter).map_err(|_| StoreError::BadRecord)?;
        let remaining_ms = match rec.expires_at_wall_ms {
            Some(at) if at <= now.wall_ms => return Ok(false),
            Some(at) => Some(at - now.wall_ms),
            None => None,
        };
        let expires = match remaining_ms {
            None => None,
            // A record written by this store never lies that far ahead.
            Some(ms) => Some(Self::deadline(now.mono, ms).ok_or(StoreError::BadRecord)?),
        };
        if rec.key.len() > self.config.max_key_len || rec.value.len() > self.config.max_value_len {
            return Err(StoreError::QuotaExceeded);
        }
        // Replaces an earlier record of the same key (without asking to forget it).
        self.remove_key(&rec.key, false);
        let new_len = rec.key.len() + rec.value.len();
        if self.keys.len() >= self.config.max_keys
            || self.data_bytes + new_len > self.config.max_data_bytes
        {
            return Err(StoreError::QuotaExceeded);
        }
        let version = Version {
            millis: rec.version.millis,
            counter,
        };
        self.clock.observe(version.millis, u64::from(counter));
        let mut e = Entry::new(&rec.key, &rec.value, version);
        e.set_persisted(true);
        e.set_expiry_and_fence(
            expires.map_or(NO_EXPIRY, Instant::as_nanos),
            rec.fencing_token.clone(),
        );
        if let Some(at) = expires {
            self.expiry.insert((at, Box::from(&rec.key[..])));
        }
        self.data_bytes += new_len;
        self.keys.insert_new(e);
        Ok(true)
    }

    /// Number of stored keys (expired keys are removed as soon as time reaches their deadline).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }

    /// Total bytes of stored keys and values.
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// A stored key, as of the last call that carried `now`.
    pub fn get(&self, key: &[u8]) -> Option<KeyInfo> {
        let e = self.keys.get(key)?;
        Some(self.info(e))
    }

    /// Every stored key with its details (unordered).
    pub fn iter(&self) -> impl Iterator<Item = (Bytes, KeyInfo)> + '_ {
        self.keys
            .iter()
            .map(|e| (Bytes::copy_from_slice(e.key()), self.info(e)))
    }

    /// The keys `client_id` is registered for, in byte order.
    pub fn registrations_of(&self, client_id: &[u8]) -> Vec<Bytes> {
        self.watch.keys_of(client_id)
    }

    /// Total number of KEYNOTIFY registrations.
    pub fn registration_count(&self) -> usize {
        self.watch.len()
    }

    /// Number of cached replies.
    pub fn cached_replies(&self) -> usize {
        self.cache.len()
    }

    /// The counters.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// The last version the store handed out (or folded in).
    pub fn clock(&self) -> Hlc {
        self.hlc(self.clock.current())
    }

    fn info(&self, e: &Entry) -> KeyInfo {
        KeyInfo {
            value: Bytes::copy_from_slice(e.value()),
            version: self.hlc(e.version()),
            fencing_token: e.fence().cloned(),
            expires_at: (e.expires_nanos() != NO_EXPIRY)
                .then(|| Instant::from_nanos(e.expires_nanos())),
            persisted: e.persisted(),
        }
    }

    fn hlc(&self, v: Version) -> Hlc {
        let mut h = self.node.clone();
        h.millis = v.millis;
        h.counter = u64::from(v.counter);
        h
    }

    /// Removes every key whose deadline has passed (announcing each) and stale cached replies.
    fn advance(&mut self, now: Now) {
        while let Some((at, _)) = self.expiry.first() {
            if *at > now.mono {
                break;
            }
            let Some((_, key)) = self.expiry.pop_first() else {
                break;
            };
            if self.remove_key(&key, true).is_some() {
                self.stats.expired += 1;
                self.notify_delete(&key, now);
            }
        }
        self.cache.purge(now.mono);
    }

    /// Removes a key with its expiry; asks the driver to forget it if it was persisted and
    /// `forget` is set.
    fn remove_key(&mut self, key: &[u8], forget: bool) -> Option<Entry> {
        let e = self.keys.remove(key)?;
        self.data_bytes = self.data_bytes.saturating_sub(e.data_len());
        if e.expires_nanos() != NO_EXPIRY {
            self.expiry
                .remove(&(Instant::from_nanos(e.expires_nanos()), Box::from(key)));
        }
        if forget && e.persisted() {
            self.out
                .push_back(StoreOutput::Forget(Bytes::copy_from_slice(key)));
        }
        Some(e)
    }

    fn notify(&mut self, key: &[u8], payload: &NotifyPayload, version: &Hlc) {
        if self.watch.watchers(key).next().is_none() {
            return;
        }
        let fanout = envelope::NotificationFanout::new(key, version, payload);
        for client in self.watch.watchers(key) {
            self.out
                .push_back(StoreOutput::Publish(fanout.message_for(client)));
            self.stats.notifications += 1;
        }
    }

    /// A DELETE notification carries a fresh version: the key's state after the change.
    fn notify_delete(&mut self, key: &[u8], now: Now) {
        if self.watch.watchers(key).next().is_none() {
            return;
        }
        let v = self.clock.next(now.wall_ms);
        let version = self.hlc(v);
        self.notify(key, &NotifyPayload::Delete, &version);
    }

    /// Parses an incoming `__ts` / `__ft`; `None` means malformed.
    fn parse_stamp(raw: &Bytes) -> Option<Hlc> {
        Hlc::parse(raw).ok().filter(|h| h.counter <= MAX_COUNTER)
    }

    fn too_far_ahead(&self, h: &Hlc, wall_ms: u64) -> bool {
        h.millis.saturating_sub(wall_ms) > self.config.max_skew_ms
    }

    /// Runs a request; the flag says whether its reply may be replayed to a redelivery (GETs are
    /// simply run again).
    fn execute(&mut self, req: &IncomingRequest, now: Now) -> (Outcome, bool) {
        let request = match Request::parse(&req.payload, &self.config.limits) {
            Ok(r) => r,
            Err(e) => return (Outcome::error(reply::parse_error(e)), true),
        };
        let is_set = matches!(request, Request::Set { .. });
        let mutating = is_set || matches!(request, Request::Del { .. } | Request::Vdel { .. });
        let ts = match &req.timestamp {
            None if is_set => return (Outcome::error(ServiceError::TimestampMissing), true),
            None => None,
            Some(raw) => match Self::parse_stamp(raw) {
                Some(h) => Some(h),
                None => return (Outcome::error(ServiceError::TimestampMalformed), true),
            },
        };
        if ts
            .as_ref()
            .is_some_and(|h| self.too_far_ahead(h, now.wall_ms))
        {
            return (Outcome::error(ServiceError::TimestampSkew), true);
        }
        let ft = match (&req.fencing_token, mutating) {
            (Some(raw), true) => match Self::parse_stamp(raw) {
                Some(h) if self.too_far_ahead(&h, now.wall_ms) => {
                    return (Outcome::error(ServiceError::FencingTokenSkew), true)
                }
                Some(h) => Some(h),
                None => return (Outcome::error(ServiceError::TimestampMalformed), true),
            },
            _ => None,
        };
        if mutating {
            if let Some(h) = &ts {
                self.clock.observe_hlc(h);
            }
            if let Some(h) = &ft {
                self.clock.observe_hlc(h);
            }
        }
        let outcome = match request {
            Request::Set {
                key,
                value,
                condition,
                px_ms,
            } => self.set(key, value, condition, px_ms, ft, req.persist, now),
            Request::Get { key } => return (self.get_reply(&key), false),
            Request::Del { key } => self.delete(key, None, ft.as_ref()),
            Request::Vdel { key, value } => self.delete(key, Some(&value), ft.as_ref()),
            Request::KeyNotify { key } => self.keynotify(&req.source_id, &key),
            Request::KeyNotifyStop { key } => {
                if self.watch.remove(&req.source_id, &key) {
                    Outcome::fixed(reply::OK, None)
                } else {
                    Outcome::fixed(reply::ZERO, None)
                }
            }
        };
        (outcome, true)
    }

    /// The deadline of a key written at `now` with `PX ms`: `None` when `ms` is above
    /// [`MAX_PX_MS`] or the deadline would reach the "no expiry" marker.
    fn deadline(now: Instant, ms: u64) -> Option<Instant> {
        if ms > MAX_PX_MS {
            return None;
        }
        let nanos = now.as_nanos().checked_add(ms.checked_mul(1_000_000)?)?;
        (nanos != NO_EXPIRY).then_some(Instant::from_nanos(nanos))
    }

    /// Fencing rule (docs/protocol.md §8.2, steps 2–4) for a key that exists.
    fn fencing_refusal(e: &Entry, ft: Option<&Hlc>) -> Option<ServiceError> {
        let stored = e.fence()?;
        match ft {
            None => Some(ServiceError::MissingFencingToken),
            Some(f) if f < stored => Some(ServiceError::FencingTokenLowerVersion),
            Some(_) => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        px_ms: Option<u64>,
        ft: Option<Hlc>,
        persist: bool,
        now: Now,
    ) -> Outcome {
        let persist = persist || (self.config.persist_expiring && px_ms.is_some());
        // A deadline the monotonic clock cannot represent would read as "no expiry".
        let expires = match px_ms {
            None => None,
            Some(ms) => match Self::deadline(now.mono, ms) {
                Some(at) => Some(at),
                None => return Outcome::error(ServiceError::SyntaxError),
            },
        };
        let mut fence = ft;
        // (data length, expiry, persisted) of the key being replaced.
        let mut old: Option<(usize, u64, bool)> = None;
        if let Some(e) = self.keys.get(&key) {
            if let Some(refusal) = Self::fencing_refusal(e, fence.as_ref()) {
                return Outcome::error(refusal);
            }
            let holds = match condition {
                SetCondition::NotExists => false,
                SetCondition::NotExistsOrEqual => e.value() == &value[..],
                _ => true,
            };
            if !holds {
                return Outcome::fixed(reply::NOT_APPLIED, Some(e.version()));
            }
            // Keep the larger of the stored token and the request's.
            if let Some(stored) = e.fence() {
                if fence.as_ref().is_none_or(|f| f < stored) {
                    fence = Some(stored.clone());
                }
            }
            old = Some((e.data_len(), e.expires_nanos(), e.persisted()));
        }
        let old_len = old.map_or(0, |o| o.0);
        let new_len = key.len() + value.len();
        if key.len() > self.config.max_key_len
            || value.len() > self.config.max_value_len
            || (old.is_none() && self.keys.len() >= self.config.max_keys)
            || self.data_bytes - old_len + new_len > self.config.max_data_bytes
        {
            return Outcome::error(ServiceError::QuotaExceeded);
        }
        let version = self.clock.next(now.wall_ms);
        if let Some((_, old_at, _)) = old {
            if old_at != NO_EXPIRY {
                self.expiry
                    .remove(&(Instant::from_nanos(old_at), Box::from(&key[..])));
            }
        }
        // Redis semantics: a SET without PX clears an earlier TTL.
        let expires_nanos = expires.map_or(NO_EXPIRY, Instant::as_nanos);
        match self.keys.get_mut(&key) {
            Some(e) => {
                e.set_value(&value);
                e.set_version(version);
                e.set_expiry_and_fence(expires_nanos, fence.clone());
                e.set_persisted(persist);
            }
            None => {
                let mut e = Entry::new(&key, &value, version);
                e.set_expiry_and_fence(expires_nanos, fence.clone());
                e.set_persisted(persist);
                self.keys.insert_new(e);
            }
        }
        self.data_bytes = self.data_bytes - old_len + new_len;
        if let Some(at) = expires {
            self.expiry.insert((at, Box::from(&key[..])));
        }
        if persist {
            self.out.push_back(StoreOutput::Persist(PersistedKey {
                key: Bytes::copy_from_slice(&key),
                value: Bytes::copy_from_slice(&value),
                version: self.hlc(version),
                fencing_token: fence,
                expires_at_wall_ms: px_ms.map(|ms| now.wall_ms.saturating_add(ms)),
            }));
        } else if old.is_some_and(|o| o.2) {
            self.out
                .push_back(StoreOutput::Forget(Bytes::copy_from_slice(&key)));
        }
        let change = if self.watch.watchers(&key).next().is_some() {
            Some(Change::Set {
                key: Bytes::copy_from_slice(&key),
                value: Bytes::copy_from_slice(&value),
            })
        } else {
            None
        };
        Outcome {
            payload: Bytes::from_static(reply::OK),
            version: Some(version),
            change,
        }
    }

    fn get_reply(&self, key: &[u8]) -> Outcome {
        match self.keys.get(key) {
            Some(e) => Outcome {
                payload: reply::blob(e.value()),
                version: Some(e.version()),
                change: None,
            },
            None => Outcome::fixed(reply::NIL, None),
        }
    }

    /// DEL (`expected == None`) and VDEL.
    fn delete(&mut self, key: Bytes, expected: Option<&Bytes>, ft: Option<&Hlc>) -> Outcome {
        let Some(e) = self.keys.get(&key) else {
            return Outcome::fixed(reply::ZERO, None);
        };
        if let Some(refusal) = Self::fencing_refusal(e, ft) {
            return Outcome::error(refusal);
        }
        if expected.is_some_and(|v| e.value() != &v[..]) {
            return Outcome::fixed(reply::NOT_APPLIED, None);
        }
        let version = e.version();
        self.remove_key(&key, true);
        Outcome {
            payload: Bytes::from_static(reply::ONE),
            version: Some(version),
            change: Some(Change::Delete {
                key: Bytes::copy_from_slice(&key),
            }),
        }
    }

    fn keynotify(&mut self, client: &[u8], key: &[u8]) -> Outcome {
        if key.len() > self.config.max_key_len {
            return Outcome::error(ServiceError::QuotaExceeded);
        }
        match self.watch.add(client, key, self.config.max_registrations) {
            Added::OverQuota => Outcome::error(ServiceError::QuotaExceeded),
            Added::New | Added::AlreadyPresent => Outcome::fixed(reply::OK, None),
        }
    }
}
