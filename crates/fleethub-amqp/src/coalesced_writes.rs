//! Coalesces a connection's writes (`docs/benchmarks.md`, "Event Hubs consumer").
//!
//! fe2o3-amqp's connection writes every outgoing frame and flushes it at once: each transfer of
//! a partition receiver was its own TLS record and its own `writev`, the largest per-event cost
//! of reading a backlog. Here the connection writes into a bounded buffer and a flush returns at
//! once; a writer task of the connection takes everything buffered, writes it to the stream in
//! one go and flushes when nothing more is waiting. Under load frames therefore share records
//! and syscalls; a lone frame still goes out immediately (the writer task is woken by the
//! write). Memory is bounded: at most [`MAX_BUFFERED`] bytes wait in the buffer and as many are
//! being written; a full buffer makes the connection wait, as a full socket did before.
//! The bytes pass through `full_fields` on the way in (every performative with all its fields).

use crate::full_fields::FullFields;
use bytes::{Bytes, BytesMut};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::watch;

/// Bytes buffered at most before writes wait for the writer task.
pub const MAX_BUFFERED: usize = 256 * 1024;
/// After the connection is gone, how long the writer task may still take to write what is
/// buffered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    buf: BytesMut,
    /// Completes the performatives written into `buf` (AMQP streams only).
    fields: Option<FullFields>,
    /// The writer task, waiting for bytes.
    writer: Option<Waker>,
    /// A write waiting for room.
    space: Option<Waker>,
    /// A shutdown waiting for the writer task to finish.
    done: Option<Waker>,
    /// No more writes: the writer task writes what is left, then shuts the stream down.
    closing: bool,
    finished: bool,
    error: Option<(std::io::ErrorKind, String)>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

/// A stream whose writes are buffered and written by a task of their own.
pub struct CoalescedWrites<Io> {
    read: ReadHalf<Io>,
    state: Arc<Mutex<State>>,
    gone: watch::Sender<bool>,
}

impl<Io> std::fmt::Debug for CoalescedWrites<Io> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoalescedWrites").finish_non_exhaustive()
    }
}

impl<Io> CoalescedWrites<Io>
where
    Io: AsyncRead + AsyncWrite + Send + 'static,
{
    /// Splits `io` and spawns its writer task (needs a tokio runtime).
    pub fn new(io: Io) -> Self {
        Self::with_state(io, State::default())
    }

    /// [`Self::new`] for an AMQP connection's stream: the performatives written get every
    /// field (`full_fields`).
    pub fn amqp(io: Io) -> Self {
        Self::with_state(
            io,
            State {
                fields: Some(FullFields::default()),
                ..State::default()
            },
        )
    }

    fn with_state(io: Io, state: State) -> Self {
        let (read, write) = tokio::io::split(io);
        let state = Arc::new(Mutex::new(state));
        let (gone, gone_rx) = watch::channel(false);
        tokio::spawn(run_writer(state.clone(), write, gone_rx));
        CoalescedWrites { read, state, gone }
    }
}

impl<Io> Drop for CoalescedWrites<Io> {
    fn drop(&mut self) {
        let writer = {
            let mut s = lock(&self.state);
            s.closing = true;
            s.writer.take()
        };
        wake(writer);
        let _ = self.gone.send(true);
    }
}

/// Waits until the connection is gone, then [`DRAIN_TIMEOUT`] more.
async fn gone_for_a_while(mut gone: watch::Receiver<bool>) {
    if gone.wait_for(|g| *g).await.is_ok() {
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// The next bytes to write (`None`: closing and nothing left).
async fn next_chunk(state: &Mutex<State>) -> Option<Bytes> {
    poll_fn(|cx| {
        let mut s = lock(state);
        if !s.buf.is_empty() {
            let chunk = s.buf.split().freeze();
            let space = s.space.take();
            drop(s);
            wake(space);
            return Poll::Ready(Some(chunk));
        }
        if s.closing {
            return Poll::Ready(None);
        }
        s.writer = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

async fn run_writer<Io: AsyncWrite>(
    state: Arc<Mutex<State>>,
    mut write: WriteHalf<Io>,
    gone: watch::Receiver<bool>,
) {
    let work = async {
        while let Some(chunk) = next_chunk(&state).await {
            write.write_all(&chunk).await?;
            if lock(&state).buf.is_empty() {
                write.flush().await?;
            }
        }
        write.shutdown().await
    };
    // A peer that stops reading cannot keep the task once the connection is gone.
    let result: std::io::Result<()> = tokio::select! {
        r = work => r,
        () = gone_for_a_while(gone) => Ok(()),
    };
    let (space, done) = {
        let mut s = lock(&state);
        s.finished = true;
        if let Err(e) = result {
            s.error = Some((e.kind(), e.to_string()));
        }
        (s.space.take(), s.done.take())
    };
    wake(space);
    wake(done);
}

fn stored_error(s: &State) -> Option<std::io::Error> {
    s.error
        .as_ref()
        .map(|(kind, msg)| std::io::Error::new(*kind, msg.clone()))
}

impl<Io: AsyncRead> AsyncRead for CoalescedWrites<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite> AsyncWrite for CoalescedWrites<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut s = lock(&self.state);
        if let Some(e) = stored_error(&s) {
            return Poll::Ready(Err(e));
        }
        if s.closing || s.finished {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        let room = MAX_BUFFERED.saturating_sub(s.buf.len());
        if room == 0 {
            s.space = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        let State { buf, fields, .. } = &mut *s;
        match fields {
            Some(f) => f.push(&data[..n], buf),
            None => buf.extend_from_slice(&data[..n]),
        }
        let writer = s.writer.take();
        drop(s);
        wake(writer);
        Poll::Ready(Ok(n))
    }

    /// Returns at once: the writer task writes and flushes what is buffered without delay.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let s = lock(&self.state);
        match stored_error(&s) {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut s = lock(&self.state);
        if s.finished {
            return Poll::Ready(stored_error(&s).map_or(Ok(()), Err));
        }
        s.closing = true;
        s.done = Some(cx.waker().clone());
        let writer = s.writer.take();
        drop(s);
        wake(writer);
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn writes_arrive_in_order_without_an_explicit_flush_and_reads_pass() {
        let (client, server) = tokio::io::duplex(1024);
        let mut s = CoalescedWrites::new(server);
        let (mut cr, mut cw) = tokio::io::split(client);
        let mut want = Vec::new();
        for i in 0..2000u32 {
            let frame = i.to_be_bytes();
            s.write_all(&frame).await.unwrap();
            s.flush().await.unwrap();
            want.extend_from_slice(&frame);
        }
        let mut got = vec![0u8; want.len()];
        tokio::time::timeout(Duration::from_secs(5), cr.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, want);
        // A lone write still goes out.
        s.write_all(b"one").await.unwrap();
        let mut one = [0u8; 3];
        tokio::time::timeout(Duration::from_secs(5), cr.read_exact(&mut one))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&one, b"one");
        cw.write_all(b"in").await.unwrap();
        let mut inbound = [0u8; 2];
        s.read_exact(&mut inbound).await.unwrap();
        assert_eq!(&inbound, b"in");
        // Shutdown writes what is left and closes the write side.
        s.write_all(b"last").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        cr.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"last");
    }

    #[tokio::test]
    async fn the_buffer_is_bounded_while_the_peer_does_not_read() {
        let (client, server) = tokio::io::duplex(1024);
        let mut s = CoalescedWrites::new(server);
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0usize;
        // The peer reads nothing: writes stop once the buffer is full and the writer task holds
        // a full buffer it cannot write.
        while let Ok(Ok(())) =
            tokio::time::timeout(Duration::from_millis(200), s.write_all(&chunk)).await
        {
            written += chunk.len();
            assert!(written <= 2 * MAX_BUFFERED + chunk.len(), "{written}");
        }
        assert!(written >= MAX_BUFFERED, "{written}");
        drop(client);
    }
}
