//! A private PostgreSQL server for tests (feature `throwaway`): `initdb` into a temporary
//! directory, `pg_ctl start` listening only on a unix socket in that directory, stopped and
//! removed on drop. The binaries come from `FLEETHUB_PG_BIN` or the newest
//! `/usr/lib/postgresql/*/bin` (Debian's `postgresql-15` package); when there are none,
//! [`Throwaway::start`] fails with a message naming the package (tests fail, they do not skip).
//! `initdb` refuses to run as root, so as root the server runs as `nobody` (`setpriv`) in a
//! directory handed to it; the tests connect over the socket as the `postgres` superuser
//! (trust authentication: only the socket's directory owner and root can reach it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running throwaway server.
pub struct Throwaway {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_nobody: bool,
    next_db: std::sync::atomic::AtomicU32,
}

/// Where the PostgreSQL server binaries are.
fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("FLEETHUB_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin: \
         install the Debian package postgresql-15 (apt-get install postgresql-15), or set \
         FLEETHUB_PG_BIN to the directory holding them"
            .to_string()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl Throwaway {
    /// Creates and starts a server; fails with a readable reason.
    pub fn start() -> Result<Throwaway, String> {
        let bin = find_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("fleethub-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let as_nobody = is_root();
        if as_nobody {
            let ok = Command::new("chown")
                .args(["nobody:nogroup"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("cannot chown {} to nobody", dir.path().display()));
            }
        }
        let server = Throwaway {
            dir,
            bin,
            as_nobody,
            next_db: std::sync::atomic::AtomicU32::new(0),
        };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data_dir(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        server.restart()?;
        Ok(server)
    }

    /// Starts the server (again, after [`Throwaway::stop`]).
    pub fn restart(&self) -> Result<(), String> {
        let socket_dir = self.socket_dir().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        let options = format!(
            "-c listen_addresses= -c unix_socket_directories={socket_dir} -c fsync=off -c max_connections=200"
        );
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        )
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// The directory with the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// The connection URL of database `name` (which may not exist yet).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgresql://postgres@localhost/{name}?host={}",
            self.socket_dir().display()
        )
    }

    /// Creates a fresh, empty database and returns its URL.
    pub async fn new_database(&self) -> Result<String, String> {
        let n = self
            .next_db
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("fleethub_test_{n}");
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connect to the throwaway server: {e}"))?;
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| format!("create database {name}: {e}"))?;
        drop(client);
        let _ = task.await;
        Ok(self.url(&name))
    }

    /// Stops the server at once (as a crash would).
    pub fn stop(&self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "immediate", "stop"],
        );
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.stop();
    }
}
