//! The parsed form of a condition (`docs/protocol-notes.md`, "Query language").

use serde_json::Value;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
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
    /// The function of that name (any case).
    pub fn from_name(name: &str) -> Option<Func> {
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

    /// How many arguments it takes.
    pub fn arity(self) -> usize {
        match self {
            Func::StartsWith | Func::EndsWith => 2,
            _ => 1,
        }
    }
}

/// A property path or a literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// Property path as written, e.g. `["tags", "environment"]` or `["$contentType"]`.
    Path(Vec<String>),
    Literal(Value),
}

impl Operand {
    /// How error messages show it.
    pub fn describe(&self) -> String {
        match self {
            Operand::Path(p) => p.join("."),
            Operand::Literal(v) => v.to_string(),
        }
    }
}

/// A condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
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
    /// A bare `true` or `false`.
    Literal(bool),
}

impl Expr {
    /// Every property path the condition reads, in order (so a caller can refuse paths its
    /// operands do not serve before evaluating anything).
    pub fn paths(&self) -> Vec<&[String]> {
        let mut out = Vec::new();
        self.collect_paths(&mut out);
        out
    }

    fn collect_paths<'a>(&'a self, out: &mut Vec<&'a [String]>) {
        let mut push = |o: &'a Operand| {
            if let Operand::Path(p) = o {
                out.push(p.as_slice());
            }
        };
        match self {
            Expr::Cmp(a, _, b) => {
                push(a);
                push(b);
            }
            Expr::In { value, .. } => push(value),
            Expr::Call(_, args) => args.iter().for_each(push),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect_paths(out);
                b.collect_paths(out);
            }
            Expr::Not(e) => e.collect_paths(out),
            Expr::Literal(_) => {}
        }
    }
}
