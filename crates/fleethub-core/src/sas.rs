//! Shared access signature tokens (docs/protocol-notes.md, "SAS tokens").
//!
//! ```text
//! SharedAccessSignature sr={resource}&sig={urlenc(base64(HMAC-SHA256(key, sr + "\n" + se)))}&se={unix}[&skn={policy}]
//! ```
//!
//! The signed string is the `sr` *as sent* (SDKs disagree on how they encode
//! it), so verification tries the literal value first and a few
//! re-encodings after it. Authorisation compares the percent-decoded
//! resource case-insensitively by path-segment prefix.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use std::fmt::Write as _;
use subtle::{Choice, ConstantTimeEq};

use crate::keys::{KeyError, decode_key, hmac_raw, hmac_sha256};
use crate::pct;

/// Literal token prefix (followed by at least one space).
pub const PREFIX: &str = "SharedAccessSignature";

/// Longest excerpt of client-supplied text quoted in messages.
const LOG_MAX: usize = 200;

/// Standard alphabet, padding optional (some clients strip `=`).
const SIG_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a SAS token was rejected. Messages never include keys or signatures.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SasError {
    /// The token text is not a well-formed SAS token; the string says why.
    #[error("malformed SAS token: {0}")]
    Malformed(String),
    /// The token's `se` lies in the past (beyond the allowed skew).
    #[error("token expired {expired_secs_ago} s ago: check the device clock")]
    Expired { expired_secs_ago: u64 },
    /// The key to verify with is unusable.
    #[error("cannot verify SAS token: {0}")]
    BadKey(#[from] KeyError),
}

/// A parsed SAS token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` exactly as it appears in the token (still percent-encoded if the
    /// client encoded it).
    pub sr_raw: String,
    /// Signature bytes: percent-decoded (`+` stays `+`) then base64-decoded.
    pub sig: Vec<u8>,
    /// `se` exactly as it appears in the token.
    pub se_raw: String,
    /// Expiry, unix seconds.
    pub expiry: u64,
    /// Key (policy) name; `None` when absent or empty (`skn=`).
    pub skn: Option<String>,
}

impl SasToken {
    /// Parses `SharedAccessSignature k=v&k=v...`.
    ///
    /// Fields are unordered and separated by `&` or whitespace (the C SDK
    /// tolerates spaces); each is split at its first `=`. `sr`, `sig` and
    /// `se` are required, `skn` is optional, unknown keys are ignored and
    /// duplicate known keys are rejected.
    pub fn parse(token: &str) -> Result<SasToken, SasError> {
        let body = token
            .trim()
            .strip_prefix(PREFIX)
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_whitespace()))
            .ok_or_else(|| {
                malformed(
                    "missing prefix \"SharedAccessSignature \": expected \
                     'SharedAccessSignature sr=...&sig=...&se=...'",
                )
            })?;

        let mut sr = None;
        let mut sig = None;
        let mut se = None;
        let mut skn = None;
        for part in body
            .split(|c: char| c == '&' || c.is_ascii_whitespace())
            .filter(|p| !p.is_empty())
        {
            let Some((key, value)) = part.split_once('=') else {
                return Err(malformed(format!(
                    "field '{}' has no '=': expected key=value pairs separated by '&'",
                    // a few characters only: a signature whose `sig=` is missing lands here
                    pct::for_log(part, 8)
                )));
            };
            let slot = match key {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(malformed(format!("field '{key}' appears more than once")));
            }
        }

        let sr_raw = required(sr, "sr", "the resource URI")?;
        let sig_raw = required(sig, "sig", "the signature")?;
        let se_raw = required(se, "se", "the expiry")?;

        if !se_raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(format!(
                "se '{}' is not a number: expected unix seconds",
                pct::for_log(se_raw, 40)
            )));
        }
        let expiry = se_raw.parse::<u64>().map_err(|_| {
            malformed(format!(
                "se '{}' is too large for unix seconds",
                pct::for_log(se_raw, 40)
            ))
        })?;

        let sig = SIG_ENGINE.decode(pct::decode(sig_raw)).map_err(|_| {
            malformed("sig is not valid base64 (after percent-decoding)".to_owned())
        })?;

        let skn = skn.map(pct::decode_lossy).filter(|s| !s.is_empty());

        Ok(SasToken {
            sr_raw: sr_raw.to_owned(),
            sig,
            se_raw: se_raw.to_owned(),
            expiry,
            skn,
        })
    }

    /// The resource: `sr` percent-decoded (lossy UTF-8, `+` stays `+`).
    pub fn resource(&self) -> String {
        pct::decode_lossy(&self.sr_raw)
    }

    /// Fails with [`SasError::Expired`] when `expiry + skew_secs < now_unix`.
    pub fn check_expiry(&self, now_unix: u64, skew_secs: u64) -> Result<(), SasError> {
        if self.expiry.saturating_add(skew_secs) < now_unix {
            Err(SasError::Expired {
                expired_secs_ago: now_unix - self.expiry,
            })
        } else {
            Ok(())
        }
    }

    /// Verifies the signature in constant time (per candidate).
    ///
    /// The signed string is `sr + "\n" + se` where `sr` is tried as: the
    /// literal `sr_raw`; `pctdecode(sr_raw)`; that re-encoded (everything
    /// but unreserved characters) with uppercase hex; and with lowercase
    /// hex. Returns `true` if any candidate matches.
    pub fn verify_signature(&self, key_b64: &str) -> Result<bool, SasError> {
        let key = decode_key(key_b64)?;
        let mut matched = Choice::from(0);
        for sr in self.sr_candidates() {
            let mut msg = sr;
            msg.push(b'\n');
            msg.extend_from_slice(self.se_raw.as_bytes());
            let expected = hmac_raw(&key, &msg);
            matched |= expected.as_slice().ct_eq(&self.sig);
        }
        Ok(matched.into())
    }

    /// Verifies the signature as Event Hubs and Service Bus clients sign it: the HMAC key is
    /// the key text's UTF-8 bytes, not the base64-decoded key (their SAS convention; IoT Hub's
    /// is [`SasToken::verify_signature`]). Same candidates for `sr`, constant time per
    /// candidate.
    pub fn verify_signature_text_key(&self, key_text: &str) -> bool {
        let mut matched = Choice::from(0);
        for sr in self.sr_candidates() {
            let mut msg = sr;
            msg.push(b'\n');
            msg.extend_from_slice(self.se_raw.as_bytes());
            let expected = hmac_raw(key_text.as_bytes(), &msg);
            matched |= expected.as_slice().ct_eq(&self.sig);
        }
        matched.into()
    }

    /// Distinct spellings of `sr` that a client may have signed.
    fn sr_candidates(&self) -> Vec<Vec<u8>> {
        let decoded = pct::decode(&self.sr_raw);
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(4);
        for candidate in [
            self.sr_raw.as_bytes().to_vec(),
            pct::encode_upper(&decoded).into_bytes(),
            pct::encode_lower(&decoded).into_bytes(),
            decoded,
        ] {
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
        out
    }

    /// Whether this token authorises `expected_resource` (a logical
    /// resource such as `0ne0000abcd/registrations/dev-01` or
    /// `hub.example/devices/d1`).
    ///
    /// ASCII case-insensitive path-segment prefix match: the token's
    /// resource must equal the expected resource or be a prefix of it
    /// ending at a `/` (so `hub/devices/d1` covers
    /// `hub/devices/d1/modules/m1` but not `hub/devices/d10`). Trailing `/`
    /// on either side is ignored. The decoded resource is compared first,
    /// then the literal `sr` (for IDs containing `%`).
    pub fn covers(&self, expected_resource: &str) -> bool {
        segment_prefix(&self.resource(), expected_resource)
            || segment_prefix(&self.sr_raw, expected_resource)
    }
}

/// `true` when `prefix` equals `full` or is a `/`-segment prefix of it,
/// ignoring ASCII case and trailing slashes. Empty resources cover nothing.
fn segment_prefix(prefix: &str, full: &str) -> bool {
    let p = prefix.trim_end_matches('/').to_ascii_lowercase();
    let f = full.trim_end_matches('/').to_ascii_lowercase();
    if p.is_empty() || f.is_empty() {
        return false;
    }
    f == p || (f.starts_with(&p) && f.as_bytes()[p.len()] == b'/')
}

fn malformed(msg: impl Into<String>) -> SasError {
    SasError::Malformed(msg.into())
}

fn required<'a>(v: Option<&'a str>, key: &str, what: &str) -> Result<&'a str, SasError> {
    match v {
        None => Err(malformed(format!("missing field '{key}' ({what})"))),
        Some("") => Err(malformed(format!("field '{key}' ({what}) is empty"))),
        Some(v) => Ok(v),
    }
}

/// Signs exactly `sr_as_sent + "\n" + expiry`; returns the base64
/// signature (not URL-encoded).
pub fn sign(key_b64: &str, sr_as_sent: &str, expiry: u64) -> Result<String, KeyError> {
    let mac = hmac_sha256(key_b64, format!("{sr_as_sent}\n{expiry}").as_bytes())?;
    Ok(STANDARD.encode(mac))
}

/// Builds a token the way the Python SDK does: `sr` percent-encoded with
/// nothing safe (`/` becomes `%2F`), `sig` URL-encoded, fields in the order
/// `sr, sig, se[, skn]` (an empty `skn` is omitted).
pub fn build_token(
    resource: &str,
    key_b64: &str,
    expiry: u64,
    skn: Option<&str>,
) -> Result<String, KeyError> {
    let sr = pct::encode_upper(resource.as_bytes());
    let sig = sign(key_b64, &sr, expiry)?;
    let mut token = format!(
        "{PREFIX} sr={sr}&sig={}&se={expiry}",
        pct::encode_upper(sig.as_bytes())
    );
    if let Some(name) = skn.filter(|n| !n.is_empty()) {
        token.push_str("&skn=");
        token.push_str(&pct::encode_upper(name.as_bytes()));
    }
    Ok(token)
}

/// One-line explanation, for operator logs, of how the token's resource
/// relates to the expected one. Never includes keys or signatures.
pub fn describe_resource_mismatch(token: &SasToken, expected_resource: &str) -> String {
    let resource = token.resource();
    let shown = pct::for_log(&resource, LOG_MAX);
    let wanted = pct::for_log(expected_resource, LOG_MAX);
    if token.covers(expected_resource) {
        return format!(
            "token resource '{shown}' covers '{wanted}': the resource is fine, \
             check the key and the expiry"
        );
    }
    let mut msg = format!("token signed for resource '{shown}' but the request is for '{wanted}'");
    msg.push_str(&mismatch_hint(&resource, expected_resource));
    if token.sr_raw != resource {
        let _ = write!(
            msg,
            " (sr as sent: '{}')",
            pct::for_log(&token.sr_raw, LOG_MAX)
        );
    }
    msg
}

fn mismatch_hint(resource: &str, expected: &str) -> String {
    let r = resource.trim_end_matches('/').to_ascii_lowercase();
    let e = expected.trim_end_matches('/').to_ascii_lowercase();
    if r.is_empty() {
        return ": the token resource is empty".to_owned();
    }
    if r.starts_with(&format!("{e}/")) {
        return ": the token is scoped to a narrower resource than the request needs".to_owned();
    }
    if e.starts_with(&r) {
        return ": the token resource is a prefix of the request but does not end at a '/' \
                segment boundary"
            .to_owned();
    }
    let rs: Vec<&str> = r.split('/').collect();
    let es: Vec<&str> = e.split('/').collect();
    if rs[0] != es[0] {
        return format!(
            ": the first segment differs ('{}' vs '{}'): wrong host name or ID scope?",
            pct::for_log(rs[0], LOG_MAX),
            pct::for_log(es[0], LOG_MAX)
        );
    }
    if rs.len() == es.len() && rs[..rs.len() - 1] == es[..es.len() - 1] {
        return format!(
            ": only the last segment differs ('{}' vs '{}'): wrong device or registration ID?",
            pct::for_log(rs[rs.len() - 1], LOG_MAX),
            pct::for_log(es[es.len() - 1], LOG_MAX)
        );
    }
    String::new()
}

#[cfg(test)]
mod tests;
