//! The one query/condition language of the workspace (`docs/protocol-notes.md`, "Query
//! language"): IoT Hub queries (`SELECT * FROM devices WHERE ...`, projections, aggregates,
//! `GROUP BY`, `devices.modules`: [`Query`], [`Aggregation`]), the target
//! conditions and metric queries of deployments, and the `WHERE` conditions of edge routes
//! ([`parse_condition`]).
//!
//! Conditions: comparisons (`=`, `!=`, `<>`, `<`, `>`, `<=`, `>=`) of property paths
//! (`tags.environment`, `properties.reported.fw`, `$contentType`, `[[my-prop]]`, `[my prop]`)
//! and literals (`'text'`, `"text"`, numbers, `true`, `false`, `null`); `[NOT] IN [..]`, `NIN`;
//! `AND`, `OR`, `NOT`, parentheses; a bare `true`/`false`; functions `IS_DEFINED`, `IS_NULL`,
//! `IS_BOOL`, `IS_NUMBER`, `IS_STRING`, `IS_OBJECT`, `STARTS_WITH`, `ENDS_WITH`. Keywords
//! and function names are case-insensitive, property names and string comparisons are not.
//!
//! [`lexer`] -> [`parser`] -> [`Expr`], evaluated by [`Expr::eval`] over an [`Operands`]
//! implementation that resolves paths: twin documents in `fleethub-services`, message
//! properties in `fleetedge-hub`. As in Azure, a comparison involving an undefined property,
//! or values of types that do not compare, is false (whatever the operator). Pure: no IO.

mod aggregate;
mod ast;
mod eval;
pub mod lexer;
pub mod parser;
mod select;

pub use aggregate::Aggregation;
pub use ast::{CmpOp, Expr, Func, Operand};
pub use eval::{Comparison, Operands};
pub use lexer::{Dialect, Token, tokenize};
pub use parser::parse_condition;
pub use select::{Aggregate, MAX_QUERY_CHARS, Query, SelectExpr, SelectItem, Source};

/// A query or condition that does not parse; the message names the problem (shown to
/// clients with a 400, or in the edge hub's route errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

impl QueryError {
    pub(crate) fn new(msg: impl Into<String>) -> QueryError {
        QueryError(msg.into())
    }
}

#[cfg(test)]
mod select_tests;
#[cfg(test)]
mod tests;
