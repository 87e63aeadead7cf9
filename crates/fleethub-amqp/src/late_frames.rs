//! Drops the frames a client sends on a session channel after its own End (see
//! `docs/protocol-notes.md`, "AMQP: frames after End").
//!
//! rhea (under @azure/event-hubs and azure-iothub) closes a receiver with Detach + End and then
//! still settles the transfers that were in flight, with Disposition frames on the channel it
//! has just ended. fe2o3-amqp's connection forgets an incoming channel when its End arrives and
//! treats any later frame on it as a connection error (`amqp:not-found`): the connection is
//! closed under the client, whose pending close never completes. Azure ignores such frames, and
//! so does this filter: it sits between the byte stream and the acceptor, reads only frame
//! headers and the performative's descriptor (the frames themselves are fe2o3-amqp's to decode),
//! remembers the channels the client ended, and skips their frames until a Begin opens the
//! channel again.

use bytes::{Buf, BytesMut};
use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The descriptor code of Begin.
const BEGIN: u64 = 0x11;
/// The descriptor code of End.
const END: u64 = 0x17;
/// The session performatives: Attach, Flow, Transfer, Disposition, Detach, End (Open and Close
/// travel on channel 0 too, but belong to the connection and always pass).
const SESSION_FRAMES: std::ops::RangeInclusive<u64> = 0x12..=0x17;
/// Bytes read from the stream at once.
const CHUNK: usize = 16 * 1024;
/// The longest descriptor prefix looked at: `0x00 0xa3 len "amqp:begin:list"`.
const DESCRIPTOR_PREFIX: usize = 3 + 15;

/// What the bytes at the front of the stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Kept: these many bytes go to the reader.
    Keep(usize),
    /// Dropped: these many bytes are skipped.
    Skip(usize),
    /// Not a frame this filter understands: the rest of the stream passes untouched.
    Opaque,
}

/// A stream whose late frames (after the client's End on their channel) are dropped.
#[derive(Debug)]
pub struct LateFrames<Io> {
    inner: Io,
    /// Bytes read and not yet handed on or skipped.
    pending: BytesMut,
    /// What the front of `pending` is: bytes still to hand on (`Keep`) or to skip (`Skip`).
    current: Option<Unit>,
    /// Channels the client ended (and has not begun again).
    ended: HashSet<u16>,
    /// Frames dropped so far.
    dropped: u64,
    scratch: Vec<u8>,
    eof: bool,
}

impl<Io> LateFrames<Io> {
    pub fn new(inner: Io) -> Self {
        LateFrames {
            inner,
            pending: BytesMut::new(),
            current: None,
            ended: HashSet::new(),
            dropped: 0,
            scratch: vec![0; CHUNK],
            eof: false,
        }
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Classifies the unit at the front of `pending`; `None` when more bytes are needed.
    fn classify(&mut self) -> Option<Unit> {
        let b = &self.pending[..];
        if b.len() < 8 {
            return None;
        }
        if &b[..4] == b"AMQP" {
            // A protocol header: the first, or the one after SASL.
            return Some(Unit::Keep(8));
        }
        let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let doff = usize::from(b[4]) * 4;
        let amqp_frame = b[5] == 0;
        let channel = u16::from_be_bytes([b[6], b[7]]);
        if doff < 8 || size < doff {
            return Some(Unit::Opaque);
        }
        if !amqp_frame || size == doff {
            // SASL frames and empty (heartbeat) frames.
            return Some(Unit::Keep(size));
        }
        let need = size.min(doff + DESCRIPTOR_PREFIX);
        if b.len() < need {
            return None;
        }
        let code = descriptor(&b[doff..need]);
        if self.ended.contains(&channel) {
            if code == Some(BEGIN) {
                self.ended.remove(&channel);
            }
            if !code.is_some_and(|c| SESSION_FRAMES.contains(&c)) {
                return Some(Unit::Keep(size));
            }
            self.dropped += 1;
            tracing::debug!(
                channel,
                performative = ?code,
                "amqp: dropped a frame the client sent after ending its session"
            );
            return Some(Unit::Skip(size));
        }
        if code == Some(END) {
            self.ended.insert(channel);
        }
        Some(Unit::Keep(size))
    }
}

/// The descriptor code of a performative (`0x00` then a ulong or a symbol descriptor).
fn descriptor(body: &[u8]) -> Option<u64> {
    match body {
        [0x00, 0x53, code, ..] => Some(u64::from(*code)),
        [0x00, 0x44, ..] => Some(0),
        [0x00, 0x80, rest @ ..] if rest.len() >= 8 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&rest[..8]);
            Some(u64::from_be_bytes(n))
        }
        [0x00, 0xa3, len, rest @ ..] if rest.len() >= usize::from(*len) => {
            match &rest[..usize::from(*len)] {
                b"amqp:begin:list" => Some(BEGIN),
                b"amqp:end:list" => Some(END),
                _ => None,
            }
        }
        _ => None,
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for LateFrames<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            match this.current {
                Some(Unit::Keep(n)) if !this.pending.is_empty() => {
                    let k = n.min(this.pending.len()).min(buf.remaining());
                    buf.put_slice(&this.pending[..k]);
                    this.pending.advance(k);
                    this.current = (n > k).then_some(Unit::Keep(n - k));
                    return Poll::Ready(Ok(()));
                }
                Some(Unit::Opaque) if !this.pending.is_empty() => {
                    let k = this.pending.len().min(buf.remaining());
                    buf.put_slice(&this.pending[..k]);
                    this.pending.advance(k);
                    return Poll::Ready(Ok(()));
                }
                Some(Unit::Skip(n)) if !this.pending.is_empty() => {
                    let k = n.min(this.pending.len());
                    this.pending.advance(k);
                    this.current = (n > k).then_some(Unit::Skip(n - k));
                    continue;
                }
                None if !this.pending.is_empty() => {
                    if let Some(unit) = this.classify() {
                        this.current = Some(unit);
                        continue;
                    }
                }
                _ => {}
            }
            if this.eof {
                if this.pending.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                // A truncated frame at the end: hand it on as it is.
                this.current = Some(Unit::Opaque);
                continue;
            }
            let mut rb = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.pending.extend_from_slice(rb.filled());
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for LateFrames<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An AMQP frame on `channel` whose body is the described list `code` with `rest` after it.
    fn frame(channel: u16, code: u8, rest: &[u8]) -> Vec<u8> {
        let body: Vec<u8> = [&[0x00, 0x53, code][..], rest].concat();
        let size = u32::try_from(8 + body.len()).unwrap();
        let mut f = size.to_be_bytes().to_vec();
        f.extend_from_slice(&[2, 0]);
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&body);
        f
    }

    async fn filtered(input: Vec<u8>, chunk: usize) -> (Vec<u8>, u64) {
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for c in input.chunks(chunk) {
                client.write_all(c).await.unwrap();
            }
        });
        let mut s = LateFrames::new(server);
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        (out, s.dropped())
    }

    #[tokio::test]
    async fn frames_after_the_clients_end_are_dropped_until_a_new_begin() {
        let header = b"AMQP\x00\x01\x00\x00".to_vec();
        // Flow (0x13) on 4, End (0x17) on 4, Disposition (0x15) on 4 (late), Disposition on 5,
        // empty frame (heartbeat), Begin (0x11) on 4 again, Flow on 4; End on 0 then Close
        // (0x18) on 0: the connection's Close passes.
        let flow4 = frame(4, 0x13, &[0x45]);
        let end4 = frame(4, 0x17, &[0x45]);
        let late = frame(4, 0x15, &[0xc0, 0x03, 0x02, 0x41, 0x43]);
        let disp5 = frame(5, 0x15, &[0xc0, 0x03, 0x02, 0x41, 0x43]);
        let heartbeat = vec![0, 0, 0, 8, 2, 0, 0, 0];
        let begin4 = frame(4, 0x11, &[0x45]);
        let end0 = frame(0, 0x17, &[0x45]);
        let close = frame(0, 0x18, &[0x45]);
        let input = [
            &header[..],
            &flow4,
            &end4,
            &late,
            &disp5,
            &heartbeat,
            &late,
            &begin4,
            &flow4,
            &end0,
            &close,
        ]
        .concat();
        let want = [
            &header[..],
            &flow4,
            &end4,
            &disp5,
            &heartbeat,
            &begin4,
            &flow4,
            &end0,
            &close,
        ]
        .concat();
        for chunk in [1, 3, 7, 64, 4096] {
            let (out, dropped) = filtered(input.clone(), chunk).await;
            assert_eq!(out, want, "chunk {chunk}");
            assert_eq!(dropped, 2, "chunk {chunk}");
        }
    }

    #[test]
    fn descriptors_in_every_encoding() {
        assert_eq!(descriptor(&[0x00, 0x53, 0x17, 0x45]), Some(END));
        assert_eq!(
            descriptor(&[0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x11]),
            Some(BEGIN)
        );
        let mut sym = vec![0x00, 0xa3, 13];
        sym.extend_from_slice(b"amqp:end:list");
        assert_eq!(descriptor(&sym), Some(END));
        assert_eq!(descriptor(&[0x00, 0x80, 0, 0]), None);
        assert_eq!(descriptor(&[0x41]), None);
    }

    #[tokio::test]
    async fn sasl_frames_and_garbage_pass_untouched() {
        // A SASL frame (type 1) on "channel" 4 after an AMQP End on 4 is not dropped.
        let end4 = frame(4, 0x17, &[0x45]);
        let mut sasl = frame(4, 0x44, &[0x45]);
        sasl[5] = 1;
        let garbage = vec![0, 0, 0, 3, 1, 0, 0, 0, 9, 9, 9];
        let input = [&end4[..], &sasl, &garbage].concat();
        let (out, dropped) = filtered(input.clone(), 5).await;
        assert_eq!(out, input);
        assert_eq!(dropped, 0);
    }
}
