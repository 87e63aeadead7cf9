//! The continuation token of `/devices/query` (`x-ms-continuation`): where the next page
//! starts. Opaque to clients: base64url of a small JSON object holding the registry's own
//! continuation, the last module returned of a device whose modules did not all fit, and how
//! many results earlier pages returned (for `SELECT TOP n`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueryToken {
    /// The registry's continuation: devices after it are still to be read (`None`: from the
    /// first device).
    #[serde(default, rename = "d", skip_serializing_if = "Option::is_none")]
    pub devices: Option<String>,
    /// `FROM devices.modules`: device `device` (the first still to be read, unless it was
    /// deleted meanwhile) has its modules up to and including `after_module` returned already.
    #[serde(default, rename = "i", skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, rename = "m", skip_serializing_if = "Option::is_none")]
    pub after_module: Option<String>,
    /// Results returned by earlier pages.
    #[serde(default, rename = "n")]
    pub returned: u64,
}

/// Longest token accepted (they are far shorter).
const MAX_TOKEN: usize = 4096;

impl QueryToken {
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// `None` when the text is not a token this server handed out.
    pub(crate) fn decode(text: &str) -> Option<QueryToken> {
        if text.len() > MAX_TOKEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let t = QueryToken {
            devices: Some("abc".into()),
            device: Some("dev-1".into()),
            after_module: Some("m1".into()),
            returned: 7,
        };
        assert_eq!(QueryToken::decode(&t.encode()), Some(t));
        assert_eq!(
            QueryToken::decode(&QueryToken::default().encode()),
            Some(QueryToken::default())
        );
        assert_eq!(QueryToken::decode("not-a-continuation"), None);
        assert_eq!(QueryToken::decode(&"A".repeat(5000)), None);
    }
}
