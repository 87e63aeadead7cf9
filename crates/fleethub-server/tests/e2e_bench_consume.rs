//! End-to-end: `fleethub bench consume` against the real binary with a tiny backlog: it
//! publishes exactly the backlog, the Event Hubs-style consumer and the REST baseline read
//! exactly what is stored, the live consumer gets every PUBACKed message; two more runs reuse
//! the stored backlog instead of publishing, with the other connection layouts (`--layout`),
//! and one more with receivers that ask for pre-settled transfers (`--settle on-send`).

mod common;

use common::ServerProcess;
use serde_json::Value;

/// `credit`: the receivers' link credit; the reads span several credit windows when it is
/// below the events of a partition (about a quarter of the backlog).
fn bench(server: &ServerProcess, backlog: &str, layout: &str, settle: &str, credit: &str) -> Value {
    let (ok, out, err) = server.cli(&[
        "bench",
        "consume",
        "--layout",
        layout,
        "--settle",
        settle,
        "--credit",
        credit,
        "--backlog",
        backlog,
        "--devices",
        "4",
        "--latency-rate",
        "100",
        "--latency-secs",
        "2",
        "--phase-timeout",
        "120",
        "--output",
        "json",
    ]);
    assert!(ok, "bench consume failed: {err}\n{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn n(r: &Value, k: &str) -> u64 {
    r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"))
}

fn f(r: &Value, k: &str) -> f64 {
    r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"))
}

#[test]
fn bench_consume_reads_exactly_the_backlog() {
    let server = ServerProcess::start();
    let r = bench(&server, "2000", "connection-per-partition", "accept", "100");
    assert_eq!(n(&r, "partitions"), 4, "{r}");
    assert_eq!(r["layout"], "connection-per-partition", "{r}");
    assert_eq!(r["settle"], "accept", "{r}");
    assert_eq!(n(&r, "backlogPublished"), 2000, "{r}");
    assert_eq!(n(&r, "publishErrors"), 0, "{r}");
    assert_eq!(n(&r, "backlogEvents"), 2000, "{r}");
    assert_eq!(n(&r, "eventsRead"), 2000, "{r}");
    assert_eq!(n(&r, "baselineEvents"), 2000, "{r}");
    assert!(
        f(&r, "eventsPerSec") > 0.0 && f(&r, "baselineEventsPerSec") > 0.0,
        "{r}"
    );
    assert!((f(&r, "ratio") - f(&r, "eventsPerSec") / f(&r, "baselineEventsPerSec")).abs() < 1e-9);
    // 100 msg/s for 2 s.
    let sent = n(&r, "latencySent");
    assert!((150..=210).contains(&sent), "{r}");
    assert_eq!(n(&r, "latencyReceived"), sent, "{r}");
    let (p50, p99) = (f(&r, "latencyP50Ms"), f(&r, "latencyP99Ms"));
    assert!(
        p50 <= p99 && p99 <= f(&r, "latencyMaxMs") && p99 < 5000.0,
        "{r}"
    );
    assert!(r.get("firstError").is_none(), "{r}");

    // The stored events (backlog + live phase) are reused, and all of them are read, whatever
    // the connections and sessions of the consumer and its settlement.
    let mut stored = 2000 + sent;
    for (layout, settle) in [
        ("session-per-partition", "accept"),
        ("shared", "accept"),
        ("connection-per-partition", "on-send"),
    ] {
        let again = bench(&server, "1000", layout, settle, "100");
        assert_eq!(again["layout"], layout, "{again}");
        assert_eq!(again["settle"], settle, "{again}");
        assert_eq!(n(&again, "backlogPublished"), 0, "{again}");
        assert_eq!(n(&again, "backlogEvents"), stored, "{again}");
        assert_eq!(n(&again, "eventsRead"), stored, "{again}");
        assert_eq!(n(&again, "baselineEvents"), stored, "{again}");
        assert_eq!(
            n(&again, "latencyReceived"),
            n(&again, "latencySent"),
            "{again}"
        );
        stored += n(&again, "latencySent");
    }

    // The bench devices are gone again.
    let (ok, out, err) = server.cli(&["hub", "device-identity", "list", "-o", "json"]);
    assert!(ok, "{err}");
    let devices: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(devices, serde_json::json!([]), "bench devices left");
}
