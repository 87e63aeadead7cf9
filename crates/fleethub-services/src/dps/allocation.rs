//! Allocation policies (docs/protocol-notes.md, "Allocation policies"): which of the linked
//! hubs a registration goes to, and the checks an enrollment's `allocationPolicy`, `iotHubs`
//! and `iotHubHostName` pass when it is written.

use super::Dps;
use super::linked_hubs::Candidate;
use crate::dps::Error;

/// What an enrollment or group says about its hub.
pub(super) struct Allocation<'a> {
    pub(super) policy: Option<&'a str>,
    pub(super) fixed: Option<&'a String>,
    pub(super) hubs: Option<&'a Vec<String>>,
}

/// The policies as Azure spells them. `geoLatency` allocates like `hashed` (fleethub knows no
/// locations).
const POLICIES: [&str; 4] = ["hashed", "geoLatency", "static", "custom"];

impl Dps {
    /// Checks and normalises (Azure's spelling) an enrollment's or group's allocation fields:
    /// a known policy, `iotHubs` naming linked hubs only, `static` with exactly one hub.
    pub(super) async fn check_allocation(
        &self,
        policy: &mut Option<String>,
        a_hubs: Option<&Vec<String>>,
        fixed: Option<&String>,
        custom: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<(), Error> {
        if let Some(p) = policy.as_deref() {
            let Some(known) = POLICIES.iter().find(|k| k.eq_ignore_ascii_case(p)) else {
                return Err(Error::invalid(format!(
                    "{what}: allocationPolicy '{p}' is unknown; use one of {}",
                    POLICIES.join(", ")
                )));
            };
            if *known == "custom" {
                super::webhook::check_definition(custom, what)?;
            }
            *policy = Some((*known).to_string());
        }
        let stored = self.stored_linked_hubs().await?;
        let linked: Vec<&str> = self
            .cfg
            .linked_hubs
            .iter()
            .map(String::as_str)
            .chain(stored.iter().map(|h| h.name.as_str()))
            .collect();
        let is_linked = |h: &str| linked.iter().any(|l| l.eq_ignore_ascii_case(h));
        let hubs = a_hubs.map_or(&[][..], Vec::as_slice);
        if let Some(unknown) = hubs.iter().find(|h| !is_linked(h)) {
            return Err(Error::invalid(format!(
                "{what}: iotHubs names '{unknown}', which is not linked to this DPS (linked: {}); link it first (fleethub dps linked-hub create)",
                linked.join(", ")
            )));
        }
        if policy.as_deref() == Some("static") {
            match (hubs, fixed) {
                ([_], _) => {}
                ([], Some(h)) if is_linked(h) => {}
                ([], Some(h)) => {
                    return Err(Error::invalid(format!(
                        "{what}: iotHubHostName '{h}' is not linked to this DPS (linked: {})",
                        linked.join(", ")
                    )));
                }
                ([], None) => {
                    return Err(Error::invalid(format!(
                        "{what}: allocationPolicy 'static' needs the hub in iotHubs"
                    )));
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{what}: allocationPolicy 'static' takes exactly one hub in iotHubs, got {}",
                        hubs.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The hub for a registration. `static`: the one hub named (checked when the enrollment was
/// written; a hub unlinked since fails the registration). Otherwise (`hashed`, `geoLatency`,
/// none = the instance's `hashed`): `iotHubHostName` when it names a candidate, else a stable
/// hash of the registration ID over the candidates (those of `iotHubs`, else all), weighted by
/// their `allocationWeight`.
pub(super) fn choose_hub(candidates: &[Candidate], reg: &str, a: &Allocation<'_>) -> String {
    if a.policy.is_some_and(|p| p.eq_ignore_ascii_case("static")) {
        // The hub named, else (the instance's `static` for an enrollment naming none) the
        // DPS's own hub, the first candidate.
        if let Some(h) = a
            .hubs
            .and_then(|l| l.first())
            .or(a.fixed)
            .or(candidates.first().map(|c| &c.name))
        {
            return h.clone();
        }
    }
    let (fixed, hubs) = (a.fixed, a.hubs);
    let is_candidate = |h: &String| candidates.iter().any(|c| c.name.eq_ignore_ascii_case(h));
    if let Some(h) = fixed.filter(|h| is_candidate(h)) {
        return h.clone();
    }
    let chosen: Vec<&Candidate> = match hubs {
        Some(list) if list.iter().any(is_candidate) => candidates
            .iter()
            .filter(|c| list.iter().any(|h| h.eq_ignore_ascii_case(&c.name)))
            .collect(),
        _ => candidates.iter().collect(),
    };
    let hash = reg
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let total: u64 = chosen.iter().map(|c| c.weight).sum();
    if total == 0 {
        // Every candidate weighs 0: evenly.
        return chosen
            .get((hash % chosen.len().max(1) as u64) as usize)
            .map(|c| c.name.clone())
            .unwrap_or_default();
    }
    let mut point = hash % total;
    for c in &chosen {
        if point < c.weight {
            return c.name.clone();
        }
        point -= c.weight;
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dps, enrollment, register};
    use super::*;
    use fleethub_api::LinkedHub;

    const CS2: &str = "HostName=hub2.fleethub.test;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=";

    #[test]
    fn static_takes_the_one_hub_named() {
        let hubs = [
            Candidate {
                name: "a.test".into(),
                weight: 1,
            },
            Candidate {
                name: "b.test".into(),
                weight: 1,
            },
        ];
        let named = vec!["b.test".to_string()];
        for n in 0..20 {
            let a = Allocation {
                policy: Some("static"),
                fixed: None,
                hubs: Some(&named),
            };
            assert_eq!(choose_hub(&hubs, &format!("d{n}"), &a), "b.test");
        }
    }

    #[tokio::test]
    async fn enrollments_name_known_policies_and_linked_hubs_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dps(&dir);
        d.put_linked_hub(LinkedHub {
            connection_string: CS2.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let key = fleethub_core::keys::generate_key();
        let with = |policy: Option<&str>, hubs: &[&str]| {
            let mut e = enrollment("alloc-1", &key);
            e.allocation_policy = policy.map(str::to_string);
            e.iot_hubs =
                (!hubs.is_empty()).then(|| hubs.iter().map(|h| (*h).to_string()).collect());
            e
        };
        for (e, want) in [
            (with(Some("roundRobin"), &[]), "unknown"),
            (
                with(Some("custom"), &[]),
                "needs customAllocationDefinition",
            ),
            (with(None, &["hub9.fleethub.test"]), "not linked"),
            (with(Some("static"), &[]), "needs the hub"),
            (
                with(Some("static"), &["hub.fleethub.test", "hub2.fleethub.test"]),
                "exactly one hub",
            ),
        ] {
            let err = d.put_enrollment("alloc-1", e, None).await.unwrap_err();
            assert!(
                matches!(&err, Error::Invalid(m) if m.contains(want)),
                "{want}: {err}"
            );
        }
        // Azure's spelling is kept; a static enrollment on the local hub assigns there.
        let saved = d
            .put_enrollment(
                "alloc-1",
                with(Some("STATIC"), &["HUB.fleethub.test"]),
                None,
            )
            .await
            .unwrap();
        assert_eq!(saved.allocation_policy.as_deref(), Some("static"));
        let rs = register(&d, "alloc-1", &key).await.unwrap();
        assert_eq!(
            rs.registration_state.unwrap().assigned_hub.as_deref(),
            Some("HUB.fleethub.test")
        );
    }
}
