//! Rendering of command results: pretty JSON (exactly what the server returned), YAML or tables.

use crate::yaml::to_yaml;
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

/// `--output`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Pretty-printed JSON, unchanged from the server (for scripts).
    #[default]
    Json,
    /// Aligned columns (for people).
    Table,
    /// YAML (block style), the same data as JSON.
    Yaml,
}

/// A table column: header and where its value sits in each item (a JSON pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column {
    pub header: &'static str,
    pub pointer: &'static str,
    /// Shown when the field is absent or null.
    pub default: &'static str,
}

pub(crate) const fn col(header: &'static str, pointer: &'static str) -> Column {
    Column {
        header,
        pointer,
        default: "-",
    }
}

pub(crate) const fn col_or(
    header: &'static str,
    pointer: &'static str,
    default: &'static str,
) -> Column {
    Column {
        header,
        pointer,
        default,
    }
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// One object (`show`, `create`, `update`); tables show one FIELD/VALUE row per leaf.
    Object(Value),
    /// A list; tables show the given columns.
    List(Vec<Value>, &'static [Column]),
    /// Rows of any shape (query projections, aggregates); tables get one column per field.
    Rows(Vec<Value>),
    /// Plain text printed as is whatever the format (e.g. a derived key).
    Text(String),
    /// One named string: JSON `{"name": "value"}`, table the value alone on one line (e.g. a
    /// connection string or a SAS token, for `$(...)` in shells).
    Field(&'static str, String),
    /// Nothing for stdout; the note goes to stderr (e.g. "deleted enrollment 'x'").
    Done(String),
}

impl Outcome {
    /// The text for stdout (empty for `Done`), ending in a newline when not empty.
    pub(crate) fn render(&self, format: OutputFormat) -> String {
        let mut s = match (self, format) {
            (Outcome::Object(v), OutputFormat::Json) => pretty(v),
            (Outcome::List(items, _) | Outcome::Rows(items), OutputFormat::Json) => {
                pretty(&Value::Array(items.clone()))
            }
            (Outcome::Rows(items), OutputFormat::Table) => rows_table(items),
            (Outcome::Object(v), OutputFormat::Table) => object_table(v),
            (Outcome::List(items, cols), OutputFormat::Table) => list_table(items, cols),
            (Outcome::Object(v), OutputFormat::Yaml) => to_yaml(v),
            (Outcome::List(items, _) | Outcome::Rows(items), OutputFormat::Yaml) => {
                to_yaml(&Value::Array(items.clone()))
            }
            (Outcome::Text(t), _) => t.clone(),
            (Outcome::Field(name, value), OutputFormat::Json) => {
                pretty(&serde_json::json!({ *name: value }))
            }
            (Outcome::Field(name, value), OutputFormat::Yaml) => {
                to_yaml(&serde_json::json!({ *name: value }))
            }
            (Outcome::Field(_, value), OutputFormat::Table) => value.clone(),
            (Outcome::Done(_), _) => String::new(),
        };
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s
    }

    /// The note for stderr, if any.
    pub(crate) fn note(&self) -> Option<&str> {
        match self {
            Outcome::Done(n) => Some(n),
            _ => None,
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn new_table(headers: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers);
    t
}

/// Table text: columns two spaces apart, no padding at line starts and ends.
fn finish(t: &mut Table) -> String {
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    t.lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One cell: strings as they are, other scalars in JSON form, containers as compact JSON.
pub(crate) fn cell(v: Option<&Value>, default: &str) -> String {
    match v {
        None | Some(Value::Null) => default.to_string(),
        Some(Value::String(s)) if s.is_empty() => default.to_string(),
        Some(Value::String(s)) => s.replace(['\n', '\r'], " "),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn list_table(items: &[Value], cols: &[Column]) -> String {
    let mut t = new_table(cols.iter().map(|c| c.header).collect());
    for item in items {
        t.add_row(
            cols.iter()
                .map(|c| cell(item.pointer(c.pointer), c.default))
                .collect::<Vec<_>>(),
        );
    }
    finish(&mut t)
}

/// A table with a column per top-level field (headed by the field's name), in the order
/// fields first appear.
pub(crate) fn rows_table(items: &[Value]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for item in items {
        if let Value::Object(map) = item {
            for k in map.keys() {
                if !names.contains(&k.as_str()) {
                    names.push(k);
                }
            }
        }
    }
    let mut t = new_table(names.clone());
    for item in items {
        t.add_row(
            names
                .iter()
                .map(|n| cell(item.get(*n), "-"))
                .collect::<Vec<_>>(),
        );
    }
    finish(&mut t)
}

pub(crate) fn object_table(v: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", v, &mut rows);
    let mut t = new_table(vec!["FIELD", "VALUE"]);
    for (k, val) in rows {
        t.add_row(vec![k, val]);
    }
    finish(&mut t)
}

/// Leaves of a JSON object as (`a.b.c`, value) rows; arrays and empty objects stay whole.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, child, out);
            }
        }
        _ => out.push((prefix.to_string(), cell(Some(v), "-"))),
    }
}
