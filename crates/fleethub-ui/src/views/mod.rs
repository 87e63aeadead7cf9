//! The dashboard's pages, one module per section.

pub mod deployments;
pub mod devices;
pub mod edge;
pub mod enrollment_edit;
pub mod enrollments;
pub mod groups;
pub mod individuals;
pub mod modules;
pub mod overview;
pub mod telemetry;

use fleethub_services::PageRequest;
use serde::Deserialize;

/// The most items a page lists at once.
pub const PAGE_ITEMS: usize = 50;
/// The most items a count walks through (more shows as "N+").
pub const COUNT_CAP: usize = 10_000;

/// A form that carries only the CSRF token (sign-out, deletions).
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    pub csrf: String,
}

/// `?page=` (a continuation), `?gpage=` (a second listing's continuation) and `?done=` (a
/// notice after an action).
#[derive(Debug, Default, Deserialize)]
pub struct Listing {
    pub page: Option<String>,
    pub gpage: Option<String>,
    pub done: Option<String>,
}

impl Listing {
    /// The page `?page=` asks for.
    pub fn request(&self) -> PageRequest {
        page_request(self.page.as_deref())
    }

    /// The page `?gpage=` asks for.
    pub fn second_request(&self) -> PageRequest {
        page_request(self.gpage.as_deref())
    }
}

fn page_request(continuation: Option<&str>) -> PageRequest {
    PageRequest {
        continuation: continuation.filter(|c| !c.is_empty()).map(str::to_string),
        max_items: PAGE_ITEMS,
    }
}

/// Walks every page of a listing, up to [`COUNT_CAP`] items: `collect!(|page| call)` evaluates
/// to `Result<(Vec<T>, capped), E>` (`capped` when it stopped at the cap). A macro rather than
/// a function taking an async closure, so the handler futures stay `Send`.
macro_rules! collect {
    (|$page:ident| $call:expr) => {
        async {
            let mut items = Vec::new();
            let mut continuation = None;
            loop {
                let $page = fleethub_services::PageRequest {
                    continuation: continuation.take(),
                    max_items: 1000,
                };
                let p = match $call.await {
                    Ok(p) => p,
                    Err(e) => break Err(e),
                };
                items.extend(p.items);
                if items.len() >= $crate::views::COUNT_CAP {
                    items.truncate($crate::views::COUNT_CAP);
                    break Ok((items, true));
                }
                match p.continuation {
                    Some(c) => continuation = Some(c),
                    None => break Ok((items, false)),
                }
            }
        }
    };
}
pub(crate) use collect;

/// "N" or "N+" when the count stopped at the cap.
pub fn count_text(n: usize, capped: bool) -> String {
    if capped {
        format!("{n}+")
    } else {
        n.to_string()
    }
}
