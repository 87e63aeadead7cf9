use std::time::Duration;

use fleethub_core::connection_string::ConnectionString;

use super::credentials::identity_from_connection_string;
use super::transport::split_address;
use super::{DEFAULT_SAS_TTL, ReconnectPolicy, renewal_delay};

#[test]
fn backoff_is_exponential_bounded_and_jittered() {
    let p = ReconnectPolicy::default();
    assert_eq!(p.delay(0, 1.0), Duration::from_secs(1));
    assert_eq!(p.delay(0, 0.0), Duration::from_millis(500));
    assert_eq!(p.delay(1, 1.0), Duration::from_secs(2));
    assert_eq!(p.delay(3, 1.0), Duration::from_secs(8));
    assert_eq!(p.delay(3, 0.0), Duration::from_secs(4));
    // Capped at max_delay from attempt 6 (64 s) on, whatever the jitter.
    for attempt in [6, 7, 30, 62, 63, 1000, u32::MAX] {
        assert_eq!(p.delay(attempt, 1.0), Duration::from_mins(1), "{attempt}");
        assert_eq!(p.delay(attempt, 0.0), Duration::from_secs(30), "{attempt}");
    }
    // Out-of-range jitter is clamped.
    assert_eq!(p.delay(0, 7.0), Duration::from_secs(1));
    assert_eq!(p.delay(0, -1.0), Duration::from_millis(500));
    assert_eq!(p.delay(0, f64::NAN), Duration::from_secs(1));
    // Random picks stay within [base/2, base] and are not all equal.
    let picks: Vec<Duration> = (0..200).map(|_| p.next_delay(2)).collect();
    assert!(
        picks
            .iter()
            .all(|d| *d >= Duration::from_secs(2) && *d <= Duration::from_secs(4))
    );
    assert!(picks.iter().any(|d| *d != picks[0]));
}

#[test]
fn renewal_at_eighty_percent() {
    assert_eq!(renewal_delay(DEFAULT_SAS_TTL), Duration::from_mins(48));
    assert_eq!(
        renewal_delay(Duration::from_secs(100)),
        Duration::from_secs(80)
    );
}

#[test]
fn connect_address_forms() {
    assert_eq!(
        split_address("127.0.0.1", 8883).unwrap(),
        ("127.0.0.1".into(), 8883)
    );
    assert_eq!(
        split_address("127.0.0.1:29883", 8883).unwrap(),
        ("127.0.0.1".into(), 29883)
    );
    assert_eq!(split_address("[::1]:9", 8883).unwrap(), ("::1".into(), 9));
    assert_eq!(split_address("[::1]", 8883).unwrap(), ("::1".into(), 8883));
    assert_eq!(split_address("::1", 8883).unwrap(), ("::1".into(), 8883));
    assert!(split_address("h:x", 8883).is_err());
    assert!(split_address("", 8883).is_err());
}

#[test]
fn connection_string_identities() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let parse = |s: &str| identity_from_connection_string(ConnectionString::parse(s).unwrap());
    let (ids, creds) = parse(&format!(
        "HostName=h.example;DeviceId=d;SharedAccessKey={key}"
    ))
    .unwrap();
    assert_eq!(
        (ids.host.as_str(), ids.device_id.as_str(), ids.module_id),
        ("h.example", "d", None)
    );
    assert!(creds.renewable());
    let (ids, _) = parse(&format!(
        "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey={key};GatewayHostName=gw"
    ))
    .unwrap();
    assert_eq!(
        (ids.module_id.as_deref(), ids.gateway.as_deref()),
        (Some("m"), Some("gw"))
    );
    let (_, creds) =
        parse("HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=x&sig=y&se=1")
            .unwrap();
    assert!(!creds.renewable());
    for bad in [
        format!("HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey={key}"),
        format!("HostName=h;SharedAccessKey={key}"),
        "HostName=h;DeviceId=d".to_string(),
        "HostName=h;DeviceId=d;x509=true".to_string(),
        "HostName=h;DeviceId=d;SharedAccessKey=not-base64!".to_string(),
    ] {
        assert!(parse(&bad).is_err(), "{bad}");
    }
}
