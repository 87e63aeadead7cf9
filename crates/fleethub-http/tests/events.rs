//! Telemetry end to end through the router: sent over the device HTTPS plane as Node's
//! `azure-iot-device-http` and the C SDK send it, read back with the telemetry REST API
//! (pages, consumer-group checkpoints) and tailed live as Server-Sent Events.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tower::ServiceExt;

const API: &str = "api-version=2021-04-12";

impl Fixture {
    async fn send_event(
        &self,
        device: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> RawResp {
        let token = hub_device_token(device, key);
        let path = format!("/devices/{device}/messages/events");
        let mut h = vec![("authorization", token.as_str()), ("iothub-to", &path)];
        h.extend_from_slice(headers);
        self.raw(Method::POST, &format!("{path}?{API}"), &h, body)
            .await
    }

    async fn events(&self, query: &str) -> Resp {
        self.hub_as(
            "service",
            Method::GET,
            &format!("/messages/events?{query}"),
            &[],
            Body::empty(),
        )
        .await
    }

    async fn checkpoint(&self, group: &str, seq: u64) -> Resp {
        self.hub_as(
            "service",
            Method::PUT,
            &format!("/messages/events/consumerGroups/{group}/checkpoint"),
            &[],
            json!({ "sequenceNumber": seq }).to_string(),
        )
        .await
    }
}

fn bodies(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn https_telemetry_with_properties_from_headers() {
    let f = fixture();
    let key = f.hub_device("dev-1").await;
    // Node: IoTHub-MessageId / IoTHub-CorrelationId, iothub-contenttype, iothub-app-{key}
    let r = f
        .send_event(
            "dev-1",
            &key,
            &[
                ("IoTHub-MessageId", "msg-1"),
                ("IoTHub-CorrelationId", "corr-1"),
                ("iothub-contenttype", "application/json"),
                ("iothub-contentencoding", "utf-8"),
                ("iothub-app-temperatureAlert", "true"),
                ("user-agent", "azure-iot-device/1.18.4"),
            ],
            r#"{"temperature":21.5}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert!(r.body.is_empty());
    // C SDK: Content-Type application/octet-stream (not a message content type), binary body
    let r = f
        .send_event(
            "dev-1",
            &key,
            &[("content-type", "application/octet-stream")],
            vec![0xffu8, 0xfe, 0],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let page = f.events("consumerGroup=%24Default").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.json);
    let msgs = page.json["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{}", page.json);
    let m = &msgs[0];
    assert_eq!(m["deviceId"], "dev-1");
    assert!(m.get("moduleId").is_none());
    assert_eq!(m["body"], r#"{"temperature":21.5}"#);
    assert!(m.get("bodyEncoding").is_none());
    assert!(m["enqueuedTimeUtc"].is_string());
    let sys = &m["systemProperties"];
    assert_eq!(sys["message-id"], "msg-1");
    assert_eq!(sys["correlation-id"], "corr-1");
    assert_eq!(sys["content-type"], "application/json");
    assert_eq!(sys["content-encoding"], "utf-8");
    assert_eq!(sys["iothub-connection-device-id"], "dev-1");
    // How the device authenticated (its own key), recorded when the message was stored.
    assert_eq!(
        sys["iothub-connection-auth-method"],
        r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
    );
    // HTTP header names are case-insensitive: the property name arrives lower-cased
    assert_eq!(m["properties"], json!({"temperaturealert": "true"}));

    let bin = &msgs[1];
    assert_eq!(bin["bodyEncoding"], "base64");
    assert_eq!(bin["body"], "//4A");
    assert!(bin["systemProperties"].get("content-type").is_none());
    assert_eq!(
        page.json["next"].as_u64().unwrap(),
        bin["sequenceNumber"].as_u64().unwrap()
    );

    // the batch form (Node's sendEventBatch)
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let batch = json!([
        {"body": b64("one"), "properties": {"iothub-app-k": "v1"}},
        {"body": b64("two")},
    ]);
    let r = f
        .send_event(
            "dev-1",
            &key,
            &[("content-type", "application/vnd.microsoft.iothub.json")],
            batch.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let next = page.json["next"].as_u64().unwrap();
    let more = f.events(&format!("from={next}")).await;
    assert_eq!(bodies(&more.json), ["one", "two"]);
    assert_eq!(more.json["messages"][0]["properties"], json!({"k": "v1"}));

    // 256 KB limit
    let big = vec![b'x'; 256 * 1024 + 1];
    let r = f.send_event("dev-1", &key, &[], big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn pages_and_checkpoints() {
    let f = fixture();
    let key = f.hub_device("dev-1").await;
    for body in ["a", "b", "c"] {
        let r = f.send_event("dev-1", &key, &[], body).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let all = f.events("").await;
    assert_eq!(bodies(&all.json), ["a", "b", "c"]);
    let seqs: Vec<u64> = all.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sequenceNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(all.json["next"].as_u64(), Some(seqs[2]));

    // limit + next
    let first = f.events("limit=1").await;
    assert_eq!(bodies(&first.json), ["a"]);
    let next = first.json["next"].as_u64().unwrap();
    let rest = f.events(&format!("from={next}&limit=5")).await;
    assert_eq!(bodies(&rest.json), ["b", "c"]);

    // a checkpoint moves where a group reads from when `from` is absent
    let r = f.checkpoint("$Default", seqs[1]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    assert_eq!(
        bodies(&f.events("consumerGroup=$Default").await.json),
        ["c"]
    );
    assert_eq!(bodies(&f.events("").await.json), ["c"]);
    // other groups are independent; `from` overrides the checkpoint
    assert_eq!(
        bodies(&f.events("consumerGroup=reports").await.json),
        ["a", "b", "c"]
    );
    assert_eq!(
        bodies(&f.events("consumerGroup=$Default&from=0").await.json),
        ["a", "b", "c"]
    );
    // past the end: empty page, `next` stays
    let r = f.checkpoint("reports", seqs[2]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let end = f.events("consumerGroup=reports").await;
    assert_eq!(end.json, json!({"messages": [], "next": seqs[2]}));

    // errors
    let bad = f.events("consumerGroup=no%20spaces").await;
    assert_hub_error(&bad, 400, "ArgumentInvalid");
    let bad = f.events("from=-1").await;
    assert_hub_error(&bad, 400, "ArgumentInvalid");
    let bad = f
        .hub_svc(
            Method::PUT,
            "/messages/events/consumerGroups/$Default/checkpoint",
            &[],
            "{}",
        )
        .await;
    assert_hub_error(&bad, 400, "ArgumentInvalid");

    // reading device data takes ServiceConnect (Azure's rule); RegistryRead is not enough
    let svc = f
        .hub_as(
            "service",
            Method::GET,
            "/messages/events",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(svc.status, StatusCode::OK);
    for uri in ["/messages/events", "/messages/events/live"] {
        let ro = f
            .hub_as("registryRead", Method::GET, uri, &[], Body::empty())
            .await;
        assert_hub_error(&ro, 403, "Forbidden");
        let rw = f
            .hub_as("registryReadWrite", Method::GET, uri, &[], Body::empty())
            .await;
        assert_hub_error(&rw, 403, "Forbidden");
    }
    let ro = f
        .hub_as(
            "registryRead",
            Method::PUT,
            "/messages/events/consumerGroups/$Default/checkpoint",
            &[],
            json!({ "sequenceNumber": 1 }).to_string(),
        )
        .await;
    assert_hub_error(&ro, 403, "Forbidden");
    let dev = f
        .hub_as(
            "device",
            Method::GET,
            "/messages/events",
            &[],
            Body::empty(),
        )
        .await;
    assert_hub_error(&dev, 403, "Forbidden");
    let none = f
        .call(Method::GET, "/messages/events", &[], Body::empty())
        .await;
    assert_hub_error(&none, 401, "IotHubUnauthorizedAccess");
    let none = f
        .call(Method::GET, "/messages/events/live", &[], Body::empty())
        .await;
    assert_hub_error(&none, 401, "IotHubUnauthorizedAccess");
}

#[tokio::test]
async fn live_tail_over_server_sent_events() {
    let f = fixture();
    let key1 = f.hub_device("dev-1").await;
    let key2 = f.hub_device("dev-2").await;
    f.send_event("dev-1", &key1, &[], "before").await;

    let token = policy_token(&f.hub_auth, HUB, "service");
    let req = Request::builder()
        .uri("/messages/events/LIVE?deviceId=dev-1")
        .header("authorization", token)
        .body(Body::empty())
        .unwrap();
    let resp = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut stream = resp.into_body().into_data_stream();

    // subscribed once the response is there: only messages after it, only dev-1's
    f.send_event("dev-2", &key2, &[], "other device").await;
    f.send_event("dev-1", &key1, &[("iothub-app-a", "1")], "after")
        .await;

    let mut text = String::new();
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = stream.next().await.expect("stream ended").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(line) = text.lines().find(|l| l.starts_with("data:")) {
                let v: Value = serde_json::from_str(line["data:".len()..].trim()).unwrap();
                return v;
            }
        }
    })
    .await
    .expect("no live event within 10 s");
    assert_eq!(event["deviceId"], "dev-1");
    assert_eq!(event["body"], "after");
    assert_eq!(event["properties"], json!({"a": "1"}));
    assert!(event["sequenceNumber"].as_u64().unwrap() > 0);
}
