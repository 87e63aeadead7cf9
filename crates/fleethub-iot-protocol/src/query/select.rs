//! The IoT Hub query frame (`docs/protocol-notes.md`, "Query language"):
//! `SELECT [TOP n] <* | items> FROM devices|devices.modules [WHERE <condition>] [GROUP BY
//! <paths>]`, where an item is a property path or an aggregate (`COUNT()`, `SUM(p)`, `AVG(p)`,
//! `MIN(p)`, `MAX(p)`) with an optional `AS alias`; also the target conditions of
//! configurations (a bare condition, or `*`) and their custom metric queries (`SELECT deviceId
//! FROM devices WHERE ...`). `devices.jobs`, `ORDER BY` and joins are refused with a message
//! naming what is not supported. Results are built in [`Query::project`] and
//! [`super::Aggregation`].

use serde_json::{Map, Value};

use super::ast::{Expr, Operand};
use super::eval::Operands;
use super::lexer::{Dialect, Token, tokenize};
use super::parser::Parser;
use super::{QueryError, parse_condition};

/// Longest query text accepted (Azure's limit is 8 KB too).
pub const MAX_QUERY_CHARS: usize = 8192;

/// The collection a query runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Device twins (`FROM devices`).
    Devices,
    /// Module twins (`FROM devices.modules`).
    Modules,
}

/// An aggregate function of the `SELECT` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl Aggregate {
    fn from_name(name: &str) -> Option<Aggregate> {
        let a = match name.to_ascii_uppercase().as_str() {
            "COUNT" => Aggregate::Count,
            "SUM" => Aggregate::Sum,
            "AVG" => Aggregate::Avg,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            _ => return None,
        };
        Some(a)
    }
}

/// What one `SELECT` item computes.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectExpr {
    /// A property path, e.g. `["properties", "reported", "fw"]`.
    Path(Vec<String>),
    /// An aggregate over the group (`COUNT()` has no path).
    Aggregate(Aggregate, Option<Vec<String>>),
}

/// One `SELECT` item and the name it has in the result.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    pub expr: SelectExpr,
    /// The alias, else the path's last segment, else `$1`, `$2`, ... by position.
    pub name: String,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    filter: Option<Expr>,
    source: Source,
    /// `None`: `SELECT *`.
    items: Option<Vec<SelectItem>>,
    group_by: Vec<Vec<String>>,
    top: Option<u64>,
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
        select(Parser::new(tokenize(text, Dialect::Query)?))
    }

    /// Parses a custom metric query: `SELECT deviceId FROM devices [WHERE ...]` (or `SELECT *`).
    pub fn parse_metric(text: &str) -> Result<Query, QueryError> {
        let q = Query::parse(text)?;
        let device_id_only = match q.items.as_deref() {
            None => true,
            Some([item]) => item.expr == SelectExpr::Path(vec!["deviceId".into()]),
            Some(_) => false,
        };
        if q.source != Source::Devices || !device_id_only || !q.group_by.is_empty() {
            return Err(QueryError::new(
                "a metric query selects devices: SELECT deviceId FROM devices [WHERE ...]",
            ));
        }
        Ok(q)
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
        let every = Query {
            filter: None,
            source: Source::Devices,
            items: None,
            group_by: Vec::new(),
            top: None,
        };
        if tokens == [Token::Star] {
            return Ok(every);
        }
        if tokens[0].is_keyword("SELECT") {
            return Err(QueryError::new(
                "a target condition is only the condition (e.g. tags.environment='prod'), without SELECT ... WHERE",
            ));
        }
        Ok(Query {
            filter: Some(parse_condition(text, Dialect::Query)?),
            ..every
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

    pub fn source(&self) -> Source {
        self.source
    }

    /// The `SELECT` items (`None`: `SELECT *`).
    pub fn items(&self) -> Option<&[SelectItem]> {
        self.items.as_deref()
    }

    pub fn group_by(&self) -> &[Vec<String>] {
        &self.group_by
    }

    /// `SELECT TOP n`: at most this many results in all.
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    /// Does the query aggregate (an aggregate item or `GROUP BY`)? Its result is one row per
    /// group, built with [`super::Aggregation`]; otherwise one row per matching document.
    pub fn is_aggregate(&self) -> bool {
        !self.group_by.is_empty()
            || self.items.as_deref().is_some_and(|items| {
                items
                    .iter()
                    .any(|i| matches!(i.expr, SelectExpr::Aggregate(..)))
            })
    }

    /// The result row of a matching document in a query that does not aggregate: `None` for
    /// `SELECT *` (the document itself), else an object of the selected properties (an
    /// undefined property is left out).
    pub fn project<O: Operands + ?Sized>(&self, o: &O) -> Option<Value> {
        let items = self.items.as_ref()?;
        let mut row = Map::new();
        for item in items {
            if let SelectExpr::Path(p) = &item.expr
                && let Some(v) = o.resolve(p)
            {
                row.insert(item.name.clone(), v.into_owned());
            }
        }
        Some(Value::Object(row))
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError::new(m))
}

/// The whole `SELECT` statement.
fn select(mut p: Parser) -> Result<Query, QueryError> {
    if !p.eat_keyword("SELECT") {
        return err("the query must start with SELECT (e.g. SELECT * FROM devices)");
    }
    let top = top(&mut p)?;
    let items = if p.peek() == Some(&Token::Star) {
        p.next_token();
        None
    } else {
        Some(select_list(&mut p)?)
    };
    if !p.eat_keyword("FROM") {
        return err(match p.peek() {
            Some(t) => format!(
                "expected FROM after the SELECT list, found {}",
                t.describe()
            ),
            None => "expected FROM devices after the SELECT list".into(),
        });
    }
    let source = source(&mut p)?;
    let filter = if p.eat_keyword("WHERE") {
        Some(p.condition()?)
    } else {
        None
    };
    let mut group_by = Vec::new();
    if p.eat_keyword("GROUP") {
        if !p.eat_keyword("BY") {
            return err("expected BY after GROUP");
        }
        loop {
            group_by.push(path(&mut p, "GROUP BY")?);
            if p.peek() != Some(&Token::Comma) {
                break;
            }
            p.next_token();
        }
    }
    match p.peek() {
        None => {}
        Some(t) if t.is_keyword("ORDER") => return err("ORDER BY is not supported"),
        Some(t) if t.is_keyword("GROUP") => return err("GROUP BY comes after WHERE"),
        Some(t) => return err(format!("unexpected {} in the query", t.describe())),
    }
    let q = Query {
        filter,
        source,
        items,
        group_by,
        top,
    };
    check_grouping(&q)?;
    Ok(q)
}

/// `TOP n` right after `SELECT`.
fn top(p: &mut Parser) -> Result<Option<u64>, QueryError> {
    if !p.peek().is_some_and(|t| t.is_keyword("TOP")) {
        return Ok(None);
    }
    p.next_token();
    match p.next_token() {
        Some(Token::Num(n)) => match n.as_u64() {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => err(format!("TOP takes a positive whole number, not {n}")),
        },
        Some(t) => err(format!(
            "expected a number after TOP, found {}",
            t.describe()
        )),
        None => err("expected a number after TOP"),
    }
}

/// `devices` or `devices.modules`.
fn source(p: &mut Parser) -> Result<Source, QueryError> {
    match p.next_token() {
        Some(Token::Ident(s)) if s.eq_ignore_ascii_case("devices") => {}
        Some(t) => {
            return err(format!(
                "only FROM devices and FROM devices.modules are supported, not {}",
                t.describe()
            ));
        }
        None => return err("expected devices after FROM"),
    }
    if p.peek() != Some(&Token::Dot) {
        return Ok(Source::Devices);
    }
    p.next_token();
    match p.next_token() {
        Some(Token::Ident(s)) if s.eq_ignore_ascii_case("modules") => Ok(Source::Modules),
        Some(t) => err(format!(
            "only FROM devices and FROM devices.modules are supported (devices.jobs is not), not devices.{}",
            t.describe().trim_matches('\'')
        )),
        None => err("expected modules after FROM devices."),
    }
}

/// A property path (in the `SELECT` list or `GROUP BY`).
fn path(p: &mut Parser, what: &str) -> Result<Vec<String>, QueryError> {
    match p.operand()? {
        Operand::Path(segs) => Ok(segs),
        Operand::Literal(v) => err(format!("{what} takes property paths, not the literal {v}")),
    }
}

/// Words that end a `SELECT` item, so they cannot be an alias unless quoted (`[[from]]`).
const RESERVED: [&str; 6] = ["FROM", "WHERE", "GROUP", "BY", "SELECT", "AS"];

fn select_list(p: &mut Parser) -> Result<Vec<SelectItem>, QueryError> {
    let mut items = Vec::new();
    loop {
        let position = items.len() + 1;
        let expr = match (p.peek(), p.peek_at(1)) {
            (Some(Token::Ident(name)), Some(Token::LParen)) => {
                let name = name.clone();
                let Some(agg) = Aggregate::from_name(&name) else {
                    return err(format!(
                        "function {name} is not supported in SELECT (COUNT, SUM, AVG, MIN and MAX are)"
                    ));
                };
                p.next_token();
                p.next_token();
                let arg = if p.peek() == Some(&Token::RParen) {
                    None
                } else {
                    Some(path(p, &format!("{name}()"))?)
                };
                match p.next_token() {
                    Some(Token::RParen) => {}
                    _ => return err(format!("missing ')' closing {name}(")),
                }
                match (agg, &arg) {
                    (Aggregate::Count, Some(_)) => return err("COUNT() takes no argument"),
                    (Aggregate::Count, None) | (_, Some(_)) => {}
                    (_, None) => return err(format!("{name}() takes a property path")),
                }
                SelectExpr::Aggregate(agg, arg)
            }
            _ => SelectExpr::Path(path(p, "SELECT")?),
        };
        let name = if p.eat_keyword("AS") {
            match p.next_token() {
                Some(Token::Ident(a)) if !RESERVED.iter().any(|k| a.eq_ignore_ascii_case(k)) => a,
                Some(Token::QuotedIdent(a)) => a,
                _ => return err("expected a name after AS"),
            }
        } else {
            match &expr {
                SelectExpr::Path(segs) => segs.last().cloned().unwrap_or_default(),
                SelectExpr::Aggregate(..) => format!("${position}"),
            }
        };
        items.push(SelectItem { expr, name });
        if p.peek() != Some(&Token::Comma) {
            return Ok(items);
        }
        p.next_token();
    }
}

/// Aggregates and `GROUP BY` go together as in SQL: with either, every plain item must be a
/// `GROUP BY` path, and `SELECT *` is refused.
fn check_grouping(q: &Query) -> Result<(), QueryError> {
    if !q.is_aggregate() {
        return Ok(());
    }
    let Some(items) = q.items.as_deref() else {
        return err("SELECT * cannot be grouped; select the GROUP BY properties and aggregates");
    };
    for item in items {
        if let SelectExpr::Path(p) = &item.expr
            && !q.group_by.contains(p)
        {
            return err(format!(
                "{} is neither an aggregate nor in GROUP BY",
                p.join(".")
            ));
        }
    }
    Ok(())
}
