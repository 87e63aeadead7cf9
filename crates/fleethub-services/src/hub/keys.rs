//! Symmetric keys of device and module identities written through the service API.

use crate::hub::Error;
use fleethub_api::{AuthenticationMechanism, SymmetricKey};
use fleethub_core::keys;

/// Completes the keys of a create or update: a key that is given is validated; a missing or
/// empty one keeps the identity's current key on update (no silent rotation) and is
/// generated on create.
pub(crate) fn fill_keys(
    sk: &mut SymmetricKey,
    current: Option<&AuthenticationMechanism>,
) -> Result<(), Error> {
    let cur = current.and_then(|a| a.symmetric_key.as_ref());
    for (name, slot, existing) in [
        (
            "primaryKey",
            &mut sk.primary_key,
            cur.and_then(|c| c.primary_key.clone()),
        ),
        (
            "secondaryKey",
            &mut sk.secondary_key,
            cur.and_then(|c| c.secondary_key.clone()),
        ),
    ] {
        match slot.as_deref() {
            None | Some("") => {
                *slot = Some(
                    existing
                        .filter(|k| !k.is_empty())
                        .unwrap_or_else(keys::generate_key),
                );
            }
            Some(k) => {
                keys::decode_key(k).map_err(|e| {
                    Error::invalid(format!(
                        "authentication.symmetricKey.{name} is invalid: {e}"
                    ))
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_kept_or_validated() {
        let mut sk = SymmetricKey::default();
        fill_keys(&mut sk, None).unwrap();
        let first = sk.clone();
        assert!(keys::decode_key(first.primary_key.as_deref().unwrap()).is_ok());
        let current = AuthenticationMechanism {
            symmetric_key: Some(first.clone()),
            ..Default::default()
        };
        let mut update = SymmetricKey {
            primary_key: Some(String::new()),
            secondary_key: None,
        };
        fill_keys(&mut update, Some(&current)).unwrap();
        assert_eq!(update, first, "an update without keys keeps them");
        let mut bad = SymmetricKey {
            primary_key: Some("nope".into()),
            secondary_key: None,
        };
        assert!(
            fill_keys(&mut bad, None)
                .unwrap_err()
                .to_string()
                .contains("primaryKey")
        );
    }
}
