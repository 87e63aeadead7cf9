use super::options::split;
use super::*;

#[test]
fn splits_evenly() {
    assert_eq!(split(10, 3), vec![0..3, 3..6, 6..10]);
    assert_eq!(split(2, 5), vec![0..1, 1..2]);
    assert_eq!(split(7, 1), vec![0..7]);
    let total: usize = split(15_000, 4).iter().map(ExactSizeIterator::len).sum();
    assert_eq!(total, 15_000);
}

#[test]
fn targets_parse() {
    assert_eq!("Mosquitto".parse::<Target>(), Ok(Target::Mosquitto));
    assert_eq!(Target::Fleethub.to_string(), "fleethub");
    assert!("rumqttd".parse::<Target>().is_err());
}

#[tokio::test]
async fn invalid_options_are_rejected() {
    for opts in [
        TelemetryBenchOptions {
            devices: 0,
            ..Default::default()
        },
        TelemetryBenchOptions {
            inflight: 0,
            ..Default::default()
        },
        TelemetryBenchOptions {
            devices: 40_000,
            processes: 2,
            ..Default::default()
        },
        TelemetryBenchOptions {
            rate: Some(0.0),
            ..Default::default()
        },
        TelemetryBenchOptions {
            target: Target::Fleethub,
            hub_service_connection_string: None,
            ..Default::default()
        },
    ] {
        assert!(run_telemetry_bench(opts).await.is_err());
    }
}

#[test]
fn report_serializes_the_headline_fields() {
    let v = serde_json::to_value(TelemetryBenchReport::default()).unwrap();
    for k in [
        "messagesPerSec",
        "p50Ms",
        "p99Ms",
        "errors",
        "connected",
        "serverRssBytes",
        "serverRssPerConnectionBytes",
        "serverCpuUsPerMsg",
        "serverUserUsPerMsg",
        "serverKernelUsPerMsg",
    ] {
        assert!(v.get(k).is_some(), "{k}");
    }
}
