//! The channels of key observation streams. Which streams observe which key, when a key is
//! registered, stopped or re-read and which changes are news is the core host's; this hands
//! its outputs to the streams' channels and reports streams found gone.

use std::collections::HashMap;

use async_channel::TrySendError;
use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::client::RequestError;
use leasedlock_core::host::StreamId;
use leasedlock_core::observe::Change;

use crate::error::{ObserveError, StoreError};
use crate::view::KeyChange;

/// What a stream receives.
pub(crate) type Item = Result<KeyChange, ObserveError>;

/// One observation stream.
#[derive(Debug)]
struct Subscriber {
    key: Bytes,
    tx: async_channel::Sender<Item>,
    /// Items dropped because the stream's buffer was full; reported before the next one.
    missed: u64,
    /// The `observe()` call still waiting for the registration's outcome.
    reply: Option<oneshot::Sender<Result<(), StoreError>>>,
}

impl Subscriber {
    /// Sends `item` after any pending `Lagged` report; `false` when the stream is gone. A
    /// full buffer counts the item as missed.
    fn send(&mut self, item: Item) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        if self.missed > 0 {
            match self.tx.try_send(Err(ObserveError::Lagged {
                missed: self.missed,
            })) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed = self.missed.saturating_add(1);
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.missed = self.missed.saturating_add(1);
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// Every observation stream's channel, by stream id.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    streams: HashMap<StreamId, Subscriber>,
}

impl Fanout {
    /// A new stream of `key`; `reply` is answered once the host reports the registration.
    pub(crate) fn add(
        &mut self,
        stream: StreamId,
        key: Bytes,
        tx: async_channel::Sender<Item>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    ) {
        self.streams.insert(
            stream,
            Subscriber {
                key,
                tx,
                missed: 0,
                reply: Some(reply),
            },
        );
    }

    /// The stream went away (its handle dropped it).
    pub(crate) fn remove(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
    }

    /// The host's answer to the stream's registration. Returns the key of a stream the host
    /// must forget: registered, but its caller stopped waiting.
    pub(crate) fn observed(
        &mut self,
        stream: StreamId,
        result: Result<(), RequestError>,
    ) -> Option<Bytes> {
        match result {
            Ok(()) => {
                let s = self.streams.get_mut(&stream)?;
                let gave_up = s.reply.take().is_some_and(|r| r.send(Ok(())).is_err());
                gave_up.then(|| self.streams.remove(&stream).map(|s| s.key))?
            }
            Err(e) => {
                let reply = self.streams.remove(&stream).and_then(|s| s.reply);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(StoreError::from(e)));
                }
                None
            }
        }
    }

    /// The observation was refused (the connection is closing): the caller gets `Closed`.
    pub(crate) fn refused(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
    }

    /// A change for `stream`. Returns the key of a stream found gone.
    pub(crate) fn change(&mut self, stream: StreamId, key: Bytes, change: Change) -> Option<Bytes> {
        let item = Ok(KeyChange {
            key,
            value: change.value,
            version: change.version,
            resync: change.resync,
        });
        self.deliver(stream, item)
    }

    /// `stream` may have missed changes. Returns the key of a stream found gone.
    pub(crate) fn may_have_missed(&mut self, stream: StreamId) -> Option<Bytes> {
        self.deliver(stream, Err(ObserveError::MayHaveMissed))
    }

    fn deliver(&mut self, stream: StreamId, item: Item) -> Option<Bytes> {
        let s = self.streams.get_mut(&stream)?;
        if s.send(item) {
            return None;
        }
        self.streams.remove(&stream).map(|s| s.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use leasedlock_core::hlc::Hlc;

    fn change(ms: u64) -> Change {
        Change {
            value: Some(Bytes::from_static(b"v")),
            version: Some(Hlc::new(ms, 0, "n").unwrap()),
            resync: false,
        }
    }

    fn key() -> Bytes {
        Bytes::from_static(b"k")
    }

    #[test]
    fn a_full_buffer_is_reported_as_lagged_before_the_next_change() {
        block_on(async {
            let mut f = Fanout::default();
            let (tx, rx) = async_channel::bounded(1);
            let (r, w) = oneshot::channel();
            f.add(StreamId(1), key(), tx, r);
            assert_eq!(f.observed(StreamId(1), Ok(())), None);
            assert_eq!(w.await.unwrap(), Ok(()));
            assert_eq!(f.change(StreamId(1), key(), change(1)), None);
            // Full: these two are missed.
            assert_eq!(f.change(StreamId(1), key(), change(2)), None);
            assert_eq!(f.may_have_missed(StreamId(1)), None);
            assert!(rx.recv().await.unwrap().is_ok());
            assert_eq!(f.change(StreamId(1), key(), change(3)), None);
            assert_eq!(
                rx.recv().await.unwrap(),
                Err(ObserveError::Lagged { missed: 2 })
            );
        });
    }

    #[test]
    fn a_stream_found_gone_is_reported_with_its_key() {
        let mut f = Fanout::default();
        let (tx, rx) = async_channel::bounded(4);
        let (r, w) = oneshot::channel();
        f.add(StreamId(3), key(), tx, r);
        drop(w);
        // Registered, but the caller stopped waiting: the host must forget the stream.
        assert_eq!(f.observed(StreamId(3), Ok(())), Some(key()));
        let (tx, rx2) = async_channel::bounded(4);
        let (r, _w) = oneshot::channel();
        f.add(StreamId(4), key(), tx, r);
        drop(rx2);
        assert_eq!(f.change(StreamId(4), key(), change(1)), Some(key()));
        drop(rx);
    }

    #[test]
    fn a_failed_registration_answers_the_caller_with_the_cause() {
        block_on(async {
            let mut f = Fanout::default();
            let (tx, _rx) = async_channel::bounded(4);
            let (r, w) = oneshot::channel();
            f.add(StreamId(1), key(), tx, r);
            assert_eq!(f.observed(StreamId(1), Err(RequestError::Busy)), None);
            assert_eq!(w.await.unwrap(), Err(StoreError::Busy));
        });
    }
}
