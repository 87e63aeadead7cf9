//! `fleethub bench telemetry --transport amqp`: the load tool's AMQP devices (`$cbs`
//! put-token, a sender on `/devices/{id}/messages/events`) against the real server; every
//! message is acknowledged and stored.

mod common;

use common::ServerProcess;

#[test]
fn bench_telemetry_over_amqp() {
    let s = ServerProcess::start();
    let (ok, out, err) = s.cli(&[
        "bench",
        "telemetry",
        "--transport",
        "amqp",
        "--devices",
        "3",
        "--inflight",
        "2",
        "--max",
        "--duration",
        "2",
        "--warmup",
        "1",
        "-o",
        "json",
    ]);
    assert!(ok, "{err}\n{out}");
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["target"], "fleethub (amqp)", "{report}");
    assert_eq!(report["connected"], 3, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
}
