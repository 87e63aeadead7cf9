//! A Server-Sent Events parser (the `text/event-stream` format of the WHATWG HTML standard):
//! bytes in, complete events out, with bounded memory.

use anyhow::{Result, bail};

/// Longest line, and largest event (all its `data:` lines together), accepted. A telemetry
/// message is at most 256 KiB; as JSON with escapes it stays far below this.
pub(crate) const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field; `message` when the event named none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` seen on the stream, if any.
    pub id: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    data: String,
    /// Whether the current event has a `data` field (an empty `data:` still dispatches).
    has_data: bool,
    event: String,
    last_id: Option<String>,
    /// Whether the first line was seen (a leading byte order mark is skipped).
    started: bool,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete, in order.
    pub(crate) fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<SseEvent>> {
        let mut out = Vec::new();
        while let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            self.extend_line(&bytes[..i])?;
            bytes = &bytes[i + 1..];
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(ev) = self.line_done(&line)? {
                out.push(ev);
            }
        }
        self.extend_line(bytes)?;
        Ok(out)
    }

    fn extend_line(&mut self, part: &[u8]) -> Result<()> {
        if self.line.len() + part.len() > MAX_EVENT_BYTES {
            bail!("the server sent an event-stream line longer than {MAX_EVENT_BYTES} bytes");
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<SseEvent>> {
        let mut line = line;
        if !self.started {
            self.started = true;
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(b":") {
            return Ok(None); // comment (keep-alive)
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                    bail!("the server sent an event larger than {MAX_EVENT_BYTES} bytes");
                }
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = value.to_string(),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            _ => {} // retry, unknown fields
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        Some(SseEvent {
            event: if event.is_empty() {
                "message".to_string()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        })
    }
}
