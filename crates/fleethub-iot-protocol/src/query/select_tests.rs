//! The `SELECT` frame: projections, aggregates, `GROUP BY`, `TOP`, `devices.modules`.

use super::*;
use serde_json::{Value, json};

fn twins() -> Vec<Value> {
    vec![
        json!({"deviceId": "a", "tags": {"floor": 1}, "properties": {"reported": {"fw": "1.0", "temp": 20}}}),
        json!({"deviceId": "b", "tags": {"floor": 2}, "properties": {"reported": {"fw": "1.0", "temp": 23}}}),
        json!({"deviceId": "c", "tags": {"floor": 2}, "properties": {"reported": {"fw": "2.0", "temp": 21.5}}}),
        json!({"deviceId": "d", "tags": {}, "properties": {"reported": {}}}),
    ]
}

fn rows(q: &str) -> Vec<Value> {
    let q = Query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    assert!(q.is_aggregate());
    let mut agg = Aggregation::new(&q);
    for t in twins().iter().filter(|t| q.matches(*t)) {
        agg.add(t);
    }
    agg.rows()
}

fn error(q: &str) -> String {
    Query::parse(q).expect_err(q).0
}

#[test]
fn projections_name_items_by_alias_or_last_segment() {
    let q = Query::parse(
        "SELECT deviceId, properties.reported.fw AS firmware, tags.floor, tags.missing \
         FROM devices WHERE tags.floor = 2",
    )
    .unwrap();
    assert!(!q.is_aggregate());
    assert_eq!(q.source(), Source::Devices);
    let out: Vec<Value> = twins()
        .iter()
        .filter(|t| q.matches(*t))
        .filter_map(|t| q.project(t))
        .collect();
    assert_eq!(
        out,
        [
            json!({"deviceId": "b", "firmware": "1.0", "floor": 2}),
            json!({"deviceId": "c", "firmware": "2.0", "floor": 2}),
        ]
    );
    assert_eq!(
        Query::parse("SELECT * FROM devices")
            .unwrap()
            .project(&twins()[0]),
        None
    );
}

#[test]
fn count_sum_avg_min_max_without_group_by() {
    assert_eq!(
        rows("SELECT COUNT() AS numberOfDevices FROM devices"),
        [json!({"numberOfDevices": 4})]
    );
    assert_eq!(
        rows("select count() from devices where tags.floor = 9"),
        [json!({"$1": 0})]
    );
    assert_eq!(
        rows(
            "SELECT SUM(properties.reported.temp) AS s, AVG(properties.reported.temp) AS a, \
             MIN(properties.reported.temp) AS lo, MAX(tags.floor) AS hi, COUNT() AS n FROM devices"
        ),
        [json!({"s": 64.5, "a": 21.5, "lo": 20, "hi": 2, "n": 4})]
    );
    // Nothing to sum: the item is left out.
    assert_eq!(
        rows("SELECT SUM(tags.none) AS s, COUNT() AS n FROM devices"),
        [json!({"n": 4})]
    );
}

#[test]
fn group_by_gives_one_row_per_value_undefined_included() {
    assert_eq!(
        rows(
            "SELECT properties.reported.fw AS fw, COUNT() AS numberOfDevices FROM devices \
             GROUP BY properties.reported.fw"
        ),
        [
            json!({"fw": "1.0", "numberOfDevices": 2}),
            json!({"fw": "2.0", "numberOfDevices": 1}),
            json!({"numberOfDevices": 1}),
        ]
    );
    assert_eq!(
        rows(
            "SELECT tags.floor, properties.reported.fw, COUNT() AS n FROM devices \
             WHERE IS_DEFINED(tags.floor) GROUP BY tags.floor, properties.reported.fw"
        ),
        [
            json!({"floor": 1, "fw": "1.0", "n": 1}),
            json!({"floor": 2, "fw": "1.0", "n": 1}),
            json!({"floor": 2, "fw": "2.0", "n": 1}),
        ]
    );
    assert!(
        rows("SELECT tags.floor FROM devices WHERE tags.floor = 9 GROUP BY tags.floor").is_empty()
    );
}

#[test]
fn modules_and_top() {
    let q = Query::parse("SELECT TOP 3 * FROM devices.modules WHERE moduleId = 'm'").unwrap();
    assert_eq!((q.source(), q.top()), (Source::Modules, Some(3)));
    assert!(q.matches(&json!({"deviceId": "a", "moduleId": "m"})));
    // As in SQL, a GROUP BY path need not be selected.
    let q = Query::parse("SELECT COUNT() AS n FROM devices.modules GROUP BY deviceId").unwrap();
    assert_eq!(q.group_by(), [vec!["deviceId".to_string()]]);
}

#[test]
fn what_is_refused_says_why() {
    for (q, needle) in [
        ("SELECT * FROM devices.jobs", "devices.jobs"),
        ("SELECT * FROM jobs", "only FROM devices"),
        ("SELECT * FROM devices ORDER BY deviceId", "ORDER BY"),
        (
            "SELECT * FROM devices GROUP BY tags.x",
            "SELECT * cannot be grouped",
        ),
        (
            "SELECT deviceId, COUNT() FROM devices",
            "neither an aggregate nor in GROUP BY",
        ),
        ("SELECT tags.a FROM devices GROUP BY tags.b", "neither"),
        (
            "SELECT COUNT(deviceId) FROM devices",
            "COUNT() takes no argument",
        ),
        ("SELECT SUM() FROM devices", "takes a property path"),
        (
            "SELECT LOWER(deviceId) FROM devices",
            "LOWER is not supported",
        ),
        ("SELECT TOP 0 * FROM devices", "positive"),
        ("SELECT TOP x * FROM devices", "number after TOP"),
        ("SELECT 'x' FROM devices", "literal"),
        ("SELECT deviceId AS FROM devices", "after AS"),
        ("SELECT deviceId devices", "expected FROM"),
        ("SELECT * FROM devices GROUP tags.x", "BY after GROUP"),
    ] {
        let e = error(q);
        assert!(e.contains(needle), "{q}: {e}");
    }
}
