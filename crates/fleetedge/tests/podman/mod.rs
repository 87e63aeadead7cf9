//! A private Podman for tests: its Docker-compatible API (`podman system service`) on a socket
//! in a temporary directory, with its own storage (vfs), cgroupfs, file events, runc and
//! ulimits within this process's hard limits (docs/edge.md, "Podman in a container or CI").
//! Images are made without a registry: `podman import` of a root file system holding a few
//! host binaries and their shared libraries.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Podman {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    service: Child,
}

/// Whether `podman` is installed (CI installs it: .ci/run).
pub fn available() -> bool {
    Command::new("podman")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The hard limit of open files of this process (a container may not ask for more).
fn hard_nofile() -> u64 {
    let out = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(1024)
        .min(65536)
}

impl Podman {
    pub fn start() -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("fe-podman")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let nofile = hard_nofile();
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=4096:4096\"]\nlog_driver = \"k8s-file\"\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n\
                 [network]\nnetwork_config_dir = \"{}/networks\"\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/run\"\n",
                d.display()
            ),
        )
        .unwrap();
        let socket = d.join("podman.sock");
        let log = std::fs::File::create(d.join("service.log")).unwrap();
        let service = Command::new("podman")
            .envs(Self::env_of(d))
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start podman system service");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "podman system service did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Podman {
            dir,
            socket,
            service,
        }
    }

    fn env_of(d: &Path) -> [(&'static str, PathBuf); 2] {
        [
            ("CONTAINERS_CONF", d.join("containers.conf")),
            ("CONTAINERS_STORAGE_CONF", d.join("storage.conf")),
        ]
    }

    /// `podman <args>` on this instance's storage; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("podman")
            .envs(Self::env_of(self.dir.path()))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports an image `tag` whose root file system holds `binaries` (host paths, kept at
    /// the same paths) with their shared libraries, and `files` (host path, image path).
    pub fn import_image(&self, tag: &str, binaries: &[&str], files: &[(&Path, &str)]) {
        let root = self
            .dir
            .path()
            .join(format!("rootfs-{}", tag.replace(['/', ':'], "_")));
        let copy = |src: &Path, dst: &str| {
            let target = root.join(dst.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(src, &target)
                .unwrap_or_else(|e| panic!("copy {} into the image: {e}", src.display()));
        };
        for bin in binaries {
            let real = std::fs::canonicalize(bin).unwrap();
            copy(&real, bin);
            let ldd = Command::new("ldd").arg(&real).output().unwrap();
            for line in String::from_utf8_lossy(&ldd.stdout).lines() {
                // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
                let path = line
                    .split("=>")
                    .last()
                    .and_then(|p| p.split_whitespace().next())
                    .filter(|p| p.starts_with('/'));
                if let Some(p) = path {
                    copy(&std::fs::canonicalize(p).unwrap(), p);
                }
            }
        }
        for (src, dst) in files {
            copy(src, dst);
        }
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let tar = self
            .dir
            .path()
            .join(format!("{}.tar", tag.replace(['/', ':'], "_")));
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success(), "tar of the image root");
        self.cli(&["import", &tar.to_string_lossy(), tag]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // the API first (a supervisor still running after a failed assertion would create its
        // container again), then whatever containers are left, straight on the storage
        let _ = self.service.kill();
        let _ = self.service.wait();
        let _ = Command::new("podman")
            .envs(Self::env_of(self.dir.path()))
            .args(["rm", "--all", "--force", "--time", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
