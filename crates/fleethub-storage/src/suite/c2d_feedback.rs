//! The C2D feedback aggregate: requests by sequence number, a bounded queue of records.

use crate::{C2dFeedbackRecord, C2dFeedbackRequest, C2dFeedbackStore};

fn request(seq: u64, device: &str) -> C2dFeedbackRequest {
    C2dFeedbackRequest {
        sequence_number: seq,
        ack: "full".into(),
        message_id: format!("m{seq}"),
        device_id: device.into(),
        device_generation_id: "g1".into(),
    }
}

fn record(n: u64) -> C2dFeedbackRecord {
    C2dFeedbackRecord {
        original_message_id: format!("m{n}"),
        device_id: "d1".into(),
        device_generation_id: "g1".into(),
        status_code: "Success".into(),
        enqueued_time_utc: "2026-01-01T00:00:00.0000000Z".into(),
    }
}

pub async fn c2d_feedback(s: &impl C2dFeedbackStore) {
    // Requests: put, replace, list in order, delete (unknown numbers ignored).
    assert!(s.list_feedback_requests().await.unwrap().is_empty());
    s.put_feedback_request(request(7, "d1")).await.unwrap();
    s.put_feedback_request(request(3, "d2")).await.unwrap();
    let mut again = request(7, "d1");
    again.ack = "negative".into();
    s.put_feedback_request(again.clone()).await.unwrap();
    assert_eq!(
        s.list_feedback_requests().await.unwrap(),
        vec![request(3, "d2"), again]
    );
    assert_eq!(
        s.take_feedback_requests(vec![3, 99]).await.unwrap(),
        vec![request(3, "d2")]
    );
    assert!(
        s.take_feedback_requests(vec![3]).await.unwrap().is_empty(),
        "taken once"
    );
    let left = s.list_feedback_requests().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].sequence_number, 7);
    assert!(s.take_feedback_requests(vec![]).await.unwrap().is_empty());

    // Records: oldest first, ids increase, bounded by `keep` (the oldest dropped).
    assert!(s.list_feedback(10).await.unwrap().is_empty());
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(s.append_feedback(record(n), 4).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let all = s.list_feedback(10).await.unwrap();
    assert_eq!(
        all.iter().map(|f| f.record.clone()).collect::<Vec<_>>(),
        (1..5).map(record).collect::<Vec<_>>(),
        "the oldest record went beyond keep = 4"
    );
    assert_eq!(all.iter().map(|f| f.id).collect::<Vec<_>>(), ids[1..]);
    assert_eq!(s.list_feedback(2).await.unwrap(), all[..2]);
    // Accepted records go; unknown ids are ignored; the rest stays in order.
    s.delete_feedback(vec![all[0].id, all[2].id, 12345])
        .await
        .unwrap();
    assert_eq!(
        s.list_feedback(10).await.unwrap(),
        vec![all[1].clone(), all[3].clone()]
    );
    s.delete_feedback(vec![]).await.unwrap();
    let next = s.append_feedback(record(9), 4).await.unwrap();
    assert!(next > ids[4]);
    assert_eq!(s.list_feedback(10).await.unwrap().len(), 3);
}
