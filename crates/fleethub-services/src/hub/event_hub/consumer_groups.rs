//! Consumer groups of the built-in endpoint: `$Default` always exists and cannot be deleted;
//! other names follow Azure's rules (1-50 letters, digits, `.`, `_`, `-`) and compare
//! case-insensitively; at most `max_consumer_groups` exist ($Default included).

use super::super::Hub;
use crate::hub::Error;
use fleethub_storage::{ConsumerGroupRecord, StoreError};

/// The consumer group every hub has.
pub const DEFAULT_CONSUMER_GROUP: &str = "$Default";
/// Azure's limit on standard tiers (20 per hub).
pub const DEFAULT_MAX_CONSUMER_GROUPS: usize = 20;

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroup {
    pub name: String,
    pub created_at_ms: i64,
}

impl From<ConsumerGroupRecord> for ConsumerGroup {
    fn from(r: ConsumerGroupRecord) -> Self {
        ConsumerGroup {
            created_at_ms: fleethub_api::time::parse_utc_ms(&r.created_utc).unwrap_or(0),
            name: r.name,
        }
    }
}

/// Azure's rule for a consumer group that can be created: 1-50 characters of ASCII letters,
/// digits, `.`, `_` and `-`.
pub fn validate_consumer_group_name(name: &str) -> Result<(), Error> {
    let ok = (1..=50).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConsumerGroupName(name.to_string()))
    }
}

fn is_default(name: &str) -> bool {
    name.eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP)
}

impl Hub {
    pub(super) async fn ensure_default_consumer_group(
        &self,
        created_utc: &str,
    ) -> Result<(), Error> {
        let rec = ConsumerGroupRecord {
            name: DEFAULT_CONSUMER_GROUP.to_string(),
            created_utc: created_utc.to_string(),
        };
        match self.store.create_consumer_group(rec, usize::MAX).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A consumer group (`ConsumerGroupNotFound` if there is none of that name).
    pub async fn consumer_group(&self, name: &str) -> Result<ConsumerGroup, Error> {
        self.partitions().await?;
        self.store
            .get_consumer_group(name)
            .await?
            .map(ConsumerGroup::from)
            .ok_or_else(|| Error::ConsumerGroupNotFound(name.to_string()))
    }

    /// All consumer groups, `$Default` first, then by name.
    pub async fn list_consumer_groups(&self) -> Result<Vec<ConsumerGroup>, Error> {
        self.partitions().await?;
        let mut groups: Vec<ConsumerGroup> = self
            .store
            .list_consumer_groups()
            .await?
            .into_iter()
            .map(ConsumerGroup::from)
            .collect();
        groups.sort_by_key(|g| (!is_default(&g.name), g.name.to_ascii_lowercase()));
        Ok(groups)
    }

    pub async fn create_consumer_group(&self, name: &str) -> Result<ConsumerGroup, Error> {
        self.partitions().await?;
        if is_default(name) {
            return Err(Error::ConsumerGroupExists(name.to_string()));
        }
        validate_consumer_group_name(name)?;
        let rec = ConsumerGroupRecord {
            name: name.to_string(),
            created_utc: self.clock.now_utc(),
        };
        match self
            .store
            .create_consumer_group(rec, self.endpoint.cfg.max_consumer_groups)
            .await
        {
            Ok(r) => Ok(r.into()),
            Err(StoreError::AlreadyExists { .. }) => {
                Err(Error::ConsumerGroupExists(name.to_string()))
            }
            Err(StoreError::LimitReached { max, .. }) => Err(Error::TooManyConsumerGroups { max }),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a consumer group and its checkpoint; `$Default` cannot be deleted.
    pub async fn delete_consumer_group(&self, name: &str) -> Result<(), Error> {
        self.partitions().await?;
        if is_default(name) {
            return Err(Error::invalid(format!(
                "the {DEFAULT_CONSUMER_GROUP} consumer group cannot be deleted"
            )));
        }
        match self.store.delete_consumer_group(name).await {
            Err(StoreError::NotFound { .. }) => Err(Error::ConsumerGroupNotFound(name.to_string())),
            other => Ok(other?),
        }
    }
}
