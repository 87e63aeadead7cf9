use super::*;
use serde_json::{Value, json};

fn twin() -> Value {
    json!({
        "deviceId": "dev-01",
        "status": "enabled",
        "connectionState": "Disconnected",
        "capabilities": {"iotEdge": true},
        "tags": {"environment": "test", "floor": 3, "nothing": null},
        "properties": {
            "desired": {"interval": 30, "$version": 2},
            "reported": {"fw": "1.2.3", "temp": 21.5, "$version": 4}
        }
    })
}

fn check(q: &str) -> bool {
    Query::parse(q)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .matches(&twin())
}

fn error(q: &str) -> String {
    Query::parse(q).expect_err(q).0
}

#[test]
fn target_conditions() {
    let t = twin();
    let c = |q: &str| {
        Query::parse_condition(q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .matches(&t)
    };
    assert!(c("*"));
    assert!(c("tags.environment='test'"));
    assert!(!c("tags.environment='prod'"));
    assert!(c("tags.environment='test' AND capabilities.iotEdge = true"));
    assert!(c("properties.reported.fw = '1.2.3' OR tags.floor > 100"));
    assert!(Query::parse_condition("").unwrap_err().0.contains("empty"));
    assert!(
        Query::parse_condition("SELECT * FROM devices WHERE tags.a='b'")
            .unwrap_err()
            .0
            .contains("without SELECT")
    );
    assert!(Query::parse_condition("tags.a = 'b' tags").is_err());
}

/// Found by `tests/fuzz_protocol.rs`: a bracketed name that spells a keyword or literal is
/// still a property name (`[[or]]` was read as OR, `[true]` as the literal).
#[test]
fn bracketed_names_are_never_keywords() {
    let t = json!({"or": 1, "true": "yes", "tags": {"and": "x"}});
    for (cond, dialect) in [
        ("[[or]] = 1", Dialect::Query),
        ("tags.[[and]] = 'x'", Dialect::Query),
        ("NOT ([or] IN [2]) AND [true] = 'yes'", Dialect::Route),
    ] {
        let e = parse_condition(cond, dialect).unwrap_or_else(|e| panic!("{cond}: {e}"));
        assert!(e.eval(&t), "{cond}");
    }
}

#[test]
fn bracketed_names_and_metric_queries() {
    let mut t = twin();
    t["configurations"] = json!({"my-dep": {"status": "Applied"}});
    let q = Query::parse_metric(
        "SELECT deviceId FROM devices WHERE configurations.[[my-dep]].status = 'Applied'",
    )
    .unwrap();
    assert!(q.matches(&t));
    assert!(Query::parse("SELECT deviceId FROM devices").is_ok());
    assert!(Query::parse_metric("SELECT x FROM devices").is_err());
    assert!(Query::parse_metric("SELECT COUNT() FROM devices").is_err());
    assert!(Query::parse_metric("SELECT * FROM devices.modules").is_err());
    assert!(
        Query::parse_condition("tags.[[a")
            .unwrap_err()
            .0
            .contains("]]")
    );
}

#[test]
fn select_all() {
    assert!(check("SELECT * FROM devices"));
    assert!(check("select *  from Devices"));
}

#[test]
fn comparisons() {
    assert!(check(
        "SELECT * FROM devices WHERE tags.environment = 'test'"
    ));
    assert!(!check(
        "SELECT * FROM devices WHERE tags.environment = 'prod'"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE tags.environment = \"test\""
    ));
    assert!(check(
        "SELECT * FROM devices WHERE tags.environment != 'prod'"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE tags.environment <> 'prod'"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE capabilities.iotEdge = true"
    ));
    assert!(!check(
        "SELECT * FROM devices WHERE capabilities.iotEdge = false"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE tags.floor >= 3 AND tags.floor < 4"
    ));
    assert!(check("SELECT * FROM devices WHERE tags.floor = 3.0"));
    assert!(check(
        "SELECT * FROM devices WHERE properties.reported.temp > -1.5e1"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE properties.reported.fw <= '1.2.3'"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE properties.desired.interval = 30"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE deviceId = 'dev-01' AND status = 'enabled'"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE connectionState = 'Disconnected'"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE 'test' = tags.environment"
    ));
}

#[test]
fn undefined_and_mismatched_types_are_false() {
    assert!(!check("SELECT * FROM devices WHERE tags.missing = 'x'"));
    assert!(!check("SELECT * FROM devices WHERE tags.missing != 'x'"));
    assert!(!check("SELECT * FROM devices WHERE tags.floor = '3'"));
    assert!(!check("SELECT * FROM devices WHERE tags.floor != '3'"));
    assert!(!check(
        "SELECT * FROM devices WHERE capabilities.iotEdge > false"
    ));
    assert!(check("SELECT * FROM devices WHERE tags.nothing = null"));
    assert!(check(
        "SELECT * FROM devices WHERE tags.environment != null"
    ));
    assert!(!check("SELECT * FROM devices WHERE tags.missing = null"));
}

#[test]
fn boolean_logic_and_precedence() {
    // AND binds tighter than OR
    assert!(check(
        "SELECT * FROM devices WHERE tags.environment = 'prod' OR tags.floor = 3 AND status = 'enabled'"
    ));
    assert!(!check(
        "SELECT * FROM devices WHERE (tags.environment = 'prod' OR tags.floor = 3) AND status = 'disabled'"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE NOT (tags.environment = 'prod')"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE NOT tags.environment = 'prod' and NOT tags.floor > 3"
    ));
}

#[test]
fn functions_and_in() {
    assert!(check(
        "SELECT * FROM devices WHERE IS_DEFINED(tags.environment)"
    ));
    assert!(!check(
        "SELECT * FROM devices WHERE is_defined(tags.missing)"
    ));
    assert!(check("SELECT * FROM devices WHERE IS_NULL(tags.nothing)"));
    assert!(check(
        "SELECT * FROM devices WHERE IS_NUMBER(tags.floor) AND IS_STRING(deviceId)"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE IS_BOOL(capabilities.iotEdge) AND IS_OBJECT(tags)"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'dev-')"
    ));
    assert!(!check(
        "SELECT * FROM devices WHERE ENDS_WITH(deviceId, 'dev-')"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE tags.environment IN ['prod', 'test']"
    ));
    assert!(!check(
        "SELECT * FROM devices WHERE tags.environment NOT IN ['prod', 'test']"
    ));
    assert!(check(
        "SELECT * FROM devices WHERE tags.environment NIN ['prod']"
    ));
    assert!(!check(
        "SELECT * FROM devices WHERE tags.missing NIN ['prod']"
    ));
    assert!(!check("SELECT * FROM devices WHERE tags.floor IN []"));
}

#[test]
fn string_escapes() {
    let q = Query::parse(r"SELECT * FROM devices WHERE tags.owner = 'O\'Brien'").unwrap();
    assert!(q.matches(&json!({"tags": {"owner": "O'Brien"}})));
}

#[test]
fn unsupported_syntax_names_the_problem() {
    // Projections, aggregates and devices.modules are supported (see select_tests).
    assert!(error("SELECT deviceId, FROM devices").contains("FROM"));
    assert!(error("SELECT * FROM devices.jobs").contains("devices.jobs"));
    assert!(error("SELECT * FROM jobs").contains("only FROM devices"));
    assert!(error("SELECT * FROM devices GROUP BY tags.x").contains("GROUP BY"));
    assert!(error("SELECT * FROM devices WHERE tags.x ~ 1").contains("'~'"));
    assert!(error("SELECT * FROM devices WHERE tags.x = 'open").contains("not closed"));
    assert!(error("SELECT * FROM devices WHERE tags.x").contains("comparison"));
    assert!(error("SELECT * FROM devices WHERE (tags.x = 1").contains("')'"));
    assert!(error("SELECT * FROM devices WHERE LOWER(tags.x) = 'a'").contains("LOWER"));
    assert!(error("SELECT * FROM devices WHERE tags.x = 1 tags.y = 2").contains("unexpected"));
    assert!(error("DELETE FROM devices").contains("SELECT"));
    assert!(error("").contains("SELECT"));
    let deep = format!(
        "SELECT * FROM devices WHERE {}tags.x = 1{}",
        "(".repeat(100),
        ")".repeat(100)
    );
    assert!(error(&deep).contains("nested"));
    assert!(
        error(&format!(
            "SELECT * FROM devices WHERE tags.x = '{}'",
            "a".repeat(9000)
        ))
        .contains("longer")
    );
}

/// Message-like operands: every property a string, as on the wire.
struct Props(Vec<(&'static str, &'static str)>);

impl Operands for Props {
    fn resolve(&self, path: &[String]) -> Option<std::borrow::Cow<'_, Value>> {
        let name = path.join(".");
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| std::borrow::Cow::Owned(Value::String(v.to_string())))
    }

    fn comparison(&self) -> Comparison {
        Comparison::StringProperties
    }
}

fn route(cond: &str, props: &[(&'static str, &'static str)]) -> bool {
    parse_condition(cond, Dialect::Route)
        .unwrap_or_else(|e| panic!("{cond}: {e}"))
        .eval(&Props(props.to_vec()))
}

#[test]
fn string_properties_compare_with_the_literal_type() {
    assert!(route("temp > 30", &[("temp", "31.5")]));
    assert!(!route("temp > 30", &[("temp", "3")]));
    assert!(!route("temp > 30", &[("temp", "abc")]));
    assert!(route("flag = true", &[("flag", "true")]));
    assert!(route("flag < true", &[("flag", "false")]));
    assert!(route("-1 < n", &[("n", "0")]));
    assert!(route("name != 'it''s'", &[("name", "x")]));
    assert!(!route("name != 'it''s'", &[("name", "it's")]));
    assert!(route("[my prop] = \"a b\"", &[("my prop", "a b")]));
    assert!(route("a.b = 'x'", &[("a.b", "x")]));
    assert!(route("my-prop IN ['x', 'y']", &[("my-prop", "y")]));
    assert!(route("true", &[]));
    assert!(!route("false OR missing = 1", &[]));
    assert!(route("NOT IS_DEFINED(x)", &[]));
    // The same text over a JSON document compares typed values.
    let doc = json!({"temp": "31.5"});
    let e = parse_condition("temp > 30", Dialect::Route).unwrap();
    assert!(!e.eval(&doc));
}

#[test]
fn condition_errors_name_the_problem() {
    let e = |s: &str| parse_condition(s, Dialect::Route).unwrap_err().0;
    assert!(e("").contains("empty"));
    assert!(e("a = ").contains("ends too early"));
    assert!(e("(a = 1").contains("missing ')'"));
    assert!(e("a").contains("comparison operator"));
    assert!(e("a = 1 b").contains("unexpected"));
    assert!(e("a = AND").contains("unexpected 'AND'"));
    assert!(e("x NOT = 1").contains("IN"));
    assert!(e("STARTS_WITH(a)").contains("2 argument"));
}

#[test]
fn paths_of_a_condition() {
    let e = parse_condition(
        "$body.temp > 1 AND (x IN [1] OR NOT STARTS_WITH(y.z, 'a'))",
        Dialect::Route,
    )
    .unwrap();
    let paths: Vec<String> = e.paths().iter().map(|p| p.join(".")).collect();
    assert_eq!(paths, ["$body.temp", "x", "y.z"]);
}
