//! The Event Hub-compatible endpoint over REST: consumer groups (create, list, show, delete,
//! Azure's name rules, the limit, rights) and partition properties after telemetry arrives
//! over the device HTTPS plane.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::*;
use serde_json::Value;

const GROUPS: &str = "/messages/events/consumerGroups";

impl Fixture {
    async fn group(&self, policy: &str, method: Method, name: &str) -> Resp {
        let uri = format!("{GROUPS}/{name}?api-version=2021-04-12");
        self.hub_as(policy, method, &uri, &[], Body::empty()).await
    }
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn consumer_groups_crud_with_rules_and_rights() {
    let f = fixture();
    let list = f
        .hub_as("service", Method::GET, GROUPS, &[], Body::empty())
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.json);
    assert_eq!(names(&list.json), ["$Default"]);
    assert!(
        list.json[0]["createdTimeUtc"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // creating takes RegistryWrite: the reader's `service` policy cannot
    let r = f.group("service", Method::PUT, "reports").await;
    assert_hub_error(&r, 403, "Forbidden");
    let r = f.group("iothubowner", Method::PUT, "reports").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["name"], "reports");
    let r = f.group("registryReadWrite", Method::PUT, "Reports").await;
    assert_hub_error(&r, 409, "ConsumerGroupAlreadyExists");
    let r = f.group("iothubowner", Method::PUT, "$Default").await;
    assert_hub_error(&r, 409, "ConsumerGroupAlreadyExists");
    let r = f.group("iothubowner", Method::PUT, "bad%20name").await;
    assert_hub_error(&r, 400, "ArgumentInvalid");

    // reading takes ServiceConnect or RegistryRead; names are case-insensitive
    let r = f.group("registryRead", Method::GET, "REPORTS").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["name"], "reports");
    let r = f.group("service", Method::GET, "nope").await;
    assert_hub_error(&r, 404, "ConsumerGroupNotFound");
    let r = f.group("device", Method::GET, "reports").await;
    assert_hub_error(&r, 403, "Forbidden");

    // the limit (20 by default, $Default included)
    for i in 2..20 {
        let r = f
            .group("iothubowner", Method::PUT, &format!("g{i:02}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    let r = f.group("iothubowner", Method::PUT, "g20").await;
    assert_hub_error(&r, 403, "IotHubQuotaExceeded");
    let list = f.hub_svc(Method::GET, GROUPS, &[], Body::empty()).await;
    assert_eq!(names(&list.json).len(), 20);
    assert_eq!(names(&list.json)[0], "$Default");

    // delete: 204, then 404; $Default stays
    let r = f.group("iothubowner", Method::DELETE, "reports").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = f.group("iothubowner", Method::DELETE, "reports").await;
    assert_hub_error(&r, 404, "ConsumerGroupNotFound");
    let r = f.group("iothubowner", Method::DELETE, "$Default").await;
    assert_hub_error(&r, 400, "ArgumentInvalid");
    let r = f.group("service", Method::DELETE, "g02").await;
    assert_hub_error(&r, 403, "Forbidden");
    // the path's spelling does not matter
    let r = f
        .hub_svc(
            Method::GET,
            "/Messages/Events/ConsumerGroups/g02",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

#[tokio::test]
async fn partitions_show_what_devices_sent() {
    let f = fixture();
    let r = f
        .hub_as(
            "service",
            Method::GET,
            "/messages/events/partitions",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["name"], "hub");
    assert_eq!(r.json["partitionCount"], 4);
    assert_eq!(
        r.json["partitionIds"],
        serde_json::json!(["0", "1", "2", "3"])
    );
    for p in r.json["partitions"].as_array().unwrap() {
        assert_eq!(p["isEmpty"], true);
        assert_eq!(p["lastEnqueuedSequenceNumber"], -1);
        assert_eq!(p["lastEnqueuedOffset"], "-1");
        assert!(p.get("lastEnqueuedTimeUtc").is_none());
    }

    let key = f.hub_device("dev-1").await;
    let token = hub_device_token("dev-1", &key);
    let path = "/devices/dev-1/messages/events";
    for body in ["one", "two"] {
        let r = f
            .raw(
                Method::POST,
                &format!("{path}?api-version=2021-04-12"),
                &[("authorization", token.as_str())],
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let partition = fleethub_storage_partition("dev-1");
    let r = f
        .hub_as(
            "service",
            Method::GET,
            &format!("/messages/events/partitions/{partition}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["partitionId"], partition.to_string());
    assert_eq!(r.json["beginSequenceNumber"], 0);
    assert_eq!(r.json["lastEnqueuedSequenceNumber"], 1);
    assert_eq!(r.json["isEmpty"], false);
    // the offset is the global sequence number of GET /messages/events
    let page = f
        .hub_as(
            "service",
            Method::GET,
            "/messages/events?from=0",
            &[],
            Body::empty(),
        )
        .await;
    let last = page.json["messages"][1]["sequenceNumber"].as_u64().unwrap();
    assert_eq!(r.json["lastEnqueuedOffset"], last.to_string());
    assert!(
        r.json["lastEnqueuedTimeUtc"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let r = f
        .hub_as(
            "service",
            Method::GET,
            "/messages/events/partitions/4",
            &[],
            Body::empty(),
        )
        .await;
    assert_hub_error(&r, 400, "ArgumentOutOfRange");
    let r = f
        .hub_as(
            "service",
            Method::GET,
            "/messages/events/partitions/x",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = f
        .hub_as(
            "registryRead",
            Method::GET,
            "/messages/events/partitions",
            &[],
            Body::empty(),
        )
        .await;
    assert_hub_error(&r, 403, "Forbidden");
}

/// The partition of a device: 32-bit FNV-1a of its id modulo 4 (docs/protocol-notes.md).
fn fleethub_storage_partition(device: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in device.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % 4
}
