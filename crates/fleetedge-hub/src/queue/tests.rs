use super::*;
use std::collections::BTreeMap;

fn entry(endpoint: &str, body: &str, ttl: Duration) -> Entry {
    Entry {
        endpoint: endpoint.into(),
        input: None,
        msg: EdgeMessage {
            source_device: "d".into(),
            source_module: "A".into(),
            system: BTreeMap::from([("mid".to_string(), body.to_string())]),
            properties: BTreeMap::new(),
            body: body.as_bytes().to_vec(),
        },
        ttl,
    }
}

const HOUR: Duration = Duration::from_hours(1);

#[tokio::test]
async fn fifo_per_endpoint_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), 1 << 20).unwrap();
    for i in 0..5 {
        q.enqueue(vec![
            entry("upstream/A", &format!("m{i}"), HOUR),
            entry("module/B", &format!("m{i}"), HOUR),
        ])
        .await
        .unwrap();
    }
    assert_eq!(q.stats().messages, 10);
    let rows = q.peek("upstream/A", 0, 3).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.msg.body.clone()).collect::<Vec<_>>(),
        vec![b"m0".to_vec(), b"m1".to_vec(), b"m2".to_vec()]
    );
    assert_eq!(rows[0].msg.system["mid"], "m0");
    let after = q.peek("upstream/A", rows[1].seq, 10).await.unwrap();
    assert_eq!(after.len(), 3);
    q.remove("upstream/A", vec![rows[0].seq, rows[1].seq])
        .await
        .unwrap();
    // Removing with the wrong endpoint does nothing.
    q.remove("module/B", vec![rows[2].seq]).await.unwrap();
    assert_eq!(q.peek("upstream/A", 0, 10).await.unwrap().len(), 3);
    assert_eq!(q.peek("module/B", 0, 10).await.unwrap().len(), 5);
    assert_eq!(q.stats().messages, 8);
    assert_eq!(q.endpoints().await.unwrap(), vec!["module/B", "upstream/A"]);
}

#[tokio::test]
async fn committed_rows_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), 1 << 20).unwrap();
    q.set_kv("routes", "{\"r\":1}").await.unwrap();
    // Many concurrent enqueues share commits.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            q.enqueue(vec![entry("upstream/A", &format!("m{i}"), HOUR)])
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // A crash: copy the files as they are on disk while the queue is still open (no
    // checkpoint, no clean close), then open the copy.
    let crashed = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), crashed.path().join(f.file_name())).unwrap();
    }
    let q2 = Queue::open(crashed.path(), 1 << 20).unwrap();
    assert_eq!(q2.stats().messages, 50);
    assert_eq!(q2.stats().bytes, q.stats().bytes);
    assert_eq!(q2.peek("upstream/A", 0, 100).await.unwrap().len(), 50);
    assert_eq!(
        q2.get_kv("routes").await.unwrap().as_deref(),
        Some("{\"r\":1}")
    );
    assert_eq!(q2.get_kv("nothing").await.unwrap(), None);
    drop(q);
    // Reopening the original after the handles are gone works too.
    let q3 = Queue::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(q3.stats().messages, 50);
}

#[tokio::test]
async fn bound_rejects_without_storing() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), 400).unwrap();
    let mut stored = 0;
    let err = loop {
        match q
            .enqueue(vec![entry("upstream/A", "0123456789", HOUR)])
            .await
        {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100);
    };
    assert!(matches!(err, QueueError::Full { max: 400, .. }), "{err}");
    assert!(err.to_string().contains("queue full"));
    assert!(stored > 0);
    assert!(q.stats().bytes <= 400);
    assert_eq!(q.stats().rejected, 1);
    assert_eq!(q.peek("upstream/A", 0, 1000).await.unwrap().len(), stored);
    // Delivering frees space.
    let first = q.peek("upstream/A", 0, 1).await.unwrap()[0].seq;
    q.remove("upstream/A", vec![first]).await.unwrap();
    q.enqueue(vec![entry("upstream/A", "0123456789", HOUR)])
        .await
        .unwrap();
}

#[tokio::test]
async fn expired_rows_are_not_delivered_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), 1 << 20).unwrap();
    q.enqueue(vec![entry("upstream/A", "short", Duration::from_millis(1))])
        .await
        .unwrap();
    q.enqueue(vec![entry("upstream/A", "long", HOUR)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rows = q.peek("upstream/A", 0, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].msg.body, b"long");
    // The purge runs at most once a second, with the next batch.
    tokio::time::sleep(PURGE_INTERVAL).await;
    q.peek("upstream/A", 0, 10).await.unwrap();
    let s = q.stats();
    assert_eq!((s.messages, s.expired), (1, 1));
}
