//! Enrollment groups are matched by signature (a device only names its registration ID), so
//! every registration without an individual enrollment looks at all symmetric-key groups.
//! They are cached in memory, refreshed after local writes and at least every few seconds
//! (other server instances may write them too).

use fleethub_api::EnrollmentGroup;
use fleethub_storage::{PageRequest, Result, Store};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_AGE: Duration = Duration::from_secs(2);

pub(crate) struct GroupCache {
    store: Arc<dyn Store>,
    state: Mutex<Option<(Instant, Arc<Vec<EnrollmentGroup>>)>>,
    reload: tokio::sync::Mutex<()>,
}

impl GroupCache {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        GroupCache {
            store,
            state: Mutex::new(None),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn invalidate(&self) {
        *self.state.lock().expect("group cache") = None;
    }

    fn fresh(&self) -> Option<Arc<Vec<EnrollmentGroup>>> {
        match &*self.state.lock().expect("group cache") {
            Some((at, groups)) if at.elapsed() < MAX_AGE => Some(groups.clone()),
            _ => None,
        }
    }

    pub(crate) async fn all(&self) -> Result<Arc<Vec<EnrollmentGroup>>> {
        if let Some(g) = self.fresh() {
            return Ok(g);
        }
        let _guard = self.reload.lock().await;
        if let Some(g) = self.fresh() {
            return Ok(g);
        }
        let mut all = Vec::new();
        let mut page = PageRequest {
            continuation: None,
            max_items: 1000,
        };
        loop {
            let p = self.store.list_groups(page.clone()).await?;
            all.extend(p.items);
            match p.continuation {
                Some(c) => page.continuation = Some(c),
                None => break,
            }
        }
        let all = Arc::new(all);
        *self.state.lock().expect("group cache") = Some((Instant::now(), all.clone()));
        Ok(all)
    }
}
