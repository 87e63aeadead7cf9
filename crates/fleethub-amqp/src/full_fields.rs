//! Every field of the performatives we send, trailing defaults included (see
//! `docs/protocol-notes.md`, "AMQP: performatives with every field").
//!
//! fe2o3-amqp encodes a performative's list without its trailing fields that are null or at
//! their default (legal AMQP: an absent field is null, null means the default). Python
//! azure-eventhub's pure-Python AMQP builds its network trace (`logging_enable=True`) from the
//! decoded list with positional named tuples and fails on a shorter list, e.g. a Disposition
//! without `batchable`, a Detach without `error`, an End or Close without `error`. This
//! rewriter sits on the connection's outgoing byte stream (`coalesced_writes` feeds it): it
//! reads frame headers and the performative's list header only, and appends a null for every
//! missing field, so the frame says the same thing with every position present. Frames it does
//! not recognise, SASL frames, empty frames and protocol headers pass unchanged.

use bytes::BytesMut;

/// The AMQP null constructor.
const NULL: u8 = 0x40;
/// Frame type of AMQP frames (SASL frames are type 1).
const AMQP_FRAME: u8 = 0;

/// The number of fields of a performative, by descriptor code (AMQP part 2.7).
fn full_field_count(code: u8) -> Option<usize> {
    match code {
        0x10 => Some(10),        // open
        0x11 => Some(8),         // begin
        0x12 => Some(14),        // attach
        0x13 | 0x14 => Some(11), // flow, transfer
        0x15 => Some(6),         // disposition
        0x16 => Some(3),         // detach
        0x17 | 0x18 => Some(1),  // end, close
        _ => None,
    }
}

/// The list at the start of `b`: (bytes of its constructor and size/count, item bytes, count).
fn list_header(b: &[u8]) -> Option<(usize, usize, usize)> {
    match *b.first()? {
        0x45 => Some((1, 0, 0)),
        0xc0 => {
            let size = usize::from(*b.get(1)?);
            let count = usize::from(*b.get(2)?);
            Some((3, size.checked_sub(1)?, count))
        }
        0xd0 => {
            let size = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?) as usize;
            let count = u32::from_be_bytes(b.get(5..9)?.try_into().ok()?) as usize;
            Some((9, size.checked_sub(4)?, count))
        }
        _ => None,
    }
}

/// Appends `frame` to `out` with the performative's missing trailing fields as nulls; a frame
/// that is complete already, or not understood, is appended as it is.
fn rewrite_frame(frame: &[u8], out: &mut BytesMut) {
    let unchanged = |out: &mut BytesMut| out.extend_from_slice(frame);
    let doff = usize::from(frame[4]) * 4;
    if frame[5] != AMQP_FRAME || doff < 8 || frame.len() <= doff + 3 {
        return unchanged(out);
    }
    let body = &frame[doff..];
    // The descriptor as fe2o3-amqp writes it: a small ulong.
    let &[0x00, 0x53, code, ..] = body else {
        return unchanged(out);
    };
    let Some(full) = full_field_count(code) else {
        return unchanged(out);
    };
    let Some((header_len, items_len, count)) = list_header(&body[3..]) else {
        return unchanged(out);
    };
    let list_start = doff + 3;
    let items_start = list_start + header_len;
    let items_end = items_start + items_len;
    if count >= full || items_end > frame.len() {
        return unchanged(out);
    }
    let missing = full - count;
    let new_items = items_len + missing;
    let new_header: Vec<u8> = if new_items < 255 {
        // list8: the size counts the count byte and the items.
        vec![0xc0, (new_items + 1) as u8, full as u8]
    } else {
        let mut h = vec![0xd0];
        h.extend_from_slice(&((new_items + 4) as u32).to_be_bytes());
        h.extend_from_slice(&(full as u32).to_be_bytes());
        h
    };
    let new_size = frame.len() - header_len + new_header.len() + missing;
    let Ok(new_size) = u32::try_from(new_size) else {
        return unchanged(out);
    };
    out.reserve(new_size as usize);
    out.extend_from_slice(&new_size.to_be_bytes());
    out.extend_from_slice(&frame[4..list_start]);
    out.extend_from_slice(&new_header);
    out.extend_from_slice(&frame[items_start..items_end]);
    out.resize(out.len() + missing, NULL);
    // A transfer's payload follows its performative.
    out.extend_from_slice(&frame[items_end..]);
}

/// The outgoing byte stream, frame by frame.
#[derive(Debug, Default)]
pub struct FullFields {
    /// The start of a unit (protocol header or frame) whose end has not been written yet.
    partial: BytesMut,
}

/// How long the unit at the front of `b` is, once enough of it is there to tell.
fn unit_len(b: &[u8]) -> Option<usize> {
    if b.len() < 8 {
        return None;
    }
    if &b[..4] == b"AMQP" {
        return Some(8);
    }
    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    // A size below a frame header cannot be: hand the rest on as it is.
    Some(size.max(8))
}

impl FullFields {
    /// Takes the next bytes of the stream and appends to `out` every unit they complete.
    pub fn push(&mut self, mut data: &[u8], out: &mut BytesMut) {
        if !self.partial.is_empty() {
            let have = self.partial.len();
            let need = if have < 8 {
                let take = (8 - have).min(data.len());
                self.partial.extend_from_slice(&data[..take]);
                data = &data[take..];
                match unit_len(&self.partial) {
                    Some(n) => n,
                    None => return,
                }
            } else {
                unit_len(&self.partial).unwrap_or(8)
            };
            let take = need.saturating_sub(self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < need {
                return;
            }
            let unit = self.partial.split();
            emit(&unit, out);
        }
        while let Some(n) = unit_len(data) {
            if data.len() < n {
                break;
            }
            emit(&data[..n], out);
            data = &data[n..];
        }
        self.partial.extend_from_slice(data);
    }
}

fn emit(unit: &[u8], out: &mut BytesMut) {
    if unit.len() > 8 {
        rewrite_frame(unit, out);
    } else {
        out.extend_from_slice(unit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::definitions::Role;
    use fe2o3_amqp_types::messaging::{Accepted, DeliveryState};
    use fe2o3_amqp_types::performatives::{Detach, Disposition, End};

    /// An AMQP frame on channel 3 holding `body`.
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&[2, 0, 0, 3]);
        f.extend_from_slice(body);
        f
    }

    fn rewrite(bytes: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        FullFields::default().push(bytes, &mut out);
        out.to_vec()
    }

    #[test]
    fn a_disposition_without_batchable_gets_it_as_null() {
        let d = Disposition {
            role: Role::Receiver,
            first: 7,
            last: None,
            settled: true,
            state: Some(DeliveryState::Accepted(Accepted {})),
            batchable: false,
        };
        let body = serde_amqp::to_vec(&d).unwrap();
        // fe2o3-amqp leaves batchable out: five fields.
        assert_eq!(
            &body[..6],
            &[0x00, 0x53, 0x15, 0xc0, (body.len() - 5) as u8, 5]
        );
        let out = rewrite(&frame(&body));
        let new_body = &out[8..];
        assert_eq!(new_body[5], 6, "six fields");
        assert_eq!(*new_body.last().unwrap(), NULL);
        assert_eq!(new_body.len(), body.len() + 1);
        assert_eq!(
            out.len(),
            u32::from_be_bytes(out[..4].try_into().unwrap()) as usize
        );
        // It still decodes to the same disposition.
        let back: Disposition = serde_amqp::from_slice(new_body).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn detach_end_and_close_get_their_error_field() {
        let detach = serde_amqp::to_vec(&Detach {
            handle: 1.into(),
            closed: true,
            error: None,
        })
        .unwrap();
        let out = rewrite(&frame(&detach));
        assert_eq!(&out[8 + 3..8 + 6], &[0xc0, 5, 3]);
        assert_eq!(out[out.len() - 1], NULL);
        let back: Detach = serde_amqp::from_slice(&out[8..]).unwrap();
        assert!(back.closed && back.error.is_none());
        // End with no error: list0 becomes a list of one null.
        let end = serde_amqp::to_vec(&End { error: None }).unwrap();
        assert_eq!(end, [0x00, 0x53, 0x17, 0x45]);
        assert_eq!(
            rewrite(&frame(&end))[8..],
            [0x00, 0x53, 0x17, 0xc0, 2, 1, NULL]
        );
        assert_eq!(
            rewrite(&frame(&[0x00, 0x53, 0x18, 0x45]))[8..],
            [0x00, 0x53, 0x18, 0xc0, 2, 1, NULL]
        );
    }

    #[test]
    fn a_transfer_keeps_its_payload_after_the_added_fields() {
        // handle 0, delivery-id 1, tag, format 0, settled false; then the payload.
        let mut body = vec![
            0x00, 0x53, 0x14, 0xc0, 9, 5, 0x43, 0x52, 1, 0xa0, 1, 9, 0x43, 0x42,
        ];
        body.extend_from_slice(b"payload");
        let out = rewrite(&frame(&body));
        let b = &out[8..];
        assert_eq!(&b[3..6], &[0xc0, 15, 11]);
        assert_eq!(&b[6..14], &body[6..14]);
        assert_eq!(&b[14..20], &[NULL; 6]);
        assert_eq!(&b[20..], b"payload");
    }

    #[test]
    fn complete_frames_headers_sasl_and_empty_frames_pass_unchanged_even_when_split() {
        let mut stream = b"AMQP\x03\x01\x00\x00".to_vec();
        // A SASL frame (type 1).
        let mut sasl = frame(&[0x00, 0x53, 0x40, 0xc0, 2, 1, NULL]);
        sasl[5] = 1;
        stream.extend_from_slice(&sasl);
        stream.extend_from_slice(b"AMQP\x00\x01\x00\x00");
        // An empty frame (heartbeat).
        stream.extend_from_slice(&[0, 0, 0, 8, 2, 0, 0, 0]);
        // A complete detach.
        stream.extend_from_slice(&frame(&[0x00, 0x53, 0x16, 0xc0, 4, 3, 0x43, 0x41, NULL]));
        let mut want = stream.clone();
        let end = frame(&[0x00, 0x53, 0x17, 0x45]);
        stream.extend_from_slice(&end);
        want.extend_from_slice(&frame(&[0x00, 0x53, 0x17, 0xc0, 2, 1, NULL]));
        assert_eq!(rewrite(&stream), want);
        // Byte by byte, the same.
        for chunk in [1usize, 3, 7] {
            let mut ff = FullFields::default();
            let mut out = BytesMut::new();
            for c in stream.chunks(chunk) {
                ff.push(c, &mut out);
            }
            assert_eq!(out.to_vec(), want, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_list_that_outgrows_list8_becomes_list32() {
        // Flow with 4 fields whose items take 250 bytes (a padded binary is not a flow field,
        // but the list encoding is what matters here).
        let mut items = vec![0xa0, 246];
        items.extend_from_slice(&[7u8; 246]);
        items.extend_from_slice(&[0x43, 0x43, 0x43]);
        let mut body = vec![0x00, 0x53, 0x13, 0xc0, (items.len() + 1) as u8, 4];
        body.extend_from_slice(&items);
        let out = rewrite(&frame(&body));
        let b = &out[8..];
        assert_eq!(b[3], 0xd0);
        assert_eq!(
            u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize,
            items.len() + 7 + 4
        );
        assert_eq!(u32::from_be_bytes(b[8..12].try_into().unwrap()), 11);
        assert_eq!(&b[12..12 + items.len()], &items[..]);
        assert_eq!(&b[12 + items.len()..], &[NULL; 7]);
        assert_eq!(
            out.len(),
            u32::from_be_bytes(out[..4].try_into().unwrap()) as usize
        );
    }
}
