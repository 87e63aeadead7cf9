//! Routes (Azure IoT Edge syntax): `FROM <source> [WHERE <condition>] INTO <sink>`.
//!
//! Sources: `/*`, `/messages`, `/messages/*`, `/messages/modules/*`,
//! `/messages/modules/{m}`, `/messages/modules/{m}/*`, `/messages/modules/{m}/outputs/*`,
//! `/messages/modules/{m}/outputs/{o}`.
//! Sinks: `$upstream`, `BrokeredEndpoint("/modules/{m}/inputs/{i}")`.
//! Conditions: the query language of `fleethub_iot_protocol::query` in its route dialect
//! (`docs/protocol-notes.md`, "Query language"), over application properties and system
//! properties (`$contentType`, `$contentEncoding`, `$messageId`, `$correlationId`, `$userId`,
//! `$connectionDeviceId`, `$connectionModuleId`, `$outputName`); property values are strings,
//! read as numbers or booleans when compared with such a literal. Body (`$body.x`) and twin
//! (`$twin.x`) queries are rejected.

use std::borrow::Cow;
use std::time::Duration;

use fleethub_iot_protocol::property_bag::QUERY_SYSTEM_PROPERTIES;
use fleethub_iot_protocol::query::{self, Comparison, Dialect, Operands};
use serde_json::Value;

use crate::message::EdgeMessage;

pub use fleethub_iot_protocol::query::Expr;

/// A route that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, RouteError> {
    Err(RouteError(msg.into()))
}

/// Which messages a route takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Every message.
    All,
    /// Messages from any module.
    AllModules,
    /// Messages of module `module`; `output`: `None` any (or no) output, `Some(None)` any
    /// output, `Some(Some(o))` output `o`.
    Module {
        module: String,
        output: Option<Option<String>>,
    },
}

/// Where a route sends messages.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sink {
    Upstream,
    ModuleInput { module: String, input: String },
}

/// A parsed route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub source: Source,
    pub condition: Option<Expr>,
    pub sink: Sink,
    /// 0 (highest) to 9; 0 when not given.
    pub priority: u8,
    /// Route-specific time to live (schema 1.1+).
    pub ttl: Option<Duration>,
    /// The route text as configured.
    pub text: String,
}

impl Route {
    /// Parses `FROM <source> [WHERE <condition>] INTO <sink>` (keywords in any case).
    pub fn parse(name: &str, text: &str) -> Result<Route, RouteError> {
        let trimmed = text.trim();
        let upper = trimmed.to_ascii_uppercase();
        if !upper.starts_with("FROM ") {
            return err(format!("route '{name}' must start with FROM: '{trimmed}'"));
        }
        let Some(into) = find_keyword(&upper, " INTO ") else {
            return err(format!("route '{name}' has no INTO: '{trimmed}'"));
        };
        let head = &trimmed[5..into];
        let sink_text = trimmed[into + 6..].trim();
        let head_upper = &upper[5..into];
        let (source_text, condition) = match find_keyword(head_upper, " WHERE ") {
            Some(w) => (
                head[..w].trim(),
                Some(parse_condition(head[w + 7..].trim()).map_err(|e| {
                    RouteError(format!("route '{name}': invalid WHERE clause: {}", e.0))
                })?),
            ),
            None => (head.trim(), None),
        };
        let source = parse_source(source_text)
            .map_err(|e| RouteError(format!("route '{name}': {}", e.0)))?;
        let sink =
            parse_sink(sink_text).map_err(|e| RouteError(format!("route '{name}': {}", e.0)))?;
        Ok(Route {
            name: name.to_string(),
            source,
            condition,
            sink,
            priority: 0,
            ttl: None,
            text: trimmed.to_string(),
        })
    }

    /// Whether this route takes `msg`.
    pub fn matches(&self, msg: &EdgeMessage) -> bool {
        let source_ok = match &self.source {
            Source::All | Source::AllModules => true,
            Source::Module { module, output } => {
                *module == msg.source_module
                    && match output {
                        None => true,
                        Some(None) => msg.output_name().is_some(),
                        Some(Some(o)) => msg.output_name() == Some(o.as_str()),
                    }
            }
        };
        source_ok && self.condition.as_ref().is_none_or(|c| c.eval(msg))
    }
}

/// Byte offset of a keyword outside quotes in an upper-cased text.
fn find_keyword(upper: &str, kw: &str) -> Option<usize> {
    let bytes = upper.as_bytes();
    let mut quote = None;
    for i in 0..bytes.len() {
        match (quote, bytes[i]) {
            (None, b'\'' | b'"') => quote = Some(bytes[i]),
            (Some(q), b) if b == q => quote = None,
            (None, _) if bytes[i..].starts_with(kw.as_bytes()) => return Some(i),
            _ => {}
        }
    }
    None
}

fn check_name(what: &str, s: &str) -> Result<String, RouteError> {
    if s.is_empty() || s.contains(['/', '#', '+', '*', ' ', '"', '\'']) {
        return err(format!("invalid {what} '{s}'"));
    }
    Ok(s.to_string())
}

fn parse_source(s: &str) -> Result<Source, RouteError> {
    let parts: Vec<&str> = s.trim_end_matches('/').split('/').collect();
    let hint = "expected /messages/*, /messages/modules/*, /messages/modules/{m}/* or \
                /messages/modules/{m}/outputs/{o|*}";
    match parts.as_slice() {
        ["", "*" | "messages"] | ["", "messages", "*"] => Ok(Source::All),
        ["", "messages", "modules", "*"] => Ok(Source::AllModules),
        ["", "messages", "modules", m] | ["", "messages", "modules", m, "*"] => {
            Ok(Source::Module {
                module: check_name("module name", m)?,
                output: None,
            })
        }
        ["", "messages", "modules", m, "outputs", "*"] => Ok(Source::Module {
            module: check_name("module name", m)?,
            output: Some(None),
        }),
        ["", "messages", "modules", m, "outputs", o] => Ok(Source::Module {
            module: check_name("module name", m)?,
            output: Some(Some(check_name("output name", o)?)),
        }),
        _ => err(format!("unsupported source '{s}': {hint}")),
    }
}

fn parse_sink(s: &str) -> Result<Sink, RouteError> {
    if s.eq_ignore_ascii_case("$upstream") {
        return Ok(Sink::Upstream);
    }
    let hint = "expected $upstream or BrokeredEndpoint(\"/modules/{m}/inputs/{i}\")";
    let Some(open) = s.find('(') else {
        return err(format!("unsupported sink '{s}': {hint}"));
    };
    if !s[..open].trim().eq_ignore_ascii_case("BrokeredEndpoint") || !s.ends_with(')') {
        return err(format!("unsupported sink '{s}': {hint}"));
    }
    let arg = s[open + 1..s.len() - 1].trim();
    let path = arg
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .or_else(|| arg.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')))
        .ok_or_else(|| RouteError(format!("BrokeredEndpoint argument {arg} must be quoted")))?;
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["", "modules", m, "inputs", i] => Ok(Sink::ModuleInput {
            module: check_name("module name", m)?,
            input: check_name("input name", i)?,
        }),
        _ => err(format!("unsupported endpoint '{path}': {hint}")),
    }
}

// ---- WHERE clause: the shared condition language over message properties ----

/// Parses a WHERE condition (the route dialect of `fleethub_iot_protocol::query`) and checks
/// that every path names something a message has: an application property, or a system
/// property of [`QUERY_SYSTEM_PROPERTIES`].
pub fn parse_condition(s: &str) -> Result<Expr, RouteError> {
    let e = query::parse_condition(s, Dialect::Route).map_err(|e| RouteError(e.0))?;
    for path in e.paths() {
        let Some(first) = path.first().filter(|p| p.starts_with('$')) else {
            continue;
        };
        let lower = first.to_ascii_lowercase();
        if lower.starts_with("$body") || lower.starts_with("$twin") {
            return err(format!(
                "'{}': message body and twin queries are not supported by this edge hub; \
                 route on application or system properties",
                path.join(".")
            ));
        }
        if path.len() > 1 || system_property(first).is_none() {
            return err(format!(
                "unknown system property '{}' (supported: {})",
                path.join("."),
                QUERY_SYSTEM_PROPERTIES.map(|(n, _)| n).join(", ")
            ));
        }
    }
    Ok(e)
}

/// The short wire name (`ct`, `mid`, ..., `cdid`/`cmid`) of a condition's `$name`.
fn system_property(name: &str) -> Option<&'static str> {
    QUERY_SYSTEM_PROPERTIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, short)| *short)
}

/// A message as a condition sees it: `$name` is a system property, anything else (a dotted
/// path joined again) an application property; every value is a string.
impl Operands for EdgeMessage {
    fn resolve(&self, path: &[String]) -> Option<Cow<'_, Value>> {
        let value = match path {
            [name] if name.starts_with('$') => match system_property(name)? {
                "cdid" => Some(&self.source_device),
                "cmid" => Some(&self.source_module),
                short => self.system.get(short),
            },
            _ => self.properties.get(&path.join(".")),
        };
        value.map(|v| Cow::Owned(Value::String(v.clone())))
    }

    fn comparison(&self) -> Comparison {
        Comparison::StringProperties
    }
}

/// Where one message goes: each sink once (the route with the highest priority decides
/// the TTL).
pub fn destinations(routes: &[Route], msg: &EdgeMessage) -> Vec<(Sink, Option<Duration>)> {
    let mut matched: Vec<&Route> = routes.iter().filter(|r| r.matches(msg)).collect();
    matched.sort_by_key(|r| r.priority);
    let mut out: Vec<(Sink, Option<Duration>)> = Vec::new();
    for r in matched {
        if !out.iter().any(|(s, _)| *s == r.sink) {
            out.push((r.sink.clone(), r.ttl));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn msg(module: &str, output: Option<&str>, props: &[(&str, &str)]) -> EdgeMessage {
        let mut system = BTreeMap::new();
        if let Some(o) = output {
            system.insert("on".to_string(), o.to_string());
        }
        system.insert("ct".to_string(), "application/json".to_string());
        EdgeMessage {
            source_device: "d".into(),
            source_module: module.into(),
            system,
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: vec![],
        }
    }

    #[test]
    fn sources_and_sinks() {
        let r = Route::parse("all", "FROM /messages/* INTO $upstream").unwrap();
        assert_eq!(r.source, Source::All);
        assert_eq!(r.sink, Sink::Upstream);
        assert!(r.matches(&msg("A", None, &[])));

        let r = Route::parse(
            "ab",
            r#"from /messages/modules/A/outputs/output1 into BrokeredEndpoint("/modules/B/inputs/input1")"#,
        )
        .unwrap();
        assert_eq!(
            r.sink,
            Sink::ModuleInput {
                module: "B".into(),
                input: "input1".into()
            }
        );
        assert!(r.matches(&msg("A", Some("output1"), &[])));
        assert!(!r.matches(&msg("A", Some("output2"), &[])));
        assert!(!r.matches(&msg("A", None, &[])));
        assert!(!r.matches(&msg("C", Some("output1"), &[])));

        let r = Route::parse("x", "FROM /messages/modules/A/outputs/* INTO $upstream").unwrap();
        assert!(r.matches(&msg("A", Some("o"), &[])));
        assert!(!r.matches(&msg("A", None, &[])));
        let r = Route::parse("x", "FROM /messages/modules/A/* INTO $upstream").unwrap();
        assert!(r.matches(&msg("A", None, &[])));
        assert!(r.matches(&msg("A", Some("o"), &[])));
        assert!(!r.matches(&msg("B", None, &[])));
        let r = Route::parse("x", "FROM /messages/modules/* INTO $upstream").unwrap();
        assert_eq!(r.source, Source::AllModules);
        let r = Route::parse("x", "FROM /* INTO $UPSTREAM").unwrap();
        assert_eq!(r.source, Source::All);
    }

    #[test]
    fn invalid_routes_say_why() {
        let cases = [
            ("SELECT * INTO $upstream", "must start with FROM"),
            ("FROM /messages/*", "has no INTO"),
            (
                "FROM /twinChangeNotifications INTO $upstream",
                "unsupported source",
            ),
            ("FROM /messages/* INTO $downstream", "unsupported sink"),
            (
                "FROM /messages/* INTO BrokeredEndpoint(/modules/B/inputs/i)",
                "must be quoted",
            ),
            (
                "FROM /messages/* INTO BrokeredEndpoint(\"/modules/B/outputs/i\")",
                "unsupported endpoint",
            ),
            (
                "FROM /messages/* WHERE $body.temp > 5 INTO $upstream",
                "body and twin queries",
            ),
            (
                "FROM /messages/* WHERE $foo = 1 INTO $upstream",
                "unknown system property",
            ),
            (
                "FROM /messages/* WHERE a = INTO $upstream",
                "ends too early",
            ),
            (
                "FROM /messages/* WHERE (a = 1 INTO $upstream",
                "missing ')'",
            ),
            (
                "FROM /messages/* WHERE a INTO $upstream",
                "comparison operator",
            ),
            (
                "FROM /messages/* WHERE a = 'x INTO $upstream",
                "has no INTO",
            ),
        ];
        for (text, want) in cases {
            let e = Route::parse("r", text).unwrap_err();
            assert!(e.0.contains(want), "{text}: {e}");
            assert!(e.0.contains("'r'"), "{text}: {e}");
        }
    }

    #[test]
    fn where_clauses() {
        let r = Route::parse(
            "w",
            "FROM /messages/* WHERE alert = 'true' AND (temp > 30 OR $connectionModuleId = 'B') INTO $upstream",
        )
        .unwrap();
        assert!(r.matches(&msg("A", None, &[("alert", "true"), ("temp", "31.5")])));
        assert!(!r.matches(&msg("A", None, &[("alert", "true"), ("temp", "3")])));
        assert!(r.matches(&msg("B", None, &[("alert", "true")])));
        assert!(!r.matches(&msg("B", None, &[("alert", "false")])));
        assert!(!r.matches(&msg("A", None, &[])));

        let e = parse_condition("NOT IS_DEFINED(x) OR $contentType <> 'application/json'").unwrap();
        assert!(e.eval(&msg("A", None, &[])));
        assert!(!e.eval(&msg("A", None, &[("x", "1")])));
        let e = parse_condition("$outputName = 'o1' and level >= 2 and name != 'it''s'").unwrap();
        assert!(e.eval(&msg("A", Some("o1"), &[("level", "2"), ("name", "x")])));
        assert!(!e.eval(&msg("A", Some("o1"), &[("level", "2"), ("name", "it's")])));
        assert!(!e.eval(&msg("A", Some("o1"), &[("level", "abc"), ("name", "x")])));
        let e = parse_condition("[my prop] = \"a b\" AND flag = true AND -1 < n").unwrap();
        assert!(e.eval(&msg(
            "A",
            None,
            &[("my prop", "a b"), ("flag", "true"), ("n", "0")]
        )));
        assert!(parse_condition("true").unwrap().eval(&msg("A", None, &[])));
        // A WHERE inside a quoted string is not the keyword.
        let r = Route::parse("q", "FROM /messages/* WHERE a = ' INTO ' INTO $upstream").unwrap();
        assert!(r.matches(&msg("A", None, &[("a", " INTO ")])));
    }

    #[test]
    fn destinations_once_per_sink_with_priority_ttl() {
        let mut a = Route::parse("a", "FROM /messages/* INTO $upstream").unwrap();
        a.priority = 5;
        a.ttl = Some(Duration::from_secs(50));
        let mut b = Route::parse("b", "FROM /messages/modules/A/* INTO $upstream").unwrap();
        b.priority = 1;
        b.ttl = Some(Duration::from_secs(10));
        let mut c = Route::parse(
            "c",
            "FROM /messages/modules/A/outputs/o INTO BrokeredEndpoint(\"/modules/B/inputs/i\")",
        )
        .unwrap();
        c.priority = 3;
        let routes = vec![a, b, c];
        let d = destinations(&routes, &msg("A", Some("o"), &[]));
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], (Sink::Upstream, Some(Duration::from_secs(10))));
        assert_eq!(
            d[1].0,
            Sink::ModuleInput {
                module: "B".into(),
                input: "i".into()
            }
        );
        assert_eq!(destinations(&routes, &msg("Z", None, &[])).len(), 1);
        assert!(destinations(&[], &msg("Z", None, &[])).is_empty());
    }
}
