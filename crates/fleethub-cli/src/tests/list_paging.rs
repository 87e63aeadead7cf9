//! Lists do not stop silently at the server's page size: `device-identity list` follows
//! `x-ms-continuation` until the end or `--top`.

use super::fake::{header, hub_client, page, path};
use crate::hub::dispatch;
use crate::output::Outcome;
use crate::{DeviceIdentityCommand, HubCommand};
use serde_json::json;

fn ids(top: Option<u32>) -> (Vec<String>, Vec<String>) {
    let c = hub_client(|req| {
        assert_eq!((req.method, path(req)), ("GET", "/devices"));
        let q = &req.path_and_query;
        match header(req, "x-ms-continuation") {
            None => {
                assert!(q.contains("top="), "{q}");
                page(
                    json!([{"deviceId": "a"}, {"deviceId": "b"}]),
                    Some("after-b"),
                )
            }
            Some("after-b") => page(json!([{"deviceId": "c"}]), Some("after-c")),
            Some("after-c") => page(json!([{"deviceId": "d"}]), None),
            Some(other) => panic!("unexpected continuation {other}"),
        }
    });
    let out = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(dispatch(
            HubCommand::DeviceIdentity(DeviceIdentityCommand::List { top }),
            &c,
        ))
        .unwrap();
    let Outcome::List(items, _) = out else {
        panic!("{out:?}")
    };
    let queries = c
        .transport()
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path_and_query.clone())
        .collect();
    (
        items
            .iter()
            .map(|d| d["deviceId"].as_str().map(str::to_string).unwrap())
            .collect(),
        queries,
    )
}

#[test]
fn device_list_reads_every_page() {
    let (all, requests) = ids(None);
    assert_eq!(all, ["a", "b", "c", "d"]);
    assert_eq!(requests.len(), 3);
    assert!(requests[0].ends_with("&top=1000"), "{}", requests[0]);
}

#[test]
fn device_list_stops_at_top() {
    let (some, requests) = ids(Some(3));
    assert_eq!(some, ["a", "b", "c"]);
    assert!(requests[0].ends_with("&top=3"), "{}", requests[0]);
    assert!(requests[1].ends_with("&top=1"), "{}", requests[1]);
}
