//! Test support for the lease machines: a recording fake [`Requester`] and builders for
//! completions and notifications, so the machines are tested without the real client.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::client::{Completion, Notification, RequestError, RequestId, RequestOptions, Requester};
use crate::command::{Request, RequestKind, Response, SetOutcome, VdelOutcome};
use crate::hlc::Hlc;
use crate::time::{Instant, Now};

/// Which `Requester` method was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Request,
    Observe,
    Unobserve,
}

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: RequestId,
    pub call: Call,
    pub kind: RequestKind,
    pub request: Option<Request>,
    pub key: Bytes,
    pub options: RequestOptions,
    pub at: Now,
}

impl Sent {
    /// The SET/VDEL value, if any.
    pub fn value(&self) -> Option<&Bytes> {
        match &self.request {
            Some(Request::Set { value, .. }) | Some(Request::Vdel { value, .. }) => Some(value),
            _ => None,
        }
    }
    /// The SET PX, if any.
    pub fn px(&self) -> Option<u64> {
        match &self.request {
            Some(Request::Set { px_ms, .. }) => *px_ms,
            _ => None,
        }
    }
    /// A completion for this request.
    pub fn reply(
        &self,
        result: Result<Response, RequestError>,
        version: Option<Hlc>,
    ) -> Completion {
        Completion {
            id: self.id,
            kind: self.kind,
            sent_at: Some(self.at.mono),
            result,
            version,
        }
    }
}

/// A recording requester. `fail_next` makes the next call fail synchronously.
#[derive(Debug, Default)]
pub struct FakeRequester {
    pub client_id: String,
    pub log: Vec<Sent>,
    pub open: Vec<RequestId>,
    pub fail_next: Option<RequestError>,
    next: u64,
}

fn kind_and_key(request: &Request) -> (RequestKind, Bytes) {
    match request {
        Request::Set { key, .. } => (RequestKind::Set, key.clone()),
        Request::Get { key } => (RequestKind::Get, key.clone()),
        Request::Del { key } => (RequestKind::Del, key.clone()),
        Request::Vdel { key, .. } => (RequestKind::Vdel, key.clone()),
        Request::KeyNotify { key } => (RequestKind::KeyNotify, key.clone()),
        Request::KeyNotifyStop { key } => (RequestKind::KeyNotifyStop, key.clone()),
    }
}

impl FakeRequester {
    pub fn new(client_id: &str) -> Self {
        FakeRequester {
            client_id: String::from(client_id),
            ..Default::default()
        }
    }

    fn record(
        &mut self,
        call: Call,
        kind: RequestKind,
        request: Option<Request>,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        if let Some(e) = self.fail_next.take() {
            return Err(e);
        }
        self.next += 1;
        let id = RequestId(self.next);
        self.open.push(id);
        self.log.push(Sent {
            id,
            call,
            kind,
            request,
            key,
            options,
            at: now,
        });
        Ok(id)
    }

    /// The last call.
    pub fn last(&self) -> Sent {
        self.log.last().cloned().expect("no request was made")
    }

    /// The last call of `kind`.
    pub fn last_of(&self, kind: RequestKind) -> Sent {
        self.log
            .iter()
            .rev()
            .find(|s| s.kind == kind)
            .cloned()
            .expect("no request of that kind")
    }

    /// Calls of `kind` so far.
    pub fn count(&self, kind: RequestKind) -> usize {
        self.log.iter().filter(|s| s.kind == kind).count()
    }

    /// Open (unanswered) requests.
    pub fn open_sent(&self) -> Vec<Sent> {
        self.log
            .iter()
            .filter(|s| self.open.contains(&s.id))
            .cloned()
            .collect()
    }

    /// Marks `id` answered and builds its completion.
    pub fn answer(
        &mut self,
        id: RequestId,
        result: Result<Response, RequestError>,
        version: Option<Hlc>,
    ) -> Completion {
        self.open.retain(|x| *x != id);
        let sent = self
            .log
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .expect("unknown request id");
        sent.reply(result, version)
    }
}

impl Requester for FakeRequester {
    fn request(
        &mut self,
        request: Request,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        let (kind, key) = kind_and_key(&request);
        self.record(Call::Request, kind, Some(request), key, options, now)
    }

    fn observe(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        self.record(
            Call::Observe,
            RequestKind::KeyNotify,
            None,
            key,
            options,
            now,
        )
    }

    fn unobserve(
        &mut self,
        key: Bytes,
        options: RequestOptions,
        now: Now,
    ) -> Result<RequestId, RequestError> {
        self.record(
            Call::Unobserve,
            RequestKind::KeyNotifyStop,
            None,
            key,
            options,
            now,
        )
    }

    fn client_id(&self) -> &str {
        &self.client_id
    }
}

/// `now` at `ms` milliseconds on both clocks.
pub fn at(ms: u64) -> Now {
    Now::new(Instant::from_millis(ms), 1_700_000_000_000 + ms)
}

/// The time input at the monotonic instant `mono`, with the wall clock consistent with [`at`].
pub fn at_mono(mono: Instant) -> Now {
    Now::new(mono, 1_700_000_000_000 + mono.as_nanos() / 1_000_000)
}

/// A fencing token.
pub fn tok(n: u64) -> Hlc {
    Hlc::new(1_700_000_000_000 + n, 0, "store").expect("valid HLC")
}

/// SET `+OK` result.
pub fn ok_set() -> Result<Response, RequestError> {
    Ok(Response::Set(SetOutcome::Applied))
}

/// SET `:-1` result.
pub fn refused_set() -> Result<Response, RequestError> {
    Ok(Response::Set(SetOutcome::NotApplied))
}

/// VDEL result.
pub fn vdel(outcome: VdelOutcome) -> Result<Response, RequestError> {
    Ok(Response::Vdel(outcome))
}

/// GET result.
pub fn get(value: Option<&'static [u8]>) -> Result<Response, RequestError> {
    Ok(Response::Get(value.map(Bytes::from_static)))
}

/// A SET notification.
pub fn note_set(key: &'static [u8], value: &'static [u8], version: Hlc) -> Notification {
    Notification {
        key: Bytes::from_static(key),
        value: Some(Bytes::from_static(value)),
        version,
    }
}

/// A DELETE notification.
pub fn note_del(key: &'static [u8], version: Hlc) -> Notification {
    Notification {
        key: Bytes::from_static(key),
        value: None,
        version,
    }
}
