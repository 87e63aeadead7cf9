//! Azure's limits on the sections of a twin (docs/protocol-notes.md, "Twin"): each of `tags`,
//! `properties.desired` and `properties.reported` nests objects at most [`MAX_DEPTH`] deep and
//! has a bounded size ([`MAX_TAGS_SIZE`], [`MAX_PROPERTIES_SIZE`]) counted as Azure counts it.
//! One check for every way a twin section is written: service twin updates (HTTPS), reported
//! patches (MQTT, edge hub) and DPS initial twins. Callers map a violation to their `Invalid`
//! error (400).

use serde_json::Value;

/// Deepest nesting of objects below a section (`tags.one.two...ten` is the deepest allowed).
pub const MAX_DEPTH: usize = 10;
/// Largest size of `tags`.
pub const MAX_TAGS_SIZE: usize = 8 * 1024;
/// Largest size of `properties.desired` and of `properties.reported` each.
pub const MAX_PROPERTIES_SIZE: usize = 32 * 1024;

/// A twin section, by the name clients see in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Tags,
    Desired,
    Reported,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Tags => "tags",
            Section::Desired => "properties.desired",
            Section::Reported => "properties.reported",
        }
    }

    pub fn max_size(self) -> usize {
        match self {
            Section::Tags => MAX_TAGS_SIZE,
            Section::Desired | Section::Reported => MAX_PROPERTIES_SIZE,
        }
    }
}

/// Azure's size of a section: for every property the length of its key plus its value
/// (strings: their characters without control characters; numbers 8; booleans 4; objects and
/// arrays: what they contain). Read-only `$` members (`$version`, `$metadata`, ...) do not count.
pub fn size(section: &Value) -> usize {
    match section {
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !k.starts_with('$'))
            .map(|(k, v)| text_len(k) + size(v))
            .sum(),
        Value::Array(items) => items.iter().map(size).sum(),
        Value::String(s) => text_len(s),
        Value::Number(_) => 8,
        Value::Bool(_) => 4,
        Value::Null => 0,
    }
}

fn text_len(s: &str) -> usize {
    s.chars().filter(|c| !c.is_control()).count()
}

/// How deep objects (and arrays) nest below `section` itself: `{"a": 1}` is 0,
/// `{"a": {"b": 1}}` is 1. Stops counting past [`MAX_DEPTH`] + 1.
pub fn depth(section: &Value) -> usize {
    fn nested(v: &Value, level: usize) -> usize {
        if level > MAX_DEPTH {
            return level;
        }
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => return level,
        };
        children
            .filter(|c| c.is_object() || c.is_array())
            .map(|c| nested(c, level + 1))
            .max()
            .unwrap_or(level)
    }
    nested(section, 0)
}

/// Checks one section as it would be stored. `before` is the section's size before the change:
/// like Azure, only a change that makes a section larger than its limit is refused, so an
/// oversized section can still shrink. The message is safe to show to the client.
pub fn check(section: Section, value: &Value, before: usize) -> Result<(), String> {
    if depth(value) > MAX_DEPTH {
        return Err(format!(
            "{}: objects are nested more than {MAX_DEPTH} levels deep; the limit is {MAX_DEPTH}",
            section.name()
        ));
    }
    let s = size(value);
    if s > section.max_size() && s > before {
        return Err(format!(
            "{} would be {s} bytes; the limit is {} bytes",
            section.name(),
            section.max_size()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nest(levels: usize) -> Value {
        let mut v = json!({"leaf": "value"});
        for i in (0..levels).rev() {
            v = json!({ format!("l{i}"): v });
        }
        v
    }

    #[test]
    fn depth_counts_objects_below_the_section() {
        assert_eq!(depth(&json!({})), 0);
        assert_eq!(depth(&json!({"a": 1})), 0);
        assert_eq!(depth(&json!({"a": {"b": 1}})), 1);
        assert_eq!(depth(&json!({"a": [{"b": 1}]})), 2);
        // Azure's example: tags.one...ten holding a property is valid
        assert_eq!(depth(&nest(10)), 10);
        assert!(check(Section::Tags, &nest(10), 0).is_ok());
        let err = check(Section::Reported, &nest(11), 0).unwrap_err();
        assert!(err.starts_with("properties.reported: "), "{err}");
        assert!(err.contains("limit is 10"), "{err}");
        // deep documents stop counting early
        assert_eq!(depth(&nest(100)), MAX_DEPTH + 1);
    }

    #[test]
    fn size_counts_like_azure() {
        assert_eq!(size(&json!({"ab": "cde"})), 5);
        assert_eq!(
            size(&json!({"n": 1, "b": true, "z": null})),
            1 + 8 + 1 + 4 + 1
        );
        assert_eq!(size(&json!({"o": {"k": "v"}})), 3);
        assert_eq!(
            size(&json!({"$version": 4, "$metadata": {"x": "y"}, "a": "b"})),
            2
        );
        assert_eq!(size(&json!({"é": "\u{1}x"})), 2);
    }

    #[test]
    fn size_limits_per_section() {
        let big = |n: usize| json!({ "k": "x".repeat(n) });
        assert!(check(Section::Tags, &big(MAX_TAGS_SIZE - 1), 0).is_ok());
        let err = check(Section::Tags, &big(MAX_TAGS_SIZE), 0).unwrap_err();
        assert!(err.starts_with("tags would be 8193 bytes"), "{err}");
        for s in [Section::Desired, Section::Reported] {
            assert!(check(s, &big(MAX_PROPERTIES_SIZE - 1), 0).is_ok());
            assert!(check(s, &big(MAX_PROPERTIES_SIZE), 0).is_err());
            // an oversized section may shrink, not grow
            let before = size(&big(MAX_PROPERTIES_SIZE + 10));
            assert!(check(s, &big(MAX_PROPERTIES_SIZE + 5), before).is_ok());
            assert!(check(s, &big(MAX_PROPERTIES_SIZE + 11), before).is_err());
        }
    }
}
