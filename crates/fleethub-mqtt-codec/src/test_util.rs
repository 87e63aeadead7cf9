//! Helpers shared by the unit tests.

use bytes::BytesMut;

use crate::{CodecError, Packet, decode, encode};

/// Decode `bytes`, which must hold exactly one complete packet (or an error).
pub(crate) fn decode_all(bytes: &[u8]) -> Result<Packet, CodecError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, usize::MAX)?.expect("complete packet");
    assert!(buf.is_empty(), "decode left {} bytes", buf.len());
    Ok(packet)
}

/// `bytes` decodes to `packet` (and every proper prefix needs more bytes),
/// and `packet` encodes to `bytes`.
pub(crate) fn assert_round_trip(bytes: &[u8], packet: &Packet) {
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(decode(&mut buf, usize::MAX), Ok(None), "prefix of {cut}");
        assert_eq!(&buf[..], &bytes[..cut], "buffer touched");
    }
    assert_eq!(decode_all(bytes).as_ref(), Ok(packet), "decode");
    let mut out = BytesMut::new();
    encode(packet, &mut out).expect("encode");
    assert_eq!(&out[..], bytes, "encode of {packet:?}");
}
