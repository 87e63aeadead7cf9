//! End-to-end: the edge hub in-process against the real `fleethub` server binary.
//!
//! Module A (the fleethub-device DeviceClient, as a module through the edge hub with the
//! edge CA) sends to output1; a route delivers to module B's input1 (a raw MQTT client that
//! controls its PUBACKs) and another route to `$upstream`. The server is then stopped, N
//! messages are sent, the edge hub itself is restarted on its queue, the server comes back:
//! all N arrive upstream once, in order. Also: routes from the `$edgeHub` twin, a rejected
//! configuration (400, previous routes kept), reported `clients`, and refused credentials.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fleethub_device::{
    DeviceClient, DeviceClientOptions, Message, MqttClient, MqttIncoming, MqttOptions,
    ReconnectPolicy,
};
use fleethub_mqtt_codec::{Publish, QoS};
use http::Method;
use serde_json::{Value, json};

const DEVICE: &str = "edge-1";

fn module_a_options(pki: &EdgePki, addr: SocketAddr) -> DeviceClientOptions {
    DeviceClientOptions::default()
        .with_tls(pki.client_tls(addr))
        .with_port(addr.port())
        .with_operation_timeout(Duration::from_secs(20))
        .with_reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
            ..ReconnectPolicy::default()
        })
}

async fn connect_module_a(pki: &EdgePki, addr: SocketAddr, key: &str) -> DeviceClient {
    let cs = format!(
        "HostName={HUB_HOST};DeviceId={DEVICE};ModuleId=A;SharedAccessKey={key};GatewayHostName={GATEWAY}"
    );
    DeviceClient::from_connection_string(&cs, module_a_options(pki, addr))
        .await
        .expect("module A connects to the edge hub")
}

/// Module B as a raw MQTT client (manual PUBACKs), subscribed to its inputs.
async fn connect_module_b(
    pki: &EdgePki,
    addr: SocketAddr,
    key: &str,
) -> (MqttClient, MqttIncoming) {
    connect_module_b_with(pki, addr, key, true).await
}

async fn connect_module_b_with(
    pki: &EdgePki,
    addr: SocketAddr,
    key: &str,
    subscribe: bool,
) -> (MqttClient, MqttIncoming) {
    let stream = pki
        .client_tls(addr)
        .connect(GATEWAY, addr.port())
        .await
        .unwrap();
    let resource = format!("{HUB_HOST}/devices/{DEVICE}/modules/B");
    let token = fleethub_core::sas::build_token(
        &resource,
        key,
        fleethub_core::time_util::now_unix() + 3600,
        None,
    )
    .unwrap();
    let options = MqttOptions::new(format!("{DEVICE}/B"))
        .with_credentials(
            format!("{HUB_HOST}/{DEVICE}/B/?api-version=2019-10-01"),
            token.into_bytes(),
        )
        .with_clean_session(false)
        .with_manual_acks(true);
    let (client, incoming) = MqttClient::connect(stream, options).await.unwrap();
    if !subscribe {
        return (client, incoming);
    }
    let codes = client
        .subscribe(vec![(
            format!("devices/{DEVICE}/modules/B/inputs/#"),
            QoS::AtLeastOnce,
        )])
        .await
        .unwrap();
    assert_eq!(codes.len(), 1);
    (client, incoming)
}

async fn next_input(incoming: &mut MqttIncoming, secs: u64) -> Option<Publish> {
    tokio::time::timeout(Duration::from_secs(secs), incoming.recv())
        .await
        .ok()
        .flatten()
}

fn bag_of(topic: &str) -> Vec<(String, Option<String>)> {
    fleethub_iot_protocol::property_bag::parse(topic.rsplit('/').next().unwrap()).unwrap()
}

fn prop<'a>(bag: &'a [(String, Option<String>)], k: &str) -> Option<&'a str> {
    bag.iter()
        .find(|(n, _)| n == k)
        .and_then(|(_, v)| v.as_deref())
}

async fn edge_twin(service: &Service) -> Value {
    let (status, twin) = service
        .call(
            Method::GET,
            &format!("/twins/{DEVICE}/modules/$edgeHub"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{twin}");
    twin
}

async fn events_from_a(service: &Service) -> Vec<Value> {
    service
        .events()
        .await
        .into_iter()
        .filter(|e| e["systemProperties"]["iothub-connection-module-id"] == "A")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_hub_routes_forwards_and_survives_outages() {
    let mut server = Server::start();
    let result = tokio::time::timeout(Duration::from_mins(4), scenario(&mut server)).await;
    if result.is_err() {
        eprintln!("server log:\n{}", server.log());
        panic!("scenario timed out");
    }
}

#[allow(
    clippy::many_single_char_names,
    reason = "`a` and `b` are the scenario's modules A and B"
)]
async fn scenario(server: &mut Server) {
    const N: usize = 25;
    let service = Service::new(server);
    let (status, dev) = service
        .call(
            Method::PUT,
            &format!("/devices/{DEVICE}"),
            Some(
                json!({"deviceId": DEVICE, "capabilities": {"iotEdge": true},
                        "authentication": {"symmetricKey": {}}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{dev}");
    let keys = Arc::new(Keys::default());
    for m in ["$edgeHub", "A", "B"] {
        let k = service.module_keys(DEVICE, m).await;
        keys.0.lock().unwrap().insert(m.to_string(), k);
    }
    let key = |m: &str| keys.0.lock().unwrap()[m].primary.clone();

    // Routes in the $edgeHub twin (schema 1.1: one string, one object).
    let (status, twin) = service
        .call(
            Method::PATCH,
            &format!("/twins/{DEVICE}/modules/$edgeHub"),
            Some(json!({"properties": {"desired": {
                "schemaVersion": "1.1",
                "routes": {
                    "AtoB": "FROM /messages/modules/A/outputs/output1 INTO BrokeredEndpoint(\"/modules/B/inputs/input1\")",
                    "up": {"route": "FROM /messages/modules/A/outputs/* INTO $upstream", "priority": 0, "timeToLiveSecs": 3600}
                },
                "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
            }}})),
        )
        .await;
    assert_eq!(status, 200, "{twin}");

    let pki = EdgePki::new();
    let state = tempfile::Builder::new()
        .prefix("edgeh-state")
        .tempdir()
        .unwrap();
    let listen: SocketAddr = "127.0.0.3:0".parse().unwrap();
    let edge = start_edge(
        edge_options(server, &pki, DEVICE, state.path(), listen),
        keys.clone(),
    )
    .await;
    let addr = edge.local_addrs()[0];
    assert_eq!(addr.ip().to_string(), "127.0.0.3");
    eventually(30, "routes from the $edgeHub twin", || async {
        let s = edge.status();
        (s.upstream_connected && s.routes == ["AtoB", "up"]).then_some(())
    })
    .await;
    let twin = eventually(30, "reported lastDesiredStatus 200", || async {
        let t = edge_twin(&service).await;
        let r = &t["properties"]["reported"];
        (r["lastDesiredStatus"]["code"] == 200
            && r["lastDesiredVersion"] == t["properties"]["desired"]["$version"])
            .then_some(t)
    })
    .await;
    assert_eq!(twin["properties"]["reported"]["schemaVersion"], "1.1");

    // Wrong credentials are refused (CONNACK 5).
    let wrong = format!(
        "HostName={HUB_HOST};DeviceId={DEVICE};ModuleId=A;SharedAccessKey={};GatewayHostName={GATEWAY}",
        key("B")
    );
    let err = DeviceClient::from_connection_string(&wrong, module_a_options(&pki, addr))
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err}");

    // A -> output1 -> B/input1 and upstream.
    let (b, mut b_in) = connect_module_b(&pki, addr, &key("B")).await;
    let a = connect_module_a(&pki, addr, &key("A")).await;
    a.send_event(
        Message::json(&json!({"n": 0}))
            .with_message_id("m0")
            .with_correlation_id("c0")
            .with_property("k", "v")
            .with_output_name("output1"),
    )
    .await
    .unwrap();
    // Not to output1: only upstream.
    a.send_event(
        Message::new("other")
            .with_message_id("x")
            .with_output_name("output2"),
    )
    .await
    .unwrap();
    let p = next_input(&mut b_in, 10)
        .await
        .expect("B receives the input");
    assert!(
        p.topic
            .starts_with(&format!("devices/{DEVICE}/modules/B/inputs/input1/")),
        "{}",
        p.topic
    );
    assert_eq!(p.qos, QoS::AtLeastOnce);
    let bag = bag_of(&p.topic);
    assert_eq!(prop(&bag, "$.cdid"), Some(DEVICE));
    assert_eq!(prop(&bag, "$.cmid"), Some("A"));
    assert_eq!(prop(&bag, "$.mid"), Some("m0"));
    assert_eq!(prop(&bag, "$.cid"), Some("c0"));
    assert_eq!(prop(&bag, "$.ct"), Some("application/json"));
    assert_eq!(prop(&bag, "k"), Some("v"));
    assert_eq!(&p.payload[..], br#"{"n":0}"#);
    // No PUBACK: after B reconnects the message comes again; then it is acknowledged.
    b.disconnect().await.unwrap();
    drop(b_in);
    let (b, mut b_in) = connect_module_b(&pki, addr, &key("B")).await;
    let again = next_input(&mut b_in, 10)
        .await
        .expect("redelivered after reconnect");
    assert_eq!(prop(&bag_of(&again.topic), "$.mid"), Some("m0"));
    b.ack(again.pkid).unwrap();
    assert!(
        next_input(&mut b_in, 1).await.is_none(),
        "only m0 goes to B"
    );
    b.disconnect().await.unwrap();
    drop(b_in);
    // Clean session 0: the subscription is kept; no new SUBSCRIBE needed.
    let (b, mut b_in) = connect_module_b_with(&pki, addr, &key("B"), false).await;
    assert!(b.session_present());
    assert!(
        next_input(&mut b_in, 1).await.is_none(),
        "acknowledged: not redelivered"
    );
    a.send_event(
        Message::new("kept")
            .with_message_id("m1")
            .with_output_name("output1"),
    )
    .await
    .unwrap();
    let p = next_input(&mut b_in, 10)
        .await
        .expect("input on the kept subscription");
    assert_eq!(prop(&bag_of(&p.topic), "$.mid"), Some("m1"));
    b.ack(p.pkid).unwrap();

    let up = eventually(30, "the three messages upstream", || async {
        let e = events_from_a(&service).await;
        (e.len() == 3).then_some(e)
    })
    .await;
    let sys = &up[0]["systemProperties"];
    assert_eq!(sys["message-id"], "m0");
    assert_eq!(sys["correlation-id"], "c0");
    assert_eq!(sys["content-type"], "application/json");
    assert_eq!(sys["iothub-outputname"], "output1");
    assert_eq!(sys["iothub-connection-device-id"], DEVICE);
    assert_eq!(up[0]["properties"]["k"], "v");
    assert_eq!(up[1]["systemProperties"]["message-id"], "x");
    assert_eq!(up[1]["systemProperties"]["iothub-outputname"], "output2");
    assert_eq!(up[2]["systemProperties"]["message-id"], "m1");

    // Presence in the reported properties.
    eventually(30, "clients in the reported properties", || async {
        let t = edge_twin(&service).await;
        let c = &t["properties"]["reported"]["clients"];
        (c[format!("{DEVICE}/A")]["status"] == "Connected"
            && c[format!("{DEVICE}/B")]["status"] == "Connected")
            .then_some(())
    })
    .await;

    // A configuration that cannot apply: 400 with the reason, previous routes kept.
    let (status, _) = service
        .call(
            Method::PATCH,
            &format!("/twins/{DEVICE}/modules/$edgeHub"),
            Some(json!({"properties": {"desired": {"routes": {
                "bad": "FROM /messages/* WHERE $body.t > 1 INTO $upstream"
            }}}})),
        )
        .await;
    assert_eq!(status, 200);
    let reported = eventually(30, "lastDesiredStatus 400", || async {
        let t = edge_twin(&service).await;
        let r = t["properties"]["reported"].clone();
        (r["lastDesiredStatus"]["code"] == 400).then_some(r)
    })
    .await;
    let description = reported["lastDesiredStatus"]["description"]
        .as_str()
        .unwrap();
    assert!(
        description.contains("'bad'") && description.contains("body"),
        "{description}"
    );
    assert_eq!(edge.status().routes, ["AtoB", "up"]);
    // Drop the bad route again.
    service
        .call(
            Method::PATCH,
            &format!("/twins/{DEVICE}/modules/$edgeHub"),
            Some(json!({"properties": {"desired": {"routes": {"bad": null}}}})),
        )
        .await;
    eventually(30, "lastDesiredStatus 200 again", || async {
        let t = edge_twin(&service).await;
        (t["properties"]["reported"]["lastDesiredStatus"]["code"] == 200).then_some(())
    })
    .await;

    // Outage: the hub is down while A sends N messages; the edge hub acknowledges them
    // (durable), restarts on its queue, and forwards them when the hub is back.
    server.stop();
    for i in 0..N {
        a.send_event(
            Message::new(format!("payload {i}"))
                .with_message_id(format!("out-{i}"))
                .with_output_name("output1"),
        )
        .await
        .unwrap();
    }
    // B got all of them meanwhile (local route, no hub needed).
    for i in 0..N {
        let p = next_input(&mut b_in, 10)
            .await
            .expect("input during outage");
        assert_eq!(
            prop(&bag_of(&p.topic), "$.mid"),
            Some(format!("out-{i}").as_str())
        );
        b.ack(p.pkid).unwrap();
    }
    // B's copies are deleted on its PUBACKs; the N upstream copies wait.
    eventually(10, "B's inputs acknowledged", || async {
        (edge.status().queued_messages == N as u64).then_some(())
    })
    .await;
    let status = edge.status();
    assert!(!status.upstream_connected, "{status:?}");
    a.close().await;
    b.disconnect().await.unwrap();
    edge.shutdown().await;

    // The daemon restarts: same state directory, hub still down -> cached routes.
    let edge = start_edge(
        edge_options(server, &pki, DEVICE, state.path(), listen),
        keys.clone(),
    )
    .await;
    assert_eq!(
        edge.status().routes,
        ["AtoB", "up"],
        "routes cached on disk"
    );
    assert_eq!(edge.status().queued_messages, N as u64, "queue reopened");
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.spawn();
    let service = Service::new(server);
    let up = eventually(90, "all N upstream after the outage", || async {
        let e = events_from_a(&service).await;
        (e.len() >= 3 + N).then_some(e)
    })
    .await;
    let ids: Vec<String> = up[3..]
        .iter()
        .map(|e| {
            e["systemProperties"]["message-id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let want: Vec<String> = (0..N).map(|i| format!("out-{i}")).collect();
    assert_eq!(ids, want, "exactly once, in order");
    eventually(30, "queue drained", || async {
        (edge.status().queued_messages == 0).then_some(())
    })
    .await;
    // Nothing more arrives later (no duplicates).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(events_from_a(&service).await.len(), 3 + N);
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_twin_methods_and_refusals_through_the_edge_hub() {
    let server = Server::start();
    let result = tokio::time::timeout(Duration::from_mins(2), twin_scenario(&server)).await;
    if result.is_err() {
        eprintln!("server log:\n{}", server.log());
        panic!("scenario timed out");
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, read top to bottom"
)]
async fn twin_scenario(server: &Server) {
    let service = Service::new(server);
    let (status, dev) = service
        .call(
            Method::PUT,
            &format!("/devices/{DEVICE}"),
            Some(
                json!({"deviceId": DEVICE, "capabilities": {"iotEdge": true},
                        "authentication": {"symmetricKey": {}}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{dev}");
    let keys = Arc::new(Keys::default());
    for m in ["$edgeHub", "A", "B"] {
        let k = service.module_keys(DEVICE, m).await;
        keys.0.lock().unwrap().insert(m.to_string(), k);
    }
    let key = |m: &str| keys.0.lock().unwrap()[m].primary.clone();
    let secondary = |m: &str| keys.0.lock().unwrap()[m].secondary.clone();
    let pki = EdgePki::new();
    let state = tempfile::Builder::new()
        .prefix("edgeh-state")
        .tempdir()
        .unwrap();
    let edge = start_edge(
        edge_options(
            server,
            &pki,
            DEVICE,
            state.path(),
            "127.0.0.3:0".parse().unwrap(),
        ),
        keys.clone(),
    )
    .await;
    let addr = edge.local_addrs()[0];
    // No twin configuration: the default route.
    eventually(30, "upstream connection", || async {
        let s = edge.status();
        (s.upstream_connected && s.routes == ["default"]).then_some(())
    })
    .await;

    // The secondary key works too.
    let cs = format!(
        "HostName={HUB_HOST};DeviceId={DEVICE};ModuleId=A;SharedAccessKey={};GatewayHostName={GATEWAY}",
        secondary("A")
    );
    let a = DeviceClient::from_connection_string(&cs, module_a_options(&pki, addr))
        .await
        .unwrap();

    // Twin GET and reported PATCH are the module's own twin in the hub.
    let version = a.patch_reported(json!({"fw": "1.2"})).await.unwrap();
    assert!(version >= 1);
    let twin = a.get_twin().await.unwrap();
    assert_eq!(twin["reported"]["fw"], "1.2", "{twin}");
    let (_, hub_twin) = service
        .call(Method::GET, &format!("/twins/{DEVICE}/modules/A"), None)
        .await;
    assert_eq!(
        hub_twin["properties"]["reported"]["fw"], "1.2",
        "{hub_twin}"
    );

    // Desired patches reach the module.
    let mut desired = a.desired_updates().await.unwrap();
    let (status, _) = service
        .call(
            Method::PATCH,
            &format!("/twins/{DEVICE}/modules/A"),
            Some(json!({"properties": {"desired": {"interval": 5}}})),
        )
        .await;
    assert_eq!(status, 200);
    let patch = tokio::time::timeout(Duration::from_secs(10), desired.recv())
        .await
        .expect("desired patch")
        .unwrap();
    assert_eq!(patch["interval"], 5, "{patch}");
    assert!(patch["$version"].as_u64().is_some(), "{patch}");

    // A direct method invoked on the hub is answered by the module behind the edge hub.
    let _handler = a
        .on_method(|req| async move {
            fleethub_device::MethodResponse::new(
                201,
                json!({"method": req.name, "echo": req.payload}),
            )
        })
        .await
        .unwrap();
    let (status, body) = service
        .call(
            Method::POST,
            &format!("/twins/{DEVICE}/modules/A/methods"),
            Some(json!({"methodName": "reboot", "payload": {"n": 1},
                        "responseTimeoutInSeconds": 10})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": 201, "payload": {"method": "reboot", "echo": {"n": 1}}})
    );

    // Refusals: an expired token, another module's resource, a module that is not an
    // identity of this device.
    let raw = |client_id: &str, resource: &str, key: &str, expiry: u64| {
        let token = fleethub_core::sas::build_token(resource, key, expiry, None).unwrap();
        MqttOptions::new(client_id).with_credentials(
            format!("{HUB_HOST}/{client_id}/?api-version=2019-10-01"),
            token.into_bytes(),
        )
    };
    let now = fleethub_core::time_util::now_unix();
    let res_b = format!("{HUB_HOST}/devices/{DEVICE}/modules/B");
    let cases = [
        raw(&format!("{DEVICE}/B"), &res_b, &key("B"), now - 10),
        raw(
            &format!("{DEVICE}/B"),
            &format!("{HUB_HOST}/devices/{DEVICE}/modules/A"),
            &key("A"),
            now + 60,
        ),
        raw(
            &format!("{DEVICE}/Z"),
            &format!("{HUB_HOST}/devices/{DEVICE}/modules/Z"),
            &key("B"),
            now + 60,
        ),
        raw("other/B", &res_b, &key("B"), now + 60),
        raw(
            &format!("{DEVICE}/$edgeHub"),
            &format!("{HUB_HOST}/devices/{DEVICE}/modules/$edgeHub"),
            &key("$edgeHub"),
            now + 60,
        ),
    ];
    for options in cases {
        let stream = pki
            .client_tls(addr)
            .connect(GATEWAY, addr.port())
            .await
            .unwrap();
        let err = MqttClient::connect(stream, options).await.unwrap_err();
        assert!(err.to_string().contains("not authorized"), "{err}");
    }

    // The connection ends when its SAS token expires.
    let stream = pki
        .client_tls(addr)
        .connect(GATEWAY, addr.port())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (_short, mut short_in) = MqttClient::connect(
        stream,
        raw(
            &format!("{DEVICE}/B"),
            &res_b,
            &key("B"),
            fleethub_core::time_util::now_unix() + 3,
        ),
    )
    .await
    .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), short_in.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // A module may only use its own topics.
    let stream = pki
        .client_tls(addr)
        .connect(GATEWAY, addr.port())
        .await
        .unwrap();
    let (b, mut b_in) = MqttClient::connect(
        stream,
        raw(&format!("{DEVICE}/B"), &res_b, &key("B"), now + 60),
    )
    .await
    .unwrap();
    let codes = b
        .subscribe(vec![
            (
                format!("devices/{DEVICE}/modules/A/inputs/#"),
                QoS::AtLeastOnce,
            ),
            (format!("devices/{DEVICE}/modules/B/#"), QoS::ExactlyOnce),
        ])
        .await
        .unwrap();
    assert_eq!(
        codes,
        vec![
            fleethub_mqtt_codec::SubscribeReturnCode::Failure,
            fleethub_mqtt_codec::SubscribeReturnCode::Success(QoS::AtLeastOnce)
        ]
    );
    let sent = b
        .publish(
            format!("devices/{DEVICE}/modules/A/messages/events/"),
            QoS::AtLeastOnce,
            bytes::Bytes::from_static(b"forged"),
        )
        .await;
    assert!(
        sent.is_err(),
        "publishing as another module closes the connection"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(5), b_in.recv())
            .await
            .unwrap()
            .is_none()
    );

    // Takeover: a second connection of A replaces the first.
    let a2 = DeviceClient::from_connection_string(&cs, module_a_options(&pki, addr))
        .await
        .unwrap();
    a2.send_event(Message::new("from a2")).await.unwrap();
    assert_eq!(edge.status().connected_modules, ["A"]);
    a2.close().await;
    a.close().await;
    edge.shutdown().await;
}

/// No upstream hub at all: messages stay queued until the bound, then the edge hub refuses
/// (no PUBACK, connection closed) instead of acknowledging what it cannot keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_refuses_without_acknowledging() {
    let keys = Arc::new(Keys::default());
    for m in ["$edgeHub", "A"] {
        let k = fleethub_core::keys::generate_key();
        keys.0.lock().unwrap().insert(
            m.to_string(),
            fleetedge_hub::ModuleKeys {
                primary: k.clone(),
                secondary: fleethub_core::keys::generate_key(),
                generation_id: "1".into(),
            },
        );
    }
    let pki = EdgePki::new();
    let state = tempfile::Builder::new()
        .prefix("edgeh-full")
        .tempdir()
        .unwrap();
    let opts = fleetedge_hub::EdgeHubOptions {
        device_id: DEVICE.into(),
        listen: vec!["127.0.0.3:0".parse().unwrap()],
        server_cert_chain_pem: pki.chain_pem.clone(),
        server_key_pem: pki.key_pem.clone(),
        upstream: fleetedge_hub::UpstreamOptions {
            hub_hostname: HUB_HOST.into(),
            // Nothing listens there.
            mqtt_port: free_port(),
            connect_address: Some("127.0.0.1".into()),
            ca_pem_path: None,
        },
        state_dir: state.path().to_path_buf(),
        queue_max_bytes: 8 * 1024,
        default_ttl: Duration::from_hours(1),
    };
    let edge = start_edge(opts, keys.clone()).await;
    let addr = edge.local_addrs()[0];
    let key = keys.0.lock().unwrap()["A"].primary.clone();
    let cs = format!(
        "HostName={HUB_HOST};DeviceId={DEVICE};ModuleId=A;SharedAccessKey={key};GatewayHostName={GATEWAY}"
    );
    let options = module_a_options(&pki, addr).with_reconnect(ReconnectPolicy {
        enabled: false,
        ..ReconnectPolicy::default()
    });
    let a = DeviceClient::from_connection_string(&cs, options)
        .await
        .unwrap();
    let mut accepted = 0;
    let err = loop {
        match a.send_event(Message::new(vec![b'x'; 1024])).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 20, "the bound was never reached");
    };
    assert!(accepted >= 5, "accepted {accepted} before refusing");
    assert!(!err.to_string().is_empty());
    let s = edge.status();
    assert_eq!(s.queued_messages, accepted, "{s:?}");
    assert!(s.queued_bytes <= 8 * 1024, "{s:?}");
    assert_eq!(s.rejected_messages, 1, "{s:?}");
    assert!(!s.upstream_connected);
    assert!(s.last_error.is_some(), "{s:?}");
    edge.shutdown().await;
}
