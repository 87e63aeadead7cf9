//! Property-based fuzzing of SAS tokens, connection strings, IDs and keys (`docs/testing.md`,
//! "Fuzzing"). The committed corpus in `tests/fuzz-corpus/<target>/` (tokens and connection
//! strings as the SDKs and the portal write them) is replayed first; then arbitrary and
//! mutated text must never panic, and what the builders write parses back. The signatures and
//! keys in the corpus are made up. `FLEETHUB_FUZZ_CASES` sets the number of cases (default
//! 256; `scripts/fuzz.sh` runs more).

use fleethub_core::connection_string::ConnectionString;
use fleethub_core::sas::{self, SasToken};
use fleethub_core::{ids, keys};
use fleethub_fuzzing::{Mutations, text_input};
use proptest::prelude::*;

fn corpus(target: &str) -> Vec<String> {
    fleethub_fuzzing::text_corpus(env!("CARGO_MANIFEST_DIR"), target, 3)
}

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

const FRAGMENTS: &[&str] = &[
    "SharedAccessSignature ",
    "sr=",
    "sig=",
    "se=",
    "skn=",
    "&",
    " ",
    "\t",
    "=",
    ";",
    "%",
    "%2F",
    "%2f",
    "%zz",
    "%F",
    "/",
    "+",
    "==",
    "HostName=",
    "DeviceId=",
    "ModuleId=",
    "SharedAccessKey=",
    "SharedAccessKeyName=",
    "SharedAccessSignature=",
    "GatewayHostName=",
    "x509=",
    "true",
    "TRUE",
    "h",
    "devices",
    "d1",
    "18446744073709551615",
    "18446744073709551616",
    "0",
    "AAAA",
    "YWJj",
    "€",
    "\0",
];

/// Corpus entries, arbitrary strings, soups of fragments and corpus entries with a fragment
/// spliced in.
fn input(target: &str) -> impl Strategy<Value = String> + use<> {
    let mutations = Mutations {
        soup_len: 16,
        splices: 1,
        truncate: false,
    };
    text_input(corpus(target), FRAGMENTS, mutations)
}

fn check_token(text: &str, now: u64, skew: u64) {
    match SasToken::parse(text) {
        Ok(t) => {
            let resource = t.resource();
            let _ = t.check_expiry(now, skew);
            assert!(t.verify_signature(KEY).is_ok());
            let _ = t.covers(&resource);
            let _ = t.covers(text);
            let _ = sas::describe_resource_mismatch(&t, text);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn check_connection_string(text: &str) {
    match ConnectionString::parse(text) {
        // Whatever parses prints as a connection string that parses to the same value.
        Ok(cs) => assert_eq!(ConnectionString::parse(&cs.to_string()).as_ref(), Ok(&cs)),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn check_ids_and_keys(text: &str) {
    let _ = ids::validate_device_id(text);
    let _ = ids::validate_module_id(text);
    let _ = ids::validate_registration_id(text);
    let _ = ids::validate_enrollment_group_id(text);
    let _ = keys::decode_key(text);
    let _ = keys::derive_device_key(text, text);
    let _ = keys::derive_device_key(KEY, text);
}

#[test]
fn corpus_replays() {
    let tokens = corpus("sas-tokens");
    for t in &tokens {
        check_token(t, 1_764_000_000, 300);
        check_ids_and_keys(t);
    }
    assert!(SasToken::parse(&tokens[0]).is_ok(), "{}", tokens[0]);
    let strings = corpus("connection-strings");
    for cs in &strings {
        check_connection_string(cs);
        check_ids_and_keys(cs);
    }
    assert!(
        ConnectionString::parse(&strings[0]).is_ok(),
        "{}",
        strings[0]
    );
}

proptest! {
    #![proptest_config(fleethub_fuzzing::config())]

    #[test]
    fn sas_tokens_never_panic(text in input("sas-tokens"), now in any::<u64>(), skew in any::<u64>()) {
        check_token(&text, now, skew);
    }

    #[test]
    fn connection_strings_never_panic(text in input("connection-strings")) {
        check_connection_string(&text);
    }

    #[test]
    fn ids_and_keys_never_panic(text in prop_oneof![input("sas-tokens"), input("connection-strings")]) {
        check_ids_and_keys(&text);
    }

    /// A token built for any (non-empty) resource parses back to that resource and verifies.
    #[test]
    fn built_tokens_round_trip(
        resource in "(?s).{1,64}",
        expiry in any::<u64>(),
        skn in prop::option::of(any::<String>()),
    ) {
        let token = sas::build_token(&resource, KEY, expiry, skn.as_deref()).expect("valid key");
        let parsed = SasToken::parse(&token);
        prop_assert!(parsed.is_ok(), "{}: {:?}", token, parsed);
        let parsed = parsed.expect("checked");
        prop_assert_eq!(parsed.resource(), resource.clone());
        prop_assert_eq!(parsed.expiry, expiry);
        prop_assert_eq!(parsed.skn.clone(), skn.filter(|s| !s.is_empty()));
        prop_assert!(parsed.verify_signature(KEY).expect("valid key"));
        // Empty resources ("/" once trailing slashes go) cover nothing, by design.
        prop_assert_eq!(parsed.covers(&resource), !resource.trim_end_matches('/').is_empty());
    }
}
