//! Deterministic fuzz-style tests: `decode` must never panic, must only ever consume
//! whole packets, and whatever it accepts must survive an encode/decode round trip.

use bytes::BytesMut;
use fleethub_mqtt_codec::{Packet, decode, encode};

/// xorshift64*: tiny deterministic PRNG so the test needs no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("fits")
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// Valid packets whose bytes are mutated to reach deeper into the decoders.
const SEEDS: &[&[u8]] = &[
    b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x1e\x00\x02d1",
    b"\x10\x1d\x00\x04MQTT\x04\x36\x00\x00\x00\x00\x00\x06status\x00\x07offline",
    b"\x10\x19\x00\x04MQTT\x04\xc2\x00\x3c\x00\x01c\x00\x04user\x00\x04pass",
    b"\x10\x11\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x03abc",
    b"\x20\x02\x01\x00",
    b"\x32\x24\x00\x1bdevices/d1/messages/events/\x00\x02hello",
    b"\x3d\x05\x00\x01t\x12\x34",
    b"\x40\x02\x00\x01",
    b"\x62\x02\x00\x01",
    b"\x82\x0a\x00\x01\x00\x01#\x01\x00\x01+\x02",
    b"\x90\x05\x00\x01\x01\x80\x02",
    b"\xa2\x0f\x00\x05\x00\x03a/b\x00\x06$sys/#",
    b"\xb0\x02\x00\x07",
    b"\xc0\x00",
    b"\xd0\x00",
    b"\xe0\x00",
];

/// Drain `bytes` through `decode`, checking the invariants. Returns whether at
/// least one packet decoded.
fn check(bytes: &[u8], max: usize) -> bool {
    let mut buf = BytesMut::from(bytes);
    let mut decoded = false;
    loop {
        let before = buf.clone();
        match decode(&mut buf, max) {
            Ok(None) => {
                assert_eq!(buf, before, "Ok(None) touched the buffer");
                return decoded;
            }
            Ok(Some(packet)) => {
                let consumed = before.len() - buf.len();
                assert!(consumed >= 2, "consumed {consumed} bytes");
                assert_eq!(&before[consumed..], &buf[..]);
                round_trip(&packet);
                decoded = true;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return decoded;
            }
        }
    }
}

fn round_trip(packet: &Packet) {
    let mut normalized = packet.clone();
    if let Packet::Publish(p) = &mut normalized
        && p.qos == fleethub_mqtt_codec::QoS::AtMostOnce
    {
        // DUP is accepted on QoS 0 but never encoded there.
        p.dup = false;
    }
    let mut out = BytesMut::new();
    encode(packet, &mut out).unwrap_or_else(|e| panic!("re-encode {packet:?}: {e}"));
    let again = decode(&mut out, usize::MAX).unwrap().unwrap();
    assert_eq!(again, normalized);
    assert!(out.is_empty());
}

#[test]
fn seeds_are_valid() {
    for seed in SEEDS {
        let mut buf = BytesMut::from(*seed);
        let packet = decode(&mut buf, usize::MAX).unwrap().unwrap();
        assert!(buf.is_empty(), "{packet:?}");
        let mut out = BytesMut::new();
        encode(&packet, &mut out).unwrap();
        assert_eq!(&out[..], *seed);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for _ in 0..5_000 {
        let len = rng.below(64);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        // Bias half the inputs towards a plausible fixed header so the body
        // decoders get exercised rather than the header checks alone.
        if len >= 2 && rng.below(2) == 0 {
            let flags = match bytes[0] >> 4 {
                6 | 8 | 10 => 0b0010,
                3 => bytes[0] & 0x0B,
                _ => 0,
            };
            bytes[0] = (bytes[0] & 0xF0) | flags;
            bytes[1] = u8::try_from(rng.below(len - 1)).expect("small");
        }
        let max = [0, 16, 64, usize::MAX][rng.below(4)];
        if check(&bytes, max) {
            accepted += 1;
        }
    }
    assert!(accepted > 20, "only {accepted} random inputs decoded");
}

#[test]
fn mutated_packets_never_panic() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut bytes = SEEDS[rng.below(SEEDS.len())].to_vec();
        for _ in 0..=rng.below(3) {
            match rng.below(4) {
                // Flip a byte.
                0 => {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.byte();
                }
                // Flip a bit.
                1 => {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
                // Truncate.
                2 => bytes.truncate(rng.below(bytes.len() + 1)),
                // Append junk or another packet.
                _ => {
                    if rng.below(2) == 0 {
                        bytes.push(rng.byte());
                    } else {
                        bytes.extend_from_slice(SEEDS[rng.below(SEEDS.len())]);
                    }
                }
            }
            if bytes.is_empty() {
                bytes.push(rng.byte());
            }
        }
        if check(&bytes, usize::MAX) {
            accepted += 1;
        }
    }
    // The mutations must not be so destructive that nothing decodes.
    assert!(accepted > 1_000, "only {accepted} mutated inputs decoded");
}
