//! The names the server is known by: the DPS host, the hub host (the `assignedHub` of every
//! provisioned device) and the extra certificate names. Chosen on the first start, kept in the
//! store's settings and reused by every later start, so a plain `fleethub serve` never silently
//! serves (and issues its certificate for) other names than the devices use. Changing them takes
//! `--change-hostnames`.

use crate::config::Config;
use anyhow::{Context, Result};
use fleethub_store::Store;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Store setting holding [`HostNames`] as JSON.
pub const SETTING: &str = "host_names";

/// Used on a first start when the configuration names no host.
pub const DEFAULT_HOST: &str = "localhost";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostNames {
    pub dps: String,
    pub hub: String,
    /// Sorted, without duplicates.
    pub extra_sans: Vec<String>,
}

impl HostNames {
    fn new(dps: String, hub: String, mut extra_sans: Vec<String>) -> HostNames {
        extra_sans.sort();
        extra_sans.dedup();
        HostNames {
            dps,
            hub,
            extra_sans,
        }
    }

    /// The names the server certificate must carry.
    pub fn certificate_names(&self) -> Vec<String> {
        let mut names = vec![self.dps.clone(), self.hub.clone()];
        names.extend(self.extra_sans.iter().cloned());
        names
    }

    /// `dps_hostname 'a' -> 'b'`, ... for every name that differs.
    fn changes_to(&self, new: &HostNames) -> Vec<String> {
        let mut out = Vec::new();
        if self.dps != new.dps {
            out.push(format!("dps_hostname '{}' -> '{}'", self.dps, new.dps));
        }
        if self.hub != new.hub {
            out.push(format!("hub_hostname '{}' -> '{}'", self.hub, new.hub));
        }
        if self.extra_sans != new.extra_sans {
            out.push(format!(
                "extra_sans {:?} -> {:?}",
                self.extra_sans, new.extra_sans
            ));
        }
        out
    }
}

impl fmt::Display for HostNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DPS '{}', hub '{}'", self.dps, self.hub)?;
        if !self.extra_sans.is_empty() {
            write!(f, ", extra names {:?}", self.extra_sans)?;
        }
        Ok(())
    }
}

/// How this start's names relate to the stored ones.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// First start: the names were stored.
    Created,
    /// The stored names, unchanged.
    Reused,
    /// Changed on request (`--change-hostnames`); one entry per changed name.
    Changed(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "this data directory serves {stored}, and devices and service clients use those names; this \
     start asks for {}. Nothing was changed. To keep the stored names, remove the host names from \
     the flags, FLEETHUB_* variables and config file; to change them, start once with \
     --change-hostnames (the server certificate is re-issued for the new names; devices must \
     resolve and trust them, and devices assigned to the old hub name must be provisioned again)",
    stored.changes_to(wanted).join(", ")
)]
pub struct ChangeRefused {
    pub stored: HostNames,
    pub wanted: HostNames,
}

/// Pure decision: the configured names (unset ones taken from `stored`, or the defaults on a
/// first start) against the stored ones.
pub fn resolve(
    stored: Option<&HostNames>,
    cfg: &Config,
    change: bool,
) -> Result<(HostNames, Outcome), Box<ChangeRefused>> {
    let pick = |configured: &Option<String>, stored: Option<&String>| {
        configured
            .clone()
            .or_else(|| stored.cloned())
            .unwrap_or_else(|| DEFAULT_HOST.to_string())
    };
    let wanted = HostNames::new(
        pick(&cfg.dps_hostname, stored.map(|s| &s.dps)),
        pick(&cfg.hub_hostname, stored.map(|s| &s.hub)),
        cfg.extra_sans
            .clone()
            .or_else(|| stored.map(|s| s.extra_sans.clone()))
            .unwrap_or_default(),
    );
    let Some(stored) = stored else {
        return Ok((wanted, Outcome::Created));
    };
    let changes = stored.changes_to(&wanted);
    if changes.is_empty() {
        Ok((wanted, Outcome::Reused))
    } else if change {
        Ok((wanted, Outcome::Changed(changes)))
    } else {
        Err(Box::new(ChangeRefused {
            stored: stored.clone(),
            wanted,
        }))
    }
}

/// Data directories from before the names were stored: `server-info.json` names the DPS and hub
/// hosts, the development certificate's record its other names.
fn from_older_data_dir(data_dir: &Path) -> Option<HostNames> {
    let info = crate::info::ServerInfo::read(data_dir).ok()?;
    let extra = crate::certs::issued_names(&data_dir.join("certs"))
        .unwrap_or_default()
        .into_iter()
        .filter(|n| ![&info.dps_host, &info.hub_host].contains(&n))
        .filter(|n| !crate::certs::ALWAYS_IN_CERTIFICATE.contains(&n.as_str()))
        .collect();
    Some(HostNames::new(info.dps_host, info.hub_host, extra))
}

/// Loads, decides and stores this start's host names; logs what happened.
pub async fn load(
    store: &dyn Store,
    data_dir: &Path,
    cfg: &Config,
    change: bool,
) -> Result<(HostNames, Outcome)> {
    let saved = match store.get_setting(SETTING).await? {
        Some(s) => Some(
            serde_json::from_str::<HostNames>(&s)
                .with_context(|| format!("stored setting '{SETTING}' is unreadable"))?,
        ),
        None => None,
    };
    let stored = saved.clone().or_else(|| from_older_data_dir(data_dir));
    let (names, outcome) = resolve(stored.as_ref(), cfg, change)?;
    if saved.as_ref() != Some(&names) {
        store
            .put_setting(SETTING, &serde_json::to_string(&names)?)
            .await?;
    }
    match &outcome {
        Outcome::Created => tracing::info!("host names stored in the data directory: {names}"),
        Outcome::Reused => tracing::info!("host names from the data directory: {names}"),
        Outcome::Changed(changes) => tracing::warn!(
            "host names changed (--change-hostnames): {}; devices must use the new names",
            changes.join(", ")
        ),
    }
    Ok((names, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dps: Option<&str>, hub: Option<&str>, sans: Option<&[&str]>) -> Config {
        Config {
            dps_hostname: dps.map(Into::into),
            hub_hostname: hub.map(Into::into),
            extra_sans: sans.map(|s| s.iter().map(std::string::ToString::to_string).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn first_start_takes_the_configured_names_or_localhost() {
        let (n, o) = resolve(None, &cfg(None, Some("hub.x"), None), false).unwrap();
        assert_eq!(o, Outcome::Created);
        assert_eq!((n.dps.as_str(), n.hub.as_str()), ("localhost", "hub.x"));
        assert!(n.extra_sans.is_empty());
    }

    #[test]
    fn a_plain_start_reuses_the_stored_names() {
        let stored = HostNames::new("dps.x".into(), "hub.x".into(), vec!["10.0.0.5".into()]);
        let (n, o) = resolve(Some(&stored), &cfg(None, None, None), false).unwrap();
        assert_eq!((n, o), (stored.clone(), Outcome::Reused));
        // The same names given again (SANs in another order) are no change either.
        let (_, o) = resolve(
            Some(&stored),
            &cfg(
                Some("dps.x"),
                Some("hub.x"),
                Some(&["10.0.0.5", "10.0.0.5"]),
            ),
            false,
        )
        .unwrap();
        assert_eq!(o, Outcome::Reused);
    }

    #[test]
    fn other_names_are_refused_unless_asked_for() {
        let stored = HostNames::new("dps.x".into(), "hub.x".into(), vec![]);
        let e = resolve(Some(&stored), &cfg(None, Some("hub.y"), None), false).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("hub_hostname 'hub.x' -> 'hub.y'"), "{msg}");
        assert!(msg.contains("--change-hostnames"), "{msg}");
        assert!(!msg.contains("dps_hostname"), "only what differs: {msg}");
        let (n, o) = resolve(Some(&stored), &cfg(None, Some("hub.y"), None), true).unwrap();
        assert_eq!((n.dps.as_str(), n.hub.as_str()), ("dps.x", "hub.y"));
        assert_eq!(
            o,
            Outcome::Changed(vec!["hub_hostname 'hub.x' -> 'hub.y'".into()])
        );
    }

    #[tokio::test]
    async fn stored_in_the_settings_and_migrated_from_older_data_dirs() {
        let dir = tempfile::tempdir().unwrap();
        // An older data directory: server-info.json and a certificate, no stored names.
        crate::certs::ensure_dev_pki(
            &dir.path().join("certs"),
            &["dps.x".into(), "hub.x".into(), "10.0.0.5".into()],
        )
        .unwrap();
        crate::info::ServerInfo {
            id_scope: "0ne00000001".into(),
            dps_host: "dps.x".into(),
            hub_host: "hub.x".into(),
            ca_cert_path: String::new(),
            mqtt_port: 8883,
            https_port: 443,
            dps_service_connection_string: String::new(),
            hub_service_connection_string: String::new(),
            amqp_port: 5671,
            event_hub_compatible_endpoint: String::new(),
            event_hub_compatible_name: String::new(),
            event_hub_compatible_connection_string: String::new(),
            policies: Vec::new(),
        }
        .write(dir.path())
        .unwrap();
        let store = fleethub_store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let (n, o) = load(&store, dir.path(), &cfg(None, None, None), false)
            .await
            .unwrap();
        assert_eq!(o, Outcome::Reused);
        assert_eq!(
            n,
            HostNames::new("dps.x".into(), "hub.x".into(), vec!["10.0.0.5".into()])
        );
        // Now in the settings: still there without server-info.json.
        std::fs::remove_file(dir.path().join(crate::info::INFO_FILE)).unwrap();
        let (again, _) = load(&store, dir.path(), &cfg(None, None, None), false)
            .await
            .unwrap();
        assert_eq!(again, n);
        assert!(
            load(&store, dir.path(), &cfg(Some("dps.y"), None, None), false)
                .await
                .is_err()
        );
    }
}
