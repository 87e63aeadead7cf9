//! `--output yaml`: a JSON value as a YAML document (block style, keys in the order the JSON
//! output has them), as `az ... -o yaml` prints it.

use serde_json::Value;
use yaml_rust2::{Yaml, YamlEmitter, yaml::Hash};

/// `v` as YAML, without the leading `---` document marker, ending in a newline.
pub fn to_yaml(v: &Value) -> String {
    let doc = document(v);
    let body = doc.strip_prefix("---").unwrap_or(&doc);
    let mut s = body
        .strip_prefix('\n')
        .unwrap_or(body.trim_start())
        .to_string();
    s.push('\n');
    s
}

/// `v` as one YAML document of a stream: `---` first, so that a sequence of them (e.g.
/// `monitor-events -o yaml`) reads as a multi-document stream.
pub(crate) fn to_yaml_document(v: &Value) -> String {
    let mut s = document(v);
    s.push('\n');
    s
}

fn document(v: &Value) -> String {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    // Emitting into a String cannot fail; a value with nothing to emit gives `---`.
    if emitter.dump(&yaml(v)).is_err() {
        out = "---".into();
    }
    out
}

fn yaml(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            // u64 above i64::MAX and floats keep their JSON spelling.
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(yaml).collect()),
        Value::Object(map) => {
            let mut h = Hash::new();
            for (k, child) in map {
                h.insert(Yaml::String(k.clone()), yaml(child));
            }
            Yaml::Hash(h)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_lists_and_scalars_in_block_style() {
        let v = json!({
            "deviceId": "dev-01",
            "version": 3,
            "enabled": true,
            "ratio": 0.5,
            "none": null,
            "tags": {"env": "test", "empty": {}},
            "list": ["a", 1],
            "looksLikeBool": "true",
            "$meta": "x: y",
        });
        assert_eq!(
            to_yaml(&v),
            "$meta: \"x: y\"\n\
             deviceId: dev-01\n\
             enabled: true\n\
             list:\n  - a\n  - 1\n\
             looksLikeBool: \"true\"\n\
             none: ~\n\
             ratio: 0.5\n\
             tags:\n  empty: {}\n  env: test\n\
             version: 3\n"
        );
        // What it prints reads back as the same data.
        let back = &yaml_rust2::YamlLoader::load_from_str(&to_yaml(&v)).unwrap()[0];
        assert_eq!(back["tags"]["env"].as_str(), Some("test"));
        assert_eq!(back["looksLikeBool"].as_str(), Some("true"));
        assert_eq!(back["$meta"].as_str(), Some("x: y"));
        assert_eq!(to_yaml(&json!([])), "[]\n");
        assert_eq!(to_yaml_document(&json!({"a": 1})), "---\na: 1\n");
    }
}
