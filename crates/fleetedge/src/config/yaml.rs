//! A small YAML document tree that remembers the line of every node (for errors that name
//! the line), built from yaml-rust2's parser events. Only what IoT Edge 1.1's
//! `config.yaml` uses: mappings with string keys, sequences and scalars.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// A node and the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar as written; `quoted` scalars are always strings.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Keys in file order.
    Map(Vec<(Node, Node)>),
    /// An empty document.
    Empty,
}

/// A YAML syntax error with its line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

impl From<ScanError> for YamlError {
    fn from(e: ScanError) -> Self {
        YamlError {
            line: e.marker().line(),
            message: e.info().to_string(),
        }
    }
}

impl Node {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The entries of a mapping (key text, key node, value).
    pub fn entries(&self) -> Vec<(&str, &Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?, k, v)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A scalar's text (any scalar; `~`/`null` unquoted is `None`).
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, quoted } if *quoted || !is_null(text) => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        match &self.value {
            Value::Scalar { text, quoted } => !quoted && is_null(text),
            Value::Empty => true,
            _ => false,
        }
    }

    /// A YAML 1.1/1.2 boolean (`true`/`false`, and 1.1's `yes`/`no`/`on`/`off`).
    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            Value::Scalar {
                text,
                quoted: false,
            } => match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => Some(true),
                "false" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.value, Value::Map(_))
    }
}

fn is_null(t: &str) -> bool {
    matches!(t, "" | "~" | "null" | "Null" | "NULL")
}

enum Open {
    Seq(usize, Vec<Node>),
    Map(usize, Vec<(Node, Node)>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    anchors: std::collections::HashMap<usize, Node>,
    pending_anchor: Vec<usize>,
}

impl Builder {
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                let node = Node {
                    line,
                    value: Value::Scalar {
                        text,
                        quoted: style != TScalarStyle::Plain,
                    },
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push(node);
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    line,
                    value: Value::Empty,
                });
                self.push(node);
            }
            Event::SequenceStart(anchor, _) => {
                self.pending_anchor.push(anchor);
                self.stack.push(Open::Seq(line, Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                self.pending_anchor.push(anchor);
                self.stack.push(Open::Map(line, Vec::new(), None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Open::Seq(line, items)) => Node {
                        line,
                        value: Value::Seq(items),
                    },
                    Some(Open::Map(line, entries, _)) => Node {
                        line,
                        value: Value::Map(entries),
                    },
                    None => return,
                };
                if let Some(anchor) = self.pending_anchor.pop()
                    && anchor > 0
                {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push(node);
            }
            _ => {}
        }
    }
}

/// Parses the first document of `text`.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut b = Builder::default();
    Parser::new_from_str(text).load(&mut b, false)?;
    Ok(b.root.unwrap_or(Node {
        line: 1,
        value: Value::Empty,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_lines() {
        let doc = parse(
            "# comment\nprovisioning:\n  source: \"manual\"\n  dynamic_reprovisioning: false\nhostname: ~\nlist:\n  - a\n  - 'b'\n",
        )
        .unwrap();
        let p = doc.get("provisioning").unwrap();
        assert!(p.is_map());
        let source = p.get("source").unwrap();
        assert_eq!((source.line, source.as_str()), (3, Some("manual")));
        assert_eq!(
            p.get("dynamic_reprovisioning").unwrap().as_bool(),
            Some(false)
        );
        assert!(doc.get("hostname").unwrap().is_null());
        let entries = doc.entries();
        assert_eq!(entries[0].0, "provisioning");
        assert_eq!(entries[0].1.line, 2);
        match &doc.get("list").unwrap().value {
            Value::Seq(items) => assert_eq!(items[1].line, 8),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse("provisioning:\n  source: \"manual\n  x: 1\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        let e = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        assert!(e.to_string().starts_with(&format!("line {}: ", e.line)));
    }
}
