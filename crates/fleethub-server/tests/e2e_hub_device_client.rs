//! End-to-end: the Rust device client (fleethub-device) against the real `fleethub` server
//! binary. It starts the server on free local ports with a temporary data directory, creates a device over the service REST API, then checks
//! telemetry, twin GET/PATCH, desired updates, a direct method, C2D, a SAS renewal
//! reconnect (session kept, no re-subscription needed) and a server restart (reconnect
//! with back-off).

use fleethub_test_ports::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleethub_device::{
    ClientTlsConfig, ConnectionStatus, DeviceClient, DeviceClientOptions, Message, MethodResponse,
    ReconnectPolicy,
};
use fleethub_service_client::{Credentials, HttpsTransport, ServiceClient, TlsTarget};
use http::Method;
use serde_json::{Value, json};

fn server_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleethub"))
}

struct Server {
    bin: PathBuf,
    data: tempfile::TempDir,
    mqtt_port: u16,
    https_port: u16,
    child: Option<Child>,
}

impl Server {
    fn start(bin: PathBuf) -> Server {
        let mut s = Server {
            bin,
            data: tempfile::tempdir().unwrap(),
            mqtt_port: free_port(),
            https_port: free_port(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("server.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args(["serve", "--data-dir"])
            .arg(self.data.path().join("data"))
            .args(["--bind", "127.0.0.1", "--hub-hostname", "localhost"])
            .args(["--dps-hostname", "localhost"])
            .args(["--mqtt-port", &self.mqtt_port.to_string()])
            .args(["--https-port", &self.https_port.to_string()])
            .args(["--amqp-port", &free_port().to_string()])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("cannot start the server binary");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.info_path().exists()
                && std::net::TcpStream::connect(("127.0.0.1", self.mqtt_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.https_port)).is_ok();
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn info_path(&self) -> PathBuf {
        self.data.path().join("data/server-info.json")
    }

    fn info(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.info_path()).unwrap()).unwrap()
    }

    /// The server's output, without terminal colour codes.
    fn log(&self) -> String {
        let raw = std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // ESC [ ... letter
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Hub service REST calls with an `iothubowner` SAS, through the shared service client.
struct Service {
    client: ServiceClient<HttpsTransport>,
}

impl Service {
    fn new(server: &Server, tls: ClientTlsConfig) -> Service {
        let info = server.info();
        let credentials = Credentials::from_connection_string(
            info["hubServiceConnectionString"].as_str().unwrap(),
        )
        .unwrap();
        let target = TlsTarget::with_tls(
            tls,
            "localhost",
            &format!("localhost:{}", server.https_port),
        )
        .unwrap();
        Service {
            client: ServiceClient::hub(HttpsTransport::new(target), credentials),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        // Creating a device must not carry If-Match (that means "update").
        let if_match = method == Method::PATCH || method == Method::DELETE;
        self.send(method, path, body, if_match).await
    }

    /// A PUT that updates (`If-Match: *`).
    async fn update(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::PUT, path, Some(body), true).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: bool,
    ) -> (u16, Value) {
        let method = match method {
            Method::GET => "GET",
            Method::PUT => "PUT",
            Method::POST => "POST",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            other => panic!("unexpected method {other}"),
        };
        let headers = if if_match {
            vec![("If-Match".to_string(), "\"*\"".to_string())]
        } else {
            vec![]
        };
        let resp = self
            .client
            .send(method, path, &[], headers, body.as_ref())
            .await
            .unwrap();
        let json = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        (resp.status, json)
    }
}

async fn wait_status(client: &DeviceClient, want: impl Fn(&ConnectionStatus) -> bool) {
    let mut rx = client.status_changes();
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| want(s)))
        .await
        .expect("status change")
        .unwrap();
}

#[tokio::test]
async fn device_client_against_the_real_server() {
    let mut server = Server::start(server_binary());
    let result = tokio::time::timeout(Duration::from_mins(2), scenario(&mut server)).await;
    if !matches!(result, Ok(())) {
        eprintln!("server log:\n{}", server.log());
        panic!("scenario timed out");
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, read top to bottom"
)]
async fn scenario(server: &mut Server) {
    let tls = ClientTlsConfig::with_ca_file(server.info()["caCertPath"].as_str().unwrap()).unwrap();
    let service = Service::new(server, tls.clone());

    let (status, device) = service
        .call(
            Method::PUT,
            "/devices/e2e-dev",
            Some(json!({"deviceId": "e2e-dev", "authentication": {"symmetricKey": {}}})),
        )
        .await;
    assert_eq!(status, 200, "{device}");
    let key = device["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();

    let options = DeviceClientOptions::default()
        .with_tls(tls)
        .with_port(server.mqtt_port)
        // Renewal at 80 %: after 6.4 s.
        .with_sas_ttl(Duration::from_secs(8))
        .with_operation_timeout(Duration::from_secs(20))
        .with_reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            ..ReconnectPolicy::default()
        });
    let cs = format!("HostName=localhost;DeviceId=e2e-dev;SharedAccessKey={key}");
    let client = DeviceClient::from_connection_string(&cs, options)
        .await
        .unwrap();

    // Telemetry with system and application properties.
    for i in 0..3 {
        client
            .send_event(
                Message::json(&json!({"i": i}))
                    .with_message_id(format!("m{i}"))
                    .with_property("kind", "e2e/test"),
            )
            .await
            .unwrap();
    }
    let (status, events) = service.call(Method::GET, "/messages/events", None).await;
    assert_eq!(status, 200, "{events}");
    let events = events["messages"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0]["systemProperties"]["message-id"], "m0");
    assert_eq!(
        events[0]["systemProperties"]["content-type"],
        "application/json"
    );
    assert_eq!(events[0]["properties"]["kind"], "e2e/test");

    // The registry shows the connection and the activity.
    let (status, shown) = service.call(Method::GET, "/devices/e2e-dev", None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["connectionState"], "Connected", "{shown}");
    for field in ["lastActivityTime", "connectionStateUpdatedTime"] {
        let t = shown[field].as_str().unwrap_or_default();
        assert!(
            t > device[field].as_str().unwrap_or_default() && !t.starts_with("0001"),
            "{field} not updated by the connection and telemetry: {shown}"
        );
    }

    // Twin.
    let twin = client.get_twin().await.unwrap();
    assert!(twin["desired"]["$version"].is_u64(), "{twin}");
    let v1 = client.patch_reported(json!({"fw": "1.0"})).await.unwrap();
    let v2 = client
        .patch_reported(json!({"fw": null, "a": 1}))
        .await
        .unwrap();
    assert!(v2 > v1);
    assert_eq!(client.get_twin().await.unwrap()["reported"]["a"], 1);

    // Desired update.
    let mut desired = client.desired_updates().await.unwrap();
    let (status, body) = service
        .call(
            Method::PATCH,
            "/twins/e2e-dev",
            Some(json!({"properties": {"desired": {"interval": 5}}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let patch = tokio::time::timeout(Duration::from_secs(10), desired.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(patch["interval"], 5, "{patch}");

    // Direct method.
    client
        .on_method(|req| async move {
            MethodResponse::ok(json!({"method": req.name, "echo": req.payload}))
        })
        .await
        .unwrap();
    let invoke = |n: u32| {
        let service = &service;
        async move {
            service
                .call(
                    Method::POST,
                    "/twins/e2e-dev/methods",
                    Some(json!({"methodName": "reboot", "payload": {"n": n},
                                "responseTimeoutInSeconds": 10})),
                )
                .await
        }
    };
    let (status, body) = invoke(1).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": 200, "payload": {"method": "reboot", "echo": {"n": 1}}})
    );

    // Cloud-to-device: received, then completed by the PUBACK.
    let mut c2d = client.c2d_messages().await.unwrap();
    let (status, body) = service
        .call(
            Method::POST,
            "/devices/e2e-dev/messages/deviceBound",
            Some(
                json!({"body": "hello", "messageId": "c1", "correlationId": "k1",
                        "properties": {"color": "red"}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let m = tokio::time::timeout(Duration::from_secs(10), c2d.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.body_text(), "hello");
    assert_eq!(m.message_id.as_deref(), Some("c1"));
    assert_eq!(m.correlation_id.as_deref(), Some("k1"));
    assert_eq!(m.properties["color"], "red");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, purged) = service
        .call(Method::DELETE, "/devices/e2e-dev/commands", None)
        .await;
    assert_eq!(purged["totalMessagesPurged"], 0, "{purged}");

    // SAS renewal: the client reconnects with a fresh token; the session (subscriptions)
    // is kept by the server, and everything keeps working.
    wait_status(&client, |s| {
        matches!(s, ConnectionStatus::Connecting { .. })
    })
    .await;
    wait_status(&client, |s| *s == ConnectionStatus::Connected).await;
    let (status, body) = invoke(2).await;
    assert_eq!((status, &body["status"]), (200, &json!(200)), "{body}");
    assert!(
        server.log().contains("session_present=true"),
        "{}",
        server.log()
    );

    // Server restart: the connection drops, the client reconnects with back-off.
    server.stop();
    wait_status(&client, |s| {
        matches!(s, ConnectionStatus::Connecting { .. })
    })
    .await;
    server.spawn();
    wait_status(&client, |s| *s == ConnectionStatus::Connected).await;
    let (status, body) = invoke(3).await;
    assert_eq!((status, &body["status"]), (200, &json!(200)), "{body}");
    client
        .send_event(Message::new("after restart"))
        .await
        .unwrap();

    // Disabling the device closes its live connection at once; reconnecting is refused.
    let (status, body) = service
        .update(
            "/devices/e2e-dev",
            json!({"deviceId": "e2e-dev", "status": "disabled"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_status(&client, |s| *s != ConnectionStatus::Connected).await;
    let (_, shown) = service.call(Method::GET, "/devices/e2e-dev", None).await;
    assert_eq!(shown["connectionState"], "Disconnected", "{shown}");
    assert!(
        server.log().contains("the device is disabled"),
        "{}",
        server.log()
    );

    client.close().await;
    assert!(matches!(client.status(), ConnectionStatus::Closed { .. }));
}
