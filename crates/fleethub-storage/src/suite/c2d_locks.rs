//! HTTPS receive locks on queued C2D messages: at most one unexpired lock per message, taken
//! together with the delivery count, settled once (removed or released), gone with the message.

use crate::{C2dLock, C2dLockRelease, C2dMessage, C2dStore, StoreError};

const T0: i64 = 1_700_000_000_000;
const LOCK_MS: i64 = 60_000;

/// A queued message for `device` (not yet enqueued: sequence number 0).
pub fn c2d_message(device: &str, id: &str) -> C2dMessage {
    C2dMessage {
        sequence_number: 0,
        device_id: device.into(),
        message_id: id.into(),
        correlation_id: None,
        content_type: None,
        content_encoding: None,
        expiry_unix: 4_000_000_000,
        enqueued_time_utc: "2024-01-01T00:00:00Z".into(),
        delivery_count: 0,
        ack: None,
        properties: std::collections::BTreeMap::default(),
        body: b"hi".to_vec(),
    }
}

fn lock(token: &str, now_ms: i64) -> C2dLock {
    C2dLock {
        token: token.into(),
        now_ms,
        until_ms: now_ms + LOCK_MS,
    }
}

fn delivered(m: &C2dMessage, count: u32) -> C2dMessage {
    C2dMessage {
        delivery_count: count,
        ..m.clone()
    }
}

async fn counts(s: &impl C2dStore, device: &str) -> Vec<(String, u32)> {
    s.list_c2d(device, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.message_id, m.delivery_count))
        .collect()
}

pub async fn c2d_locks(s: &impl C2dStore) {
    use C2dLockRelease::{Remove, Unlock};
    let a = s.enqueue_c2d(c2d_message("d1", "a"), 10).await.unwrap();
    let b = s.enqueue_c2d(c2d_message("d1", "b"), 10).await.unwrap();
    s.enqueue_c2d(c2d_message("d2", "x"), 10).await.unwrap();
    assert!(s.locked_c2d("d1", T0).await.unwrap().is_empty());

    // Locked with its delivery count in one write; a second lock while it holds changes nothing.
    assert!(s.lock_c2d(delivered(&a, 1), lock("t1", T0)).await.unwrap());
    assert_eq!(counts(s, "d1").await, [("a".into(), 1), ("b".into(), 0)]);
    assert_eq!(s.locked_c2d("d1", T0).await.unwrap(), [a.sequence_number]);
    assert!(s.locked_c2d("d2", T0).await.unwrap().is_empty());
    assert!(
        !s.lock_c2d(delivered(&a, 2), lock("t2", T0 + LOCK_MS - 1))
            .await
            .unwrap()
    );
    assert_eq!(counts(s, "d1").await[0], ("a".into(), 1));
    // A delivery counted elsewhere (MQTT) keeps the lock.
    s.update_c2d(delivered(&a, 1)).await.unwrap();
    assert_eq!(s.locked_c2d("d1", T0).await.unwrap(), [a.sequence_number]);

    // Another device's or an unknown token settles nothing.
    assert_eq!(
        s.settle_c2d_lock("d2", "t1", T0, Remove).await.unwrap(),
        None
    );
    assert_eq!(
        s.settle_c2d_lock("d1", "t2", T0, Remove).await.unwrap(),
        None
    );
    assert_eq!(s.list_c2d("d1", 10).await.unwrap().len(), 2);

    // Expired: no lock any more, not settled by its token, lockable again.
    let later = T0 + LOCK_MS;
    assert!(s.locked_c2d("d1", later).await.unwrap().is_empty());
    assert_eq!(
        s.settle_c2d_lock("d1", "t1", later, Remove).await.unwrap(),
        None
    );
    assert_eq!(s.list_c2d("d1", 10).await.unwrap().len(), 2);
    assert!(
        s.lock_c2d(delivered(&a, 2), lock("t3", later))
            .await
            .unwrap()
    );

    // Released (abandoned): unlocked, still queued, the token used up.
    assert_eq!(
        s.settle_c2d_lock("d1", "t3", later + 1, Unlock)
            .await
            .unwrap(),
        Some(a.sequence_number)
    );
    assert!(s.locked_c2d("d1", later + 1).await.unwrap().is_empty());
    assert_eq!(counts(s, "d1").await, [("a".into(), 2), ("b".into(), 0)]);
    assert_eq!(
        s.settle_c2d_lock("d1", "t3", later + 1, Unlock)
            .await
            .unwrap(),
        None
    );

    // Removed (completed or rejected): gone, the token used up.
    assert!(
        s.lock_c2d(delivered(&b, 1), lock("t4", later))
            .await
            .unwrap()
    );
    assert_eq!(
        s.settle_c2d_lock("d1", "t4", later + 1, Remove)
            .await
            .unwrap(),
        Some(b.sequence_number)
    );
    assert_eq!(counts(s, "d1").await, [("a".into(), 2)]);
    assert_eq!(
        s.settle_c2d_lock("d1", "t4", later + 1, Remove)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        s.lock_c2d(delivered(&b, 2), lock("t5", later)).await,
        Err(StoreError::NotFound { .. })
    ));

    // A purge takes locked messages and their locks with it.
    assert!(
        s.lock_c2d(delivered(&a, 3), lock("t6", later))
            .await
            .unwrap()
    );
    assert_eq!(s.purge_c2d("d1").await.unwrap(), 1);
    assert!(s.locked_c2d("d1", later).await.unwrap().is_empty());
    assert_eq!(
        s.settle_c2d_lock("d1", "t6", later, Remove).await.unwrap(),
        None
    );
    assert_eq!(counts(s, "d2").await, [("x".into(), 0)]);
}
