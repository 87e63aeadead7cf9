//! The one parser of the query/condition language (`docs/protocol-notes.md`, "Query
//! language"): conditions with the usual precedence (`NOT` > `AND` > `OR`). The `SELECT`
//! frame of IoT Hub queries is in `select`; the `FROM`/`INTO` frame of routes stays with the
//! edge hub.

use serde_json::Value;

use super::QueryError;
use super::ast::{Expr, Func, Operand};
use super::lexer::{Dialect, Token, tokenize};

/// Deepest nesting of parentheses / `NOT`.
const MAX_DEPTH: usize = 32;

/// Parses a whole condition (`a = 1 AND NOT b IN ['x']`).
pub fn parse_condition(text: &str, dialect: Dialect) -> Result<Expr, QueryError> {
    let tokens = tokenize(text, dialect)?;
    if tokens.is_empty() {
        return Err(QueryError::new("the condition is empty"));
    }
    let mut p = Parser::new(tokens);
    let e = p.condition()?;
    match p.peek() {
        None => Ok(e),
        Some(t) => Err(QueryError::new(format!(
            "unexpected {} in the condition",
            t.describe()
        ))),
    }
}

/// A cursor over tokens; `condition` reads one condition from the current position.
pub struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    pub fn new(tokens: Vec<Token>) -> Parser {
        Parser {
            tokens,
            pos: 0,
            depth: 0,
        }
    }

    pub fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    /// The token `n` places after the next one (`peek_at(0)` is `peek()`).
    pub fn peek_at(&self, n: usize) -> Option<&Token> {
        self.tokens.get(self.pos + n)
    }

    pub fn next_token(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    /// Consumes the keyword `kw` (any case) if it comes next.
    pub fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_keyword(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: &Token, what: &str) -> Result<(), QueryError> {
        match self.next_token() {
            Some(t) if t == *want => Ok(()),
            Some(t) => Err(QueryError::new(format!(
                "missing {what}, found {}",
                t.describe()
            ))),
            None => Err(QueryError::new(format!(
                "missing {what}, but the query ends"
            ))),
        }
    }

    /// `a OR b`, `a AND b`, `NOT a`, `(a)`, comparisons, `IN`, function calls.
    pub fn condition(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.and_expr()?;
        while self.eat_keyword("OR") {
            e = Expr::Or(Box::new(e), Box::new(self.and_expr()?));
        }
        Ok(e)
    }

    fn and_expr(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.unary()?;
        while self.eat_keyword("AND") {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::new(format!(
                "the condition is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.eat_keyword("NOT") {
            return self.nested(|p| Ok(Expr::Not(Box::new(p.unary()?))));
        }
        if self.peek() == Some(&Token::LParen) {
            self.pos += 1;
            let e = self.nested(Parser::condition)?;
            self.expect(&Token::RParen, "')'")?;
            return Ok(e);
        }
        if let (Some(Token::Ident(name)), Some(Token::LParen)) =
            (self.peek(), self.tokens.get(self.pos + 1))
        {
            let name = name.clone();
            return self.call(&name);
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
            return Err(QueryError::new("expected IN after NOT"));
        }
        if self.eat_keyword("NIN") {
            return Ok(Expr::In {
                value: left,
                list: self.list()?,
                negated: true,
            });
        }
        let op = match (self.peek(), &left) {
            (Some(Token::Op(op)), _) => *op,
            (_, Operand::Literal(Value::Bool(b))) => return Ok(Expr::Literal(*b)),
            (Some(t), _) => {
                return Err(QueryError::new(format!(
                    "expected a comparison operator (=, !=, <>, <, >, <=, >=) after {}, found {}",
                    left.describe(),
                    t.describe()
                )));
            }
            (None, _) => {
                return Err(QueryError::new(format!(
                    "expected a comparison operator (=, !=, <>, <, >, <=, >=) after {}, but the query ends",
                    left.describe()
                )));
            }
        };
        self.pos += 1;
        let right = self.operand()?;
        Ok(Expr::Cmp(left, op, right))
    }

    fn call(&mut self, name: &str) -> Result<Expr, QueryError> {
        let f = Func::from_name(name)
            .ok_or_else(|| QueryError::new(format!("function {name} is not supported")))?;
        self.pos += 2;
        let mut args = vec![self.operand()?];
        while self.peek() == Some(&Token::Comma) {
            self.pos += 1;
            args.push(self.operand()?);
        }
        self.expect(&Token::RParen, &format!("')' closing {name}("))?;
        if args.len() != f.arity() {
            return Err(QueryError::new(format!(
                "{name} takes {} argument(s), not {}",
                f.arity(),
                args.len()
            )));
        }
        Ok(Expr::Call(f, args))
    }

    fn list(&mut self) -> Result<Vec<Value>, QueryError> {
        self.expect(&Token::LBracket, "'[' after IN")?;
        let mut out = Vec::new();
        if self.peek() == Some(&Token::RBracket) {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            match self.operand()? {
                Operand::Literal(v) => out.push(v),
                Operand::Path(p) => {
                    return Err(QueryError::new(format!(
                        "IN lists may only hold literals, not {}",
                        p.join(".")
                    )));
                }
            }
            match self.next_token() {
                Some(Token::Comma) => {}
                Some(Token::RBracket) => return Ok(out),
                Some(t) => {
                    return Err(QueryError::new(format!(
                        "expected ',' or ']', found {}",
                        t.describe()
                    )));
                }
                None => return Err(QueryError::new("the IN list is not closed with ']'")),
            }
        }
    }

    /// A property path or a literal.
    pub fn operand(&mut self) -> Result<Operand, QueryError> {
        match self.next_token() {
            Some(Token::Str(s)) => Ok(Operand::Literal(Value::String(s))),
            Some(Token::Num(n)) => Ok(Operand::Literal(Value::Number(n))),
            Some(Token::Ident(s)) if s.eq_ignore_ascii_case("true") => {
                Ok(Operand::Literal(Value::Bool(true)))
            }
            Some(Token::Ident(s)) if s.eq_ignore_ascii_case("false") => {
                Ok(Operand::Literal(Value::Bool(false)))
            }
            Some(Token::Ident(s)) if s.eq_ignore_ascii_case("null") => {
                Ok(Operand::Literal(Value::Null))
            }
            Some(Token::Ident(s))
                if ["AND", "OR", "NOT"]
                    .iter()
                    .any(|k| s.eq_ignore_ascii_case(k)) =>
            {
                Err(QueryError::new(format!(
                    "unexpected '{s}' where a property path or a literal belongs"
                )))
            }
            Some(Token::Ident(first) | Token::QuotedIdent(first)) => {
                let mut segs = vec![first];
                while self.peek() == Some(&Token::Dot) {
                    self.pos += 1;
                    match self.next_token() {
                        Some(Token::Ident(s) | Token::QuotedIdent(s)) => segs.push(s),
                        Some(t) => {
                            return Err(QueryError::new(format!(
                                "expected a property name after '{}.', found {}",
                                segs.join("."),
                                t.describe()
                            )));
                        }
                        None => {
                            return Err(QueryError::new(format!(
                                "the query ends after '{}.'",
                                segs.join(".")
                            )));
                        }
                    }
                }
                Ok(Operand::Path(segs))
            }
            Some(t) => Err(QueryError::new(format!(
                "expected a property path or a literal, found {}",
                t.describe()
            ))),
            None => Err(QueryError::new(
                "expected a property path or a literal, but the query ends too early",
            )),
        }
    }
}
