//! The `monitor-events` loop: stored history (`GET /messages/events` pages), then the live
//! stream, with no message lost or printed twice across the hand-over, a reader that fell
//! behind (`event: lagged`) or a reconnect: every gap is filled from the stored history,
//! which holds every message (the live stream only carries those stored after it opened).

use super::live::{LiveConnector, LiveEvents};
use crate::client::{ServiceClient, Transport};
use crate::errors::ServiceError;
use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Messages asked for per history page (the server returns at most 1000).
pub(crate) const HISTORY_PAGE: usize = 500;
/// Live sequence numbers remembered for de-duplication above the covered mark.
const REMEMBERED: usize = 1000;
/// How long reconnecting is tried before giving up.
const RECONNECT_FOR: Duration = Duration::from_mins(1);
/// Longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where printing stands. Every message with a sequence number up to `covered` has been dealt
/// with (printed, or skipped as another device's); `printed` holds those printed from the live
/// stream above it. Sequence numbers are the hub's, one counter for all devices.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Cursor {
    covered: Option<u64>,
    printed: BTreeSet<u64>,
}

impl Cursor {
    /// Everything up to `seq` is taken care of (history from `--from SEQ`).
    pub(crate) fn after(seq: u64) -> Self {
        Cursor {
            covered: Some(seq),
            printed: BTreeSet::new(),
        }
    }

    pub(crate) fn covered(&self) -> Option<u64> {
        self.covered
    }

    /// A live message: should it be printed?
    pub(crate) fn take_live(&mut self, seq: u64) -> bool {
        let covered = *self.covered.get_or_insert(seq.saturating_sub(1));
        if seq <= covered || !self.printed.insert(seq) {
            return false;
        }
        while self.printed.len() > REMEMBERED {
            // Forget the oldest; nothing older than it will be printed any more.
            if let Some(oldest) = self.printed.pop_first() {
                self.covered = Some(oldest.max(covered));
            }
        }
        true
    }

    /// A message from the stored history: should it be printed?
    pub(crate) fn take_history(&mut self, seq: u64) -> bool {
        self.covered.is_none_or(|c| seq > c) && self.printed.insert(seq)
    }

    /// History was read up to `next`.
    pub(crate) fn covered_to(&mut self, next: u64) {
        let c = self.covered.map_or(next, |c| c.max(next));
        self.covered = Some(c);
        self.printed.retain(|&s| s > c);
    }
}

/// Where events and notes go.
pub(crate) trait Sink {
    /// One message (as the API shows it); `false` stops monitoring (stdout closed).
    fn event(&mut self, message: &Value) -> Result<bool>;
    /// A progress note (stderr).
    fn note(&mut self, note: &str);
}

pub(crate) struct Follow<'a, T, L, S> {
    pub client: &'a ServiceClient<T>,
    pub live: &'a L,
    pub device: Option<&'a str>,
    pub consumer_group: &'a str,
    pub sink: &'a mut S,
    pub cursor: Cursor,
    /// First pause before reconnecting (doubles up to 10 s).
    pub backoff: Duration,
}

enum Step {
    Continue,
    Stop,
}

impl<T: Transport, L: LiveConnector, S: Sink> Follow<'_, T, L, S> {
    /// History after `start` (when given), then live events unless `live` is false. Returns
    /// when history is done (no live), stdout closed, or on an error that retrying won't fix.
    pub(crate) async fn run(&mut self, start: Option<u64>, live: bool) -> Result<()> {
        // Open the live stream first: what is stored while history is read is in both, and
        // the cursor prints it once.
        let mut stream = if live {
            Some(self.open_live().await?)
        } else {
            None
        };
        if let Some(from) = start {
            self.cursor = Cursor::after(from);
            if let Step::Stop = self.history().await? {
                return Ok(());
            }
            if live {
                self.sink
                    .note("caught up with the stored history; now following live events");
            }
        }
        let Some(stream) = stream.as_mut() else {
            return Ok(());
        };
        loop {
            let trouble = match stream.next_event().await {
                Ok(Some(ev)) if ev.event == "message" => {
                    if let Step::Stop = self.live_message(&ev.data)? {
                        return Ok(());
                    }
                    continue;
                }
                Ok(Some(ev)) if ev.event == "lagged" => {
                    self.sink.note(&format!(
                        "the live stream fell behind by {} messages; reading them from the stored history",
                        ev.data
                    ));
                    if let Step::Stop = self.history().await? {
                        return Ok(());
                    }
                    continue;
                }
                Ok(Some(ev)) => {
                    self.sink
                        .note(&format!("server event '{}': {}", ev.event, ev.data));
                    continue;
                }
                Ok(None) => "the server ended the live stream".to_string(),
                Err(e) => format!("the live stream broke ({e:#})"),
            };
            self.sink.note(&format!("{trouble}; reconnecting"));
            *stream = self.reconnect().await?;
            if let Step::Stop = self.history().await? {
                return Ok(());
            }
        }
    }

    fn live_message(&mut self, data: &str) -> Result<Step> {
        let msg: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                self.sink
                    .note(&format!("skipping a live event that is not JSON ({e})"));
                return Ok(Step::Continue);
            }
        };
        let Some(seq) = msg.get("sequenceNumber").and_then(Value::as_u64) else {
            self.sink
                .note("skipping a live event without a sequenceNumber");
            return Ok(Step::Continue);
        };
        if self.cursor.take_live(seq) && !self.sink.event(&msg)? {
            return Ok(Step::Stop);
        }
        Ok(Step::Continue)
    }

    async fn open_live(&self) -> Result<L::Stream> {
        self.live.open(self.device, self.client.token()?).await
    }

    async fn reconnect(&mut self) -> Result<L::Stream> {
        let started = Instant::now();
        let mut delay = self.backoff;
        loop {
            tokio::time::sleep(delay).await;
            match self.open_live().await {
                Ok(s) => {
                    self.sink.note("reconnected to the live stream");
                    return Ok(s);
                }
                // Credentials or request refused: retrying won't help.
                Err(e)
                    if e.downcast_ref::<ServiceError>()
                        .is_some_and(|s| s.status < 500) =>
                {
                    return Err(e);
                }
                Err(e) if started.elapsed() >= RECONNECT_FOR => {
                    return Err(e.context(format!(
                        "gave up reconnecting to the live stream after {} s",
                        RECONNECT_FOR.as_secs()
                    )));
                }
                Err(e) => {
                    delay = (delay * 2).min(MAX_BACKOFF);
                    self.sink.note(&format!(
                        "cannot reconnect yet ({e:#}); retrying in {} s",
                        delay.as_secs_f32()
                    ));
                }
            }
        }
    }

    /// Prints the stored messages after the cursor, page by page, until caught up.
    async fn history(&mut self) -> Result<Step> {
        let Some(mut from) = self.cursor.covered() else {
            self.sink.note(
                "no event seen yet to resume from: messages sent while the stream was down may be \
                 missing (`--from SEQ` reads them from the stored history)",
            );
            return Ok(Step::Continue);
        };
        loop {
            let page = self
                .client
                .get(
                    "/messages/events",
                    &[
                        ("consumerGroup", self.consumer_group.to_string()),
                        ("from", from.to_string()),
                        ("limit", HISTORY_PAGE.to_string()),
                    ],
                )
                .await?;
            let (messages, next) = parse_page(&page)?;
            for m in messages {
                let Some(seq) = m.get("sequenceNumber").and_then(Value::as_u64) else {
                    continue;
                };
                let device = m.get("deviceId").and_then(Value::as_str);
                if self.device.is_some_and(|d| device != Some(d)) {
                    continue;
                }
                if self.cursor.take_history(seq) && !self.sink.event(m)? {
                    return Ok(Step::Stop);
                }
            }
            self.cursor.covered_to(next);
            if messages.len() < HISTORY_PAGE || next <= from {
                return Ok(Step::Continue);
            }
            from = next;
        }
    }
}

/// `{"messages": [...], "next": n}`.
pub(crate) fn parse_page(page: &Value) -> Result<(&[Value], u64)> {
    let messages = page
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("GET /messages/events: the answer has no 'messages' array"))?;
    let Some(next) = page.get("next").and_then(Value::as_u64) else {
        bail!("GET /messages/events: the answer has no numeric 'next'");
    };
    Ok((messages, next))
}
