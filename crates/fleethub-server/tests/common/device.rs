//! Device-side helpers: a raw MQTT/TLS device client and the hub service calls the tests make.

use super::ServerProcess;
use fleethub_mqtt_codec::{Connect, ConnectReturnCode, FramedRead, FramedWrite, Packet};
use fleethub_service_client::{CaTrust, Credentials, HttpsTransport, ServiceClient};
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

type Tls = TlsStream<TcpStream>;

pub fn service(s: &ServerProcess) -> ServiceClient<HttpsTransport> {
    let credentials =
        Credentials::from_connection_string(&s.info.hub_service_connection_string).unwrap();
    let ca = CaTrust::File(s.ca_pem());
    let transport =
        HttpsTransport::connect(&ca, "localhost", &format!("localhost:{}", s.https_port)).unwrap();
    ServiceClient::hub(transport, credentials)
}

pub async fn call(
    hub: &ServiceClient<HttpsTransport>,
    method: &'static str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let headers = vec![("If-Match".to_string(), "*".to_string())];
    let resp = hub.send(method, path, &[], headers, body).await.unwrap();
    let v = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    (resp.status, v)
}

/// Creates (or updates) a device; returns its primary key.
pub async fn put_device(hub: &ServiceClient<HttpsTransport>, id: &str, body: Value) -> String {
    let resp = hub
        .send("PUT", &format!("/devices/{id}"), &[], vec![], Some(&body))
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    v["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A raw MQTT/TLS device client.
pub struct RawDevice {
    pub reader: FramedRead<ReadHalf<Tls>>,
    pub writer: FramedWrite<WriteHalf<Tls>>,
}

pub async fn connect(s: &ServerProcess, id: &str, key: &str, token_secs: u64) -> RawDevice {
    connect_with_keep_alive(s, id, key, token_secs, 0).await
}

/// [`connect`] with a CONNECT keep-alive of `keep_alive` seconds.
pub async fn connect_with_keep_alive(
    s: &ServerProcess,
    id: &str,
    key: &str,
    token_secs: u64,
    keep_alive: u16,
) -> RawDevice {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(s.ca_pem()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", s.mqtt_port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (rd, wr) = tokio::io::split(tls);
    let mut dev = RawDevice {
        reader: FramedRead::new(rd, 1 << 20),
        writer: FramedWrite::new(wr),
    };
    let host = &s.info.hub_host;
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + token_secs;
    let token = fleethub_core::sas::build_token(&format!("{host}/devices/{id}"), key, expiry, None)
        .expect("sign");
    let connect = Connect {
        protocol_level: 4,
        client_id: id.to_string(),
        clean_session: true,
        keep_alive,
        username: Some(format!("{host}/{id}/?api-version=2021-04-12")),
        password: Some(token.into_bytes()),
        will: None,
    };
    dev.writer.send(&Packet::Connect(connect)).await.unwrap();
    match dev.reader.next().await.unwrap() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Accepted, "{a:?}"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    dev
}

/// Sends telemetry from device `device_id` (symmetric key `key`) over MQTT as fast as PUBACKs come
/// back, kills the server with SIGKILL once `before_kill` messages were acknowledged (or after
/// 10 s), and returns the message ids that were acknowledged before the connection died.
pub async fn acked_until_kill9(
    s: &mut ServerProcess,
    device_id: &str,
    key: &str,
    before_kill: usize,
) -> Vec<String> {
    use fleethub_device::Message;
    use std::sync::Mutex;
    use std::time::Duration;
    let client = Arc::new(sdk_client(s, device_id, key).await);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let (client, acked) = (client.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 0..100_000u32 {
                let id = format!("m-{i}");
                let msg = Message::new(format!("{{\"seq\":{i}}}")).with_message_id(id.clone());
                match client.send_event(msg).await {
                    Ok(()) => acked.lock().unwrap().push(id),
                    Err(_) => return,
                }
            }
        })
    };
    for _ in 0..400 {
        if acked.lock().unwrap().len() >= before_kill {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    s.kill9();
    let _ = tokio::time::timeout(Duration::from_secs(30), sender).await;
    client.close().await;
    acked.lock().unwrap().clone()
}

/// The Rust device SDK connected to `s` as `device_id` with `key`, without reconnects (a test
/// sees a dropped connection as it happens).
pub async fn sdk_client(
    s: &ServerProcess,
    device_id: &str,
    key: &str,
) -> fleethub_device::DeviceClient {
    use fleethub_device::{DeviceClient, DeviceClientOptions, ReconnectPolicy};
    let cs = format!(
        "HostName={};DeviceId={device_id};SharedAccessKey={key}",
        s.info.hub_host
    );
    let opts = DeviceClientOptions {
        ca_pem_file: Some(s.ca_pem()),
        port: s.mqtt_port,
        connect_address: Some("127.0.0.1".into()),
        reconnect: ReconnectPolicy {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    };
    DeviceClient::from_connection_string(&cs, opts)
        .await
        .unwrap()
}
