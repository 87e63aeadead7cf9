//! Property-based fuzzing of the edge configuration (`docs/testing.md`, "Fuzzing"):
//! `config.toml` validation and the IoT Edge 1.1 `config.yaml` import. The committed corpus
//! in `tests/fuzz-corpus/config/` (the documented layouts) and `tests/fuzz-corpus/import/`
//! (1.1 files) is replayed first; then arbitrary, fragment-soup and mutated text must never
//! panic, and what the importer writes is a configuration that parses. Keys in the corpus are
//! made up. `FLEETHUB_FUZZ_CASES` sets the number of cases (default 256; `scripts/fuzz.sh`
//! runs more).

use std::path::Path;

use fleetedge::config::{Config, import, yaml};
use fleethub_fuzzing::{Mutations, text_input};
use proptest::prelude::*;

fn corpus(target: &str) -> Vec<String> {
    fleethub_fuzzing::text_corpus(env!("CARGO_MANIFEST_DIR"), target, 3)
}

const TOML_FRAGMENTS: &[&str] = &[
    "\n",
    "[provisioning]",
    "[provisioning.attestation]",
    "[provisioning.authentication]",
    "[hub]",
    "[edge_hub]",
    "[agent]",
    "[[x]]",
    "source = ",
    "\"manual\"",
    "\"dps\"",
    "connection_string = ",
    "\"HostName=h;DeviceId=d;SharedAccessKey=KioqKioqKioqKioqKioqKg==\"",
    "method = ",
    "\"sas\"",
    "\"symmetric_key\"",
    "\"x509\"",
    "\"tpm\"",
    "symmetric_key = ",
    "device_id_pk = ",
    "{ value = \"KioqKioqKioqKioqKioqKg\" }",
    "{ uri = \"file:///k\" }",
    "{ uri = \"pkcs11:x\" }",
    "global_endpoint = ",
    "\"https://d:1\"",
    "\"https://\"",
    "id_scope = ",
    "scope_id = ",
    "registration_id = ",
    "listen = ",
    "[\"0.0.0.0:8883\"]",
    "[\"x\"]",
    "mqtt_port = ",
    "0",
    "65536",
    "-1",
    "0.5",
    "1e300",
    "nan",
    "inf",
    "status_report_interval_secs = ",
    "queue_max_bytes = ",
    "hostname = ",
    "homedir = ",
    "trust_bundle_cert = ",
    "auto_reprovisioning_mode = ",
    "\"Dynamic\"",
    "true",
    "\"\"",
    "=",
    "\"",
    "'",
    "#",
    " ",
    "€",
];

const YAML_FRAGMENTS: &[&str] = &[
    "\n",
    "  ",
    "provisioning:",
    "source: ",
    "\"manual\"",
    "dps",
    "device_connection_string: ",
    "\"HostName=h;DeviceId=d;SharedAccessKey=KioqKioqKioqKioqKioqKg==\"",
    "attestation:",
    "method: ",
    "symmetric_key",
    "registration_id: ",
    "global_endpoint: ",
    "\"https://global.azure-devices-provisioning.net\"",
    "scope_id: ",
    "certificates:",
    "hostname: ",
    "dynamic_reprovisioning: ",
    "true",
    "agent:",
    "env: {}",
    "- ",
    "a: [1, 2]",
    "{a: b}",
    "|",
    ">",
    "&x",
    "*x",
    "!!str",
    "---",
    "...",
    "#",
    ":",
    "'",
    "\"",
    "\t",
    "€",
];

/// Corpus entries, arbitrary strings, soups of the fragments the format is made of, and
/// corpus entries with a fragment spliced in or a tail cut off.
fn input(
    target: &str,
    fragments: &'static [&'static str],
) -> impl Strategy<Value = String> + use<> {
    let mutations = Mutations {
        soup_len: 32,
        splices: 3,
        truncate: true,
    };
    text_input(corpus(target), fragments, mutations)
}

fn check_config(text: &str) {
    match Config::parse(Path::new("/etc/fleetedge/config.toml"), text) {
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn check_import(text: &str) {
    let _ = yaml::parse(text);
    match import::convert(text) {
        // What the importer writes is a configuration fleetedge reads.
        Ok(imported) => {
            let parsed = Config::parse(Path::new("/etc/fleetedge/config.toml"), &imported.toml);
            assert!(
                parsed.is_ok(),
                "import of {text:?} wrote {:?}: {parsed:?}",
                imported.toml
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

#[test]
fn corpus_replays() {
    let configs = corpus("config");
    for c in &configs {
        check_config(c);
    }
    assert!(
        Config::parse(Path::new("config.toml"), &configs[0]).is_ok(),
        "{}",
        configs[0]
    );
    let imports = corpus("import");
    for y in &imports {
        check_import(y);
    }
    assert!(imports.iter().any(|y| import::convert(y).is_ok()));
}

proptest! {
    #![proptest_config(fleethub_fuzzing::config())]

    #[test]
    fn config_text_never_panics(text in input("config", TOML_FRAGMENTS)) {
        check_config(&text);
    }

    #[test]
    fn yaml_import_never_panics(text in input("import", YAML_FRAGMENTS)) {
        check_import(&text);
    }
}
