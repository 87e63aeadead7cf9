//! Azure's spelling of response header names on HTTP/1 connections. hyper writes header names
//! in lowercase, and some official clients look response headers up case-sensitively (the C
//! SDK reads the C2D lock token from `ETag`; see `docs/protocol-notes.md`, "Hub HTTPS device
//! API"). [`HeaderCase`] wraps a connection's IO and rewrites the names of the headers in
//! [`SPELLINGS`] in every response head it writes: same bytes, case only, nothing else touched.
//! It follows the response framing (status line, headers, then a `Content-Length` or chunked
//! body, none for HEAD/1xx/204/304, raw bytes after `101` or a close-delimited body), so body
//! bytes are never rewritten. Whether a response answers a HEAD request is noted by
//! [`HeadRequests`] when the request is handed to the service (HTTP/1 answers in order).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Response header names clients compare case-sensitively, in Azure's spelling.
pub const SPELLINGS: [&str; 8] = [
    "ETag",
    "Retry-After",
    "Location",
    "Operation-Location",
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "WWW-Authenticate",
];

/// Longest header name looked at; longer names pass unchanged.
const MAX_NAME: usize = 64;

/// The requests of one connection, in order: whether each was a HEAD (its answer has no body).
#[derive(Clone, Default, Debug)]
pub struct HeadRequests(Arc<Mutex<VecDeque<bool>>>);

impl HeadRequests {
    /// Called for every request as it reaches the service.
    pub fn note(&self, method: &axum::http::Method) {
        self.queue().push_back(method == axum::http::Method::HEAD);
    }

    fn next_is_head(&self) -> bool {
        self.queue().pop_front().unwrap_or(false)
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<bool>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `HTTP/1.1 200 OK\r\n`; `spaces` seen so far, `digits` of the code read.
    StatusLine {
        spaces: u8,
        digits: u8,
    },
    LineStart,
    /// A header name, held back in `name` until its `:`.
    Name,
    /// A header value up to its `\n`.
    Value,
    /// `\r` of the empty line ending the head.
    HeadEnd,
    Fixed(u64),
    /// Chunk size (hex) and extensions up to `\n`; `ext` once the digits ended.
    ChunkSize {
        size: u64,
        ext: bool,
    },
    ChunkData(u64),
    /// The `\r\n` after chunk data.
    ChunkDataEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailer {
        line_start: bool,
    },
    /// Upgraded or close-delimited: everything else is body.
    Passthrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Other,
    ContentLength,
    TransferEncoding,
}

/// The response-stream parser: rewrites header names as bytes go through.
#[derive(Debug)]
struct Rewriter {
    state: State,
    heads: HeadRequests,
    code: u16,
    content_length: Option<u64>,
    chunked: bool,
    name: Vec<u8>,
    header: Framing,
    value: Vec<u8>,
}

impl Rewriter {
    fn new(heads: HeadRequests) -> Self {
        Rewriter {
            state: State::StatusLine {
                spaces: 0,
                digits: 0,
            },
            heads,
            code: 0,
            content_length: None,
            chunked: false,
            name: Vec::new(),
            header: Framing::Other,
            value: Vec::new(),
        }
    }

    fn next_response(&mut self) {
        self.state = State::StatusLine {
            spaces: 0,
            digits: 0,
        };
        self.code = 0;
        self.content_length = None;
        self.chunked = false;
    }

    /// Appends `input`, rewritten, to `out` (a header name split over calls is held back).
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Fixed(n) | State::ChunkData(n) => {
                    let take = usize::try_from(n)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (State::Fixed(_), 0) => {
                            self.next_response();
                            self.state
                        }
                        (State::Fixed(_), _) => State::Fixed(left),
                        (_, 0) => State::ChunkDataEnd,
                        (_, _) => State::ChunkData(left),
                    };
                    continue;
                }
                State::Passthrough => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
                _ => {}
            }
            self.byte(input[i], out);
            i += 1;
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.state == State::Name {
            if b == b':' {
                self.end_name(out);
                out.push(b);
                self.state = State::Value;
            } else {
                self.name.push(b);
                if self.name.len() > MAX_NAME || b == b'\n' {
                    out.append(&mut self.name);
                    self.header = Framing::Other;
                    self.state = if b == b'\n' {
                        State::LineStart
                    } else {
                        State::Value
                    };
                }
            }
            return;
        }
        out.push(b);
        match self.state {
            State::StatusLine { spaces, digits } => {
                if b == b'\n' {
                    self.state = State::LineStart;
                } else if b == b' ' {
                    self.state = State::StatusLine {
                        spaces: spaces + 1,
                        digits,
                    };
                } else if spaces == 1 && digits < 3 && b.is_ascii_digit() {
                    self.code = self.code * 10 + u16::from(b - b'0');
                    self.state = State::StatusLine {
                        spaces,
                        digits: digits + 1,
                    };
                }
            }
            State::LineStart => match b {
                b'\r' => self.state = State::HeadEnd,
                b'\n' => self.end_head(),
                _ => {
                    out.pop();
                    self.name.clear();
                    self.name.push(b);
                    self.state = State::Name;
                }
            },
            State::Value => {
                if b == b'\n' {
                    self.end_value();
                    self.state = State::LineStart;
                } else if self.header != Framing::Other && self.value.len() < MAX_NAME {
                    self.value.push(b);
                }
            }
            State::HeadEnd => {
                if b == b'\n' {
                    self.end_head();
                }
            }
            State::ChunkSize { size, ext } => {
                let digit = char::from(b).to_digit(16);
                self.state = match (b, digit) {
                    (b'\n', _) if size == 0 => State::Trailer { line_start: true },
                    (b'\n', _) => State::ChunkData(size),
                    (_, Some(d)) if !ext => State::ChunkSize {
                        size: size.saturating_mul(16).saturating_add(u64::from(d)),
                        ext,
                    },
                    _ => State::ChunkSize { size, ext: true },
                };
            }
            State::ChunkDataEnd => {
                if b == b'\n' {
                    self.state = State::ChunkSize {
                        size: 0,
                        ext: false,
                    };
                }
            }
            State::Trailer { line_start } => match b {
                b'\n' if line_start => self.next_response(),
                b'\n' => self.state = State::Trailer { line_start: true },
                b'\r' => {}
                _ => self.state = State::Trailer { line_start: false },
            },
            State::Name | State::Fixed(_) | State::ChunkData(_) | State::Passthrough => {}
        }
    }

    fn end_name(&mut self, out: &mut Vec<u8>) {
        if let Some(spelling) = SPELLINGS
            .iter()
            .find(|s| s.as_bytes().eq_ignore_ascii_case(&self.name))
        {
            self.name.copy_from_slice(spelling.as_bytes());
        }
        self.header = if self.name.eq_ignore_ascii_case(b"content-length") {
            Framing::ContentLength
        } else if self.name.eq_ignore_ascii_case(b"transfer-encoding") {
            Framing::TransferEncoding
        } else {
            Framing::Other
        };
        self.value.clear();
        out.append(&mut self.name);
    }

    fn end_value(&mut self) {
        let value = String::from_utf8_lossy(&self.value);
        let value = value.trim();
        match self.header {
            Framing::ContentLength => self.content_length = value.parse().ok(),
            Framing::TransferEncoding => {
                self.chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            }
            Framing::Other => {}
        }
        self.header = Framing::Other;
    }

    fn end_head(&mut self) {
        if self.code == 101 {
            self.state = State::Passthrough;
            return;
        }
        if (100..200).contains(&self.code) {
            self.next_response();
            return;
        }
        let head_request = self.heads.next_is_head();
        if head_request || self.code == 204 || self.code == 304 {
            self.next_response();
        } else if self.chunked {
            self.state = State::ChunkSize {
                size: 0,
                ext: false,
            };
        } else {
            match self.content_length {
                Some(0) => self.next_response(),
                Some(n) => self.state = State::Fixed(n),
                None => self.state = State::Passthrough,
            }
        }
    }
}

/// A connection's IO with response header names in Azure's spelling (see the module docs).
#[derive(Debug)]
pub struct HeaderCase<T> {
    inner: T,
    rewriter: Rewriter,
    /// Rewritten bytes accepted from the caller and not yet written to `inner`.
    out: Vec<u8>,
    written: usize,
}

impl<T> HeaderCase<T> {
    pub fn new(inner: T, heads: HeadRequests) -> Self {
        HeaderCase {
            inner,
            rewriter: Rewriter::new(heads),
            out: Vec::new(),
            written: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> HeaderCase<T> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeaderCase<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeaderCase<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.rewriter.feed(buf, &mut this.out);
        // The bytes are ours now; what `inner` does not take yet goes out on the next call.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rewrites `input` fed in pieces of `step` bytes, with `heads` noted as the requests.
    fn rewrite(input: &[u8], step: usize, heads: &[bool]) -> Vec<u8> {
        let noted = HeadRequests::default();
        for &h in heads {
            noted.note(if h {
                &axum::http::Method::HEAD
            } else {
                &axum::http::Method::GET
            });
        }
        let mut r = Rewriter::new(noted);
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            r.feed(piece, &mut out);
        }
        out
    }

    fn check(input: &str, expected: &str, heads: &[bool]) {
        for step in 1..=input.len() {
            assert_eq!(
                String::from_utf8(rewrite(input.as_bytes(), step, heads)).unwrap(),
                expected,
                "fed {step} bytes at a time"
            );
        }
    }

    #[test]
    fn header_names_take_azures_spelling_and_bodies_stay() {
        check(
            "HTTP/1.1 200 OK\r\netag: \"lock\"\r\ncontent-type: application/json\r\n\
             iothub-messageid: m1\r\ncontent-length: 21\r\n\r\netag: body\r\nlocation:",
            "HTTP/1.1 200 OK\r\nETag: \"lock\"\r\nContent-Type: application/json\r\n\
             iothub-messageid: m1\r\nContent-Length: 21\r\n\r\netag: body\r\nlocation:",
            &[false],
        );
    }

    #[test]
    fn keep_alive_responses_after_fixed_and_chunked_bodies() {
        check(
            "HTTP/1.1 202 Accepted\r\nretry-after: 1\r\nContent-Length: 9\r\n\r\netag: x\r\n\
             HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
             A\r\netag: y\r\n\r\n3;x=y\r\nabc\r\n0\r\nx-trailer: t\r\n\r\n\
             HTTP/1.1 201 Created\r\noperation-location: /o\r\nlocation: /l\r\ncontent-length: 0\r\n\r\n\
             HTTP/1.1 204 No Content\r\netag: \"1\"\r\n\r\n\
             HTTP/1.1 200 OK\r\netag: \"2\"\r\ncontent-length: 2\r\n\r\n{}",
            "HTTP/1.1 202 Accepted\r\nRetry-After: 1\r\nContent-Length: 9\r\n\r\netag: x\r\n\
             HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
             A\r\netag: y\r\n\r\n3;x=y\r\nabc\r\n0\r\nx-trailer: t\r\n\r\n\
             HTTP/1.1 201 Created\r\nOperation-Location: /o\r\nLocation: /l\r\nContent-Length: 0\r\n\r\n\
             HTTP/1.1 204 No Content\r\nETag: \"1\"\r\n\r\n\
             HTTP/1.1 200 OK\r\nETag: \"2\"\r\nContent-Length: 2\r\n\r\n{}",
            &[false; 5],
        );
    }

    #[test]
    fn head_answers_and_interim_responses_have_no_body() {
        check(
            "HTTP/1.1 200 OK\r\netag: \"1\"\r\ncontent-length: 5\r\n\r\n\
             HTTP/1.1 100 Continue\r\n\r\n\
             HTTP/1.1 200 OK\r\netag: \"2\"\r\ncontent-length: 5\r\n\r\netag:",
            "HTTP/1.1 200 OK\r\nETag: \"1\"\r\nContent-Length: 5\r\n\r\n\
             HTTP/1.1 100 Continue\r\n\r\n\
             HTTP/1.1 200 OK\r\nETag: \"2\"\r\nContent-Length: 5\r\n\r\netag:",
            &[true, false],
        );
    }

    #[test]
    fn upgraded_and_close_delimited_streams_pass_unchanged() {
        check(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n\
             HTTP/1.1 200 OK\r\netag: x\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n\
             HTTP/1.1 200 OK\r\netag: x\r\n\r\n",
            &[false],
        );
        check(
            "HTTP/1.1 200 OK\r\netag: a\r\n\r\netag: b\r\n",
            "HTTP/1.1 200 OK\r\nETag: a\r\n\r\netag: b\r\n",
            &[false],
        );
    }

    #[tokio::test]
    async fn the_adapter_writes_rewritten_bytes_through() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut theirs) = tokio::io::duplex(8);
        let mut io = HeaderCase::new(ours, HeadRequests::default());
        let head = b"HTTP/1.1 200 OK\r\netag: \"x\"\r\ncontent-length: 2\r\n\r\nok";
        let writer = async move {
            io.write_all(head).await.unwrap();
            io.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let ((), read) = tokio::join!(writer, theirs.read_to_end(&mut got));
        read.unwrap();
        assert_eq!(
            got,
            b"HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 2\r\n\r\nok"
        );
    }
}
