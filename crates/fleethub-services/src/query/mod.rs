//! The IoT Hub query language over twin documents: `/devices/query` ([`run`]: paging with
//! continuation tokens, projections, aggregates, module twins), the target conditions and
//! custom metric queries of configurations. The language itself (lexer, parser, evaluator) is
//! `fleethub_iot_protocol::query`; this module says how a path resolves in a twin document
//! (`devices.tags.x` names the same property as `tags.x`) and keeps the errors as the strings
//! the REST API shows.

mod run;
mod token;

use std::borrow::Cow;

use fleethub_iot_protocol::query::{self as language, Operands};
use serde_json::Value;

pub use fleethub_iot_protocol::query::{MAX_QUERY_CHARS, Source};
pub use run::QueryPage;

/// A parsed query (`SELECT ... FROM devices|devices.modules [WHERE ...] [GROUP BY ...]`), a
/// target condition or a metric query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query(language::Query);

impl Query {
    /// Parses a query; the error names the problem (shown to the client with a 400).
    pub fn parse(text: &str) -> Result<Query, String> {
        language::Query::parse(text).map(Query).map_err(|e| e.0)
    }

    /// Parses a custom metric query: `SELECT deviceId FROM devices [WHERE ...]` (or `SELECT *`).
    pub fn parse_metric(text: &str) -> Result<Query, String> {
        language::Query::parse_metric(text)
            .map(Query)
            .map_err(|e| e.0)
    }

    /// Parses a configuration's target condition: a `WHERE` condition without `SELECT`
    /// (`tags.environment='prod' AND properties.reported.fw='1.2'`), or `*` for every device.
    pub fn parse_condition(text: &str) -> Result<Query, String> {
        language::Query::parse_condition(text)
            .map(Query)
            .map_err(|e| e.0)
    }

    /// Does this twin document satisfy the `WHERE` clause?
    pub fn matches(&self, doc: &Value) -> bool {
        self.0.matches(&self.operands(doc))
    }

    /// What the query runs over.
    pub fn source(&self) -> Source {
        self.0.source()
    }

    /// Does it aggregate (`COUNT()`, ..., `GROUP BY`)?
    pub fn is_aggregate(&self) -> bool {
        self.0.is_aggregate()
    }

    /// The result row of a matching twin document (the document itself for `SELECT *`).
    pub fn project(&self, doc: Value) -> Value {
        self.0.project(&self.operands(&doc)).unwrap_or(doc)
    }

    fn operands<'a>(&self, doc: &'a Value) -> TwinDocument<'a> {
        TwinDocument {
            doc,
            modules: self.0.source() == Source::Modules,
        }
    }
}

/// A device or module twin document as the query language sees it.
struct TwinDocument<'a> {
    doc: &'a Value,
    /// `FROM devices.modules`: `devices.modules.x` names `x`.
    modules: bool,
}

impl Operands for TwinDocument<'_> {
    fn resolve(&self, path: &[String]) -> Option<Cow<'_, Value>> {
        // `devices.tags.x` names the same property as `tags.x` (and `devices.modules.x` as
        // `x` in a module query).
        let path = match path {
            [d, m, rest @ ..]
                if self.modules
                    && !rest.is_empty()
                    && d.eq_ignore_ascii_case("devices")
                    && m.eq_ignore_ascii_case("modules") =>
            {
                rest
            }
            [first, rest @ ..] if !rest.is_empty() && first.eq_ignore_ascii_case("devices") => rest,
            _ => path,
        };
        self.doc.resolve(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn devices_prefix_names_the_same_property() {
        let twin = json!({"deviceId": "dev-01", "tags": {"floor": 3, "devices": {"x": 1}}});
        let q = |s: &str| Query::parse(s).unwrap().matches(&twin);
        assert!(q("SELECT * FROM devices WHERE devices.tags.floor = 3"));
        assert!(q("SELECT * FROM devices WHERE tags.floor = 3"));
        assert!(q("SELECT * FROM devices WHERE devices.deviceId = 'dev-01'"));
        assert!(q("SELECT * FROM devices WHERE tags.devices.x = 1"));
        assert!(!q("SELECT * FROM devices WHERE devices = 1"));
        let c = Query::parse_condition("devices.tags.floor > 2").unwrap();
        assert!(c.matches(&twin));
    }

    #[test]
    fn errors_are_the_messages_clients_see() {
        assert!(
            Query::parse("SELECT * FROM jobs")
                .unwrap_err()
                .contains("only FROM devices")
        );
        assert!(Query::parse_metric("SELECT x FROM devices").is_err());
        assert!(
            Query::parse_condition("")
                .unwrap_err()
                .contains("use * to target every device")
        );
        assert!(Query::parse_condition("*").unwrap().matches(&json!({})));
    }
}
