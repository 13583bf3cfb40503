//! Packet identifiers shared by outgoing QoS 1 publishes, SUBSCRIBE and UNSUBSCRIBE.

use alloc::collections::BTreeSet;

/// Hands out non-zero packet ids that are not in use, round robin, so a late acknowledgement
/// for an id that was just freed is unlikely to match a new packet.
#[derive(Debug, Default)]
pub(crate) struct PacketIds {
    last: u16,
    used: BTreeSet<u16>,
}

impl PacketIds {
    /// A free id, now marked used; `None` when all 65 535 are in use.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        if self.used.len() >= usize::from(u16::MAX) {
            return None;
        }
        let mut candidate = self.last;
        loop {
            candidate = candidate.checked_add(1).unwrap_or(1);
            if self.used.insert(candidate) {
                self.last = candidate;
                return Some(candidate);
            }
        }
    }

    /// Frees an id.
    pub(crate) fn release(&mut self, id: u16) {
        self.used.remove(&id);
    }

    /// Frees every id.
    pub(crate) fn clear(&mut self) {
        self.used.clear();
    }

    /// Number of ids in use.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_zero_unique_and_wrap() {
        let mut ids = PacketIds::default();
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), Some(2));
        ids.release(1);
        assert_eq!(ids.allocate(), Some(3));
        ids.last = u16::MAX - 1;
        assert_eq!(ids.allocate(), Some(u16::MAX));
        // Wraps past 0 and skips 2 and 3, still in use.
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), Some(4));
        assert_eq!(ids.in_use(), 5);
    }

    #[test]
    fn exhaustion_is_reported() {
        let mut ids = PacketIds::default();
        for _ in 0..u16::MAX {
            assert!(ids.allocate().is_some());
        }
        assert_eq!(ids.allocate(), None);
        ids.release(500);
        assert_eq!(ids.allocate(), Some(500));
        ids.clear();
        assert_eq!(ids.in_use(), 0);
    }
}
