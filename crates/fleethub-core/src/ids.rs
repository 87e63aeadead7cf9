//! Identifier rules (docs/protocol-notes.md, "Identifiers").
//!
//! * DPS registration IDs and enrollment group IDs: case-insensitive, at most
//!   128 characters, `[A-Za-z0-9-._:]`, last character alphanumeric or `-`.
//! * Hub device and module IDs: case-sensitive, at most 128 characters, ASCII
//!   alphanumeric plus `- . % _ * ? ! ( ) , = @ $ ' :`. The characters `/`,
//!   `#` and `+` are legal in Azure on paper but collide with MQTT topic
//!   syntax, so fleethub rejects them (as well as spaces and non-ASCII).

/// Maximum length (in characters) of every identifier validated here.
pub const MAX_ID_LEN: usize = 128;

const REGISTRATION_ID: &str = "registration ID";
const ENROLLMENT_GROUP_ID: &str = "enrollment group ID";
const DEVICE_ID: &str = "device ID";
const MODULE_ID: &str = "module ID";

const DPS_ALLOWED: &str = "only letters A-Z/a-z, digits 0-9, '-', '.', '_', ':' are allowed";
const HUB_ALLOWED: &str =
    "only ASCII letters, digits and - . % _ * ? ! ( ) , = @ $ ' : are allowed";

/// Why an identifier was rejected. Messages say what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum IdError {
    /// The identifier is the empty string.
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    /// The identifier is longer than allowed.
    #[error("{kind} is {len} characters long: at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    /// The identifier contains a character that is not allowed
    /// (`pos` is the 0-based character index).
    #[error(
        "{kind} '{id}' contains {ch:?} at position {pos}: {}",
        allowed_chars(kind)
    )]
    InvalidChar {
        kind: &'static str,
        id: String,
        ch: char,
        pos: usize,
    },
    /// The last character is not allowed in final position.
    #[error("{kind} '{id}' ends with {ch:?}: the last character must be a letter, a digit or '-'")]
    BadLastChar {
        kind: &'static str,
        id: String,
        ch: char,
    },
}

/// Validates a DPS registration ID (individual enrollment or group member).
pub fn validate_registration_id(id: &str) -> Result<(), IdError> {
    validate_dps_id(REGISTRATION_ID, id)
}

/// Validates a DPS enrollment group ID (same rule as registration IDs).
pub fn validate_enrollment_group_id(id: &str) -> Result<(), IdError> {
    validate_dps_id(ENROLLMENT_GROUP_ID, id)
}

/// Validates an IoT Hub device ID.
pub fn validate_device_id(id: &str) -> Result<(), IdError> {
    validate_hub_id(DEVICE_ID, id)
}

/// Validates an IoT Hub module ID (`$edgeAgent` and `$edgeHub` pass).
pub fn validate_module_id(id: &str) -> Result<(), IdError> {
    validate_hub_id(MODULE_ID, id)
}

/// Human description of the allowed characters for an identifier kind.
fn allowed_chars(kind: &str) -> &'static str {
    if kind == DEVICE_ID || kind == MODULE_ID {
        HUB_ALLOWED
    } else {
        DPS_ALLOWED
    }
}

fn validate_dps_id(kind: &'static str, id: &str) -> Result<(), IdError> {
    check_common(kind, id, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')
    })?;
    match id.chars().last() {
        Some(ch) if !(ch.is_ascii_alphanumeric() || ch == '-') => Err(IdError::BadLastChar {
            kind,
            id: shorten(id),
            ch,
        }),
        _ => Ok(()),
    }
}

fn validate_hub_id(kind: &'static str, id: &str) -> Result<(), IdError> {
    check_common(kind, id, |c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '-' | '.'
                    | '%'
                    | '_'
                    | '*'
                    | '?'
                    | '!'
                    | '('
                    | ')'
                    | ','
                    | '='
                    | '@'
                    | '$'
                    | '\''
                    | ':'
            )
    })
}

fn check_common(
    kind: &'static str,
    id: &str,
    is_allowed: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = id.chars().count();
    if len > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len,
            max: MAX_ID_LEN,
        });
    }
    match id.chars().enumerate().find(|&(_, c)| !is_allowed(c)) {
        Some((pos, ch)) => Err(IdError::InvalidChar {
            kind,
            id: shorten(id),
            ch,
            pos,
        }),
        None => Ok(()),
    }
}

/// Copy of the identifier for error messages, with control characters
/// escaped so a hostile ID cannot forge log lines.
fn shorten(id: &str) -> String {
    id.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_id_basic() {
        assert_eq!(validate_registration_id("dev-01"), Ok(()));
        assert_eq!(validate_registration_id("Dev.Sensor_1:a"), Ok(()));
        assert_eq!(validate_registration_id("DEV-01"), Ok(()));
        assert_eq!(validate_registration_id("a"), Ok(()));
        assert_eq!(validate_registration_id("-"), Ok(()));
    }

    #[test]
    fn registration_id_length() {
        let ok = "a".repeat(128);
        assert_eq!(validate_registration_id(&ok), Ok(()));
        let bad = "a".repeat(129);
        assert_eq!(
            validate_registration_id(&bad),
            Err(IdError::TooLong {
                kind: "registration ID",
                len: 129,
                max: 128
            })
        );
    }

    #[test]
    fn registration_id_empty() {
        let err = validate_registration_id("").unwrap_err();
        assert_eq!(
            err,
            IdError::Empty {
                kind: "registration ID"
            }
        );
        assert_eq!(err.to_string(), "registration ID must not be empty");
    }

    #[test]
    fn registration_id_bad_chars() {
        let err = validate_registration_id("bad!id~x").unwrap_err();
        match &err {
            IdError::InvalidChar { ch, pos, .. } => {
                assert_eq!(*ch, '!');
                assert_eq!(*pos, 3);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "registration ID 'bad!id~x' contains '!' at position 3: \
             only letters A-Z/a-z, digits 0-9, '-', '.', '_', ':' are allowed"
        );
        for bad in ["a b", "a/b", "a#b", "a+b", "é", "a\u{0}b", "a%b", "a$b"] {
            assert!(
                matches!(
                    validate_registration_id(bad),
                    Err(IdError::InvalidChar { .. })
                ),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn registration_id_last_char() {
        let err = validate_registration_id("dev.").unwrap_err();
        assert_eq!(
            err,
            IdError::BadLastChar {
                kind: "registration ID",
                id: "dev.".into(),
                ch: '.'
            }
        );
        assert!(err.to_string().contains("last character"));
        assert!(validate_registration_id("dev_").is_err());
        assert!(validate_registration_id("dev:").is_err());
        assert_eq!(validate_registration_id("dev-"), Ok(()));
        assert_eq!(validate_registration_id("dev9"), Ok(()));
    }

    #[test]
    fn enrollment_group_id_uses_same_rule_with_own_kind() {
        assert_eq!(validate_enrollment_group_id("group-A.1"), Ok(()));
        let err = validate_enrollment_group_id("g!").unwrap_err();
        assert!(err.to_string().starts_with("enrollment group ID 'g!'"));
        assert!(validate_enrollment_group_id("g.").is_err());
        assert!(validate_enrollment_group_id(&"g".repeat(129)).is_err());
    }

    #[test]
    fn device_id_rules() {
        for ok in [
            "dev-01",
            "Dev.01",
            "a%b_c*d?e!f(g)h,i=j@k$l'm:n",
            "trailing.",
            "x",
        ] {
            assert_eq!(validate_device_id(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(validate_device_id(&"d".repeat(128)), Ok(()));
        assert!(matches!(
            validate_device_id(&"d".repeat(129)),
            Err(IdError::TooLong { len: 129, .. })
        ));
        for bad in ["a/b", "a#b", "a+b", "a b", "dév", "a~b", "a\nb", "a\"b"] {
            assert!(
                matches!(validate_device_id(bad), Err(IdError::InvalidChar { .. })),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(
            validate_device_id(""),
            Err(IdError::Empty { kind: "device ID" })
        );
        let msg = validate_device_id("a/b").unwrap_err().to_string();
        assert!(msg.starts_with("device ID 'a/b' contains '/' at position 1"));
    }

    #[test]
    fn module_id_rules() {
        assert_eq!(validate_module_id("$edgeAgent"), Ok(()));
        assert_eq!(validate_module_id("$edgeHub"), Ok(()));
        assert_eq!(validate_module_id("my-module"), Ok(()));
        let err = validate_module_id("m/1").unwrap_err();
        assert!(err.to_string().starts_with("module ID"));
    }

    #[test]
    fn position_is_character_index_and_control_chars_are_escaped() {
        let err = validate_device_id("ab\ncd").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("device ID 'ab\\ncd' contains '\\n' at position 2: {HUB_ALLOWED}")
        );
        // Multi-byte characters count as one position.
        match validate_registration_id("éé!").unwrap_err() {
            IdError::InvalidChar { pos, ch, .. } => assert_eq!((pos, ch), (0, 'é')),
            other => panic!("unexpected {other:?}"),
        }
        // Length is counted in characters.
        assert!(matches!(
            validate_device_id(&"é".repeat(100)),
            Err(IdError::InvalidChar { .. })
        ));
    }
}
