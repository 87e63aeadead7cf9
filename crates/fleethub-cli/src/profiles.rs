//! Saved connections (`fleethub login`): named profiles in the user's configuration directory,
//! `$XDG_CONFIG_HOME/fleethub/profiles.toml` (else `~/.config/fleethub/profiles.toml`). The
//! file holds service keys: it is written owner-only (0600, directory 0700) and a file others can
//! read is refused. A profile's CA certificate is copied next to it (`ca/NAME.pem`) so that the
//! profile keeps working when the original file moves or sits in a root-only data directory.

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The profile used when none is named (`--profile`, `FLEETHUB_PROFILE`).
pub const DEFAULT_PROFILE: &str = "default";

/// File name inside the configuration directory.
const FILE_NAME: &str = "profiles.toml";

/// One saved connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Profile {
    /// DPS service connection string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dps_connection_string: Option<String>,
    /// Hub service connection string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_connection_string: Option<String>,
    /// CA certificate (PEM) to trust; `None` = the public web roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// `HOST:PORT` to dial instead of the connection strings' `HostName`:443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// All profiles, by name (the TOML file: one table per profile).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Profiles {
    pub by_name: BTreeMap<String, Profile>,
}

/// Where the profiles live: `{dir}/profiles.toml` and `{dir}/ca/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileStore {
    dir: PathBuf,
}

impl ProfileStore {
    /// The store in the user's configuration directory, from `XDG_CONFIG_HOME` (when absolute)
    /// or `HOME`, looked up through `env`.
    pub fn locate(env: impl Fn(&str) -> Option<String>) -> Result<ProfileStore> {
        let base = env("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                env("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| Path::new(&h).join(".config"))
            })
            .ok_or_else(|| {
                anyhow!("cannot find the configuration directory: neither XDG_CONFIG_HOME nor HOME is set")
            })?;
        Ok(ProfileStore::at(base.join("fleethub")))
    }

    /// The store in the process environment's configuration directory.
    pub fn from_env() -> Result<ProfileStore> {
        ProfileStore::locate(|k| std::env::var(k).ok())
    }

    /// A store in `dir` (tests, or an explicit location).
    pub fn at(dir: impl Into<PathBuf>) -> ProfileStore {
        ProfileStore { dir: dir.into() }
    }

    /// `profiles.toml`.
    pub fn file(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Where the CA copy of profile `name` goes.
    fn ca_path(&self, name: &str) -> PathBuf {
        self.dir.join("ca").join(format!("{name}.pem"))
    }

    /// Reads the profiles; none when the file does not exist. A file that others can read or
    /// write is refused (it holds keys).
    pub fn load(&self) -> Result<Profiles> {
        let path = self.file();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Profiles::default()),
            Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
        };
        let mode = fs::metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} holds service keys but others may read it (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
        let profiles: Profiles = toml::from_str(&text)
            .map_err(|e| anyhow!("{} is not a valid profiles file: {e}", path.display()))?;
        for name in profiles.by_name.keys() {
            check_name(name).with_context(|| format!("in {}", path.display()))?;
        }
        Ok(profiles)
    }

    /// Writes the profiles atomically, owner-only.
    pub fn save(&self, profiles: &Profiles) -> Result<()> {
        ensure_dir(&self.dir)?;
        let text = toml::to_string_pretty(profiles)?;
        let path = self.file();
        let tmp = self.dir.join(format!(".{FILE_NAME}.tmp"));
        write_owner_only(&tmp, text.as_bytes())?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    }

    /// Copies the CA certificate `from` into the store for profile `name`; returns the copy.
    pub fn copy_ca(&self, name: &str, from: &Path) -> Result<PathBuf> {
        let pem = fs::read_to_string(from)
            .with_context(|| format!("cannot read the CA certificate {}", from.display()))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            bail!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----); pass the CA that signed the server certificate (a local server's is DATA_DIR/certs/ca.pem)",
                from.display()
            );
        }
        let to = self.ca_path(name);
        ensure_dir(&self.dir)?;
        ensure_dir(&self.dir.join("ca"))?;
        let tmp = to.with_extension("pem.tmp");
        write_owner_only(&tmp, pem.as_bytes())?;
        fs::rename(&tmp, &to).with_context(|| format!("cannot write {}", to.display()))?;
        Ok(to)
    }

    /// Deletes the CA copy of profile `name`, if any.
    pub fn remove_ca(&self, name: &str) -> Result<()> {
        match fs::remove_file(self.ca_path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(anyhow!(
                "cannot delete {}: {e}",
                self.ca_path(name).display()
            )),
            _ => Ok(()),
        }
    }
}

/// Creates `dir` as 0700, or narrows an existing one to 0700.
fn ensure_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} owner-only", dir.display()))
}

/// Writes `bytes` to a new file `path` with mode 0600 (an existing file is replaced).
fn write_owner_only(path: &Path, bytes: &[u8]) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Profile names: 1-64 of `A-Z a-z 0-9 - _ .`, not starting with a dot.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        bail!(
            "'{name}' is not a profile name (1-64 letters, digits, '-', '_', '.'; not starting with '.')"
        )
    }
}

/// A connection string with its `SharedAccessKey` value replaced by `****` (for listings).
pub fn mask_key(connection_string: &str) -> String {
    connection_string
        .split(';')
        .map(|part| match part.split_once('=') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case("SharedAccessKey") => {
                format!("{k}=****")
            }
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}
