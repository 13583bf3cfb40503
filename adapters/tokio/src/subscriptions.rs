//! Which SUBSCRIBE a SUBACK answers, across reconnects.
//!
//! rumqttc reports a SUBSCRIBE as `Outgoing::Subscribe(pkid)` when it writes it and the SUBACK
//! only by packet id, so the filter has to be remembered in send order. rumqttc also forgets
//! SUBSCRIBEs that were written but not acknowledged when the connection drops, and it clears
//! its queue of unsent requests on a CONNACK without a session. The driver therefore never
//! leaves SUBSCRIBE/UNSUBSCRIBE requests queued inside rumqttc across a connection loss: it
//! purges them and keeps them here, deferred until the next CONNACK, so the core is told about
//! every subscription it asked for exactly when the broker confirmed it.

use std::collections::{HashMap, VecDeque};

/// A subscription change the core asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubOp {
    /// SUBSCRIBE to the filter at QoS 1.
    Subscribe(String),
    /// UNSUBSCRIBE from the filter.
    Unsubscribe(String),
}

impl From<SubOp> for crate::outbox::Outbound {
    fn from(op: SubOp) -> Self {
        match op {
            SubOp::Subscribe(filter) => crate::outbox::Outbound::Subscribe(vec![filter]),
            SubOp::Unsubscribe(filter) => crate::outbox::Outbound::Unsubscribe(filter),
        }
    }
}

/// Tracks SUBSCRIBEs between the core's request and the broker's SUBACK.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    connected: bool,
    /// Handed to rumqttc, not yet written (no packet id yet), in order.
    unsent: VecDeque<String>,
    /// Written, waiting for the SUBACK.
    unacked: HashMap<u16, String>,
    /// To issue after the next CONNACK, in order.
    deferred: Vec<SubOp>,
}

impl Subscriptions {
    /// The core asked for `op`. Returns it when it must go to rumqttc now; while disconnected it
    /// is kept for the next connection instead.
    pub(crate) fn request(&mut self, op: SubOp) -> Option<SubOp> {
        if !self.connected {
            self.deferred.push(op);
            return None;
        }
        if let SubOp::Subscribe(filter) = &op {
            self.unsent.push_back(filter.clone());
        }
        Some(op)
    }

    /// rumqttc wrote a SUBSCRIBE with this packet id (`Outgoing::Subscribe`).
    pub(crate) fn on_sent(&mut self, pkid: u16) {
        if let Some(filter) = self.unsent.pop_front() {
            self.unacked.insert(pkid, filter);
        }
    }

    /// A SUBACK arrived: the filter it answers, if it answers one of ours.
    pub(crate) fn on_acked(&mut self, pkid: u16) -> Option<String> {
        self.unacked.remove(&pkid)
    }

    /// The connection dropped. `purged` are the SUBSCRIBE/UNSUBSCRIBE requests the driver removed
    /// from rumqttc's replay queue. Every subscription not yet acknowledged is deferred to the
    /// next connection.
    pub(crate) fn on_disconnected(&mut self, purged_unsubscribes: Vec<String>) {
        self.connected = false;
        let mut unacked: Vec<(u16, String)> = self.unacked.drain().collect();
        // Packet ids grow in send order (wrapping is irrelevant within one short window).
        unacked.sort_by_key(|(pkid, _)| *pkid);
        let mut redo: Vec<SubOp> = unacked
            .into_iter()
            .map(|(_, f)| SubOp::Subscribe(f))
            .chain(self.unsent.drain(..).map(SubOp::Subscribe))
            .chain(purged_unsubscribes.into_iter().map(SubOp::Unsubscribe))
            .collect();
        redo.append(&mut self.deferred);
        self.deferred = redo;
    }

    /// A CONNACK arrived: requests go straight to rumqttc again.
    pub(crate) fn on_connected(&mut self) {
        self.connected = true;
    }

    /// The deferred operations to issue now (call after the core had its say on the new
    /// connection). A SUBSCRIBE the core already re-issued on this connection is skipped.
    pub(crate) fn take_deferred(&mut self) -> Vec<SubOp> {
        let deferred = std::mem::take(&mut self.deferred);
        let mut out = Vec::with_capacity(deferred.len());
        for op in deferred {
            let duplicate = match &op {
                SubOp::Subscribe(f) => {
                    self.unsent.contains(f) || self.unacked.values().any(|u| u == f)
                }
                SubOp::Unsubscribe(_) => false,
            };
            if !duplicate {
                if let Some(op) = self.request(op) {
                    out.push(op);
                }
            }
        }
        out
    }

    /// Whether the driver currently considers the connection up.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(f: &str) -> SubOp {
        SubOp::Subscribe(f.to_string())
    }

    #[test]
    fn acks_map_to_filters_in_send_order() {
        let mut s = Subscriptions::default();
        s.on_connected();
        assert_eq!(s.request(sub("a")), Some(sub("a")));
        assert_eq!(s.request(sub("b")), Some(sub("b")));
        s.on_sent(5);
        s.on_sent(6);
        assert_eq!(s.on_acked(6).as_deref(), Some("b"));
        assert_eq!(s.on_acked(5).as_deref(), Some("a"));
        assert_eq!(s.on_acked(5), None, "a second SUBACK matches nothing");
    }

    #[test]
    fn requests_while_disconnected_wait_for_the_connection() {
        let mut s = Subscriptions::default();
        assert_eq!(s.request(sub("a")), None);
        s.on_connected();
        assert_eq!(s.take_deferred(), vec![sub("a")]);
        s.on_sent(1);
        assert_eq!(s.on_acked(1).as_deref(), Some("a"));
        assert!(s.take_deferred().is_empty());
    }

    #[test]
    fn unacknowledged_subscriptions_are_redone_once_after_reconnect() {
        let mut s = Subscriptions::default();
        s.on_connected();
        s.request(sub("sent"));
        s.request(sub("queued"));
        s.on_sent(1);
        s.on_disconnected(vec!["gone".to_string()]);
        assert!(!s.is_connected());
        s.on_connected();
        // The core re-subscribes "sent" by itself on the new connection: not sent twice.
        assert_eq!(s.request(sub("sent")), Some(sub("sent")));
        assert_eq!(
            s.take_deferred(),
            vec![sub("queued"), SubOp::Unsubscribe("gone".to_string())]
        );
        s.on_sent(2);
        s.on_sent(3);
        assert_eq!(s.on_acked(2).as_deref(), Some("sent"));
        assert_eq!(s.on_acked(3).as_deref(), Some("queued"));
        // The ack of the old connection's packet id no longer means anything.
        assert_eq!(s.on_acked(1), None);
    }
}
