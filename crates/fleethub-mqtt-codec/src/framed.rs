//! The framed MQTT reader/writer over tokio byte streams (TLS, TCP, a WebSocket pipe, an
//! in-memory duplex in tests), shared by the hub's gateway, the edge hub and the device SDK.
//!
//! * Reading keeps one receive buffer: [`FramedRead::next`] reads only when no complete
//!   packet is buffered, and [`FramedRead::try_next`] hands out packets that have already
//!   arrived without touching the transport, so a caller can handle a burst as one batch
//!   (the gateway stores a run of telemetry publishes with one write).
//! * Writing appends encoded packets to one send buffer ([`FramedWrite::push`]) and writes it
//!   with one `write_all` + `flush` ([`FramedWrite::flush`]): a burst of answers becomes one
//!   TLS record, not one per packet.
//!
//! [`Framed`] is both on one stream (for a client that selects between reading and writing
//! on the same stream); [`Framed::split`] turns it into a reader and a writer for two tasks.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::{CodecError, Packet, decode, encode};

/// Initial capacity of the receive buffer; the send buffer starts empty. Both grow as packets
/// need (and keep what they grew to); the initial size is paid by every idle connection (a
/// server holds tens of thousands), so it stays small: docs/benchmarks.md measures the server's
/// memory per idle connection. 512 bytes hold a CONNECT with a SAS token.
const INITIAL_CAPACITY: usize = 512;

/// Why reading or writing a framed stream failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// A protocol violation (or an oversize packet): close the connection.
    #[error("{0}")]
    Codec(#[from] CodecError),
    /// The peer closed the stream after part of a packet.
    #[error("connection closed inside a packet")]
    ClosedInsidePacket,
}

/// Reads packets off a byte stream.
#[derive(Debug)]
pub struct FramedRead<R> {
    io: R,
    buf: BytesMut,
    max_packet_size: usize,
}

impl<R> FramedRead<R> {
    /// `max_packet_size` bounds the remaining length of each packet (see [`decode`]).
    pub fn new(io: R, max_packet_size: usize) -> Self {
        Self::with_buffer(
            io,
            BytesMut::with_capacity(INITIAL_CAPACITY),
            max_packet_size,
        )
    }

    /// Starts with bytes already read from `io` (e.g. behind a CONNACK).
    pub fn with_buffer(io: R, buf: BytesMut, max_packet_size: usize) -> Self {
        FramedRead {
            io,
            buf,
            max_packet_size,
        }
    }

    /// The next packet if it has already arrived in full; never reads from the stream.
    pub fn try_next(&mut self) -> Result<Option<Packet>, CodecError> {
        decode(&mut self.buf, self.max_packet_size)
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// The stream and the bytes read from it but not decoded yet.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.io, self.buf)
    }
}

impl<R: AsyncRead + Unpin> FramedRead<R> {
    /// The next packet; `Ok(None)` when the peer closed the stream between packets.
    ///
    /// Cancel safe: dropping the future loses no bytes (they stay in the buffer).
    pub async fn next(&mut self) -> Result<Option<Packet>, FrameError> {
        read_packet(&mut self.io, &mut self.buf, self.max_packet_size).await
    }
}

/// Writes packets to a byte stream through one send buffer.
#[derive(Debug)]
pub struct FramedWrite<W> {
    io: W,
    buf: BytesMut,
}

impl<W> FramedWrite<W> {
    pub fn new(io: W) -> Self {
        FramedWrite {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Queues `packet` for the next [`flush`](Self::flush); nothing is queued on error.
    pub fn push(&mut self, packet: &Packet) -> Result<(), CodecError> {
        encode(packet, &mut self.buf)
    }

    /// Bytes queued and not written yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.io
    }
}

impl<W: AsyncWrite + Unpin> FramedWrite<W> {
    /// Writes everything queued with one `write_all` and flushes the stream (no-op when
    /// nothing is queued).
    pub async fn flush(&mut self) -> io::Result<()> {
        write_out(&mut self.io, &mut self.buf).await
    }

    /// Queues `packet` and flushes.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), FrameError> {
        self.push(packet)?;
        Ok(self.flush().await?)
    }

    /// Flushes, then shuts the stream down for writing.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.io.shutdown().await
    }
}

/// A framed reader and writer on one stream.
#[derive(Debug)]
pub struct Framed<S> {
    io: S,
    read: BytesMut,
    write: BytesMut,
    max_packet_size: usize,
}

impl<S> Framed<S> {
    /// `max_packet_size` bounds the remaining length of each packet read.
    pub fn new(io: S, max_packet_size: usize) -> Self {
        Framed {
            io,
            read: BytesMut::with_capacity(INITIAL_CAPACITY),
            write: BytesMut::new(),
            max_packet_size,
        }
    }

    /// See [`FramedRead::try_next`].
    pub fn try_next(&mut self) -> Result<Option<Packet>, CodecError> {
        decode(&mut self.read, self.max_packet_size)
    }

    /// See [`FramedWrite::push`].
    pub fn push(&mut self, packet: &Packet) -> Result<(), CodecError> {
        encode(packet, &mut self.write)
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// See [`FramedRead::next`] (cancel safe).
    pub async fn next(&mut self) -> Result<Option<Packet>, FrameError> {
        read_packet(&mut self.io, &mut self.read, self.max_packet_size).await
    }

    /// See [`FramedWrite::flush`].
    pub async fn flush(&mut self) -> io::Result<()> {
        write_out(&mut self.io, &mut self.write).await
    }

    /// Queues `packet` and flushes.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), FrameError> {
        self.push(packet)?;
        Ok(self.flush().await?)
    }

    /// Flushes, then shuts the stream down for writing.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.io.shutdown().await
    }

    /// A reader and a writer for two tasks (bytes already buffered on either side are kept).
    pub fn split(self) -> (FramedRead<ReadHalf<S>>, FramedWrite<WriteHalf<S>>) {
        let (rd, wr) = tokio::io::split(self.io);
        (
            FramedRead::with_buffer(rd, self.read, self.max_packet_size),
            FramedWrite {
                io: wr,
                buf: self.write,
            },
        )
    }
}

async fn read_packet<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Option<Packet>, FrameError> {
    loop {
        if let Some(p) = decode(buf, max_packet_size)? {
            return Ok(Some(p));
        }
        if io.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(FrameError::ClosedInsidePacket)
            };
        }
    }
}

async fn write_out<W: AsyncWrite + Unpin>(io: &mut W, buf: &mut BytesMut) -> io::Result<()> {
    if !buf.is_empty() {
        io.write_all(buf).await?;
        buf.clear();
        io.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Publish, QoS};
    use bytes::Bytes;

    fn publish(pkid: u16, body: &'static str) -> Packet {
        Packet::Publish(Publish::new(
            "t",
            QoS::AtLeastOnce,
            pkid,
            Bytes::from_static(body.as_bytes()),
        ))
    }

    #[tokio::test]
    async fn a_burst_is_read_once_and_handed_out_from_the_buffer() {
        let (client, server) = tokio::io::duplex(4096);
        let mut out = FramedWrite::new(client);
        for i in 1..=3 {
            out.push(&publish(i, "x")).unwrap();
        }
        assert_eq!(out.pending(), 3 * 8);
        out.flush().await.unwrap();
        assert_eq!(out.pending(), 0);
        let mut rd = FramedRead::new(server, 1024);
        assert_eq!(rd.try_next().unwrap(), None, "nothing read yet");
        assert_eq!(rd.next().await.unwrap(), Some(publish(1, "x")));
        // The rest arrived with the first read.
        assert_eq!(rd.try_next().unwrap(), Some(publish(2, "x")));
        assert_eq!(rd.try_next().unwrap(), Some(publish(3, "x")));
        assert_eq!(rd.try_next().unwrap(), None);
        drop(out);
        assert_eq!(rd.next().await.unwrap(), None, "clean EOF");
    }

    #[tokio::test]
    async fn packets_split_across_reads_and_eof_inside_a_packet() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut rd = FramedRead::new(server, 1024);
        let mut bytes = BytesMut::new();
        encode(&publish(7, "hello"), &mut bytes).unwrap();
        let (head, tail) = bytes.split_at(4);
        client.write_all(head).await.unwrap();
        let reading = tokio::spawn(async move {
            let p = rd.next().await;
            (rd, p)
        });
        tokio::task::yield_now().await;
        client.write_all(tail).await.unwrap();
        let (mut rd, p) = reading.await.unwrap();
        assert_eq!(p.unwrap(), Some(publish(7, "hello")));
        client.write_all(&[0x30, 0x05, 0x00]).await.unwrap();
        drop(client);
        assert!(matches!(
            rd.next().await,
            Err(FrameError::ClosedInsidePacket)
        ));
    }

    #[tokio::test]
    async fn oversize_packets_are_refused_from_the_header() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut rd = FramedRead::new(server, 10);
        client.write_all(&[0x30, 0x0b]).await.unwrap();
        assert!(matches!(
            rd.next().await,
            Err(FrameError::Codec(CodecError::PayloadTooLarge {
                size: 11,
                max: 10
            }))
        ));
    }

    #[tokio::test]
    async fn framed_on_one_stream_then_split() {
        let (a, b) = tokio::io::duplex(4096);
        let mut a = Framed::new(a, 1024);
        let mut b = Framed::new(b, 1024);
        a.send(&Packet::PingReq).await.unwrap();
        a.push(&Packet::PubAck(1)).unwrap();
        a.push(&Packet::PubAck(2)).unwrap();
        a.flush().await.unwrap();
        assert_eq!(b.next().await.unwrap(), Some(Packet::PingReq));
        // Bytes already buffered move into the reader half.
        let (mut rd, mut wr) = b.split();
        assert_eq!(rd.next().await.unwrap(), Some(Packet::PubAck(1)));
        assert_eq!(rd.try_next().unwrap(), Some(Packet::PubAck(2)));
        wr.send(&Packet::PingResp).await.unwrap();
        assert_eq!(a.next().await.unwrap(), Some(Packet::PingResp));
        wr.shutdown().await.unwrap();
        assert_eq!(a.next().await.unwrap(), None);
        assert!(matches!(
            FramedWrite::new(Vec::<u8>::new()).push(&Packet::PubAck(0)),
            Err(CodecError::ZeroPacketId)
        ));
    }
}
