//! Evaluating a condition over an [`Operands`] implementation (`docs/protocol-notes.md`,
//! "Query language").

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::ast::{CmpOp, Expr, Func, Operand};

/// How values of different types compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// JSON documents (twins): values of different types never compare; `null` equals only
    /// `null`, and `x != null` holds for any defined non-null `x`; booleans, objects and
    /// arrays only compare with `=` and `!=`.
    Typed,
    /// Message properties, strings on the wire: a string compared with a number literal is
    /// read as a number, with a boolean literal as a boolean (`false < true`).
    StringProperties,
}

/// What a condition is evaluated against: resolves property paths.
pub trait Operands {
    /// The value at `path` (as written: `["tags", "environment"]`, `["$contentType"]`);
    /// `None` when it is not defined.
    fn resolve(&self, path: &[String]) -> Option<Cow<'_, Value>>;

    /// How values of different types compare.
    fn comparison(&self) -> Comparison {
        Comparison::Typed
    }
}

/// A JSON document: a path walks its objects.
impl Operands for Value {
    fn resolve(&self, path: &[String]) -> Option<Cow<'_, Value>> {
        path.iter()
            .try_fold(self, |v, s| v.get(s.as_str()))
            .map(Cow::Borrowed)
    }
}

impl Operand {
    fn value<'a, O: Operands + ?Sized>(&'a self, o: &'a O) -> Option<Cow<'a, Value>> {
        match self {
            Operand::Literal(v) => Some(Cow::Borrowed(v)),
            Operand::Path(p) => o.resolve(p),
        }
    }
}

impl Expr {
    /// Does `o` satisfy this condition?
    pub fn eval<O: Operands + ?Sized>(&self, o: &O) -> bool {
        let how = o.comparison();
        match self {
            Expr::And(a, b) => a.eval(o) && b.eval(o),
            Expr::Or(a, b) => a.eval(o) || b.eval(o),
            Expr::Not(e) => !e.eval(o),
            Expr::Literal(b) => *b,
            Expr::Cmp(a, op, b) => match (a.value(o), b.value(o)) {
                (Some(a), Some(b)) => compare(&a, *op, &b, how),
                _ => false,
            },
            Expr::In {
                value,
                list,
                negated,
            } => match value.value(o) {
                Some(v) => list.iter().any(|l| compare(&v, CmpOp::Eq, l, how)) != *negated,
                None => false,
            },
            Expr::Call(func, args) => {
                let a = args.first().and_then(|a| a.value(o));
                let a = a.as_deref();
                match func {
                    Func::IsDefined => a.is_some(),
                    Func::IsNull => a.is_some_and(Value::is_null),
                    Func::IsBool => a.is_some_and(Value::is_boolean),
                    Func::IsNumber => a.is_some_and(Value::is_number),
                    Func::IsString => a.is_some_and(Value::is_string),
                    Func::IsObject => a.is_some_and(Value::is_object),
                    Func::StartsWith | Func::EndsWith => {
                        let b = args.get(1).and_then(|b| b.value(o));
                        match (
                            a.and_then(Value::as_str),
                            b.as_deref().and_then(Value::as_str),
                        ) {
                            (Some(text), Some(affix)) if *func == Func::StartsWith => {
                                text.starts_with(affix)
                            }
                            (Some(text), Some(affix)) => text.ends_with(affix),
                            _ => false,
                        }
                    }
                }
            }
        }
    }
}

/// Compares two defined values.
fn compare(a: &Value, op: CmpOp, b: &Value, how: Comparison) -> bool {
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
        (Value::Bool(x), Value::Bool(y)) if how == Comparison::StringProperties => Some(x.cmp(y)),
        (Value::Bool(_), Value::Bool(_))
        | (Value::Object(_), Value::Object(_))
        | (Value::Array(_), Value::Array(_)) => {
            return match op {
                CmpOp::Eq => a == b,
                CmpOp::Ne => a != b,
                _ => false,
            };
        }
        (Value::String(s), Value::Number(n)) if how == Comparison::StringProperties => s
            .trim()
            .parse::<f64>()
            .ok()
            .zip(n.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y)),
        (Value::Number(n), Value::String(s)) if how == Comparison::StringProperties => n
            .as_f64()
            .zip(s.trim().parse::<f64>().ok())
            .and_then(|(x, y)| x.partial_cmp(&y)),
        (Value::String(s), Value::Bool(y)) if how == Comparison::StringProperties => {
            s.parse::<bool>().ok().map(|x| x.cmp(y))
        }
        (Value::Bool(x), Value::String(s)) if how == Comparison::StringProperties => {
            s.parse::<bool>().ok().map(|y| x.cmp(&y))
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
