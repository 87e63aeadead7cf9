//! `POST /devices/query` beyond `SELECT *`: projections, aggregates and `GROUP BY`,
//! `FROM devices.modules`, `TOP`, and paging with `x-ms-continuation` over every kind of query.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{Value, json};

const API: &str = "api-version=2021-04-12";

impl Fixture {
    async fn put(&self, uri: &str, body: Value) {
        let r = self
            .hub_svc(Method::PUT, &format!("{uri}?{API}"), &[], body.to_string())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.json);
    }

    async fn tag(&self, id: &str, tags: Value) {
        let r = self
            .hub_svc(
                Method::PATCH,
                &format!("/twins/{id}?{API}"),
                &[("if-match", "*")],
                json!({ "tags": tags }).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }

    async fn q(&self, query: &str, extra: &[(&str, &str)]) -> Resp {
        self.hub_svc(
            Method::POST,
            &format!("/devices/query?{API}"),
            extra,
            json!({ "query": query }).to_string(),
        )
        .await
    }

    /// Every page of a query, `page` results at a time; the results and the number of pages.
    async fn all_pages(&self, query: &str, page: usize) -> (Vec<Value>, usize) {
        let size = page.to_string();
        let mut out = Vec::new();
        let mut continuation: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut h = vec![("x-ms-max-item-count", size.as_str())];
            if let Some(c) = &continuation {
                h.push(("x-ms-continuation", c.as_str()));
            }
            let r = self.q(query, &h).await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.json);
            pages += 1;
            assert!(pages < 50, "{query}: too many pages");
            let items = r.json.as_array().unwrap();
            assert!(items.len() <= page, "{query}: {} items", items.len());
            out.extend(items.iter().cloned());
            continuation = header(&r, "x-ms-continuation").map(str::to_string);
            if continuation.is_none() {
                return (out, pages);
            }
        }
    }
}

async fn fleet() -> Fixture {
    let f = fixture();
    for (id, floor, fw) in [
        ("d1", 1, "1.0"),
        ("d2", 2, "1.0"),
        ("d3", 2, "2.0"),
        ("d4", 3, "2.0"),
        ("d5", 3, "2.0"),
    ] {
        f.put(
            &format!("/devices/{id}"),
            json!({"deviceId": id, "authentication": {"symmetricKey": {}}}),
        )
        .await;
        f.tag(id, json!({"floor": floor, "fw": fw})).await;
    }
    // Modules: d1 has three, d3 one, d5 two; the others none.
    for (d, m) in [
        ("d1", "a"),
        ("d1", "b"),
        ("d1", "c"),
        ("d3", "a"),
        ("d5", "x"),
        ("d5", "y"),
    ] {
        f.put(
            &format!("/devices/{d}/modules/{m}"),
            json!({"deviceId": d, "moduleId": m, "authentication": {"symmetricKey": {}}}),
        )
        .await;
    }
    f
}

fn field<'a>(rows: &'a [Value], name: &str) -> Vec<&'a str> {
    rows.iter().map(|r| r[name].as_str().unwrap()).collect()
}

#[tokio::test]
async fn projections_are_raw_rows_and_page_like_twins() {
    let f = fleet().await;
    let r = f
        .q(
            "SELECT deviceId, tags.floor AS floor FROM devices WHERE tags.fw = '2.0'",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(header(&r, "x-ms-item-type"), Some("raw"));
    assert_eq!(
        r.json,
        json!([{"deviceId": "d3", "floor": 2}, {"deviceId": "d4", "floor": 3}, {"deviceId": "d5", "floor": 3}])
    );
    let (rows, pages) = f.all_pages("SELECT deviceId FROM devices", 2).await;
    assert_eq!(field(&rows, "deviceId"), ["d1", "d2", "d3", "d4", "d5"]);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn count_and_group_by() {
    let f = fleet().await;
    let r = f
        .q("SELECT COUNT() AS numberOfDevices FROM devices", &[])
        .await;
    assert_eq!(r.json, json!([{"numberOfDevices": 5}]));
    let r = f
        .q(
            "SELECT tags.fw AS fw, COUNT() AS numberOfDevices FROM devices GROUP BY tags.fw",
            &[("x-ms-max-item-count", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(header(&r, "x-ms-item-type"), Some("raw"));
    assert_eq!(
        header(&r, "x-ms-continuation"),
        None,
        "aggregates come in one page"
    );
    assert_eq!(
        r.json,
        json!([{"fw": "1.0", "numberOfDevices": 2}, {"fw": "2.0", "numberOfDevices": 3}])
    );
    let r = f
        .q(
            "SELECT COUNT() AS modules FROM devices.modules WHERE moduleId = 'a'",
            &[],
        )
        .await;
    assert_eq!(r.json, json!([{"modules": 2}]));
}

#[tokio::test]
async fn module_twins_page_across_and_within_devices() {
    let f = fleet().await;
    for page in [1, 2, 4, 100] {
        let (rows, _) = f.all_pages("SELECT * FROM devices.modules", page).await;
        let ids: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r["deviceId"].as_str().unwrap(),
                    r["moduleId"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            ids,
            ["d1/a", "d1/b", "d1/c", "d3/a", "d5/x", "d5/y"],
            "page {page}"
        );
    }
    let r = f
        .q(
            "SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'x'",
            &[],
        )
        .await;
    assert_eq!(header(&r, "x-ms-item-type"), Some("twin"));
    assert_eq!(field(r.json.as_array().unwrap(), "deviceId"), ["d5"]);
    let (rows, _) = f
        .all_pages(
            "SELECT deviceId, moduleId FROM devices.modules WHERE deviceId IN ['d1', 'd5']",
            2,
        )
        .await;
    assert_eq!(field(&rows, "moduleId"), ["a", "b", "c", "x", "y"]);
}

#[tokio::test]
async fn top_limits_the_results_over_pages() {
    let f = fleet().await;
    let (rows, pages) = f.all_pages("SELECT TOP 3 * FROM devices", 2).await;
    assert_eq!(field(&rows, "deviceId"), ["d1", "d2", "d3"]);
    assert_eq!(pages, 2);
    let (rows, _) = f
        .all_pages("SELECT TOP 4 moduleId FROM devices.modules", 3)
        .await;
    assert_eq!(field(&rows, "moduleId"), ["a", "b", "c", "a"]);
}

#[tokio::test]
async fn bad_continuations_and_queries_are_400() {
    let f = fleet().await;
    let r = f
        .q(
            "SELECT * FROM devices.modules",
            &[("x-ms-continuation", "garbage!")],
        )
        .await;
    assert_hub_error(&r, 400, "ArgumentInvalid");
    let r = f.q("SELECT deviceId, COUNT() FROM devices", &[]).await;
    assert_hub_error(&r, 400, "ArgumentInvalid");
    assert!(r.json["Message"].as_str().unwrap().contains("GROUP BY"));
}

#[tokio::test]
async fn device_list_says_when_more_follow() {
    let f = fleet().await;
    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    for _ in 0..5 {
        let h: Vec<(&str, &str)> = continuation
            .iter()
            .map(|c| ("x-ms-continuation", c.as_str()))
            .collect();
        let r = f
            .hub_svc(Method::GET, &format!("/devices?{API}&top=2"), &h, "")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        seen.extend(
            field(r.json.as_array().unwrap(), "deviceId")
                .into_iter()
                .map(str::to_string),
        );
        continuation = header(&r, "x-ms-continuation").map(str::to_string);
        if continuation.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["d1", "d2", "d3", "d4", "d5"]);
    // All of them in one page: no continuation.
    let r = f
        .hub_svc(Method::GET, &format!("/devices?{API}"), &[], "")
        .await;
    assert_eq!(r.json.as_array().unwrap().len(), 5);
    assert_eq!(header(&r, "x-ms-continuation"), None);
}
