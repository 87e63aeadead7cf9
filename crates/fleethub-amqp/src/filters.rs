//! Event Hubs' start positions: the source filter `apache.org:selector-filter:string`
//! (descriptor code `0x0000468C:0x00000004`) holding an SQL-like selector such as
//! `amqp.annotation.x-opt-offset > '-1'` (see `docs/protocol-notes.md`, "Event Hubs receivers").

use fe2o3_amqp_types::messaging::FilterSet;
use fe2o3_amqp_types::primitives::Value;
use fleethub_services::hub::EventPosition;
use serde_amqp::descriptor::Descriptor;

/// Symbolic descriptor of the selector filter.
pub const SELECTOR_FILTER_NAME: &str = "apache.org:selector-filter:string";
/// Numeric descriptor of the selector filter.
pub const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;

/// Why a selector was refused (`amqp:invalid-field` / argument errors on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "the selector filter '{0}' is not of the form amqp.annotation.<x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time> <>|>=> '<value>'"
    )]
    Malformed(String),
    #[error("the selector filter's value '{0}' is not valid for {1}")]
    BadValue(String, &'static str),
}

/// The start position a link's source asks for; no selector filter = from the start.
pub fn start_position(filter: Option<&FilterSet>) -> Result<EventPosition, FilterError> {
    let Some(filter) = filter else {
        return Ok(EventPosition::Start);
    };
    for value in filter.values() {
        if let Value::Described(d) = value {
            let is_selector = match &d.descriptor {
                Descriptor::Name(n) => n.as_str() == SELECTOR_FILTER_NAME,
                Descriptor::Code(c) => *c == SELECTOR_FILTER_CODE,
            };
            if is_selector {
                return match &d.value {
                    Value::String(s) => parse_selector(s),
                    other => Err(FilterError::Malformed(format!("{other:?}"))),
                };
            }
        }
    }
    Ok(EventPosition::Start)
}

/// Parses one selector expression.
pub fn parse_selector(selector: &str) -> Result<EventPosition, FilterError> {
    let malformed = || FilterError::Malformed(selector.to_string());
    let s = selector.trim();
    let field_end = s.find(|c: char| c.is_whitespace() || c == '>' || c == '=' || c == '<');
    let (field, rest) = s.split_at(field_end.ok_or_else(malformed)?);
    let rest = rest.trim_start();
    let (inclusive, value) = if let Some(v) = rest.strip_prefix(">=") {
        (true, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (false, v)
    } else {
        return Err(malformed());
    };
    let value = value.trim();
    let value = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    if value.is_empty() {
        return Err(malformed());
    }
    let field = field
        .to_ascii_lowercase()
        .strip_prefix("amqp.annotation.")
        .map(str::to_string)
        .ok_or_else(malformed)?;
    match field.as_str() {
        "x-opt-offset" => match value {
            "-1" => Ok(EventPosition::Start),
            "@latest" => Ok(EventPosition::Latest),
            v => v
                .parse::<u64>()
                .map(|offset| EventPosition::Offset { offset, inclusive })
                .map_err(|_| FilterError::BadValue(v.into(), "x-opt-offset")),
        },
        "x-opt-sequence-number" => value
            .parse::<i64>()
            .map(|sequence_number| EventPosition::SequenceNumber {
                sequence_number,
                inclusive,
            })
            .map_err(|_| FilterError::BadValue(value.into(), "x-opt-sequence-number")),
        "x-opt-enqueued-time" => value
            .parse::<i64>()
            .map(|utc_ms| EventPosition::EnqueuedTime { utc_ms, inclusive })
            .map_err(|_| FilterError::BadValue(value.into(), "x-opt-enqueued-time")),
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::primitives::{OrderedMap, Symbol};
    use serde_amqp::described::Described;

    #[test]
    fn selectors() {
        use EventPosition as P;
        let cases = [
            ("amqp.annotation.x-opt-offset > '-1'", P::Start),
            ("amqp.annotation.x-opt-offset > '@latest'", P::Latest),
            ("amqp.annotation.x-opt-offset >= '@latest'", P::Latest),
            (
                "amqp.annotation.x-opt-offset > '42'",
                P::Offset {
                    offset: 42,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-offset >= '42'",
                P::Offset {
                    offset: 42,
                    inclusive: true,
                },
            ),
            (
                "amqp.annotation.x-opt-offset>='7'",
                P::Offset {
                    offset: 7,
                    inclusive: true,
                },
            ),
            (
                "AMQP.ANNOTATION.X-OPT-OFFSET > 3",
                P::Offset {
                    offset: 3,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-sequence-number > '5'",
                P::SequenceNumber {
                    sequence_number: 5,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-sequence-number >= '-1'",
                P::SequenceNumber {
                    sequence_number: -1,
                    inclusive: true,
                },
            ),
            (
                "amqp.annotation.x-opt-enqueued-time > '1700000000000'",
                P::EnqueuedTime {
                    utc_ms: 1_700_000_000_000,
                    inclusive: false,
                },
            ),
        ];
        for (s, want) in cases {
            assert_eq!(parse_selector(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn bad_selectors() {
        for s in [
            "",
            "amqp.annotation.x-opt-offset",
            "amqp.annotation.x-opt-offset < '4'",
            "amqp.annotation.x-opt-offset = '4'",
            "amqp.annotation.x-opt-offset > ''",
            "amqp.annotation.x-opt-offset > 'abc'",
            "amqp.annotation.x-opt-offset > '-5'",
            "amqp.annotation.x-opt-sequence-number > 'x'",
            "amqp.annotation.x-opt-partition-key > 'a'",
            "x-opt-offset > '1'",
        ] {
            assert!(parse_selector(s).is_err(), "{s}");
        }
    }

    fn filter(descriptor: Descriptor, value: Value) -> FilterSet {
        let mut f = OrderedMap::new();
        f.insert(
            Symbol::from("selector"),
            Value::Described(Box::new(Described { descriptor, value })),
        );
        f
    }

    #[test]
    fn filter_sets() {
        assert_eq!(start_position(None), Ok(EventPosition::Start));
        let by_name = filter(
            Descriptor::Name(Symbol::from(SELECTOR_FILTER_NAME)),
            Value::String("amqp.annotation.x-opt-offset > '9'".into()),
        );
        assert_eq!(
            start_position(Some(&by_name)),
            Ok(EventPosition::Offset {
                offset: 9,
                inclusive: false
            })
        );
        let by_code = filter(
            Descriptor::Code(SELECTOR_FILTER_CODE),
            Value::String("amqp.annotation.x-opt-offset > '@latest'".into()),
        );
        assert_eq!(start_position(Some(&by_code)), Ok(EventPosition::Latest));
        let not_string = filter(Descriptor::Code(SELECTOR_FILTER_CODE), Value::Long(1));
        assert!(start_position(Some(&not_string)).is_err());
        let other = filter(Descriptor::Name(Symbol::from("x:y")), Value::Null);
        assert_eq!(start_position(Some(&other)), Ok(EventPosition::Start));
    }
}
