//! A stream with bytes put back in front: the connection reads the 8-byte protocol header to
//! choose between SASL (`AMQP 3 1 0 0`) and plain AMQP (`AMQP 0 1 0 0`, clients that skip SASL
//! and authenticate with `$cbs` only, e.g. Node `azure-iothub`), then hands the header back
//! to the AMQP acceptor.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The protocol header of a client that negotiates SASL first.
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// The protocol header of a client that starts AMQP at once.
pub const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";

/// `prefix` is read before `inner`.
#[derive(Debug)]
pub struct Rewind<Io> {
    prefix: Vec<u8>,
    pos: usize,
    inner: Io,
}

impl<Io: AsyncRead + Unpin> Rewind<Io> {
    /// Reads the protocol header of `io` and returns it with the stream that replays it.
    pub async fn read_header(mut io: Io) -> std::io::Result<([u8; 8], Rewind<Io>)> {
        let mut header = [0u8; 8];
        io.read_exact(&mut header).await?;
        Ok((
            header,
            Rewind {
                prefix: header.to_vec(),
                pos: 0,
                inner: io,
            },
        ))
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Rewind<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Rewind<Io> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_header_is_read_again() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"AMQP\x00\x01\x00\x00rest").await.unwrap();
        drop(client);
        let (header, mut s) = Rewind::read_header(server).await.unwrap();
        assert_eq!(header, AMQP_HEADER);
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"AMQP\x00\x01\x00\x00rest");
    }
}
