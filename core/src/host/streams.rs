//! Observation streams of keys: the core's [`Watches`] decides when a key is registered,
//! stopped or re-read and which changes are news; this keeps which streams observe which key
//! and turns the decisions into outputs for them.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use bytes::Bytes;

use super::{HostOutput, StreamId};
use crate::client::RequestError;
use crate::hlc::Hlc;
use crate::observe::{Action, Registration, Watches};

/// A request the host must send for the streams.
#[derive(Debug)]
pub(super) enum Send {
    /// KEYNOTIFY for the key; report its end with [`Streams::registered`].
    Register(Bytes),
    /// KEYNOTIFY STOP for the key.
    Unregister(Bytes),
    /// GET the key; report the reply with [`Streams::resynced`].
    Resync(Bytes),
}

/// Every observed key and its streams.
#[derive(Debug, Default)]
pub(super) struct Streams {
    watches: Watches,
    by_key: BTreeMap<Bytes, BTreeSet<StreamId>>,
}

impl Streams {
    pub(super) fn add(&mut self, key: Bytes, stream: StreamId) {
        self.by_key.entry(key.clone()).or_default().insert(stream);
        self.watches.subscribe(key, stream.0);
    }

    pub(super) fn remove(&mut self, key: &Bytes, stream: StreamId) {
        self.forget(key, stream);
        self.watches.unsubscribe(key, stream.0);
    }

    pub(super) fn registered(&mut self, key: &Bytes, ok: bool) {
        let outcome = if ok {
            Registration::Done
        } else {
            Registration::Failed
        };
        self.watches.registered(key, outcome);
    }

    pub(super) fn not_sent(&mut self, key: &Bytes) {
        self.watches.registered(key, Registration::NotSent);
    }

    pub(super) fn notification(&mut self, key: &Bytes, value: Option<Bytes>, version: Hlc) {
        self.watches.notification(key, value, version);
    }

    pub(super) fn reregistered(&mut self, key: &Bytes, ok: bool) {
        self.watches.reregistered(key, ok);
    }

    pub(super) fn resynced(&mut self, key: &Bytes, value: Option<Bytes>, version: Option<Hlc>) {
        self.watches.resynced(key, value, version);
    }

    pub(super) fn len(&self) -> usize {
        self.watches.len()
    }

    fn forget(&mut self, key: &Bytes, stream: StreamId) {
        if let Some(set) = self.by_key.get_mut(key) {
            set.remove(&stream);
            if set.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    fn each(&self, key: &Bytes) -> impl Iterator<Item = StreamId> + '_ {
        self.by_key.get(key).into_iter().flatten().copied()
    }

    /// Turns the pending decisions into outputs until one needs a request; returns it.
    /// `failure`: the key whose registration just failed, and why.
    pub(super) fn next_send(
        &mut self,
        outputs: &mut VecDeque<HostOutput>,
        failure: Option<&(Bytes, RequestError)>,
    ) -> Option<Send> {
        while let Some(action) = self.watches.poll_action() {
            match action {
                Action::Register { key } => return Some(Send::Register(key)),
                Action::Unregister { key } => {
                    self.by_key.remove(&key);
                    return Some(Send::Unregister(key));
                }
                Action::Resync { key } => return Some(Send::Resync(key)),
                Action::Ready { subscriber, .. } => outputs.push_back(HostOutput::Observed {
                    stream: StreamId(subscriber),
                    result: Ok(()),
                }),
                Action::Failed { key, subscriber } => {
                    let stream = StreamId(subscriber);
                    self.forget(&key, stream);
                    let error = failure
                        .filter(|(k, _)| *k == key)
                        .map(|(_, e)| e.clone())
                        .unwrap_or(RequestError::Unknown);
                    outputs.push_back(HostOutput::Observed {
                        stream,
                        result: Err(error),
                    });
                }
                Action::MayHaveMissed { key } => {
                    for stream in self.each(&key) {
                        outputs.push_back(HostOutput::KeyMayHaveMissed {
                            stream,
                            key: key.clone(),
                        });
                    }
                }
                Action::Deliver { key, change } => {
                    for stream in self.each(&key) {
                        outputs.push_back(HostOutput::KeyChange {
                            stream,
                            key: key.clone(),
                            change: change.clone(),
                        });
                    }
                }
            }
        }
        None
    }
}
