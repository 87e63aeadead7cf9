//! Decoding a byte stream that carries several packets, split at every possible point.

use bytes::{Bytes, BytesMut};
use fleethub_mqtt_codec::{
    CodecError, ConnAck, Connect, ConnectReturnCode, Packet, Publish, QoS, SubAck, Subscribe,
    SubscribeReturnCode, decode, encode,
};

/// What paho-mqtt 2.2.0 (Python) wrote on the socket for: connect (client id "d1",
/// clean session, keepalive 30), subscribe to five filters, publish QoS 1.
const PAHO_STREAM: &[u8] = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x1e\x00\x02d1\
\x82\x86\x01\x00\x01\
\x00!devices/d1/messages/devicebound/#\x01\
\x00\x12$iothub/twin/res/#\x00\
\x00\x16$iothub/methods/POST/#\x00\
\x00'$iothub/twin/PATCH/properties/desired/#\x01\
\x00\x05a/+/b\x02\
\x32\x24\x00\x1bdevices/d1/messages/events/\x00\x02hello";

fn paho_packets() -> Vec<Packet> {
    vec![
        Packet::Connect(Connect::new("d1", true, 30)),
        Packet::Subscribe(Subscribe::new(
            1,
            vec![
                ("devices/d1/messages/devicebound/#".into(), QoS::AtLeastOnce),
                ("$iothub/twin/res/#".into(), QoS::AtMostOnce),
                ("$iothub/methods/POST/#".into(), QoS::AtMostOnce),
                (
                    "$iothub/twin/PATCH/properties/desired/#".into(),
                    QoS::AtLeastOnce,
                ),
                ("a/+/b".into(), QoS::ExactlyOnce),
            ],
        )),
        Packet::Publish(Publish::new(
            "devices/d1/messages/events/",
            QoS::AtLeastOnce,
            2,
            Bytes::from_static(b"hello"),
        )),
    ]
}

/// Server-to-client packets, plus one of every remaining type.
fn server_packets() -> Vec<Packet> {
    vec![
        Packet::ConnAck(ConnAck::new(ConnectReturnCode::Accepted, true)),
        Packet::SubAck(SubAck::new(
            1,
            vec![
                SubscribeReturnCode::Success(QoS::AtLeastOnce),
                SubscribeReturnCode::Success(QoS::AtMostOnce),
                SubscribeReturnCode::Success(QoS::AtMostOnce),
                SubscribeReturnCode::Success(QoS::AtLeastOnce),
                SubscribeReturnCode::Failure,
            ],
        )),
        Packet::PubAck(2),
        Packet::Publish(Publish {
            retain: true,
            ..Publish::new(
                "devices/d1/messages/devicebound/%24.to=%2Fdevices%2Fd1",
                QoS::ExactlyOnce,
                0xBEEF,
                vec![7u8; 300],
            )
        }),
        Packet::PubRec(0xBEEF),
        Packet::PubRel(0xBEEF),
        Packet::PubComp(0xBEEF),
        Packet::Unsubscribe(fleethub_mqtt_codec::Unsubscribe::new(
            3,
            vec!["a/+/b".into()],
        )),
        Packet::UnsubAck(3),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect,
    ]
}

/// Feed `stream` in two pieces split at `split`, decoding greedily after each piece.
fn decode_split(stream: &[u8], split: usize) -> Vec<Packet> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in [&stream[..split], &stream[split..]] {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.clone();
            if let Some(p) = decode(&mut buf, 64 * 1024).expect("valid stream") {
                out.push(p);
            } else {
                assert_eq!(buf, before, "Ok(None) must leave the buffer untouched");
                break;
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

#[test]
fn paho_stream_every_split_point() {
    let expected = paho_packets();
    for split in 0..=PAHO_STREAM.len() {
        assert_eq!(
            decode_split(PAHO_STREAM, split),
            expected,
            "split at {split}"
        );
    }
    // And the codec reproduces paho's bytes exactly.
    let mut out = BytesMut::new();
    for p in &expected {
        encode(p, &mut out).unwrap();
    }
    assert_eq!(&out[..], PAHO_STREAM);
}

#[test]
fn all_packet_types_every_split_point() {
    let packets: Vec<Packet> = paho_packets().into_iter().chain(server_packets()).collect();
    let mut stream = BytesMut::new();
    for p in &packets {
        encode(p, &mut stream).unwrap();
    }
    for split in 0..=stream.len() {
        assert_eq!(decode_split(&stream, split), packets, "split at {split}");
    }
}

#[test]
fn byte_at_a_time() {
    let packets: Vec<Packet> = paho_packets().into_iter().chain(server_packets()).collect();
    let mut stream = BytesMut::new();
    for p in &packets {
        encode(p, &mut stream).unwrap();
    }
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &b in &stream {
        buf.extend_from_slice(&[b]);
        while let Some(p) = decode(&mut buf, 64 * 1024).unwrap() {
            got.push(p);
        }
    }
    assert_eq!(got, packets);
}

#[test]
fn oversize_in_stream_rejected_before_body() {
    // A PINGREQ then a PUBLISH announcing 1000 bytes with a 512-byte limit; only the
    // first two bytes of the PUBLISH have arrived.
    let mut buf = BytesMut::from(&b"\xc0\x00\x30\xe8\x07"[..]);
    assert_eq!(decode(&mut buf, 512), Ok(Some(Packet::PingReq)));
    assert_eq!(
        decode(&mut buf, 512),
        Err(CodecError::PayloadTooLarge {
            size: 1000,
            max: 512
        })
    );
}
