//! Rendering: JSON exactly as received, tables aligned and deterministic.

use crate::OutputFormat;
use crate::output::{Outcome, cell, col, col_or};
use serde_json::{Value, json};

#[test]
fn json_is_pretty_and_unchanged() {
    let v = json!({"registrationId": "dev-01", "unknownField": {"x": [1, 2]}});
    let out = Outcome::Object(v.clone()).render(OutputFormat::Json);
    assert!(out.ends_with("}\n"));
    assert!(out.contains("\n  \"registrationId\": \"dev-01\""));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), v);
    let empty = Outcome::List(vec![], &[]).render(OutputFormat::Json);
    assert_eq!(empty, "[]\n");
}

#[test]
fn list_table_has_aligned_columns_and_defaults() {
    const COLS: &[crate::output::Column] = &[
        col("ID", "/id"),
        col_or("EDGE", "/caps/edge", "false"),
        col("HUB", "/state/hub"),
    ];
    let items = vec![
        json!({"id": "dev-01", "caps": {"edge": true}, "state": {"hub": "hub.local"}}),
        json!({"id": "a-much-longer-id", "state": {"hub": null}}),
    ];
    let out = Outcome::List(items, COLS).render(OutputFormat::Table);
    let want = "\
ID                EDGE   HUB
dev-01            true   hub.local
a-much-longer-id  false  -
";
    assert_eq!(out, want);
}

#[test]
fn empty_list_table_prints_the_header() {
    const COLS: &[crate::output::Column] = &[col("ID", "/id"), col("STATUS", "/status")];
    assert_eq!(
        Outcome::List(vec![], COLS).render(OutputFormat::Table),
        "ID  STATUS\n"
    );
}

#[test]
fn object_table_lists_leaves_by_path() {
    let v = json!({
        "registrationId": "dev-01",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "pk"}},
        "iotHubs": ["a", "b"],
        "initialTwin": {"tags": {}},
    });
    let out = Outcome::Object(v).render(OutputFormat::Table);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["FIELD", "VALUE"],
            vec!["attestation.symmetricKey.primaryKey", "pk"],
            vec!["attestation.type", "symmetricKey"],
            vec!["initialTwin.tags", "{}"],
            vec!["iotHubs", "[\"a\",\"b\"]"],
            vec!["registrationId", "dev-01"],
        ]
    );
}

#[test]
fn text_is_printed_as_is_and_done_prints_nothing() {
    let t = Outcome::Text("luaCq=".into());
    assert_eq!(t.render(OutputFormat::Json), "luaCq=\n");
    assert_eq!(t.render(OutputFormat::Table), "luaCq=\n");
    let d = Outcome::Done("deleted".into());
    assert_eq!(d.render(OutputFormat::Table), "");
    assert_eq!(d.note(), Some("deleted"));
}

#[test]
fn cells() {
    assert_eq!(cell(None, "-"), "-");
    assert_eq!(cell(Some(&json!("")), "-"), "-");
    assert_eq!(cell(Some(&json!("a\nb")), "-"), "a b");
    assert_eq!(cell(Some(&json!(3)), "-"), "3");
    assert_eq!(cell(Some(&json!(false)), "-"), "false");
}
