//! Receiver ownership of a partition per consumer group (Event Hubs' epoch / owner level,
//! link property `com.microsoft:epoch`): a receiver with a higher epoch displaces the others
//! (they are detached with `amqp:link:stolen`); a receiver with a lower epoch than the owner,
//! or without an epoch while an owner has one, is refused. Without epochs at most
//! [`MAX_NON_EPOCH_RECEIVERS`] receivers share a partition (Azure's limit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Receivers without an epoch per partition and consumer group (Azure: 5).
pub const MAX_NON_EPOCH_RECEIVERS: usize = 5;

/// Why a receiver may not attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An owner with a higher (or any, for a receiver without epoch) epoch is attached.
    Owned { owner_epoch: i64 },
    /// Too many receivers without an epoch.
    TooMany,
}

struct Entry {
    id: u64,
    epoch: Option<i64>,
    stolen: Arc<Notify>,
}

/// Receivers per (consumer group, partition).
type Groups = HashMap<(String, u32), Vec<Entry>>;
type State = Mutex<(u64, Groups)>;

/// The receivers of every (consumer group, partition).
#[derive(Default)]
pub struct Epochs {
    state: Arc<State>,
}

/// A registered receiver; dropping it unregisters.
pub struct Registration {
    state: Arc<State>,
    key: (String, u32),
    id: u64,
    /// Notified when a higher epoch takes the partition.
    pub stolen: Arc<Notify>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut s = lock(&self.state);
        if let Some(v) = s.1.get_mut(&self.key) {
            v.retain(|e| e.id != self.id);
            if v.is_empty() {
                s.1.remove(&self.key);
            }
        }
    }
}

fn lock(state: &State) -> std::sync::MutexGuard<'_, (u64, Groups)> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Epochs {
    /// Registers a receiver; displaces lower epochs.
    pub fn register(
        &self,
        group: &str,
        partition: u32,
        epoch: Option<i64>,
    ) -> Result<Registration, Refusal> {
        let key = (group.to_ascii_lowercase(), partition);
        let mut s = lock(&self.state);
        s.0 += 1;
        let id = s.0;
        let entries = s.1.entry(key.clone()).or_default();
        let owner = entries.iter().filter_map(|e| e.epoch).max();
        match (epoch, owner) {
            (Some(e), Some(o)) if e < o => return Err(Refusal::Owned { owner_epoch: o }),
            (None, Some(o)) => return Err(Refusal::Owned { owner_epoch: o }),
            (None, None) if entries.len() >= MAX_NON_EPOCH_RECEIVERS => {
                return Err(Refusal::TooMany);
            }
            _ => {}
        }
        if let Some(e) = epoch {
            // Everyone below this epoch (and every receiver without one) is displaced.
            entries.retain(|x| {
                let keep = x.epoch.is_some_and(|xe| xe >= e);
                if !keep {
                    x.stolen.notify_one();
                }
                keep
            });
        }
        let stolen = Arc::new(Notify::new());
        entries.push(Entry {
            id,
            epoch,
            stolen: stolen.clone(),
        });
        drop(s);
        Ok(Registration {
            state: self.state.clone(),
            key,
            id,
            stolen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn higher_epochs_steal() {
        let e = Epochs::default();
        let plain = e.register("$Default", 0, None).unwrap();
        let one = e.register("$default", 0, Some(1)).unwrap();
        // The receiver without an epoch was displaced.
        tokio::time::timeout(std::time::Duration::from_secs(1), plain.stolen.notified())
            .await
            .unwrap();
        assert_eq!(
            e.register("$Default", 0, None).err(),
            Some(Refusal::Owned { owner_epoch: 1 })
        );
        assert_eq!(
            e.register("$Default", 0, Some(0)).err(),
            Some(Refusal::Owned { owner_epoch: 1 })
        );
        let same = e.register("$Default", 0, Some(1)).unwrap();
        let two = e.register("$Default", 0, Some(2)).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), one.stolen.notified())
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), same.stolen.notified())
            .await
            .unwrap();
        // Other partitions and groups are independent.
        let _other = e.register("$Default", 1, None).unwrap();
        let _g = e.register("g2", 0, None).unwrap();
        drop((one, same, two, plain));
        // Once the owner left, receivers without epoch may attach again, up to the limit.
        let many: Vec<_> = (0..MAX_NON_EPOCH_RECEIVERS)
            .map(|_| e.register("$Default", 0, None).unwrap())
            .collect();
        assert_eq!(
            e.register("$Default", 0, None).err(),
            Some(Refusal::TooMany)
        );
        drop(many);
    }
}
