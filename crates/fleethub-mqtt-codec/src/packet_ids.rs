//! Packet identifier allocation for the sending side of QoS 1 exchanges.

/// Hands out packet identifiers 1..=65535 in order, wrapping from 65535 back to 1 and skipping
/// identifiers the caller still has in flight (MQTT-2.3.1-2: an identifier is reusable only
/// once its exchange is complete).
#[derive(Debug, Clone, Default)]
pub struct PacketIds {
    last: u16,
}

impl PacketIds {
    /// Starts before 1 (the first identifier handed out is 1).
    pub fn new() -> Self {
        PacketIds::default()
    }

    /// The next identifier after the last one handed out for which `in_use` is false.
    ///
    /// When all 65535 are in use (in-flight windows are far smaller in practice), the next
    /// identifier in order is returned anyway.
    pub fn next(&mut self, in_use: impl Fn(u16) -> bool) -> u16 {
        let start = self.step();
        let mut id = start;
        while in_use(id) {
            id = self.step();
            if id == start {
                break;
            }
        }
        id
    }

    /// The next identifier in order, ignoring what is in flight (for callers that track none).
    pub fn next_unchecked(&mut self) -> u16 {
        self.step()
    }

    fn step(&mut self) -> u16 {
        self.last = self.last.wrapping_add(1).max(1);
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn counts_from_one_and_wraps_past_zero() {
        let mut ids = PacketIds::new();
        assert_eq!(ids.next(|_| false), 1);
        assert_eq!(ids.next(|_| false), 2);
        let mut ids = PacketIds { last: 65534 };
        assert_eq!(ids.next_unchecked(), 65535);
        assert_eq!(ids.next_unchecked(), 1, "0 is never handed out");
    }

    #[test]
    fn skips_ids_in_flight() {
        let busy: HashSet<u16> = [2, 3, 65535, 1].into_iter().collect();
        let mut ids = PacketIds::new();
        assert_eq!(ids.next(|id| busy.contains(&id)), 4);
        let mut ids = PacketIds { last: 65533 };
        assert_eq!(ids.next(|id| busy.contains(&id)), 65534);
        assert_eq!(
            ids.next(|id| busy.contains(&id)),
            4,
            "wraps and skips 65535, 1, 2, 3"
        );
    }

    #[test]
    fn all_in_use_still_terminates() {
        let mut ids = PacketIds { last: 9 };
        assert_eq!(ids.next(|_| true), 10);
        assert_eq!(ids.next(|_| true), 11);
    }
}
