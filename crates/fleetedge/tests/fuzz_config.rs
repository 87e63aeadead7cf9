//! Property-based fuzzing of the edge configuration (`docs/testing.md`, "Fuzzing"):
//! `config.toml` validation and the IoT Edge 1.1 `config.yaml` import. The committed corpus
//! in `tests/fuzz-corpus/config/` (the documented layouts) and `tests/fuzz-corpus/import/`
//! (1.1 files) is replayed first; then arbitrary, fragment-soup and mutated text must never
//! panic, and what the importer writes is a configuration that parses. Keys in the corpus are
//! made up. `FLEETHUB_FUZZ_CASES` sets the number of cases (default 256; `scripts/fuzz.sh`
//! runs more).

use std::path::{Path, PathBuf};

use fleetedge::config::{Config, import, yaml};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config as ProptestConfig;

fn config() -> ProptestConfig {
    let cases = std::env::var("FLEETHUB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The files of `tests/fuzz-corpus/<target>/`, sorted by name.
fn corpus(target: &str) -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{}: corpus too small", dir.display());
    files
        .into_iter()
        .map(|p| std::fs::read_to_string(&p).expect("corpus file is UTF-8"))
        .collect()
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
    prop_oneof![
        select(corpus(target)),
        any::<String>(),
        prop::collection::vec(select(fragments), 0..32).prop_map(|v| v.concat()),
        (
            select(corpus(target)),
            prop::collection::vec((any::<prop::sample::Index>(), select(fragments)), 1..4),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(mut s, edits, cut, truncate)| {
                for (at, f) in edits {
                    let i = floor_boundary(&s, at.index(s.len() + 1));
                    s.insert_str(i, f);
                }
                if truncate {
                    let i = floor_boundary(&s, cut.index(s.len() + 1));
                    s.truncate(i);
                }
                s
            }),
    ]
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
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
    #![proptest_config(config())]

    #[test]
    fn config_text_never_panics(text in input("config", TOML_FRAGMENTS)) {
        check_config(&text);
    }

    #[test]
    fn yaml_import_never_panics(text in input("import", YAML_FRAGMENTS)) {
        check_import(&text);
    }
}
