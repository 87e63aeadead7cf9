//! Symmetric keys (docs/protocol-notes.md, "SAS tokens" and "Identifiers"): generation, decoding and the
//! DPS group-enrollment derived device key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Minimum decoded key length in bytes.
pub const MIN_KEY_BYTES: usize = 16;
/// Maximum decoded key length in bytes.
pub const MAX_KEY_BYTES: usize = 64;
/// Length in bytes of keys produced by [`generate_key`] (as DPS does).
pub const GENERATED_KEY_BYTES: usize = 32;

/// Why a symmetric key was rejected. Messages never include the key itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum KeyError {
    /// Not valid standard base64 (with `=` padding).
    #[error("key is not valid base64: expected standard base64 with '=' padding")]
    NotBase64,
    /// Valid base64 but of the wrong decoded size.
    #[error("key decodes to {len} bytes: it must decode to 16-64 bytes")]
    BadLength { len: usize },
}

/// Generates a new random key: base64 of 32 bytes from the OS RNG.
pub fn generate_key() -> String {
    let mut bytes = [0u8; GENERATED_KEY_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

/// Decodes a base64 key (standard alphabet, padded) and checks its length
/// is 16..=64 bytes. Surrounding ASCII whitespace is ignored.
pub fn decode_key(key_b64: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = STANDARD
        .decode(key_b64.trim_ascii())
        .map_err(|_| KeyError::NotBase64)?;
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
        return Err(KeyError::BadLength { len: bytes.len() });
    }
    Ok(bytes)
}

/// HMAC-SHA256 of `msg` under the decoded `key_b64`.
pub(crate) fn hmac_sha256(key_b64: &str, msg: &[u8]) -> Result<[u8; 32], KeyError> {
    let key = decode_key(key_b64)?;
    Ok(hmac_raw(&key, msg))
}

/// HMAC-SHA256 with an already decoded key.
pub(crate) fn hmac_raw(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Derives a group-enrollment device key:
/// `base64(HMAC-SHA256(b64decode(groupKey), utf8(registrationId)))`.
/// The registration ID is used exactly as given (case preserved).
pub fn derive_device_key(group_key_b64: &str, registration_id: &str) -> Result<String, KeyError> {
    let mac = hmac_sha256(group_key_b64, registration_id.as_bytes())?;
    Ok(STANDARD.encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_0_31: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn derived_key_vector_from_protocols_doc() {
        assert_eq!(
            derive_device_key(KEY_0_31, "dev-01").unwrap(),
            "luaCqHSmg758Dy2PlrF3Vl83Pcf53G9Nc/vj86Xl0d4="
        );
    }

    #[test]
    fn derived_key_openssl_kat() {
        assert_eq!(
            derive_device_key("Z3JvdXAta2V5LWZvci1rYXQtMDEyMzQ1Njc4OWFiY2Q=", "device-01").unwrap(),
            "s39cbH+/ghiBcSOsf9LYPXNvu0wJnqRdi3z3PBz5g18="
        );
    }

    #[test]
    fn derived_key_is_case_sensitive_in_registration_id() {
        let a = derive_device_key(KEY_0_31, "dev-01").unwrap();
        let b = derive_device_key(KEY_0_31, "DEV-01").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn derive_rejects_bad_group_key() {
        assert_eq!(
            derive_device_key("not base64!", "dev-01"),
            Err(KeyError::NotBase64)
        );
        assert_eq!(
            derive_device_key("AAAA", "dev-01"),
            Err(KeyError::BadLength { len: 3 })
        );
    }

    #[test]
    fn decode_key_accepts_valid_lengths() {
        assert_eq!(decode_key(KEY_0_31).unwrap(), (0u8..32).collect::<Vec<_>>());
        assert_eq!(decode_key(&STANDARD.encode([7u8; 16])).unwrap().len(), 16);
        assert_eq!(decode_key(&STANDARD.encode([7u8; 64])).unwrap().len(), 64);
        assert_eq!(
            decode_key(&format!("  {KEY_0_31}\n")).unwrap().len(),
            32,
            "surrounding whitespace is ignored"
        );
    }

    #[test]
    fn decode_key_rejects_bad_lengths() {
        assert_eq!(
            decode_key(&STANDARD.encode([7u8; 15])),
            Err(KeyError::BadLength { len: 15 })
        );
        assert_eq!(
            decode_key(&STANDARD.encode([7u8; 65])),
            Err(KeyError::BadLength { len: 65 })
        );
        assert_eq!(decode_key(""), Err(KeyError::BadLength { len: 0 }));
    }

    #[test]
    fn decode_key_rejects_non_base64() {
        assert_eq!(decode_key("!!!!"), Err(KeyError::NotBase64));
        // Missing padding.
        assert_eq!(
            decode_key(KEY_0_31.trim_end_matches('=')),
            Err(KeyError::NotBase64)
        );
        // URL-safe alphabet is not standard base64.
        assert_eq!(
            decode_key("luaCqHSmg758Dy2PlrF3Vl83Pcf53G9Nc_vj86Xl0d4="),
            Err(KeyError::NotBase64)
        );
        assert_eq!(decode_key("AAEC AwQF"), Err(KeyError::NotBase64));
    }

    #[test]
    fn error_messages_are_helpful() {
        assert_eq!(
            KeyError::BadLength { len: 3 }.to_string(),
            "key decodes to 3 bytes: it must decode to 16-64 bytes"
        );
        assert!(KeyError::NotBase64.to_string().contains("base64"));
    }

    #[test]
    fn generated_keys_are_32_bytes_and_distinct() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 44);
        assert_eq!(decode_key(&a).unwrap().len(), 32);
        assert_eq!(decode_key(&b).unwrap().len(), 32);
    }
}
