//! Opt-in run against a real `fleethub serve`:
//!
//! ```sh
//! FLEETHUB_SERVER_INFO=fleethub-data/server-info.json \
//!   cargo test -p fleethub-bench --test real_server -- --ignored --nocapture
//! ```
//! Optional: `FLEETHUB_BENCH_COUNT` (default 20), `FLEETHUB_BENCH_CONCURRENCY` (default 4).

use fleethub_bench::{RegisterBenchOptions, Transport, run_register_bench};
use serde_json::Value;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn bench(transport: Transport) {
    let path = std::env::var("FLEETHUB_SERVER_INFO")
        .expect("set FLEETHUB_SERVER_INFO to the server's server-info.json");
    let info: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let text = |k: &str| {
        info[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} missing"))
            .to_string()
    };
    let port = |k: &str| info[k].as_u64().unwrap_or_else(|| panic!("{k} missing")) as u16;
    let count = env_usize("FLEETHUB_BENCH_COUNT", 20);
    let report = run_register_bench(RegisterBenchOptions {
        count,
        concurrency: env_usize("FLEETHUB_BENCH_CONCURRENCY", 4),
        transport,
        dps_host: text("dpsHost"),
        port: match transport {
            Transport::Mqtt => port("mqttPort"),
            Transport::Https => port("httpsPort"),
        },
        id_scope: text("idScope"),
        ca_pem_path: text("caCertPath").into(),
        dps_service_connection_string: text("dpsServiceConnectionString"),
        service_port: port("httpsPort"),
        handshake_count: 0,
        progress: fleethub_bench::ProgressMode::detect(),
    })
    .await
    .unwrap();
    println!("{report}\n{}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.registered, count);
}

#[tokio::test]
#[ignore = "needs a running server: set FLEETHUB_SERVER_INFO"]
async fn real_server_mqtt() {
    bench(Transport::Mqtt).await;
}

#[tokio::test]
#[ignore = "needs a running server: set FLEETHUB_SERVER_INFO"]
async fn real_server_https() {
    bench(Transport::Https).await;
}
