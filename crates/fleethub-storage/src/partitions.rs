//! The partitioned telemetry log: which partition a device's messages go to, and what the
//! store reports about one partition. The hash is part of the data format: the same device id
//! must land in the same partition on every version and platform (docs/protocol-notes.md,
//! "Event Hub-compatible endpoint").

/// Partitions of a hub created without a `partition_count` setting (Azure's default).
pub const DEFAULT_PARTITION_COUNT: u32 = 4;
/// Most partitions a hub can have (Azure's IoT Hub limit).
pub const MAX_PARTITION_COUNT: u32 = 128;

/// The partition of a device's messages: 32-bit FNV-1a of the device id's UTF-8 bytes modulo
/// the partition count (the messages of a device's modules share the device's partition).
/// `partition_count` 0 is treated as 1.
#[must_use]
pub fn partition_of(device_id: &str, partition_count: u32) -> u32 {
    fnv1a32(device_id.as_bytes()) % partition_count.max(1)
}

/// 32-bit FNV-1a (offset basis 2166136261, prime 16777619).
#[must_use]
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// What the store knows about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSummary {
    pub partition: u32,
    /// The oldest per-partition sequence number still stored; -1 when nothing was ever
    /// stored, `last_sequence_number + 1` when retention removed everything.
    pub begin_sequence_number: i64,
    /// The newest per-partition sequence number ever assigned (kept when retention removes
    /// it); -1 when nothing was ever stored.
    pub last_sequence_number: i64,
    /// The global sequence number (the Event Hubs offset) of the newest message; 0 when
    /// nothing was ever stored.
    pub last_offset: u64,
    /// Enqueued time of the newest message, Unix milliseconds; 0 when nothing was ever stored.
    pub last_enqueued_utc_ms: i64,
    /// No message of this partition is stored (never was, or retention removed them all).
    pub is_empty: bool,
}

/// A consumer group of the built-in endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupRecord {
    pub name: String,
    /// Creation time in Azure's UTC format.
    pub created_utc: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_values() {
        // Published FNV-1a 32-bit test vectors.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        // Fixed values: changing them breaks every existing data directory.
        assert_eq!(partition_of("device-1", 4), fnv1a32(b"device-1") % 4);
        assert_eq!(partition_of("a", 4), 0xe40c_292c % 4);
        for n in 1..=MAX_PARTITION_COUNT {
            assert!(partition_of("some-device", n) < n);
        }
        assert_eq!(partition_of("x", 0), 0);
        let spread: std::collections::BTreeSet<u32> = (0..64)
            .map(|i| partition_of(&format!("dev-{i}"), 4))
            .collect();
        assert_eq!(spread.len(), 4);
    }
}
