//! A small, bounded HTTP/1.1 response reader for one streaming response: the status line and
//! headers, then the body piece by piece as it arrives (chunked, `Content-Length` or
//! until the connection closes). The device SDK's HTTPS client only returns whole bodies, and
//! the live telemetry stream never ends.

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Longest status, header or chunk-size line.
const MAX_LINE: usize = 8 * 1024;
/// Most header lines.
const MAX_HEADERS: usize = 100;
/// Most bytes returned by one [`BodyReader::read_some`].
const READ_PIECE: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one line ending in `\n` (the `\r\n` or `\n` removed); `None` at end of stream.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, what: &str) -> Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await
        .with_context(|| format!("cannot read the {what}"))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() > MAX_LINE {
            bail!("the server sent a {what} longer than {MAX_LINE} bytes");
        }
        bail!("the connection closed in the middle of the {what}");
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map_err(|_| anyhow!("the server sent a {what} that is not UTF-8"))
        .map(Some)
}

/// Reads the status line and headers (skipping interim 1xx responses).
pub(crate) async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Head> {
    loop {
        let line = read_line(r, "HTTP status line")
            .await?
            .ok_or_else(|| anyhow!("the server closed the connection without answering"))?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
            bail!(
                "the server did not answer with HTTP/1.x: '{}'",
                excerpt(&line)
            );
        };
        let mut headers = Vec::new();
        loop {
            let line = read_line(r, "HTTP header")
                .await?
                .ok_or_else(|| anyhow!("the connection closed in the middle of the headers"))?;
            if line.is_empty() {
                break;
            }
            if headers.len() == MAX_HEADERS {
                bail!("the server sent more than {MAX_HEADERS} headers");
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| anyhow!("malformed HTTP header '{}'", excerpt(&line)))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        return Ok(Head { status, headers });
    }
}

fn excerpt(s: &str) -> String {
    s.chars().take(100).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Transfer-Encoding: chunked`; the number is what is left of the current chunk.
    Chunked {
        left: u64,
        started: bool,
    },
    Length(u64),
    UntilClose,
}

/// The body of a response, read as it arrives.
pub(crate) struct BodyReader<R> {
    inner: R,
    framing: Framing,
    done: bool,
}

impl<R: AsyncBufRead + Unpin> BodyReader<R> {
    pub(crate) fn new(inner: R, head: &Head) -> Result<Self> {
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        let framing = if chunked {
            Framing::Chunked {
                left: 0,
                started: false,
            }
        } else if let Some(len) = head.header("content-length") {
            Framing::Length(
                len.parse()
                    .map_err(|_| anyhow!("invalid Content-Length '{len}'"))?,
            )
        } else {
            Framing::UntilClose
        };
        let done =
            matches!(framing, Framing::Length(0)) || head.status == 204 || head.status == 304;
        Ok(BodyReader {
            inner,
            framing,
            done,
        })
    }

    /// The next piece of the body (at most 16 KiB); `None` at its end.
    pub(crate) async fn read_some(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if self.done {
                return Ok(None);
            }
            match self.framing {
                Framing::Length(0) => self.done = true,
                Framing::Length(left) => {
                    let piece = self.read_piece(left).await?;
                    if piece.is_empty() {
                        bail!("the connection closed {left} bytes before the end of the body");
                    }
                    self.framing = Framing::Length(left - piece.len() as u64);
                    return Ok(Some(piece));
                }
                Framing::UntilClose => {
                    let piece = self.read_piece(u64::MAX).await?;
                    if piece.is_empty() {
                        self.done = true;
                    } else {
                        return Ok(Some(piece));
                    }
                }
                Framing::Chunked { left: 0, started } => {
                    if started {
                        // CRLF after the previous chunk's data.
                        let line = read_line(&mut self.inner, "chunk end").await?;
                        if line.as_deref() != Some("") {
                            bail!("malformed chunked body: no CRLF after a chunk");
                        }
                    }
                    let line = read_line(&mut self.inner, "chunk size line")
                        .await?
                        .ok_or_else(|| {
                            anyhow!("the connection closed in the middle of a chunked body")
                        })?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(hex, 16)
                        .map_err(|_| anyhow!("malformed chunk size '{}'", excerpt(&line)))?;
                    if size == 0 {
                        self.skip_trailers().await?;
                        self.done = true;
                    } else {
                        self.framing = Framing::Chunked {
                            left: size,
                            started: true,
                        };
                    }
                }
                Framing::Chunked { left, .. } => {
                    let piece = self.read_piece(left).await?;
                    if piece.is_empty() {
                        bail!("the connection closed in the middle of a chunk");
                    }
                    self.framing = Framing::Chunked {
                        left: left - piece.len() as u64,
                        started: true,
                    };
                    return Ok(Some(piece));
                }
            }
        }
    }

    /// The rest of the body, at most `limit` bytes (an error body, say).
    pub(crate) async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(piece) = self.read_some().await? {
            out.extend_from_slice(&piece);
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }

    /// Up to `max` bytes of what is buffered or arrives next; empty at end of stream.
    async fn read_piece(&mut self, max: u64) -> Result<Vec<u8>> {
        let buf = self
            .inner
            .fill_buf()
            .await
            .context("cannot read the response body")?;
        let n = buf
            .len()
            .min(READ_PIECE)
            .min(usize::try_from(max).unwrap_or(usize::MAX));
        let piece = buf[..n].to_vec();
        self.inner.consume(n);
        Ok(piece)
    }

    async fn skip_trailers(&mut self) -> Result<()> {
        for _ in 0..=MAX_HEADERS {
            match read_line(&mut self.inner, "chunked trailer").await? {
                None => return Ok(()),
                Some(l) if l.is_empty() => return Ok(()),
                Some(_) => {}
            }
        }
        bail!("the server sent more than {MAX_HEADERS} trailer lines")
    }
}
