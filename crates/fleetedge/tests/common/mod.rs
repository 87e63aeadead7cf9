//! End-to-end harness: a real `fleethub serve` process on free loopback ports and the real
//! `fleetedge` binary, each in a temporary directory.

#![allow(dead_code)]

pub use fleethub_test_ports::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A free port on 127.0.0.4 (the edge hub listener in tests).
pub fn free_edge_port() -> u16 {
    fleethub_test_ports::free_port_on(std::net::Ipv4Addr::new(127, 0, 0, 4).into())
}

pub fn fleetedge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleetedge"))
}

static BUILD: Once = Once::new();

/// The `fleethub` server binary next to `fleetedge` (built once if missing).
pub fn fleethub_bin() -> PathBuf {
    let path = fleetedge_bin().with_file_name("fleethub");
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "fleethub-server", "--bin", "fleethub"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for the fleethub server");
        assert!(status.success(), "building fleethub failed");
    });
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// Polls `f` every 100 ms until it returns `Some`, at most `secs` seconds.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Server {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub mqtt_port: u16,
    pub https_port: u16,
    pub info: Value,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        Self::start_on(&dir.join("hub-data"), free_port(), free_port())
    }

    pub fn start_on(data_dir: &Path, mqtt_port: u16, https_port: u16) -> Server {
        std::fs::create_dir_all(data_dir).unwrap();
        let _ = std::fs::remove_file(data_dir.join("server-info.json"));
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .unwrap();
        let child = Command::new(fleethub_bin())
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--hub-hostname",
                "localhost",
                "--dps-hostname",
                "localhost",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--mqtt-port", &mqtt_port.to_string()])
            .args(["--https-port", &https_port.to_string()])
            .args(["--amqp-port", &free_port().to_string()])
            .env("FLEETHUB_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start fleethub");
        let info_path = data_dir.join("server-info.json");
        let info = wait_for(30, "the fleethub server", || {
            let info: Value = serde_json::from_slice(&std::fs::read(&info_path).ok()?).ok()?;
            std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).ok()?;
            std::net::TcpStream::connect(("127.0.0.1", https_port)).ok()?;
            Some(info)
        });
        Server {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            mqtt_port,
            https_port,
            info,
        }
    }

    pub fn ca_pem(&self) -> PathBuf {
        PathBuf::from(self.info["caCertPath"].as_str().unwrap())
    }

    pub fn id_scope(&self) -> String {
        self.info["idScope"].as_str().unwrap().to_string()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a `fleethub` admin command; panics on failure; returns stdout parsed as JSON.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let out = Command::new(fleethub_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .expect("run fleethub");
        assert!(
            out.status.success(),
            "fleethub {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "fleethub {args:?} output is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs a `fleethub` admin command that prints nothing in particular; panics on failure.
    pub fn cli_ok(&self, args: &[&str]) {
        let out = Command::new(fleethub_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .expect("run fleethub");
        assert!(
            out.status.success(),
            "fleethub {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Like [`Self::cli_json`], `None` when the command fails.
    pub fn try_cli_json(&self, args: &[&str]) -> Option<Value> {
        let out = Command::new(fleethub_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The module twin of `module` on `device`.
    pub fn module_twin(&self, device: &str, module: &str) -> Value {
        self.cli_json(&[
            "hub",
            "device-twin",
            "show",
            "--device-id",
            device,
            "--module-id",
            module,
        ])
    }

    pub fn set_deployment(&self, device: &str, desired: &Value) -> Value {
        self.cli_json(&[
            "hub",
            "device-twin",
            "update",
            "--device-id",
            device,
            "--module-id",
            "$edgeAgent",
            "--desired",
            &desired.to_string(),
        ])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `fleetedge run` process with its configuration and state in a temporary directory.
pub struct Edge {
    pub child: Option<Child>,
    pub config: PathBuf,
    pub home: PathBuf,
    pub log: PathBuf,
}

impl Edge {
    pub fn new(dir: &Path) -> Edge {
        Edge {
            child: None,
            config: dir.join("config.toml"),
            home: dir.join("home"),
            log: dir.join("fleetedge.log"),
        }
    }

    /// Runs a `fleetedge` subcommand with this configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(fleetedge_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run fleetedge")
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "fleetedge {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `fleetedge config init --manual-connection-string CS` for `server`, with the edge hub
    /// on a free port of 127.0.0.4; returns that port.
    pub fn init_manual(&self, server: &Server, cs: &str) -> u16 {
        let port = free_edge_port();
        let listen = format!("127.0.0.4:{port}");
        self.cli_ok(&[
            "config",
            "init",
            "--manual-connection-string",
            cs,
            "--trust-bundle",
            server.ca_pem().to_str().unwrap(),
            "--hostname",
            "localhost",
            "--homedir",
            self.home.to_str().unwrap(),
            "--hub-mqtt-port",
            &server.mqtt_port.to_string(),
            "--hub-https-port",
            &server.https_port.to_string(),
            "--edge-hub-listen",
            &listen,
        ]);
        port
    }

    /// Appends fast test settings for the agent.
    pub fn append_config(&self, text: &str) {
        let mut c = std::fs::read_to_string(&self.config).unwrap();
        c.push_str(text);
        std::fs::write(&self.config, c).unwrap();
    }

    pub fn start(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(fleetedge_bin())
            .arg("run")
            .env("FLEETEDGE_CONFIG", &self.config)
            .env("FLEETEDGE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start fleetedge");
        self.child = Some(child);
        let sock = self.home.join("mgmt.sock");
        wait_for(60, "the fleetedge management socket", || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        });
    }

    /// SIGTERM and wait (bounded).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `fleetedge list` rows as (name, status, description).
    pub fn list(&self) -> Vec<(String, String, String)> {
        let out = self.cli(&["list"]);
        if !out.status.success() {
            return Vec::new();
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default().to_string();
        let status_col = header.find("STATUS").unwrap_or(0);
        let desc_col = header.find("DESCRIPTION").unwrap_or(0);
        let config_col = header.find("CONFIG").unwrap_or(0);
        lines
            .map(|l| {
                let cut =
                    |a: usize, b: usize| l.get(a..b.min(l.len())).unwrap_or("").trim().to_string();
                (
                    cut(0, status_col),
                    cut(status_col, desc_col),
                    cut(desc_col, config_col),
                )
            })
            .collect()
    }

    pub fn status_of(&self, module: &str) -> Option<String> {
        self.list()
            .into_iter()
            .find(|(n, _, _)| n == module)
            .map(|(_, s, _)| s)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        // SIGTERM: the daemon stops its module processes (their own process groups).
        self.stop();
    }
}
