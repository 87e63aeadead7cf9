//! Aggregate queries (`docs/protocol-notes.md`, "Query language"): `SELECT COUNT() AS n FROM
//! devices`, `SELECT p AS x, COUNT() AS n FROM devices GROUP BY p`. Documents are added one at
//! a time; the result is one row per group in the order groups were first seen (one row, even
//! for no documents, when there is no `GROUP BY`).

use std::collections::HashMap;

use serde_json::{Map, Number, Value};

use super::eval::Operands;
use super::select::{Aggregate, Query, SelectExpr};

/// The running state of an aggregate query.
#[derive(Debug)]
pub struct Aggregation<'q> {
    query: &'q Query,
    /// Groups in first-seen order: the `GROUP BY` values (`None`: undefined) and one
    /// accumulator per `SELECT` item.
    groups: Vec<(Vec<Option<Value>>, Vec<Acc>)>,
    index: HashMap<String, usize>,
}

/// One aggregate's running value.
#[derive(Debug, Clone, Default)]
struct Acc {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl Acc {
    fn add(&mut self, v: Option<&Value>) {
        let Some(x) = v.and_then(Value::as_f64) else {
            return;
        };
        self.count += 1;
        self.sum += x;
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
    }
}

impl<'q> Aggregation<'q> {
    pub fn new(query: &'q Query) -> Aggregation<'q> {
        Aggregation {
            query,
            groups: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Adds a document that satisfied the `WHERE` clause.
    pub fn add<O: Operands + ?Sized>(&mut self, o: &O) {
        let key: Vec<Option<Value>> = self
            .query
            .group_by()
            .iter()
            .map(|p| o.resolve(p).map(std::borrow::Cow::into_owned))
            .collect();
        let items = self.query.items().unwrap_or_default();
        let slot = self.slot(key, items.len());
        for (acc, item) in self.groups[slot].1.iter_mut().zip(items) {
            match &item.expr {
                SelectExpr::Aggregate(Aggregate::Count, _) => acc.count += 1,
                SelectExpr::Aggregate(_, Some(p)) => acc.add(o.resolve(p).as_deref()),
                SelectExpr::Aggregate(_, None) | SelectExpr::Path(_) => {}
            }
        }
    }

    fn slot(&mut self, key: Vec<Option<Value>>, width: usize) -> usize {
        let text = serde_json::to_string(&key).unwrap_or_default();
        if let Some(&i) = self.index.get(&text) {
            return i;
        }
        self.groups.push((key, vec![Acc::default(); width]));
        self.index.insert(text, self.groups.len() - 1);
        self.groups.len() - 1
    }

    /// The result rows.
    pub fn rows(mut self) -> Vec<Value> {
        if self.groups.is_empty() && self.query.group_by().is_empty() {
            let width = self.query.items().map_or(0, <[_]>::len);
            self.slot(Vec::new(), width);
        }
        let items = self.query.items().unwrap_or_default();
        let group_by = self.query.group_by();
        self.groups
            .into_iter()
            .map(|(key, accs)| {
                let mut row = Map::new();
                for (item, acc) in items.iter().zip(accs) {
                    let value = match &item.expr {
                        SelectExpr::Path(p) => group_by
                            .iter()
                            .position(|g| g == p)
                            .and_then(|i| key[i].clone()),
                        SelectExpr::Aggregate(agg, _) => result(*agg, &acc),
                    };
                    if let Some(v) = value {
                        row.insert(item.name.clone(), v);
                    }
                }
                Value::Object(row)
            })
            .collect()
    }
}

/// An aggregate's value; `None` (left out of the row) when no number was seen. Whole
/// numbers are printed without a fraction (`20`, not `20.0`).
fn result(agg: Aggregate, acc: &Acc) -> Option<Value> {
    let number = |x: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "only whole numbers within i64's range take this branch"
        )]
        if x.fract() == 0.0 && x.abs() < 9.0e15 {
            Some(Value::Number(Number::from(x as i64)))
        } else {
            Number::from_f64(x).map(Value::Number)
        }
    };
    match agg {
        Aggregate::Count => Some(Value::Number(acc.count.into())),
        _ if acc.count == 0 => None,
        Aggregate::Sum => number(acc.sum),
        #[allow(
            clippy::cast_precision_loss,
            reason = "a count of documents is far below 2^52"
        )]
        Aggregate::Avg => number(acc.sum / acc.count as f64),
        Aggregate::Min => acc.min.and_then(number),
        Aggregate::Max => acc.max.and_then(number),
    }
}
