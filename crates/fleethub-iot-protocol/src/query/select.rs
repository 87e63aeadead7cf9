//! The IoT Hub query frame (`docs/protocol-notes.md`, "Query language"), the part the service
//! SDKs' `query_iot_hub` / `createQuery` use: `SELECT * FROM devices [WHERE <condition>]`;
//! also the target conditions of configurations (a bare condition, or `*`) and their custom
//! metric queries (`SELECT deviceId FROM devices WHERE ...`). Everything else (projections,
//! `devices.modules`, `GROUP BY`, ...) is refused with a message naming what is not supported.

use super::ast::Expr;
use super::eval::Operands;
use super::lexer::{Dialect, Token, tokenize};
use super::parser::Parser;
use super::{QueryError, parse_condition};

/// Longest query text accepted (Azure's limit is 8 KB too).
pub const MAX_QUERY_CHARS: usize = 8192;

/// A parsed `SELECT * FROM devices [WHERE ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    filter: Option<Expr>,
}

fn check_length(text: &str, what: &str) -> Result<(), QueryError> {
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(QueryError::new(format!(
            "the {what} is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    Ok(())
}

impl Query {
    /// Parses a query; the error names the problem (shown to the client with a 400).
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        check_length(text, "query")?;
        select(Parser::new(tokenize(text, Dialect::Query)?), false)
    }

    /// Parses a custom metric query: `SELECT deviceId FROM devices [WHERE ...]` (or `SELECT *`).
    pub fn parse_metric(text: &str) -> Result<Query, QueryError> {
        check_length(text, "query")?;
        select(Parser::new(tokenize(text, Dialect::Query)?), true)
    }

    /// Parses a configuration's target condition: a `WHERE` condition without `SELECT`
    /// (`tags.environment='prod' AND properties.reported.fw='1.2'`), or `*` for every device.
    pub fn parse_condition(text: &str) -> Result<Query, QueryError> {
        check_length(text, "condition")?;
        let tokens = tokenize(text, Dialect::Query)?;
        if tokens.is_empty() {
            return Err(QueryError::new(
                "the condition is empty (use * to target every device)",
            ));
        }
        if tokens == [Token::Star] {
            return Ok(Query { filter: None });
        }
        if tokens[0].is_keyword("SELECT") {
            return Err(QueryError::new(
                "a target condition is only the condition (e.g. tags.environment='prod'), without SELECT ... WHERE",
            ));
        }
        Ok(Query {
            filter: Some(parse_condition(text, Dialect::Query)?),
        })
    }

    /// The `WHERE` condition (`None`: every document).
    pub fn filter(&self) -> Option<&Expr> {
        self.filter.as_ref()
    }

    /// Does `o` satisfy the `WHERE` clause?
    pub fn matches<O: Operands + ?Sized>(&self, o: &O) -> bool {
        self.filter.as_ref().is_none_or(|e| e.eval(o))
    }
}

/// `SELECT * FROM devices [WHERE ...]`; `select_device_id` also accepts `SELECT deviceId`.
fn select(mut p: Parser, select_device_id: bool) -> Result<Query, QueryError> {
    let err = |m: String| Err(QueryError(m));
    if !p.eat_keyword("SELECT") {
        return err("the query must start with SELECT * FROM devices".into());
    }
    match p.next_token() {
        Some(Token::Star) => {}
        Some(Token::Ident(s)) if select_device_id && s == "deviceId" => {}
        Some(t) => {
            return err(format!(
                "only SELECT * is supported (projections and aggregates such as {} are not)",
                t.describe()
            ));
        }
        None => return err("expected * after SELECT".into()),
    }
    if !p.eat_keyword("FROM") {
        return err("expected FROM devices after SELECT *".into());
    }
    match p.next_token() {
        Some(Token::Ident(s)) if s.eq_ignore_ascii_case("devices") => {}
        Some(t) => {
            return err(format!(
                "only FROM devices is supported, not {}",
                t.describe()
            ));
        }
        None => return err("expected devices after FROM".into()),
    }
    if p.peek() == Some(&Token::Dot) {
        return err(
            "only FROM devices is supported (devices.modules and devices.jobs are not)".into(),
        );
    }
    let filter = if p.eat_keyword("WHERE") {
        Some(p.condition()?)
    } else {
        None
    };
    match p.peek() {
        None => Ok(Query { filter }),
        Some(t) if t.is_keyword("GROUP") || t.is_keyword("ORDER") => err(format!(
            "{} BY is not supported",
            t.describe().trim_matches('\'').to_ascii_uppercase()
        )),
        Some(t) => err(format!("unexpected {} in the query", t.describe())),
    }
}
