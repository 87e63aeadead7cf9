//! Property-based fuzzing of the Azure IoT wire conventions (`docs/testing.md`, "Fuzzing"):
//! topics, CONNECT user names, property bags and the query/condition language. The committed
//! corpus in `tests/fuzz-corpus/<target>/` (topics, user names and bags as the SDKs send
//! them, real queries and route conditions) is replayed first; then arbitrary and
//! token-soup strings must never panic, encoders and parsers round trip, and every parsed
//! condition evaluates without panicking. `FLEETHUB_FUZZ_CASES` sets the number of cases
//! (default 256; `scripts/fuzz.sh` runs more).

use std::borrow::Cow;

use fleethub_fuzzing::{Mutations, text_input};
use fleethub_iot_protocol::query::{Comparison, Dialect, Expr, Operands, Query, parse_condition};
use fleethub_iot_protocol::{dps, hub, identity, property_bag};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

fn corpus(target: &str) -> Vec<String> {
    fleethub_fuzzing::text_corpus(env!("CARGO_MANIFEST_DIR"), target, 3)
}

/// Corpus entries, arbitrary strings, and soups of the fragments the grammar is made of.
fn input(
    target: &str,
    fragments: &'static [&'static str],
) -> impl Strategy<Value = String> + use<> {
    let mutations = Mutations {
        soup_len: 24,
        splices: 1,
        truncate: false,
    };
    text_input(corpus(target), fragments, mutations)
}

const TOPIC_FRAGMENTS: &[&str] = &[
    "devices/",
    "d1",
    "/modules/",
    "m1",
    "/messages/",
    "events/",
    "devicebound/",
    "inputs/",
    "$iothub/",
    "twin/",
    "GET/",
    "PATCH/",
    "properties/",
    "reported/",
    "desired/",
    "res/",
    "methods/",
    "POST/",
    "$dps/",
    "registrations/",
    "PUT/",
    "iotdps-register/",
    "iotdps-get-operationstatus/",
    "?",
    "$rid=",
    "&",
    "=",
    "$version=",
    "retry-after=",
    "operationId=",
    "200",
    "65536",
    "-1",
    "1.5",
    "/",
    "#",
    "+",
    "%",
    "%2",
    "%24.",
    "%FF",
    "€",
    "\0",
    " ",
];

const QUERY_FRAGMENTS: &[&str] = &[
    "SELECT ",
    "* ",
    "FROM ",
    "devices ",
    "WHERE ",
    "deviceId ",
    "tags",
    ".",
    "properties",
    "reported",
    "desired",
    "$contentType",
    "$body",
    "[[",
    "]]",
    "[",
    "]",
    "(",
    ")",
    ",",
    "=",
    "!=",
    "<>",
    "<",
    ">",
    "<=",
    ">=",
    " AND ",
    " OR ",
    " NOT ",
    " IN ",
    " NIN ",
    "true",
    "false",
    "null",
    "'",
    "\"",
    "\\",
    "''",
    "'x'",
    "1",
    "-1",
    "1e308",
    "1e999",
    "0.5",
    "IS_DEFINED",
    "IS_NULL",
    "is_object",
    "STARTS_WITH",
    "ENDS_WITH",
    " ",
    "\n",
    "€",
    "devices.modules",
];

const BAG_FRAGMENTS: &[&str] = &[
    "&",
    "=",
    "%",
    "%2",
    "%24.",
    "$.",
    "ct",
    "mid",
    "k",
    "v",
    "%FF",
    "%E2%82%AC",
    "%00",
    "€",
    "iothub-",
    "+",
];

/// Message-like operands: every property a string (or absent), as on the wire.
struct StringProps(Value);

impl Operands for StringProps {
    fn resolve(&self, path: &[String]) -> Option<Cow<'_, Value>> {
        let v = self.0.get(path.join("."))?;
        Some(Cow::Owned(match v {
            Value::String(_) => v.clone(),
            other => Value::String(other.to_string()),
        }))
    }

    fn comparison(&self) -> Comparison {
        Comparison::StringProperties
    }
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z0-9' ]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                select(
                    &[
                        "tags",
                        "properties",
                        "reported",
                        "desired",
                        "x",
                        "$contentType",
                        "my-prop"
                    ][..]
                )
                .prop_map(str::to_owned),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Evaluates `e` over a twin-like document and over string properties.
fn evaluate(e: &Expr, doc: &Value) {
    let _ = e.eval(doc);
    let _ = e.eval(&StringProps(doc.clone()));
    let _ = e.paths();
}

fn check_query(text: &str, doc: &Value) {
    for q in [
        Query::parse(text),
        Query::parse_metric(text),
        Query::parse_condition(text),
    ]
    .into_iter()
    .flatten()
    {
        let _ = q.matches(doc);
        if let Some(e) = q.filter() {
            evaluate(e, doc);
        }
    }
    for dialect in [Dialect::Query, Dialect::Route] {
        match parse_condition(text, dialect) {
            Ok(e) => evaluate(&e, doc),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

fn check_topic(topic: &str) {
    let _ = hub::parse_telemetry_topic(topic);
    let _ = hub::parse_iothub_request(topic);
    let _ = hub::classify(topic, "d1");
    let _ = hub::classify_filter(topic, "d1", None);
    let _ = hub::classify_filter(topic, "d1", Some("m1"));
    let _ = dps::parse_request_topic(topic);
    let _ = dps::parse_response_topic(topic);
    let _ = dps::parse_retry_after(topic);
    let _ = fleethub_iot_protocol::decode_lossy(topic);
}

fn check_bag(bag: &str) {
    let all = property_bag::parse(bag);
    let items: Vec<_> = property_bag::iter(bag).collect();
    match all {
        Ok(props) => {
            assert!(props.iter().all(|(k, _)| !k.is_empty()));
            assert_eq!(items.len(), props.len());
        }
        Err(_) => assert!(items.iter().any(Result::is_err)),
    }
    let _ = property_bag::parse_telemetry(bag);
}

#[test]
fn corpus_replays() {
    for t in corpus("topics") {
        check_topic(&t);
    }
    for u in corpus("usernames") {
        let _ = identity::parse_username(&u);
    }
    let bags = corpus("property-bags");
    for b in &bags {
        check_bag(b);
    }
    assert!(property_bag::parse(&bags[0]).is_ok(), "{}", bags[0]);
    let doc =
        serde_json::json!({"tags": {"environment": "prod"}, "properties": {"reported": {"fw": 3}}});
    for q in corpus("queries") {
        check_query(&q, &doc);
        assert!(
            Query::parse(&q).is_ok()
                || Query::parse_metric(&q).is_ok()
                || Query::parse_condition(&q).is_ok()
                || parse_condition(&q, Dialect::Route).is_ok(),
            "corpus query {q} does not parse"
        );
    }
}

/// Valid identifiers that are no keyword of the language.
fn ident() -> impl Strategy<Value = String> {
    "p[a-zA-Z0-9_]{0,6}"
}

/// Valid conditions (nested less deeply than the parser allows).
fn condition() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        prop::collection::vec(ident(), 1..4).prop_map(|v| v.join(".")),
        Just("$contentType".to_owned()),
        "[a-z-]{1,6}".prop_map(|s| format!("[[{s}]]")),
    ];
    let literal = prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        "[a-z0-9 ]{0,6}".prop_map(|s| format!("'{s}'")),
        Just("true".to_owned()),
        Just("null".to_owned()),
    ];
    let op = select(&["=", "!=", "<>", "<", ">", "<=", ">="][..]);
    let atom = prop_oneof![
        (path.clone(), op, literal.clone()).prop_map(|(p, o, l)| format!("{p} {o} {l}")),
        (path.clone(), prop::collection::vec(literal.clone(), 1..3))
            .prop_map(|(p, l)| format!("{p} IN [{}]", l.join(", "))),
        path.clone().prop_map(|p| format!("is_defined({p})")),
        (path, literal).prop_map(|(p, l)| format!("STARTS_WITH({p}, {l})")),
    ];
    atom.prop_recursive(6, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), select(&["AND", "OR"][..]), inner.clone())
                .prop_map(|(a, o, b)| format!("{a} {o} {b}")),
            inner.clone().prop_map(|a| format!("NOT ({a})")),
            inner.prop_map(|a| format!("({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(fleethub_fuzzing::config())]

    #[test]
    fn topics_never_panic(topic in input("topics", TOPIC_FRAGMENTS)) {
        check_topic(&topic);
    }

    #[test]
    fn user_names_never_panic(u in input("usernames", TOPIC_FRAGMENTS)) {
        let _ = identity::parse_username(&u);
    }

    #[test]
    fn property_bags_never_panic(bag in input("property-bags", BAG_FRAGMENTS)) {
        check_bag(&bag);
    }

    #[test]
    fn queries_never_panic(text in input("queries", QUERY_FRAGMENTS), doc in json()) {
        check_query(&text, &doc);
    }

    /// What the encoder writes, the parser reads back, for any names and values.
    #[test]
    fn property_bags_round_trip(
        props in prop::collection::vec(("\\$?\\.?.{1,12}", ".{0,12}"), 0..6),
        alnum in any::<bool>(),
    ) {
        let escape = if alnum {
            property_bag::Escape::AllButAlphanumeric
        } else {
            property_bag::Escape::Unreserved
        };
        let bag = property_bag::encode_with(
            props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            escape,
        );
        let parsed = property_bag::parse(&bag).unwrap_or_else(|e| panic!("{bag}: {e}"));
        let expected: Vec<_> = props.into_iter().map(|(k, v)| (k, Some(v))).collect();
        prop_assert_eq!(parsed, expected, "bag {}", bag);
    }

    /// Generated valid conditions parse in both dialects and evaluate.
    #[test]
    fn valid_conditions_parse(cond in condition(), doc in json()) {
        for dialect in [Dialect::Query, Dialect::Route] {
            let e = parse_condition(&cond, dialect).unwrap_or_else(|e| panic!("{cond}: {e}"));
            evaluate(&e, &doc);
        }
        let q = format!("SELECT * FROM devices WHERE {cond}");
        prop_assert!(Query::parse(&q).is_ok(), "{}", q);
    }

    /// The topics the hub and DPS send read back as sent.
    #[test]
    fn topics_round_trip(
        status in any::<u16>(),
        rid in "[0-9a-zA-Z-]{1,12}",
        version in prop::option::of(any::<u64>()),
        retry in prop::option::of(any::<u32>()),
        name in ".{1,16}",
    ) {
        let topic = hub::twin_response_topic(status, &rid, version);
        prop_assert_eq!(
            hub::classify(&topic, "d1"),
            hub::HubTopic::TwinResponse { status, rid: rid.clone(), version }
        );
        let topic = hub::method_request_topic(&name, &rid);
        prop_assert_eq!(
            hub::classify(&topic, "d1"),
            hub::HubTopic::MethodRequest { name: name.clone(), rid: rid.clone() },
            "topic {}", topic
        );
        let topic = dps::response_topic(status, &rid, retry);
        prop_assert_eq!(
            dps::parse_response_topic(&topic),
            Some(dps::ResponseTopic { status, rid, retry_after: retry.map(u64::from) })
        );
    }

    /// Hub user names as the SDKs build them read back as the identity they name.
    #[test]
    fn user_names_round_trip(
        host in "[a-z0-9.-]{1,20}",
        device in "[a-zA-Z0-9-:.+%_#*?!(),=@;$']{1,20}",
        module in prop::option::of("[a-zA-Z0-9-:.+%_#*?!(),=@;$']{1,20}"),
        client in prop::option::of(".{0,20}"),
    ) {
        let u = identity::hub_username(&host, &device, module.as_deref(), "2021-04-12", client.as_deref());
        prop_assert_eq!(
            identity::parse_username(&u),
            Some(identity::ConnectTarget::Hub { host, device_id: device, module_id: module }),
            "user name {}", u
        );
    }
}
