//! Dashboard sessions: who signed in, with which shared access policies, as a signed cookie.
//!
//! The cookie holds the policy names (hub and/or DPS), a fingerprint of the key each was
//! proven with, a CSRF token and an expiry, MACed with HMAC-SHA256 under a secret made at
//! start (sessions end when the server restarts). Every request checks the MAC in constant
//! time, the expiry, and that each policy still has a key with that fingerprint, so a policy
//! whose keys change signs its sessions out at once. No key is ever in the cookie.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "fleethub_ui";

/// The server secret that signs sessions.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// A fresh random key.
    pub fn generate() -> SessionKey {
        SessionKey(rand::random())
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// A policy the user proved a key of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPolicy {
    /// The policy's name.
    pub name: String,
    /// [`key_fingerprint`] of the key given at sign-in.
    pub key: String,
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// A hub shared access policy.
    pub hub: Option<SignedPolicy>,
    /// A DPS shared access policy.
    pub dps: Option<SignedPolicy>,
    /// The token every state-changing form carries.
    pub csrf: String,
    /// Unix seconds after which the session is over.
    pub expires: u64,
}

impl Session {
    /// A new session with a fresh CSRF token.
    pub fn new(hub: Option<SignedPolicy>, dps: Option<SignedPolicy>, expires: u64) -> Session {
        let csrf: [u8; 24] = rand::random();
        Session {
            hub,
            dps,
            csrf: B64.encode(csrf),
            expires,
        }
    }

    /// The cookie value: `base64url(json).base64url(mac)`.
    pub fn seal(&self, key: &SessionKey) -> String {
        let json = serde_json::to_vec(self).expect("a session serializes");
        let mac = key.mac(&json);
        format!("{}.{}", B64.encode(json), B64.encode(mac))
    }

    /// The session a cookie value holds, if its MAC is right and it has not expired.
    pub fn open(value: &str, key: &SessionKey, now: u64) -> Option<Session> {
        let (payload, mac) = value.split_once('.')?;
        let payload = B64.decode(payload).ok()?;
        let mac = B64.decode(mac).ok()?;
        if !bool::from(key.mac(&payload).ct_eq(&mac)) {
            return None;
        }
        let session: Session = serde_json::from_slice(&payload).ok()?;
        (session.expires > now).then_some(session)
    }

    /// Whether `token` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, token: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// A short, one-way fingerprint of a key (the first 16 bytes of its SHA-256), so a session can
/// name the key it was opened with without holding it.
pub fn key_fingerprint(key: &str) -> String {
    B64.encode(&Sha256::digest(key.as_bytes())[..16])
}

/// The `Set-Cookie` value that stores `sealed` for `max_age_secs`.
pub fn set_cookie(sealed: &str, max_age_secs: u64) -> String {
    format!(
        "{COOKIE}={sealed}; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_secs}"
    )
}

/// The `Set-Cookie` value that removes the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// The session cookie's value among a request's `Cookie` headers.
pub fn cookie_value<'a>(cookie_headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    cookie_headers
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires: u64) -> Session {
        Session::new(
            Some(SignedPolicy {
                name: "iothubowner".into(),
                key: key_fingerprint("k"),
            }),
            None,
            expires,
        )
    }

    #[test]
    fn a_sealed_session_opens_with_its_key_only() {
        let key = SessionKey::generate();
        let s = session(2_000);
        let sealed = s.seal(&key);
        assert_eq!(Session::open(&sealed, &key, 1_000), Some(s));
        assert_eq!(Session::open(&sealed, &SessionKey::generate(), 1_000), None);
    }

    #[test]
    fn an_expired_or_tampered_session_does_not_open() {
        let key = SessionKey::generate();
        let sealed = session(2_000).seal(&key);
        assert_eq!(Session::open(&sealed, &key, 2_000), None);
        let (payload, mac) = sealed.split_once('.').unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        json["expires"] = 9_999_999_999u64.into();
        let forged = format!("{}.{mac}", B64.encode(json.to_string()));
        assert_eq!(Session::open(&forged, &key, 1_000), None);
        assert_eq!(Session::open("garbage", &key, 1_000), None);
        assert_eq!(Session::open("a.b", &key, 1_000), None);
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let (a, b) = (session(1), session(1));
        assert_ne!(a.csrf, b.csrf);
        assert!(a.csrf_ok(&a.csrf.clone()));
        assert!(!a.csrf_ok(&b.csrf));
        assert!(!a.csrf_ok(""));
    }

    #[test]
    fn the_cookie_is_found_among_others_and_is_locked_down() {
        let headers = ["a=1; fleethub_ui=xyz.abc", "b=2"];
        assert_eq!(cookie_value(headers.into_iter()), Some("xyz.abc"));
        assert_eq!(cookie_value(["fleethub_uix=1"].into_iter()), None);
        let c = set_cookie("v", 60);
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/ui",
            "Max-Age=60",
        ] {
            assert!(c.contains(attr), "{c}");
        }
    }
}
