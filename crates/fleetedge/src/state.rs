//! Layout of the state directory (`homedir`, default /var/lib/fleetedge) and private file
//! writes (0600, owner only; directories 0700).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the state directory itself (see [`StateDir::create`]); the systemd unit's
/// `StateDirectoryMode` matches it.
pub const ROOT_MODE: u32 = 0o750;

/// Paths inside the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    /// Creates the directory and its subdirectories. The root is 0750 so that members of the
    /// service user's group reach the management socket (`mgmt.sock`, 0660) for `fleetedge
    /// list|check|system status`; every file in it is 0600 and every subdirectory (keys,
    /// identities, certificates, logs, workload sockets, queue) 0700.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(ROOT_MODE))?;
        for d in [
            self.keys_dir(),
            self.identities_dir(),
            self.certs_dir(),
            self.logs_dir(),
        ] {
            create_private_dir(&d)?;
        }
        Ok(())
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// The device key copied by `config apply`.
    pub fn device_key_file(&self) -> PathBuf {
        self.keys_dir().join("device-id")
    }
    /// Cached module identities (keys included).
    pub fn identities_dir(&self) -> PathBuf {
        self.root.join("identities")
    }
    pub fn certs_dir(&self) -> PathBuf {
        self.root.join("certs")
    }
    pub fn edge_ca_cert(&self) -> PathBuf {
        self.certs_dir().join("edge-ca.pem")
    }
    pub fn edge_ca_key(&self) -> PathBuf {
        self.certs_dir().join("edge-ca.key")
    }
    /// The edge hub's server certificate chain (server certificate, then the edge CA),
    /// issued at each start.
    pub fn edge_hub_server_cert(&self) -> PathBuf {
        self.certs_dir().join("edge-hub-server.pem")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn module_log(&self, module: &str) -> PathBuf {
        self.logs_dir().join(format!("{}.log", safe_name(module)))
    }
    /// The provisioning result cache.
    pub fn provisioning_cache(&self) -> PathBuf {
        self.root.join("provisioning.json")
    }
    /// Summary of the last applied configuration (for `config apply` change reports).
    pub fn applied_config(&self) -> PathBuf {
        self.root.join("applied-config.json")
    }
    /// The last valid deployment (restored at start when the hub is unreachable).
    pub fn deployment_cache(&self) -> PathBuf {
        self.root.join("deployment.json")
    }
    /// The per-module workload sockets (0700).
    pub fn workload_dir(&self) -> PathBuf {
        self.root.join("mnt")
    }
    /// A module's own workload socket: `mnt/<module>.sock`.
    pub fn module_workload_socket(&self, module: &str) -> PathBuf {
        self.workload_dir()
            .join(format!("{}.sock", socket_file_name(module)))
    }
    pub fn mgmt_socket(&self) -> PathBuf {
        self.root.join("mgmt.sock")
    }
    /// The edge hub's store-and-forward queue.
    pub fn edge_hub_dir(&self) -> PathBuf {
        self.root.join("edgehub")
    }
}

/// Module names as file names (`$edgeHub` -> `_edgeHub`).
pub fn safe_name(module: &str) -> String {
    module
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Module names as socket file names, one-to-one (unlike [`safe_name`], so two modules never
/// share a socket): characters other than ASCII letters, digits, `-`, `_` and `.` are
/// percent-encoded (`$edgeHub` -> `%24edgeHub`).
pub fn socket_file_name(module: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    percent_encoding::utf8_percent_encode(module, KEEP).to_string()
}

pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `data` to `path` atomically (temp file + rename), readable by the owner only.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::new(dir.path().join("state"));
        s.create().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // the group reaches mgmt.sock; nothing else is open to it
        assert_eq!(mode(&s.root), 0o750);
        for d in [
            s.keys_dir(),
            s.identities_dir(),
            s.certs_dir(),
            s.logs_dir(),
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        let unit = include_str!("../../../packaging/systemd/fleetedge.service");
        assert!(
            unit.contains(&format!("StateDirectoryMode={ROOT_MODE:04o}")),
            "the unit's StateDirectoryMode must match"
        );
        let f = s.device_key_file();
        write_private(&f, b"k").unwrap();
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(safe_name("$edgeHub"), "_edgeHub");
    }

    #[test]
    fn socket_names_are_one_to_one() {
        let s = StateDir::new("/h");
        assert_eq!(
            s.module_workload_socket("sensor-1"),
            Path::new("/h/mnt/sensor-1.sock")
        );
        assert_eq!(socket_file_name("$edgeHub"), "%24edgeHub");
        assert_eq!(socket_file_name("a/b"), "a%2Fb");
        assert_ne!(socket_file_name("a$b"), socket_file_name("a_b"));
        assert_ne!(socket_file_name("a%24b"), socket_file_name("a$b"));
    }
}
