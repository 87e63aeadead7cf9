//! Validation of enrollments and groups written through the service API.

use crate::dps::Error;
use crate::twin_limits::{self, Section};
use fleethub_api::{AttestationMechanism, InitialTwin};
use fleethub_core::keys;

/// Largest registration `payload` accepted (bytes of JSON).
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;

/// Fills in missing keys and checks the attestation is a usable symmetric-key one.
pub(crate) fn attestation(a: &mut AttestationMechanism, what: &str) -> Result<(), Error> {
    if !a.kind.eq_ignore_ascii_case("symmetricKey") {
        return Err(Error::invalid(format!(
            "{what}: attestation type '{}' is not supported; use \"symmetricKey\"",
            a.kind
        )));
    }
    a.kind = "symmetricKey".into();
    let sk = a.symmetric_key.get_or_insert_with(Default::default);
    for (name, slot) in [
        ("primaryKey", &mut sk.primary_key),
        ("secondaryKey", &mut sk.secondary_key),
    ] {
        match slot.as_deref() {
            None | Some("") => *slot = Some(keys::generate_key()),
            Some(k) => {
                keys::decode_key(k).map_err(|e| {
                    Error::invalid(format!(
                        "{what}: attestation.symmetricKey.{name} is invalid: {e}"
                    ))
                })?;
            }
        }
    }
    Ok(())
}

pub(crate) fn provisioning_status(s: &mut Option<String>, what: &str) -> Result<(), Error> {
    match s.as_deref() {
        None => {
            *s = Some("enabled".into());
            Ok(())
        }
        Some(v) if v.eq_ignore_ascii_case("enabled") || v.eq_ignore_ascii_case("disabled") => {
            *s = Some(v.to_ascii_lowercase());
            Ok(())
        }
        Some(v) => Err(Error::invalid(format!(
            "{what}: provisioningStatus '{v}' is invalid; use \"enabled\" or \"disabled\""
        ))),
    }
}

pub(crate) fn initial_twin(t: Option<&InitialTwin>, what: &str) -> Result<(), Error> {
    let Some(t) = t else { return Ok(()) };
    if let Some(tags) = &t.tags
        && !(tags.is_object() || tags.is_null())
    {
        return Err(Error::invalid(format!(
            "{what}: initialTwin.tags must be a JSON object"
        )));
    }
    if let Some(p) = &t.properties
        && let Some(d) = &p.desired
        && !(d.is_object() || d.is_null())
    {
        return Err(Error::invalid(format!(
            "{what}: initialTwin.properties.desired must be a JSON object"
        )));
    }
    let desired = t.properties.as_ref().and_then(|p| p.desired.as_ref());
    for (section, value) in [
        (Section::Tags, t.tags.as_ref()),
        (Section::Desired, desired),
    ] {
        if let Some(v) = value {
            twin_limits::check(section, v, 0)
                .map_err(|e| Error::invalid(format!("{what}: initialTwin.{e}")))?;
        }
    }
    Ok(())
}
