//! Property-based fuzzing of the MQTT codec (`docs/testing.md`, "Fuzzing"): the committed
//! corpus in `tests/fuzz-corpus/decode/` (real CONNECT, PUBLISH, SUBSCRIBE bytes as the SDKs
//! send them) is replayed first; then arbitrary and mutated bytes go into `decode`, which
//! must never panic, must consume whole packets only, and whatever it accepts must survive an
//! encode/decode round trip; and arbitrary packets that `encode` accepts decode back equal.
//! `FLEETHUB_FUZZ_CASES` sets the number of cases (default 256; `scripts/fuzz.sh` runs more).

use bytes::{Bytes, BytesMut};
use fleethub_mqtt_codec::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, Publish, QoS, SubAck, Subscribe,
    SubscribeReturnCode, Unsubscribe, decode, encode,
};
use proptest::prelude::*;
use proptest::sample::select;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    fleethub_fuzzing::byte_corpus(env!("CARGO_MANIFEST_DIR"), target, 5)
}

/// Drains `bytes` through `decode`, checking the invariants; returns the packets decoded.
fn check(bytes: &[u8], max: usize) -> usize {
    let mut buf = BytesMut::from(bytes);
    let mut decoded = 0;
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
                decoded += 1;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return decoded;
            }
        }
    }
}

/// What `decode(encode(packet))` gives: QoS 0 carries no packet id, and DUP is accepted on
/// QoS 0 but never encoded there.
fn normalized(packet: &Packet) -> Packet {
    let mut normalized = packet.clone();
    if let Packet::Publish(p) = &mut normalized
        && p.qos == QoS::AtMostOnce
    {
        p.dup = false;
        p.pkid = 0;
    }
    normalized
}

fn round_trip(packet: &Packet) {
    let mut out = BytesMut::new();
    encode(packet, &mut out).unwrap_or_else(|e| panic!("re-encode {packet:?}: {e}"));
    let again = decode(&mut out, usize::MAX)
        .unwrap_or_else(|e| panic!("decode re-encoded {packet:?}: {e}"))
        .expect("a whole packet");
    assert_eq!(again, normalized(packet));
    assert!(out.is_empty());
}

#[test]
fn corpus_replays() {
    let seeds = corpus("decode");
    assert!(seeds.len() >= 5, "corpus too small");
    for (name, bytes) in seeds {
        assert!(check(&bytes, usize::MAX) > 0, "{name} does not decode");
        for cut in 0..bytes.len() {
            check(&bytes[..cut], usize::MAX);
        }
    }
}

/// A corpus entry with a few byte-level mutations (overwrite, bit flip, truncate, insert).
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds: Vec<Vec<u8>> = corpus("decode").into_iter().map(|(_, b)| b).collect();
    (
        select(seeds),
        prop::collection::vec((0..4u8, any::<prop::sample::Index>(), any::<u8>()), 1..6),
    )
        .prop_map(|(mut bytes, edits)| {
            for (op, at, byte) in edits {
                let i = at.index(bytes.len().max(1));
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 if i < bytes.len() => bytes[i] ^= 1 << (byte % 8),
                    2 => bytes.truncate(i),
                    _ => bytes.insert(i.min(bytes.len()), byte),
                }
            }
            bytes
        })
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9/$#+%=&._-]{0,40}",
        any::<String>(),
        Just("devices/d1/messages/events/".to_owned()),
    ]
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn connect() -> impl Strategy<Value = Packet> {
    let will =
        (text(), payload(), qos(), any::<bool>()).prop_map(|(topic, payload, qos, retain)| {
            LastWill {
                topic,
                payload,
                qos,
                retain,
            }
        });
    (
        prop_oneof![Just(3u8), Just(4u8)],
        text(),
        any::<bool>(),
        any::<u16>(),
        prop::option::of(text()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        prop::option::of(will),
    )
        .prop_map(
            |(protocol_level, client_id, clean_session, keep_alive, username, password, will)| {
                Packet::Connect(Connect {
                    protocol_level,
                    client_id,
                    clean_session,
                    keep_alive,
                    username,
                    password,
                    will,
                })
            },
        )
}

fn packet() -> impl Strategy<Value = Packet> {
    let code = select(vec![
        ConnectReturnCode::Accepted,
        ConnectReturnCode::UnacceptableProtocolVersion,
        ConnectReturnCode::IdentifierRejected,
        ConnectReturnCode::ServerUnavailable,
        ConnectReturnCode::BadUserNamePassword,
        ConnectReturnCode::NotAuthorized,
    ]);
    let return_code = prop_oneof![
        qos().prop_map(SubscribeReturnCode::Success),
        Just(SubscribeReturnCode::Failure)
    ];
    prop_oneof![
        connect(),
        (any::<bool>(), code).prop_map(|(session_present, code)| Packet::ConnAck(ConnAck {
            session_present,
            code
        })),
        (
            any::<bool>(),
            qos(),
            any::<bool>(),
            text(),
            any::<u16>(),
            payload()
        )
            .prop_map(|(dup, qos, retain, topic, pkid, payload)| Packet::Publish(
                Publish {
                    dup,
                    qos,
                    retain,
                    topic,
                    pkid,
                    payload
                }
            )),
        any::<u16>().prop_map(Packet::PubAck),
        any::<u16>().prop_map(Packet::PubRec),
        any::<u16>().prop_map(Packet::PubRel),
        any::<u16>().prop_map(Packet::PubComp),
        (any::<u16>(), prop::collection::vec((text(), qos()), 0..4))
            .prop_map(|(pkid, filters)| Packet::Subscribe(Subscribe { pkid, filters })),
        (any::<u16>(), prop::collection::vec(return_code, 0..4))
            .prop_map(|(pkid, return_codes)| Packet::SubAck(SubAck { pkid, return_codes })),
        (any::<u16>(), prop::collection::vec(text(), 0..4))
            .prop_map(|(pkid, topics)| Packet::Unsubscribe(Unsubscribe { pkid, topics })),
        any::<u16>().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

proptest! {
    #![proptest_config(fleethub_fuzzing::config())]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        max in select(vec![0usize, 16, 256, usize::MAX]),
    ) {
        check(&bytes, max);
    }

    #[test]
    fn mutated_corpus_never_panics(bytes in mutated()) {
        check(&bytes, usize::MAX);
    }

    /// Whatever `encode` accepts decodes back to the same packet.
    #[test]
    fn encoded_packets_round_trip(packet in packet()) {
        let mut out = BytesMut::new();
        if encode(&packet, &mut out).is_ok() {
            let len = out.len();
            let again = decode(&mut out, usize::MAX)
                .unwrap_or_else(|e| panic!("decode encoded {packet:?}: {e}"))
                .unwrap_or_else(|| panic!("{packet:?}: {len} encoded bytes are not a whole packet"));
            prop_assert_eq!(again, normalized(&packet));
            prop_assert!(out.is_empty());
        }
    }
}
