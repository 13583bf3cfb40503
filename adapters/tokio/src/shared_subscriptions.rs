//! Which SUBACKs answer leasedlock's SUBSCRIBEs on an MQTT client the application shares.
//!
//! rumqttc reports a written SUBSCRIBE only as `Outgoing::Subscribe(pkid)` and its SUBACK only
//! by packet id and reason codes, never with the filters. On a client of our own the SUBSCRIBEs
//! are written in the order we queued them; on the application's client its own SUBSCRIBEs
//! share the queue, so a written packet id may be either party's. Every packet id written while
//! one of ours waits is therefore only a candidate, and a SUBACK for a candidate is ours when
//! it fits our oldest waiting SUBSCRIBE: one reason code per filter (MQTT 5 requires exactly
//! that), and no QoS granted above the QoS 1 we asked for. Filters are grouped into one
//! SUBSCRIBE, so the usual pair (response topic and notification filter) needs a two-code
//! SUBACK.
//!
//! What cannot be told apart: an application SUBSCRIBE with the same number of filters, at
//! QoS 0 or 1, queued in the same moment as ours. Its SUBACK may then be taken for ours (and
//! ours for nothing). A granted one makes the engine send requests a moment before its own
//! SUBACK arrives, which the broker still handles in order; a refused one fails requests with
//! `SubscriptionRefused` until the next connection.
//!
//! rumqttc forgets a SUBSCRIBE that was written but not acknowledged when the connection drops,
//! and drops the unwritten ones when the next session is new. Every SUBSCRIBE of ours still
//! waiting at a disconnect is therefore redone after the next CONNACK, unless the engine
//! subscribes the same filter again by itself. Subscribing twice to a filter is harmless: the
//! broker replaces the subscription.

use std::collections::VecDeque;

use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
use rumqttc::v5::mqttbytes::QoS as MqttQoS;

/// How many written packet ids are remembered while a SUBSCRIBE of ours waits; an application
/// subscribing faster than the broker answers only pushes out its own, older candidates.
const MAX_CANDIDATES: usize = 256;

/// Tracks leasedlock's SUBSCRIBEs on a shared client.
#[derive(Debug, Default)]
pub(crate) struct SharedSubscriptions {
    connected: bool,
    /// Our SUBSCRIBEs (their filters) not yet acknowledged, in the order they were queued.
    waiting: VecDeque<Vec<String>>,
    /// Packet ids of SUBSCRIBEs written since our oldest waiting one was queued.
    candidates: VecDeque<u16>,
    /// Our filters to subscribe again after the next CONNACK.
    lost: Vec<String>,
}

impl SharedSubscriptions {
    /// We want to SUBSCRIBE to `filters` (in one packet). Returns whether to queue it now;
    /// while disconnected the filters are kept for the next connection instead.
    pub(crate) fn queue(&mut self, filters: &[String]) -> bool {
        if filters.is_empty() {
            return false;
        }
        if !self.connected {
            self.lost.extend(filters.iter().cloned());
            return false;
        }
        self.waiting.push_back(filters.to_vec());
        true
    }

    /// rumqttc wrote a SUBSCRIBE with this packet id, ours or the application's.
    pub(crate) fn on_written(&mut self, pkid: u16) {
        if self.waiting.is_empty() {
            return;
        }
        if self.candidates.len() == MAX_CANDIDATES {
            self.candidates.pop_front();
        }
        self.candidates.push_back(pkid);
    }

    /// A SUBACK arrived. When it answers our oldest waiting SUBSCRIBE, returns each of its
    /// filters with whether it was granted; otherwise (the application's) `None`.
    pub(crate) fn on_suback(
        &mut self,
        pkid: u16,
        codes: &[SubscribeReasonCode],
    ) -> Option<Vec<(String, bool)>> {
        let at = self.candidates.iter().position(|p| *p == pkid)?;
        self.candidates.remove(at);
        let fits = self.waiting.front().is_some_and(|ours| {
            ours.len() == codes.len()
                && !codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Success(MqttQoS::ExactlyOnce)))
        });
        if !fits {
            return None;
        }
        let filters = self.waiting.pop_front()?;
        if self.waiting.is_empty() {
            self.candidates.clear();
        }
        Some(
            filters
                .into_iter()
                .zip(codes)
                .map(|(f, c)| (f, matches!(c, SubscribeReasonCode::Success(_))))
                .collect(),
        )
    }

    /// The connection dropped: every SUBSCRIBE of ours still waiting may be lost.
    pub(crate) fn on_disconnected(&mut self) {
        self.connected = false;
        self.lost.extend(self.waiting.drain(..).flatten());
        self.candidates.clear();
    }

    /// A CONNACK arrived: SUBSCRIBEs go out again.
    pub(crate) fn on_connected(&mut self) {
        self.connected = true;
    }

    /// After the engine had its say on a new connection: the lost filters it did not subscribe
    /// again by itself, each once, to go out in one SUBSCRIBE.
    pub(crate) fn take_lost(&mut self) -> Vec<String> {
        let mut redo: Vec<String> = Vec::new();
        for filter in std::mem::take(&mut self.lost) {
            let pending = self.waiting.iter().flatten().any(|f| *f == filter);
            if !pending && !redo.contains(&filter) {
                redo.push(filter);
            }
        }
        redo
    }

    /// Whether the connection is up as far as these subscriptions know.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GRANTED: SubscribeReasonCode = SubscribeReasonCode::Success(MqttQoS::AtLeastOnce);
    const REFUSED: SubscribeReasonCode = SubscribeReasonCode::NotAuthorized;

    fn ours() -> Vec<String> {
        vec!["clients/me/resp".to_string(), "notify/+".to_string()]
    }

    fn connected() -> SharedSubscriptions {
        let mut s = SharedSubscriptions::default();
        s.on_connected();
        s
    }

    #[test]
    fn our_suback_is_found_among_the_applications() {
        let mut s = connected();
        assert!(s.queue(&ours()));
        // The application's one-filter SUBSCRIBE was queued before ours and is written first.
        s.on_written(1);
        s.on_written(2);
        assert_eq!(s.on_suback(1, &[GRANTED]), None, "one code: not ours");
        assert_eq!(
            s.on_suback(2, &[GRANTED, REFUSED]),
            Some(vec![
                ("clients/me/resp".to_string(), true),
                ("notify/+".to_string(), false)
            ])
        );
        // Nothing of ours waits: later SUBSCRIBEs are the application's alone.
        s.on_written(3);
        assert_eq!(s.on_suback(3, &[GRANTED, GRANTED]), None);
    }

    #[test]
    fn a_qos_2_grant_is_not_ours() {
        let mut s = connected();
        s.queue(&ours());
        s.on_written(4);
        s.on_written(5);
        let two = SubscribeReasonCode::Success(MqttQoS::ExactlyOnce);
        assert_eq!(s.on_suback(4, &[two, GRANTED]), None);
        assert!(s.on_suback(5, &[GRANTED, GRANTED]).is_some());
    }

    #[test]
    fn subacks_of_packets_written_before_ours_was_queued_are_not_ours() {
        let mut s = connected();
        s.on_written(7);
        s.queue(&ours());
        assert_eq!(s.on_suback(7, &[GRANTED, GRANTED]), None);
    }

    #[test]
    fn waiting_subscribes_are_redone_after_a_reconnect_unless_the_engine_redoes_them() {
        let mut s = connected();
        s.queue(&ours());
        s.queue(&["late".to_string()]);
        s.on_written(9);
        s.on_disconnected();
        assert!(!s.is_connected());
        // A SUBACK of the old connection means nothing any more.
        assert_eq!(s.on_suback(9, &[GRANTED, GRANTED]), None);
        // While disconnected a SUBSCRIBE waits for the connection.
        assert!(!s.queue(&["offline".to_string()]));
        s.on_connected();
        // The engine subscribes its pair again by itself.
        assert!(s.queue(&ours()));
        assert_eq!(
            s.take_lost(),
            vec!["late".to_string(), "offline".to_string()]
        );
        assert!(s.take_lost().is_empty());
    }

    proptest! {
        /// Whatever the application subscribes in between (never two filters, so always
        /// distinguishable), each of our SUBSCRIBEs gets exactly its own SUBACK, in order, and
        /// every application SUBACK is left to the application.
        #[test]
        fn interleaved_application_subscribes_never_confuse_ours(
            plan in proptest::collection::vec((any::<bool>(), 1usize..4), 1..40),
        ) {
            let mut s = connected();
            let mut pkid = 0u16;
            // (pkid, codes, ours?) in write order.
            let mut written: Vec<(u16, usize, Option<usize>)> = Vec::new();
            let mut our_groups = 0usize;
            for (is_ours, n) in plan {
                pkid += 1;
                if is_ours {
                    prop_assert!(s.queue(&ours()));
                    written.push((pkid, 2, Some(our_groups)));
                    our_groups += 1;
                } else {
                    let n = if n == 2 { 3 } else { n };
                    written.push((pkid, n, None));
                }
            }
            for (p, _, _) in &written {
                s.on_written(*p);
            }
            let mut matched = 0usize;
            for (p, n, owner) in written {
                let got = s.on_suback(p, &vec![GRANTED; n]);
                prop_assert_eq!(got.is_some(), owner.is_some());
                if owner.is_some() {
                    matched += 1;
                }
            }
            prop_assert_eq!(matched, our_groups);
        }
    }
}
