//! End-to-end: the real `fleethub` process, provisioned with the Rust device SDK over MQTT and
//! HTTPS; kill -9 in the middle of registrations loses nothing that was answered `assigned`.

mod common;

use common::ServerProcess;
use fleethub_device::provisioning::{ProvisioningClient, Transport};
use fleethub_store::{DpsStore, RegistryStore};
use std::sync::Arc;
use std::time::Duration;

fn client(s: &ServerProcess, reg: &str, key: &str, t: Transport) -> ProvisioningClient {
    let port = match t {
        Transport::Mqtt => s.mqtt_port,
        Transport::Https => s.https_port,
    };
    ProvisioningClient::builder()
        .global_endpoint("localhost")
        .port(port)
        .id_scope(&s.info.id_scope)
        .registration_id(reg)
        .symmetric_key(key)
        .transport(t)
        .ca_pem_file(s.ca_pem())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn create_enrollment(s: &ServerProcess, reg: &str) -> String {
    let (ok, out, err) = s.cli(&[
        "dps",
        "enrollment",
        "create",
        "--registration-id",
        reg,
        "--edge-enabled",
        "true",
        "--initial-twin-tags",
        r#"{"environment":"test"}"#,
    ]);
    assert!(ok, "enrollment create failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    v["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn individual_enrollment_over_mqtt_and_https() {
    let s = ServerProcess::start();
    let key = create_enrollment(&s, "e2e-dev-1");
    for t in [Transport::Mqtt, Transport::Https] {
        let r = client(&s, "e2e-dev-1", &key, t)
            .register()
            .await
            .unwrap_or_else(|e| panic!("{t:?}: {e}\n{}", s.log()));
        assert_eq!(r.status, "assigned");
        assert_eq!(r.assigned_hub, "hub.fleethub.test");
        assert_eq!(r.device_id, "e2e-dev-1");
    }
    // the registration record is visible through the CLI
    let (ok, out, err) = s.cli(&[
        "dps",
        "registration",
        "show",
        "--registration-id",
        "e2e-dev-1",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("\"assigned\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_refused_and_explained() {
    let s = ServerProcess::start();
    create_enrollment(&s, "e2e-dev-2");
    let wrong = fleethub_core::keys::generate_key();
    let err = client(&s, "e2e-dev-2", &wrong, Transport::Https)
        .register()
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    let (ok, out, e) = s.cli(&["diagnostics", "auth-failures"]);
    assert!(ok, "{e}");
    assert!(
        out.contains("signature mismatch for registration e2e-dev-2"),
        "{out}"
    );
    assert!(!out.contains(&wrong), "keys must never be logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_assigned_registration() {
    let mut s = ServerProcess::start();
    let (ok, out, err) = s.cli(&[
        "dps",
        "enrollment-group",
        "create",
        "--group-id",
        "kill9-grp",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let gkey = v["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();

    let assigned = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..400 {
        let reg = format!("kill9-{i}");
        let key = fleethub_core::keys::derive_device_key(&gkey, &reg).unwrap();
        let c = client(
            &s,
            &reg,
            &key,
            if i % 2 == 0 {
                Transport::Mqtt
            } else {
                Transport::Https
            },
        );
        let assigned = assigned.clone();
        tasks.push(tokio::spawn(async move {
            if let Ok(r) = c.register().await
                && r.status == "assigned"
            {
                assigned.lock().unwrap().push(reg);
            }
        }));
    }
    // let part of them finish, then kill the server hard
    for _ in 0..200 {
        if assigned.lock().unwrap().len() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    s.kill9();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_mins(1), t).await;
    }
    let answered: Vec<String> = assigned.lock().unwrap().clone();
    assert!(
        !answered.is_empty(),
        "no registration completed before the kill\n{}",
        s.log()
    );

    // the store opens cleanly and has every answered registration and its device
    {
        let store = fleethub_store::sqlite::SqliteStore::open(&s.data_dir.join("store.db"))
            .expect("store opens after kill -9");
        for reg in &answered {
            let r = store
                .get_registration(reg)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("registration {reg} lost"));
            assert_eq!(r.state.status.as_deref(), Some("assigned"));
            assert!(
                store.get_device(reg).await.unwrap().is_some(),
                "device {reg} lost"
            );
        }
    }
    // and the server starts again on the same data
    s.restart();
    let (ok, out, err) = s.cli(&["dps", "registration", "list", "--group-id", "kill9-grp"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(list.as_array().unwrap().len() >= answered.len());
}

/// A client may send SUBSCRIBE and its register PUBLISH right behind CONNECT (MQTT 3.1.1
/// section 3.1.4; the device SDK does): the server answers them in order, CONNACK through the
/// `202` in one write (docs/protocol-notes.md, "DPS over MQTT: packets in one write").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_packets_sent_behind_connect_are_answered_in_order_and_together() {
    use bytes::BytesMut;
    use fleethub_iot_protocol::{dps, identity};
    use fleethub_mqtt_codec::{
        ConnectReturnCode, Packet, Publish, QoS, Subscribe, SubscribeReturnCode, decode, encode,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let s = ServerProcess::start();
    let key = create_enrollment(&s, "e2e-dev-3");
    let scope = s.info.id_scope.clone();
    let tls = fleethub_device::ClientTlsConfig::with_ca_file(s.ca_pem()).unwrap();
    let mut stream = tls.connect("localhost", s.mqtt_port).await.unwrap();
    let expiry = fleethub_core::time_util::now_unix() + 3600;
    let token = fleethub_core::sas::build_token(
        &identity::dps_sas_resource(&scope, "e2e-dev-3"),
        &key,
        expiry,
        Some(identity::DPS_SAS_KEY_NAME),
    )
    .unwrap();
    let connect = fleethub_mqtt_codec::Connect {
        protocol_level: fleethub_mqtt_codec::PROTOCOL_LEVEL_3_1_1,
        client_id: "e2e-dev-3".into(),
        clean_session: true,
        keep_alive: 60,
        username: Some(identity::dps_username(
            &scope,
            "e2e-dev-3",
            dps::MQTT_API_VERSION,
            "e2e",
        )),
        password: Some(token.into_bytes()),
        will: None,
    };
    let mut out = BytesMut::new();
    for p in [
        Packet::Connect(connect),
        Packet::Subscribe(Subscribe::new(
            1,
            vec![(dps::RESPONSE_FILTER.to_string(), QoS::AtLeastOnce)],
        )),
        Packet::Publish(Publish::new(
            dps::register_topic(1),
            QoS::AtLeastOnce,
            2,
            &br#"{"registrationId":"e2e-dev-3"}"#[..],
        )),
    ] {
        encode(&p, &mut out).unwrap();
    }
    stream.write_all(&out).await.unwrap();
    stream.flush().await.unwrap();

    // The first read holds all four answers: they left in one write.
    let mut buf = BytesMut::with_capacity(16 * 1024);
    tokio::time::timeout(Duration::from_secs(20), stream.read_buf(&mut buf))
        .await
        .expect("answers within 20 s")
        .unwrap();
    let mut answers = Vec::new();
    while let Some(p) = decode(&mut buf, 1 << 20).unwrap() {
        answers.push(p);
    }
    assert_eq!(answers.len(), 4, "{answers:?}\n{}", s.log());
    assert!(
        matches!(&answers[0], Packet::ConnAck(a) if a.code == ConnectReturnCode::Accepted),
        "{answers:?}"
    );
    assert!(
        matches!(&answers[1], Packet::SubAck(a)
            if a.pkid == 1 && a.return_codes == [SubscribeReturnCode::Success(QoS::AtLeastOnce)]),
        "{answers:?}"
    );
    assert_eq!(answers[2], Packet::PubAck(2));
    let Packet::Publish(answer) = &answers[3] else {
        panic!("{answers:?}")
    };
    let topic = dps::parse_response_topic(&answer.topic).unwrap();
    assert_eq!((topic.status, topic.rid.as_str()), (202, "1"));
}
