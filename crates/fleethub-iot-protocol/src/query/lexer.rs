//! The one lexer of the query/condition language (`docs/protocol-notes.md`, "Query
//! language"). The two dialects differ only in how a quote is escaped inside a string.

use serde_json::Number;

use super::QueryError;
use super::ast::CmpOp;

/// Where a text comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// IoT Hub queries and deployment conditions: `\'`, `\"`, `\\` escape.
    Query,
    /// Edge route conditions: a doubled quote (`'it''s'`) escapes; a backslash is a character.
    Route,
}

/// A token.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A name or keyword.
    Ident(String),
    /// `[[any name]]` or `[any name]`: always a property name, never a keyword (`[[or]]`).
    QuotedIdent(String),
    Str(String),
    Num(Number),
    Op(CmpOp),
    Dot,
    Comma,
    Star,
    LParen,
    RParen,
    /// Only right after `IN`/`NIN` (an IN list); elsewhere `[` quotes a name.
    LBracket,
    RBracket,
}

impl Token {
    /// How error messages show it.
    pub fn describe(&self) -> String {
        match self {
            Token::Ident(s) | Token::QuotedIdent(s) => format!("'{s}'"),
            Token::Str(s) => format!("string '{s}'"),
            Token::Num(n) => format!("number {n}"),
            Token::Op(op) => format!("operator {op:?}"),
            Token::Dot => "'.'".into(),
            Token::Comma => "','".into(),
            Token::Star => "'*'".into(),
            Token::LParen => "'('".into(),
            Token::RParen => "')'".into(),
            Token::LBracket => "'['".into(),
            Token::RBracket => "']'".into(),
        }
    }

    /// Is this the keyword `kw` (any case)?
    pub fn is_keyword(&self, kw: &str) -> bool {
        matches!(self, Token::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '$' | '-')
}

/// Splits a query or condition into tokens.
pub fn tokenize(text: &str, dialect: Dialect) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (token, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '\'' | '"' => {
                let (s, end) = string_literal(&chars, i, dialect)?;
                (Token::Str(s), end - i)
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let (n, end) = number(&chars, i)?;
                (Token::Num(n), end - i)
            }
            c if is_ident_start(c) => {
                let end = (i..chars.len())
                    .find(|&j| !is_ident_char(chars[j]))
                    .unwrap_or(chars.len());
                (Token::Ident(chars[i..end].iter().collect()), end - i)
            }
            '=' => (Token::Op(CmpOp::Eq), 1),
            '!' if next == Some('=') => (Token::Op(CmpOp::Ne), 2),
            '<' => match next {
                Some('>') => (Token::Op(CmpOp::Ne), 2),
                Some('=') => (Token::Op(CmpOp::Le), 2),
                _ => (Token::Op(CmpOp::Lt), 1),
            },
            '>' => match next {
                Some('=') => (Token::Op(CmpOp::Ge), 2),
                _ => (Token::Op(CmpOp::Gt), 1),
            },
            '.' => (Token::Dot, 1),
            ',' => (Token::Comma, 1),
            '*' => (Token::Star, 1),
            '(' => (Token::LParen, 1),
            ')' => (Token::RParen, 1),
            '[' if out
                .last()
                .is_some_and(|t| t.is_keyword("IN") || t.is_keyword("NIN")) =>
            {
                (Token::LBracket, 1)
            }
            '[' => {
                // `[[any name]]` (IoT Hub) or `[any name]` (routes): a property name with
                // characters identifiers cannot hold.
                let (open, close) = if next == Some('[') {
                    ("[[", "]]")
                } else {
                    ("[", "]")
                };
                let start = i + open.len();
                let close: Vec<char> = close.chars().collect();
                let end = (start..chars.len())
                    .find(|&j| chars[j..].starts_with(&close[..]))
                    .ok_or_else(|| {
                        QueryError::new(format!(
                            "'{open}' at position {i} is not closed with '{}'",
                            close.iter().collect::<String>()
                        ))
                    })?;
                if end == start {
                    return Err(QueryError::new(format!(
                        "empty property name at position {i}"
                    )));
                }
                (
                    Token::QuotedIdent(chars[start..end].iter().collect()),
                    end + close.len() - i,
                )
            }
            ']' => (Token::RBracket, 1),
            other => {
                return Err(QueryError::new(format!(
                    "unexpected character '{other}' at position {i} of the query"
                )));
            }
        };
        out.push(token);
        i += len;
    }
    Ok(out)
}

/// A number starting at `chars[start]` (sign, digits, fraction, exponent); returns it and
/// the index after it.
fn number(chars: &[char], start: usize) -> Result<(Number, usize), QueryError> {
    let mut i = start + 1;
    while i < chars.len()
        && (chars[i].is_ascii_digit()
            || chars[i] == '.'
            || chars[i] == 'e'
            || chars[i] == 'E'
            || ((chars[i] == '+' || chars[i] == '-') && matches!(chars[i - 1], 'e' | 'E')))
    {
        i += 1;
    }
    let s: String = chars[start..i].iter().collect();
    // JSON's number grammar, then Rust's (`01`, `5.` as the route syntax allowed).
    serde_json::from_str::<Number>(&s)
        .ok()
        .or_else(|| s.parse::<f64>().ok().and_then(Number::from_f64))
        .map(|n| (n, i))
        .ok_or_else(|| QueryError::new(format!("'{s}' at position {start} is not a valid number")))
}

/// A quoted string starting at `chars[start]`. Returns the text and the index after the
/// closing quote.
fn string_literal(
    chars: &[char],
    start: usize,
    dialect: Dialect,
) -> Result<(String, usize), QueryError> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if dialect == Dialect::Query && i + 1 < chars.len() => {
                s.push(chars[i + 1]);
                i += 2;
            }
            c if c == quote && dialect == Dialect::Route && chars.get(i + 1) == Some(&quote) => {
                s.push(quote);
                i += 2;
            }
            c if c == quote => return Ok((s, i + 1)),
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    Err(QueryError::new(format!(
        "the string starting at position {start} of the query is not closed with {quote}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str, d: Dialect) -> Vec<Token> {
        tokenize(s, d).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn tokens() {
        use Token::*;
        assert_eq!(
            toks("tags.x >= -1.5e1 AND $ct<>'a'", Dialect::Query),
            vec![
                Ident("tags".into()),
                Dot,
                Ident("x".into()),
                Op(CmpOp::Ge),
                Num(Number::from_f64(-15.0).unwrap()),
                Ident("AND".into()),
                Ident("$ct".into()),
                Op(CmpOp::Ne),
                Str("a".into()),
            ]
        );
        assert_eq!(
            toks("x IN ['a', 2]", Dialect::Query),
            vec![
                Ident("x".into()),
                Ident("IN".into()),
                LBracket,
                Str("a".into()),
                Comma,
                Num(2.into()),
                RBracket
            ]
        );
        assert_eq!(
            toks("configurations.[[my-dep]].status", Dialect::Query)[2],
            QuotedIdent("my-dep".into())
        );
        assert_eq!(
            toks("[my prop] = 01", Dialect::Route),
            vec![
                QuotedIdent("my prop".into()),
                Op(CmpOp::Eq),
                Num(Number::from_f64(1.0).unwrap())
            ]
        );
        assert_eq!(
            toks("my-prop", Dialect::Route),
            vec![Ident("my-prop".into())]
        );
    }

    #[test]
    fn strings_per_dialect() {
        assert_eq!(
            toks(r"'O\'Brien'", Dialect::Query),
            vec![Token::Str("O'Brien".into())]
        );
        assert_eq!(
            toks("'it''s'", Dialect::Route),
            vec![Token::Str("it's".into())]
        );
        assert_eq!(
            toks(r"'C:\temp'", Dialect::Route),
            vec![Token::Str(r"C:\temp".into())]
        );
        assert!(
            tokenize("'open", Dialect::Route)
                .unwrap_err()
                .0
                .contains("not closed")
        );
    }

    #[test]
    fn errors() {
        let e = |s: &str| tokenize(s, Dialect::Query).unwrap_err().0;
        assert!(e("tags.x ~ 1").contains("'~'"));
        assert!(e("tags.[[a").contains("]]"));
        assert!(e("[a").contains(']'));
        assert!(e("[[]]").contains("empty"));
        assert!(e("1.2.3").contains("not a valid number"));
        assert!(e("a ! b").contains("'!'"));
    }
}
