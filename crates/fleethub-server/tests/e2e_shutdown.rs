//! Graceful shutdown of the real binary: on SIGTERM the listeners close at once (new
//! connections are refused), a request in flight still gets its whole answer, and the process
//! exits within the grace period.

mod common;

use common::ServerProcess;
use fleethub_server::listener::SHUTDOWN_GRACE;
use fleethub_service_client::hub::MethodInvocation;
use fleethub_service_client::{
    CaTrust, Condition, Credentials, HttpsTransport, ServiceClient, TlsTarget,
};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn hub(s: &ServerProcess) -> ServiceClient<HttpsTransport> {
    let credentials =
        Credentials::from_connection_string(&s.info.hub_service_connection_string).unwrap();
    let target = TlsTarget::new(
        &CaTrust::File(s.ca_pem()),
        &credentials.host_name,
        &format!("127.0.0.1:{}", s.https_port),
    )
    .unwrap();
    ServiceClient::hub(HttpsTransport::new(target), credentials)
}

fn refused(port: u16) -> bool {
    matches!(
        std::net::TcpStream::connect(("127.0.0.1", port)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_refuses_new_ones_and_exits() {
    let mut s = ServerProcess::start();
    let service = hub(&s);
    service
        .put_device(
            &fleethub_api::Device {
                device_id: "sleeper".into(),
                ..Default::default()
            },
            Condition::None,
        )
        .await
        .unwrap();

    // A request that stays in flight for 3 s: a direct method to an offline device waits
    // `connectTimeoutInSeconds` for it to come online, then answers 404 DeviceNotOnline.
    let in_flight = tokio::spawn(async move {
        let mut call = MethodInvocation::new("reboot", json!({}));
        call.connect_timeout_in_seconds = Some(3);
        call.response_timeout_in_seconds = Some(5);
        let started = Instant::now();
        let r = service.invoke_method("sleeper", None, &call).await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;

    let pid = s.child.as_ref().unwrap().id();
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let signalled = Instant::now();

    // New connections are refused while the request is still being served.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !(refused(s.https_port) && refused(s.mqtt_port)) {
        assert!(
            Instant::now() < deadline,
            "listeners still accept after SIGTERM; log: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended before the listeners closed"
    );

    // The request in flight gets its whole answer.
    let (result, took) = in_flight.await.unwrap();
    let e = result.unwrap_err();
    let se = e
        .service()
        .unwrap_or_else(|| panic!("not an HTTP answer: {e:#?}"));
    assert_eq!(se.status, 404, "{e}");
    assert_eq!(se.code.as_deref(), Some("DeviceNotOnline"), "{e}");
    assert!(took >= Duration::from_secs(2), "{took:?}");

    // The process exits within the grace period.
    let mut child = s.child.take().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < SHUTDOWN_GRACE + Duration::from_secs(2),
            "still running {:?} after SIGTERM; log: {}",
            signalled.elapsed(),
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}; log: {}", s.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "drained connections should let the process exit soon after the last answer: {:?}",
        signalled.elapsed()
    );
}
