//! Property-based fuzzing of the JSON bodies the HTTP API parses (`docs/testing.md`,
//! "Fuzzing"): every wire type of this crate. The committed corpus in
//! `tests/fuzz-corpus/bodies/` (bodies as the service SDKs and the DPS device SDKs send them)
//! is replayed first; then arbitrary JSON values, shaped with the field names the corpus uses,
//! and arbitrary text go through serde into every type: nothing panics, and whatever
//! deserializes serializes and deserializes back to the same value. `FLEETHUB_FUZZ_CASES` sets
//! the number of cases (default 256; `scripts/fuzz.sh` runs more).

use std::collections::BTreeSet;
use std::fmt::Debug;

use fleethub_api::*;
use fleethub_fuzzing::floor_char_boundary;
use proptest::prelude::*;
use proptest::sample::select;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn corpus() -> Vec<String> {
    fleethub_fuzzing::text_corpus(env!("CARGO_MANIFEST_DIR"), "bodies", 10)
}

/// Every object key in the corpus: the field names of the wire types, as clients send them.
fn corpus_keys() -> Vec<String> {
    fn walk(v: &Value, keys: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    keys.insert(k.clone());
                    walk(v, keys);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, keys)),
            _ => {}
        }
    }
    let mut keys = BTreeSet::new();
    for text in corpus() {
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            walk(&v, &mut keys);
        }
    }
    keys.into_iter().collect()
}

/// `value` into `T`: never panics; what deserializes round trips.
fn check_type<T: DeserializeOwned + Serialize + PartialEq + Debug>(value: &Value) {
    if let Ok(parsed) = serde_json::from_value::<T>(value.clone()) {
        let text = serde_json::to_string(&parsed).expect("wire types serialize");
        let again: T = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{text} does not parse back: {e}"));
        assert_eq!(again, parsed, "{text}");
    }
}

fn check_value(value: &Value) {
    check_type::<Device>(value);
    check_type::<Module>(value);
    check_type::<Twin>(value);
    check_type::<TwinProperties>(value);
    check_type::<AuthenticationMechanism>(value);
    check_type::<SymmetricKey>(value);
    check_type::<X509Thumbprint>(value);
    check_type::<Capabilities>(value);
    check_type::<Configuration>(value);
    check_type::<ConfigurationContent>(value);
    check_type::<ConfigurationMetrics>(value);
    check_type::<ConfigurationQueriesTestInput>(value);
    check_type::<ConfigurationQueriesTestResponse>(value);
    check_type::<IndividualEnrollment>(value);
    check_type::<EnrollmentGroup>(value);
    check_type::<AttestationMechanism>(value);
    check_type::<SymmetricKeyAttestation>(value);
    check_type::<DeviceCapabilities>(value);
    check_type::<InitialTwin>(value);
    check_type::<InitialTwinProperties>(value);
    check_type::<ReprovisionPolicy>(value);
    check_type::<DeviceRegistration>(value);
    check_type::<DeviceRegistrationState>(value);
    check_type::<SymmetricKeyRegistrationResult>(value);
    check_type::<RegistrationOperationStatus>(value);
    check_type::<QuerySpecification>(value);
    check_type::<BulkEnrollmentOperation>(value);
    check_type::<BulkEnrollmentGroupOperation>(value);
    check_type::<BulkEnrollmentOperationError>(value);
    check_type::<BulkEnrollmentOperationResult>(value);
    check_type::<DpsErrorBody>(value);
    check_type::<HubErrorBody>(value);
}

/// Text straight into the types, as the HTTP layer's JSON extractor does.
fn check_text(text: &str) {
    let _ = serde_json::from_str::<Device>(text);
    let _ = serde_json::from_str::<Twin>(text);
    let _ = serde_json::from_str::<Configuration>(text);
    let _ = serde_json::from_str::<IndividualEnrollment>(text);
    let _ = serde_json::from_str::<EnrollmentGroup>(text);
    let _ = serde_json::from_str::<DeviceRegistration>(text);
    let _ = serde_json::from_str::<BulkEnrollmentOperation>(text);
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        check_value(&v);
    }
}

fn json(keys: Vec<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        select(vec![
            "sas",
            "symmetricKey",
            "x509",
            "enabled",
            "disabled",
            "create",
            "update",
            "delete",
            "hashed",
            "*",
            ""
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        any::<String>().prop_map(Value::String),
    ];
    let key = prop_oneof![4 => select(keys), 1 => any::<String>()];
    leaf.prop_recursive(5, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A corpus body with one value replaced somewhere by a generated one.
fn mutated(keys: Vec<String>) -> impl Strategy<Value = Value> {
    let bodies: Vec<Value> = corpus()
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect();
    (select(bodies), any::<prop::sample::Index>(), json(keys)).prop_map(|(mut body, at, new)| {
        let mut slots = Vec::new();
        collect_pointers(&body, String::new(), &mut slots);
        let slot = &slots[at.index(slots.len())];
        if let Some(v) = body.pointer_mut(slot) {
            *v = new;
        }
        body
    })
}

fn collect_pointers(v: &Value, here: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                collect_pointers(
                    v,
                    format!("{here}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                collect_pointers(v, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(here);
}

#[test]
fn corpus_replays() {
    let bodies = corpus();
    assert!(bodies.len() >= 10, "corpus too small");
    let mut parsed = 0;
    for text in &bodies {
        check_text(text);
        parsed += usize::from(serde_json::from_str::<Value>(text).is_ok());
    }
    assert!(parsed >= 10);
    // Real bodies parse into their types.
    let device = bodies
        .iter()
        .find(|b| b.contains("\"device-1\""))
        .expect("device body");
    assert!(serde_json::from_str::<Device>(device).is_ok());
}

proptest! {
    #![proptest_config(fleethub_fuzzing::config())]

    #[test]
    fn arbitrary_json_never_panics(value in json(corpus_keys())) {
        check_value(&value);
    }

    #[test]
    fn mutated_bodies_never_panic(value in mutated(corpus_keys())) {
        check_value(&value);
    }

    #[test]
    fn arbitrary_text_never_panics(text in prop_oneof![
        any::<String>(),
        (select(corpus()), any::<prop::sample::Index>()).prop_map(|(t, at)| {
            t[..floor_char_boundary(&t, at.index(t.len() + 1))].to_owned()
        }),
    ]) {
        check_text(&text);
    }
}
