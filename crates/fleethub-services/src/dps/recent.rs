//! A bounded in-memory map of recent registration outcomes (operation ID -> record).

use fleethub_storage::RegistrationRecord;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_ENTRIES: usize = 20_000;
const MAX_AGE: Duration = Duration::from_mins(2);

#[derive(Default)]
pub(crate) struct RecentOperations {
    map: Mutex<HashMap<String, (Instant, RegistrationRecord)>>,
}

impl RecentOperations {
    pub(crate) fn insert(&self, rec: &RegistrationRecord) {
        let mut map = self.map.lock().expect("recent operations");
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (at, _)| at.elapsed() < MAX_AGE);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(rec.operation_id.clone(), (Instant::now(), rec.clone()));
    }

    pub(crate) fn get(&self, operation_id: &str) -> Option<RegistrationRecord> {
        let map = self.map.lock().expect("recent operations");
        map.get(operation_id)
            .filter(|(at, _)| at.elapsed() < MAX_AGE)
            .map(|(_, r)| r.clone())
    }
}
