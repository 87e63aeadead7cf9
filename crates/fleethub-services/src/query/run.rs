//! Running an IoT Hub query over the registry, one page at a time (`POST /devices/query`,
//! `docs/protocol-notes.md`, "Query language"): device or module twins in ID order, filtered,
//! projected; or aggregated over every matching twin into one page. Pages follow
//! `x-ms-max-item-count` and end with a continuation token ([`QueryToken`]) while more
//! results may follow, so no list stops silently.

use super::token::QueryToken;
use super::{Query, Source};
use crate::hub::{Error, Hub};
use fleethub_iot_protocol::query::Aggregation;
use fleethub_storage::PageRequest;
use serde_json::Value;

/// Results per page when the client sends no `x-ms-max-item-count`, and the most honoured.
pub const DEFAULT_QUERY_PAGE: usize = 100;
pub const MAX_QUERY_PAGE: usize = 1000;
/// Twins one request examines at most (aggregates excepted); past that it answers with what it
/// found and a continuation, so a selective query over a large registry never runs unbounded.
pub const MAX_QUERY_SCAN: usize = 10_000;
/// Registry page size while scanning.
const SCAN_PAGE: usize = 250;

/// One page of query results.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    pub items: Vec<Value>,
    /// `x-ms-continuation` for the next page; `None` on the last one.
    pub continuation: Option<String>,
    /// `x-ms-item-type`: `twin` for `SELECT *`, `raw` for projections and aggregates.
    pub item_type: &'static str,
}

/// Where a scan stopped: the token of the next page (without the count), if any.
type Scanned = (Vec<Value>, Option<QueryToken>);

impl Hub {
    /// One page of `q`'s results, from the continuation in `req` (a token an earlier page
    /// handed out); `req.max_items` 0 means [`DEFAULT_QUERY_PAGE`].
    pub async fn query_twins(&self, q: &Query, req: &PageRequest) -> Result<QueryPage, Error> {
        let token = match req.continuation.as_deref() {
            None => QueryToken::default(),
            Some(t) => QueryToken::decode(t).ok_or_else(|| {
                Error::invalid(format!(
                    "invalid continuation token '{t}': send back the x-ms-continuation of the previous page"
                ))
            })?,
        };
        let item_type = if q.0.items().is_none() { "twin" } else { "raw" };
        if q.is_aggregate() {
            return Ok(QueryPage {
                items: self.aggregate(q).await?,
                continuation: None,
                item_type,
            });
        }
        let mut want = match req.max_items {
            0 => DEFAULT_QUERY_PAGE,
            n => n.min(MAX_QUERY_PAGE),
        };
        if let Some(top) = q.0.top() {
            let left = usize::try_from(top.saturating_sub(token.returned)).unwrap_or(usize::MAX);
            want = want.min(left);
        }
        let (items, next) = if want == 0 {
            (Vec::new(), None)
        } else {
            match q.source() {
                Source::Devices => self.scan_devices(q, token.devices, want).await?,
                Source::Modules => self.scan_modules(q, &token, want).await?,
            }
        };
        let returned = token.returned + items.len() as u64;
        let more = q.0.top().is_none_or(|top| returned < top);
        let continuation = next
            .filter(|_| more)
            .map(|t| QueryToken { returned, ..t }.encode());
        Ok(QueryPage {
            items,
            continuation,
            item_type,
        })
    }

    /// Device twins in ID order from `start` until `want` matched, the registry ended or
    /// [`MAX_QUERY_SCAN`] were examined. The next page starts right after the last device
    /// whose result is in this one, so no match is skipped or repeated.
    async fn scan_devices(
        &self,
        q: &Query,
        start: Option<String>,
        want: usize,
    ) -> Result<Scanned, Error> {
        let mut out: Vec<Value> = Vec::new();
        let mut continuation = start;
        let mut scanned = 0;
        // Set when a page held more matches than fit: read the same range again, shorter.
        let mut cut: Option<usize> = None;
        loop {
            let remaining = want - out.len();
            let size = cut.take().unwrap_or(SCAN_PAGE.max(remaining));
            let page = self
                .list_twins(PageRequest {
                    continuation: continuation.clone(),
                    max_items: size,
                })
                .await?;
            let read = page.items.len();
            let mut matched = Vec::new();
            for (i, twin) in page.items.into_iter().enumerate() {
                let doc = serde_json::to_value(twin).unwrap_or(Value::Null);
                if q.matches(&doc) {
                    matched.push((i, doc));
                }
            }
            if matched.len() > remaining {
                // The page ends after the `remaining`-th match: strictly fewer items than read.
                cut = Some(matched[remaining - 1].0 + 1);
                continue;
            }
            scanned += read;
            out.extend(matched.into_iter().map(|(_, doc)| q.project(doc)));
            continuation = page.continuation;
            if continuation.is_none() || out.len() == want || scanned >= MAX_QUERY_SCAN {
                break;
            }
        }
        let next = continuation.map(|c| QueryToken {
            devices: Some(c),
            ..QueryToken::default()
        });
        Ok((out, next))
    }

    /// Module twins, device by device in ID order and by module ID within a device, from where
    /// `token` points until `want` matched, the registry ended or [`MAX_QUERY_SCAN`] twins were
    /// examined.
    async fn scan_modules(
        &self,
        q: &Query,
        token: &QueryToken,
        want: usize,
    ) -> Result<Scanned, Error> {
        let mut out: Vec<Value> = Vec::new();
        let mut start = token.devices.clone();
        let mut skip = token.device.clone().zip(token.after_module.clone());
        let mut scanned = 0;
        loop {
            let page = self
                .list_twins(PageRequest {
                    continuation: start.clone(),
                    max_items: SCAN_PAGE,
                })
                .await?;
            let ids: Vec<String> = page.items.into_iter().map(|t| t.device_id).collect();
            for (i, id) in ids.iter().enumerate() {
                let mut twins = self.module_twins(id).await?;
                if let Some((device, after)) = skip.take()
                    && device == *id
                {
                    twins.retain(|t| t.module_id.as_deref().is_some_and(|m| m > after.as_str()));
                }
                scanned += 1 + twins.len();
                let count = twins.len();
                for (j, twin) in twins.into_iter().enumerate() {
                    let module_id = twin.module_id.clone().unwrap_or_default();
                    let doc = serde_json::to_value(twin).unwrap_or(Value::Null);
                    if q.matches(&doc) {
                        out.push(q.project(doc));
                    }
                    if out.len() < want {
                        continue;
                    }
                    let next = if j + 1 < count {
                        // Part of this device's modules are returned: read it again.
                        Some(QueryToken {
                            devices: self.after_devices(start.clone(), i).await?,
                            device: Some(id.clone()),
                            after_module: Some(module_id),
                            returned: 0,
                        })
                    } else if i + 1 < ids.len() || page.continuation.is_some() {
                        self.after_devices(start.clone(), i + 1)
                            .await?
                            .map(|c| QueryToken {
                                devices: Some(c),
                                ..QueryToken::default()
                            })
                    } else {
                        None
                    };
                    return Ok((out, next));
                }
            }
            start = page.continuation;
            match &start {
                None => return Ok((out, None)),
                Some(c) if scanned >= MAX_QUERY_SCAN => {
                    let next = QueryToken {
                        devices: Some(c.clone()),
                        ..QueryToken::default()
                    };
                    return Ok((out, Some(next)));
                }
                Some(_) => {}
            }
        }
    }

    /// The registry continuation after the first `n` devices from `start` (`start` itself for
    /// 0; `None` when no device follows them).
    async fn after_devices(
        &self,
        start: Option<String>,
        n: usize,
    ) -> Result<Option<String>, Error> {
        if n == 0 {
            return Ok(start);
        }
        let page = self
            .list_twins(PageRequest {
                continuation: start,
                max_items: n,
            })
            .await?;
        Ok(page.continuation)
    }

    /// Every matching twin folded into the aggregate's rows (one page, no continuation).
    async fn aggregate(&self, q: &Query) -> Result<Vec<Value>, Error> {
        let mut agg = Aggregation::new(&q.0);
        let mut continuation = None;
        loop {
            let page = self
                .list_twins(PageRequest {
                    continuation,
                    max_items: SCAN_PAGE,
                })
                .await?;
            for twin in page.items {
                let twins = match q.source() {
                    Source::Devices => vec![twin],
                    Source::Modules => self.module_twins(&twin.device_id).await?,
                };
                for t in twins {
                    let doc = serde_json::to_value(t).unwrap_or(Value::Null);
                    if q.matches(&doc) {
                        agg.add(&q.operands(&doc));
                    }
                }
            }
            continuation = page.continuation;
            if continuation.is_none() {
                return Ok(agg.rows());
            }
        }
    }
}
