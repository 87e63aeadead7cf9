//! The IoT Hub query language, the part the service SDKs' `query_iot_hub` / `createQuery` use:
//! `SELECT * FROM devices [WHERE <condition>]`, evaluated against twin JSON documents; also the
//! target conditions of configurations (a bare condition, or `*`) and their custom metric
//! queries (`SELECT deviceId FROM devices WHERE ...`).
//!
//! Conditions: comparisons (`=`, `!=`, `<>`, `<`, `>`, `<=`, `>=`) of paths (`tags.environment`,
//! `properties.reported.fw`, `capabilities.iotEdge`, `deviceId`, `status`, ...) and literals
//! (`'text'`, `"text"`, numbers, `true`, `false`, `null`); `[NOT] IN [..]`; `AND`, `OR`, `NOT`,
//! parentheses; functions `IS_DEFINED`, `IS_NULL`, `IS_BOOL`, `IS_NUMBER`, `IS_STRING`,
//! `IS_OBJECT`, `STARTS_WITH`, `ENDS_WITH`. Keywords and function names are case-insensitive,
//! property names and string comparisons are not. `[[name]]` quotes a property name with any
//! characters (`configurations.[[my-deployment]].status`).
//!
//! As in Azure, a comparison involving an undefined property, or values of different types, is
//! false (whatever the operator). Everything else (projections, `devices.modules`, `GROUP BY`,
//! ...) is refused with a message naming what is not supported. Pure: no I/O.

use serde_json::Value;
use std::cmp::Ordering;

/// Longest query text accepted (Azure's limit is 8 KB too).
pub const MAX_QUERY_CHARS: usize = 8192;
/// Deepest nesting of parentheses / `NOT`.
const MAX_DEPTH: usize = 32;

/// A parsed `SELECT * FROM devices [WHERE ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    filter: Option<Expr>,
}

impl Query {
    /// Parses a query; the error names the problem (shown to the client with a 400).
    pub fn parse(text: &str) -> Result<Query, String> {
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(format!(
                "the query is longer than {MAX_QUERY_CHARS} characters"
            ));
        }
        let tokens = tokenize(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            depth: 0,
            select_device_id: false,
        };
        let q = p.query()?;
        Ok(q)
    }

    /// Parses a custom metric query: `SELECT deviceId FROM devices [WHERE ...]` (or `SELECT *`).
    pub fn parse_metric(text: &str) -> Result<Query, String> {
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(format!(
                "the query is longer than {MAX_QUERY_CHARS} characters"
            ));
        }
        let mut p = Parser {
            tokens: tokenize(text)?,
            pos: 0,
            depth: 0,
            select_device_id: true,
        };
        p.query()
    }

    /// Parses a configuration's target condition: a `WHERE` condition without `SELECT`
    /// (`tags.environment='prod' AND properties.reported.fw='1.2'`), or `*` for every device.
    pub fn parse_condition(text: &str) -> Result<Query, String> {
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(format!(
                "the condition is longer than {MAX_QUERY_CHARS} characters"
            ));
        }
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err("the condition is empty (use * to target every device)".into());
        }
        if tokens == [Tok::Star] {
            return Ok(Query { filter: None });
        }
        if tokens[0].is_keyword("SELECT") {
            return Err(
                "a target condition is only the condition (e.g. tags.environment='prod'), without SELECT ... WHERE"
                    .into(),
            );
        }
        let mut p = Parser {
            tokens,
            pos: 0,
            depth: 0,
            select_device_id: false,
        };
        let filter = p.or_expr()?;
        match p.peek() {
            None => Ok(Query {
                filter: Some(filter),
            }),
            Some(t) => Err(format!("unexpected {} in the condition", t.describe())),
        }
    }

    /// Does this twin document satisfy the `WHERE` clause?
    pub fn matches(&self, doc: &Value) -> bool {
        self.filter.as_ref().is_none_or(|e| e.eval(doc))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    IsDefined,
    IsNull,
    IsBool,
    IsNumber,
    IsString,
    IsObject,
    StartsWith,
    EndsWith,
}

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        let f = match name.to_ascii_uppercase().as_str() {
            "IS_DEFINED" => Func::IsDefined,
            "IS_NULL" => Func::IsNull,
            "IS_BOOL" => Func::IsBool,
            "IS_NUMBER" => Func::IsNumber,
            "IS_STRING" => Func::IsString,
            "IS_OBJECT" => Func::IsObject,
            "STARTS_WITH" => Func::StartsWith,
            "ENDS_WITH" => Func::EndsWith,
            _ => return None,
        };
        Some(f)
    }

    fn arity(self) -> usize {
        match self {
            Func::StartsWith | Func::EndsWith => 2,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// Property path from the twin root, e.g. `["tags", "environment"]`.
    Path(Vec<String>),
    Literal(Value),
}

impl Operand {
    fn resolve<'a>(&'a self, doc: &'a Value) -> Option<&'a Value> {
        match self {
            Operand::Literal(v) => Some(v),
            Operand::Path(segs) => segs.iter().try_fold(doc, |v, s| v.get(s.as_str())),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Cmp(Operand, CmpOp, Operand),
    In {
        value: Operand,
        list: Vec<Value>,
        negated: bool,
    },
    Call(Func, Vec<Operand>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

impl Expr {
    fn eval(&self, doc: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.eval(doc) && b.eval(doc),
            Expr::Or(a, b) => a.eval(doc) || b.eval(doc),
            Expr::Not(e) => !e.eval(doc),
            Expr::Cmp(a, op, b) => match (a.resolve(doc), b.resolve(doc)) {
                (Some(a), Some(b)) => compare(a, *op, b),
                _ => false,
            },
            Expr::In {
                value,
                list,
                negated,
            } => match value.resolve(doc) {
                Some(v) => list.iter().any(|l| compare(v, CmpOp::Eq, l)) != *negated,
                None => false,
            },
            Expr::Call(f, args) => {
                let a = args.first().and_then(|a| a.resolve(doc));
                match f {
                    Func::IsDefined => a.is_some(),
                    Func::IsNull => a.is_some_and(Value::is_null),
                    Func::IsBool => a.is_some_and(Value::is_boolean),
                    Func::IsNumber => a.is_some_and(Value::is_number),
                    Func::IsString => a.is_some_and(Value::is_string),
                    Func::IsObject => a.is_some_and(Value::is_object),
                    Func::StartsWith | Func::EndsWith => {
                        let b = args.get(1).and_then(|b| b.resolve(doc));
                        match (a.and_then(Value::as_str), b.and_then(Value::as_str)) {
                            (Some(s), Some(p)) if *f == Func::StartsWith => s.starts_with(p),
                            (Some(s), Some(p)) => s.ends_with(p),
                            _ => false,
                        }
                    }
                }
            }
        }
    }
}

/// Compares two defined values; different types (or unordered types with `<`...) are false.
/// `null` equals only `null`, and `x != null` holds for any defined non-null `x`.
fn compare(a: &Value, op: CmpOp, b: &Value) -> bool {
    let ord = match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => return op == CmpOp::Ne,
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x
                .as_f64()
                .zip(y.as_f64())
                .and_then(|(x, y)| x.partial_cmp(&y)),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => {
            return match op {
                CmpOp::Eq => x == y,
                CmpOp::Ne => x != y,
                _ => false,
            };
        }
        (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_)) => {
            return match op {
                CmpOp::Eq => a == b,
                CmpOp::Ne => a != b,
                _ => false,
            };
        }
        _ => None,
    };
    let Some(ord) = ord else { return false };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}

// ---- tokens

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(serde_json::Number),
    Op(CmpOp),
    Dot,
    Comma,
    Star,
    LParen,
    RParen,
    LBracket,
    RBracket,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Num(n) => format!("number {n}"),
            Tok::Op(op) => format!("operator {op:?}"),
            Tok::Dot => "'.'".into(),
            Tok::Comma => "','".into(),
            Tok::Star => "'*'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '\'' | '"' => {
                let (s, end) = string_literal(&chars, i)?;
                out.push(Tok::Str(s));
                i = end;
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || chars[i] == '.'
                        || chars[i] == 'e'
                        || chars[i] == 'E'
                        || ((chars[i] == '+' || chars[i] == '-')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let n = serde_json::from_str::<serde_json::Number>(&s)
                    .map_err(|_| format!("'{s}' at position {start} is not a valid number"))?;
                out.push(Tok::Num(n));
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            '=' => {
                out.push(Tok::Op(CmpOp::Eq));
                i += 1;
            }
            '!' if next == Some('=') => {
                out.push(Tok::Op(CmpOp::Ne));
                i += 2;
            }
            '<' => {
                let (op, len) = match next {
                    Some('>') => (CmpOp::Ne, 2),
                    Some('=') => (CmpOp::Le, 2),
                    _ => (CmpOp::Lt, 1),
                };
                out.push(Tok::Op(op));
                i += len;
            }
            '>' => {
                let (op, len) = match next {
                    Some('=') => (CmpOp::Ge, 2),
                    _ => (CmpOp::Gt, 1),
                };
                out.push(Tok::Op(op));
                i += len;
            }
            '.' => {
                out.push(Tok::Dot);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '*' => {
                out.push(Tok::Star);
                i += 1;
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '[' if next == Some('[') => {
                // `[[any name]]`: a property name with characters identifiers cannot hold
                let start = i + 2;
                let end = (start..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == ']' && chars[j + 1] == ']')
                    .ok_or_else(|| format!("'[[' at position {i} is not closed with ']]'"))?;
                if end == start {
                    return Err(format!("empty property name '[[]]' at position {i}"));
                }
                out.push(Tok::Ident(chars[start..end].iter().collect()));
                i = end + 2;
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1;
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1;
            }
            other => {
                return Err(format!(
                    "unexpected character '{other}' at position {i} of the query"
                ));
            }
        }
    }
    Ok(out)
}

/// A quoted string starting at `chars[start]`; backslash escapes `\'`, `\"`, `\\`.
/// Returns the text and the index after the closing quote.
fn string_literal(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                s.push(chars[i + 1]);
                i += 2;
            }
            c if c == quote => return Ok((s, i + 1)),
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    Err(format!(
        "the string starting at position {start} of the query is not closed with {quote}"
    ))
}

// ---- parser

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
    depth: usize,
    /// Also accept `SELECT deviceId` (custom metric queries).
    select_device_id: bool,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_keyword(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            Some(t) => Err(format!("expected {what}, found {}", t.describe())),
            None => Err(format!("expected {what}, but the query ends")),
        }
    }

    fn query(&mut self) -> Result<Query, String> {
        if !self.eat_keyword("SELECT") {
            return Err("the query must start with SELECT * FROM devices".into());
        }
        match self.next() {
            Some(Tok::Star) => {}
            Some(Tok::Ident(s)) if self.select_device_id && s == "deviceId" => {}
            Some(t) => {
                return Err(format!(
                    "only SELECT * is supported (projections and aggregates such as {} are not)",
                    t.describe()
                ));
            }
            None => return Err("expected * after SELECT".into()),
        }
        if !self.eat_keyword("FROM") {
            return Err("expected FROM devices after SELECT *".into());
        }
        match self.next() {
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("devices") => {}
            Some(t) => {
                return Err(format!(
                    "only FROM devices is supported, not {}",
                    t.describe()
                ));
            }
            None => return Err("expected devices after FROM".into()),
        }
        if self.peek() == Some(&Tok::Dot) {
            return Err(
                "only FROM devices is supported (devices.modules and devices.jobs are not)".into(),
            );
        }
        let filter = if self.eat_keyword("WHERE") {
            Some(self.or_expr()?)
        } else {
            None
        };
        match self.peek() {
            None => Ok(Query { filter }),
            Some(t) if t.is_keyword("GROUP") || t.is_keyword("ORDER") => Err(format!(
                "{} BY is not supported",
                t.describe().trim_matches('\'').to_ascii_uppercase()
            )),
            Some(t) => Err(format!("unexpected {} in the query", t.describe())),
        }
    }

    fn or_expr(&mut self) -> Result<Expr, String> {
        let mut e = self.and_expr()?;
        while self.eat_keyword("OR") {
            e = Expr::Or(Box::new(e), Box::new(self.and_expr()?));
        }
        Ok(e)
    }

    fn and_expr(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.eat_keyword("AND") {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, String>) -> Result<T, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "the condition is nested deeper than {MAX_DEPTH} levels"
            ));
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat_keyword("NOT") {
            return self.nested(|p| Ok(Expr::Not(Box::new(p.unary()?))));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.nested(|p| p.or_expr())?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(e);
        }
        if let (Some(Tok::Ident(name)), Some(Tok::LParen)) =
            (self.peek(), self.tokens.get(self.pos + 1))
        {
            let name = name.clone();
            let f = Func::from_name(&name)
                .ok_or_else(|| format!("function {name} is not supported"))?;
            self.pos += 2;
            let mut args = vec![self.operand()?];
            while self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
                args.push(self.operand()?);
            }
            self.expect(Tok::RParen, &format!("')' closing {name}("))?;
            if args.len() != f.arity() {
                return Err(format!(
                    "{name} takes {} argument(s), not {}",
                    f.arity(),
                    args.len()
                ));
            }
            return Ok(Expr::Call(f, args));
        }
        let left = self.operand()?;
        let negated = self.eat_keyword("NOT");
        if self.eat_keyword("IN") {
            return Ok(Expr::In {
                value: left,
                list: self.list()?,
                negated,
            });
        }
        if negated {
            return Err("expected IN after NOT".into());
        }
        if self.eat_keyword("NIN") {
            return Ok(Expr::In {
                value: left,
                list: self.list()?,
                negated: true,
            });
        }
        let op = match self.next() {
            Some(Tok::Op(op)) => op,
            Some(t) => {
                return Err(format!(
                    "expected a comparison operator (=, !=, <>, <, >, <=, >=) after {}, found {}",
                    describe_operand(&left),
                    t.describe()
                ));
            }
            None => {
                return Err(format!(
                    "expected a comparison after {}, but the query ends",
                    describe_operand(&left)
                ));
            }
        };
        let right = self.operand()?;
        Ok(Expr::Cmp(left, op, right))
    }

    fn list(&mut self) -> Result<Vec<Value>, String> {
        self.expect(Tok::LBracket, "'[' after IN")?;
        let mut out = Vec::new();
        if self.peek() == Some(&Tok::RBracket) {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            match self.operand()? {
                Operand::Literal(v) => out.push(v),
                Operand::Path(p) => {
                    return Err(format!(
                        "IN lists may only hold literals, not {}",
                        p.join(".")
                    ));
                }
            }
            match self.next() {
                Some(Tok::Comma) => {}
                Some(Tok::RBracket) => return Ok(out),
                Some(t) => return Err(format!("expected ',' or ']', found {}", t.describe())),
                None => return Err("the IN list is not closed with ']'".into()),
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Operand::Literal(Value::String(s))),
            Some(Tok::Num(n)) => Ok(Operand::Literal(Value::Number(n))),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true") => {
                Ok(Operand::Literal(Value::Bool(true)))
            }
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("false") => {
                Ok(Operand::Literal(Value::Bool(false)))
            }
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("null") => {
                Ok(Operand::Literal(Value::Null))
            }
            Some(Tok::Ident(first)) => {
                let mut segs = vec![first];
                while self.peek() == Some(&Tok::Dot) {
                    self.pos += 1;
                    match self.next() {
                        Some(Tok::Ident(s)) => segs.push(s),
                        Some(t) => {
                            return Err(format!(
                                "expected a property name after '{}.', found {}",
                                segs.join("."),
                                t.describe()
                            ));
                        }
                        None => return Err(format!("the query ends after '{}.'", segs.join("."))),
                    }
                }
                // `devices.tags.x` names the same property as `tags.x`.
                if segs.len() > 1 && segs[0].eq_ignore_ascii_case("devices") {
                    segs.remove(0);
                }
                Ok(Operand::Path(segs))
            }
            Some(t) => Err(format!(
                "expected a property path or a literal, found {}",
                t.describe()
            )),
            None => Err("expected a property path or a literal, but the query ends".into()),
        }
    }
}

fn describe_operand(o: &Operand) -> String {
    match o {
        Operand::Path(p) => p.join("."),
        Operand::Literal(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn twin() -> Value {
        json!({
            "deviceId": "dev-01",
            "status": "enabled",
            "connectionState": "Disconnected",
            "capabilities": {"iotEdge": true},
            "tags": {"environment": "test", "floor": 3, "nothing": null},
            "properties": {
                "desired": {"interval": 30, "$version": 2},
                "reported": {"fw": "1.2.3", "temp": 21.5, "$version": 4}
            }
        })
    }

    fn check(q: &str) -> bool {
        Query::parse(q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .matches(&twin())
    }

    fn error(q: &str) -> String {
        Query::parse(q).expect_err(q)
    }

    #[test]
    fn target_conditions() {
        let t = twin();
        let c = |q: &str| {
            Query::parse_condition(q)
                .unwrap_or_else(|e| panic!("{q}: {e}"))
                .matches(&t)
        };
        assert!(c("*"));
        assert!(c("tags.environment='test'"));
        assert!(!c("tags.environment='prod'"));
        assert!(c("tags.environment='test' AND capabilities.iotEdge = true"));
        assert!(c("properties.reported.fw = '1.2.3' OR tags.floor > 100"));
        assert!(Query::parse_condition("").unwrap_err().contains("empty"));
        assert!(
            Query::parse_condition("SELECT * FROM devices WHERE tags.a='b'")
                .unwrap_err()
                .contains("without SELECT")
        );
        assert!(Query::parse_condition("tags.a = 'b' tags").is_err());
    }

    #[test]
    fn bracketed_names_and_metric_queries() {
        let mut t = twin();
        t["configurations"] = json!({"my-dep": {"status": "Applied"}});
        let q = Query::parse_metric(
            "SELECT deviceId FROM devices WHERE configurations.[[my-dep]].status = 'Applied'",
        )
        .unwrap();
        assert!(q.matches(&t));
        assert!(Query::parse("SELECT deviceId FROM devices").is_err());
        assert!(Query::parse_metric("SELECT x FROM devices").is_err());
        assert!(
            Query::parse_condition("tags.[[a")
                .unwrap_err()
                .contains("]]")
        );
    }

    #[test]
    fn select_all() {
        assert!(check("SELECT * FROM devices"));
        assert!(check("select *  from Devices"));
    }

    #[test]
    fn comparisons() {
        assert!(check(
            "SELECT * FROM devices WHERE tags.environment = 'test'"
        ));
        assert!(!check(
            "SELECT * FROM devices WHERE tags.environment = 'prod'"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE tags.environment = \"test\""
        ));
        assert!(check(
            "SELECT * FROM devices WHERE tags.environment != 'prod'"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE tags.environment <> 'prod'"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE capabilities.iotEdge = true"
        ));
        assert!(!check(
            "SELECT * FROM devices WHERE capabilities.iotEdge = false"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE tags.floor >= 3 AND tags.floor < 4"
        ));
        assert!(check("SELECT * FROM devices WHERE tags.floor = 3.0"));
        assert!(check(
            "SELECT * FROM devices WHERE properties.reported.temp > -1.5e1"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE properties.reported.fw <= '1.2.3'"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE properties.desired.interval = 30"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE deviceId = 'dev-01' AND status = 'enabled'"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE connectionState = 'Disconnected'"
        ));
        assert!(check("SELECT * FROM devices WHERE devices.tags.floor = 3"));
        assert!(check(
            "SELECT * FROM devices WHERE 'test' = tags.environment"
        ));
    }

    #[test]
    fn undefined_and_mismatched_types_are_false() {
        assert!(!check("SELECT * FROM devices WHERE tags.missing = 'x'"));
        assert!(!check("SELECT * FROM devices WHERE tags.missing != 'x'"));
        assert!(!check("SELECT * FROM devices WHERE tags.floor = '3'"));
        assert!(!check("SELECT * FROM devices WHERE tags.floor != '3'"));
        assert!(!check(
            "SELECT * FROM devices WHERE capabilities.iotEdge > false"
        ));
        assert!(check("SELECT * FROM devices WHERE tags.nothing = null"));
        assert!(check(
            "SELECT * FROM devices WHERE tags.environment != null"
        ));
        assert!(!check("SELECT * FROM devices WHERE tags.missing = null"));
    }

    #[test]
    fn boolean_logic_and_precedence() {
        // AND binds tighter than OR
        assert!(check(
            "SELECT * FROM devices WHERE tags.environment = 'prod' OR tags.floor = 3 AND status = 'enabled'"
        ));
        assert!(!check(
            "SELECT * FROM devices WHERE (tags.environment = 'prod' OR tags.floor = 3) AND status = 'disabled'"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE NOT (tags.environment = 'prod')"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE NOT tags.environment = 'prod' and NOT tags.floor > 3"
        ));
    }

    #[test]
    fn functions_and_in() {
        assert!(check(
            "SELECT * FROM devices WHERE IS_DEFINED(tags.environment)"
        ));
        assert!(!check(
            "SELECT * FROM devices WHERE is_defined(tags.missing)"
        ));
        assert!(check("SELECT * FROM devices WHERE IS_NULL(tags.nothing)"));
        assert!(check(
            "SELECT * FROM devices WHERE IS_NUMBER(tags.floor) AND IS_STRING(deviceId)"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE IS_BOOL(capabilities.iotEdge) AND IS_OBJECT(tags)"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'dev-')"
        ));
        assert!(!check(
            "SELECT * FROM devices WHERE ENDS_WITH(deviceId, 'dev-')"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE tags.environment IN ['prod', 'test']"
        ));
        assert!(!check(
            "SELECT * FROM devices WHERE tags.environment NOT IN ['prod', 'test']"
        ));
        assert!(check(
            "SELECT * FROM devices WHERE tags.environment NIN ['prod']"
        ));
        assert!(!check(
            "SELECT * FROM devices WHERE tags.missing NIN ['prod']"
        ));
        assert!(!check("SELECT * FROM devices WHERE tags.floor IN []"));
    }

    #[test]
    fn string_escapes() {
        let q = Query::parse(r"SELECT * FROM devices WHERE tags.owner = 'O\'Brien'").unwrap();
        assert!(q.matches(&json!({"tags": {"owner": "O'Brien"}})));
    }

    #[test]
    fn unsupported_syntax_names_the_problem() {
        assert!(error("SELECT deviceId FROM devices").contains("only SELECT *"));
        assert!(error("SELECT COUNT() AS n FROM devices").contains("only SELECT *"));
        assert!(error("SELECT * FROM devices.modules").contains("devices.modules"));
        assert!(error("SELECT * FROM jobs").contains("only FROM devices"));
        assert!(error("SELECT * FROM devices GROUP BY tags.x").contains("GROUP BY"));
        assert!(error("SELECT * FROM devices WHERE tags.x ~ 1").contains("'~'"));
        assert!(error("SELECT * FROM devices WHERE tags.x = 'open").contains("not closed"));
        assert!(error("SELECT * FROM devices WHERE tags.x").contains("comparison"));
        assert!(error("SELECT * FROM devices WHERE (tags.x = 1").contains("')'"));
        assert!(error("SELECT * FROM devices WHERE LOWER(tags.x) = 'a'").contains("LOWER"));
        assert!(error("SELECT * FROM devices WHERE tags.x = 1 tags.y = 2").contains("unexpected"));
        assert!(error("DELETE FROM devices").contains("SELECT"));
        assert!(error("").contains("SELECT"));
        let deep = format!(
            "SELECT * FROM devices WHERE {}tags.x = 1{}",
            "(".repeat(100),
            ")".repeat(100)
        );
        assert!(error(&deep).contains("nested"));
        assert!(
            error(&format!(
                "SELECT * FROM devices WHERE tags.x = '{}'",
                "a".repeat(9000)
            ))
            .contains("longer")
        );
    }
}
