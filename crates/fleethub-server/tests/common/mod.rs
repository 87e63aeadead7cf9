//! Boots the real `fleethub` binary on free loopback ports with a temporary data directory.

#![allow(dead_code)]

pub mod device;

use fleethub_server::info::ServerInfo;
pub use fleethub_test_ports::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct ServerProcess {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub info: ServerInfo,
    pub mqtt_port: u16,
    pub https_port: u16,
    /// The AMQPS port (a free one unless ARGS name `--amqp-port`).
    pub amqp_port: u16,
    tmp_dir: Option<tempfile::TempDir>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleethub")
}

impl ServerProcess {
    pub fn start() -> ServerProcess {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let mut s = Self::start_in(&data_dir, free_port(), free_port());
        s.tmp_dir = Some(tmp);
        s
    }

    pub fn start_in(data_dir: &Path, mqtt_port: u16, https_port: u16) -> ServerProcess {
        Self::start_with(
            data_dir,
            mqtt_port,
            https_port,
            &[
                "--hub-hostname",
                "hub.fleethub.test",
                "--dps-hostname",
                "localhost",
            ],
        )
    }

    /// Starts a node (host names as [`ServerProcess::start_in`]) on the store at `store_url`
    /// (`--store-url`), with `extra` arguments (e.g. `--node-id`, `--nats-url`).
    pub fn start_on_store(data_dir: &Path, store_url: &str, extra: &[&str]) -> ServerProcess {
        std::fs::create_dir_all(data_dir).unwrap();
        let mut args = vec![
            "--hub-hostname",
            "hub.fleethub.test",
            "--dps-hostname",
            "localhost",
            "--store-url",
            store_url,
        ];
        args.extend_from_slice(extra);
        Self::start_with(data_dir, free_port(), free_port(), &args)
    }

    /// Starts a server (host names as [`ServerProcess::start_in`]) with `settings` (TOML) as
    /// its config file, in a new temporary directory that lives as long as the returned guard.
    pub fn start_with_config(settings: &str) -> (ServerProcess, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("fleethub.toml");
        std::fs::write(&config, settings).unwrap();
        let server = Self::start_with(
            &tmp.path().join("data"),
            free_port(),
            free_port(),
            &[
                "--hub-hostname",
                "hub.fleethub.test",
                "--dps-hostname",
                "localhost",
                "--config",
                config.to_str().unwrap(),
            ],
        );
        (server, tmp)
    }

    /// Starts `fleethub serve --bind 127.0.0.1 ARGS` on the given data directory and ports; its
    /// stderr goes to [`ServerProcess::log`], its stdout to [`ServerProcess::stdout`].
    pub fn start_with(
        data_dir: &Path,
        mqtt_port: u16,
        https_port: u16,
        args: &[&str],
    ) -> ServerProcess {
        let _ = std::fs::remove_file(data_dir.join("server-info.json"));
        let amqp_port = match args.iter().position(|a| *a == "--amqp-port") {
            Some(i) => args[i + 1].parse().expect("--amqp-port PORT"),
            None => free_port(),
        };
        let amqp_arg = amqp_port.to_string();
        let amqp_args: &[&str] = if args.contains(&"--amqp-port") {
            &[]
        } else {
            &["--amqp-port", &amqp_arg]
        };
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let out = std::fs::File::create(data_dir.with_extension("out")).unwrap();
        let mut child = Command::new(bin())
            .args(["serve", "--bind", "127.0.0.1"])
            .args(args)
            .args(amqp_args)
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--mqtt-port",
                &mqtt_port.to_string(),
                "--https-port",
                &https_port.to_string(),
            ])
            .env("FLEETHUB_LOG", "info")
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("start fleethub");
        let deadline = Instant::now() + Duration::from_secs(30);
        let info = loop {
            if let Ok(info) = ServerInfo::read(data_dir)
                && std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", https_port)).is_ok()
            {
                break info;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "server exited during start-up ({status}); log: {}",
                    Self::log_of(data_dir)
                );
            }
            assert!(
                Instant::now() < deadline,
                "server did not come up; log: {}",
                Self::log_of(data_dir)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        ServerProcess {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            info,
            mqtt_port,
            https_port,
            amqp_port,
            tmp_dir: None,
        }
    }

    fn log_of(data_dir: &Path) -> String {
        std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        Self::log_of(&self.data_dir)
    }

    /// What the server printed to stdout (the start-up banner).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("out")).unwrap_or_default()
    }

    /// kill -9: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.kill9();
        let tmp = self.tmp_dir.take();
        let mut s = Self::start_in(&self.data_dir.clone(), self.mqtt_port, self.https_port);
        s.tmp_dir = tmp;
        std::mem::swap(self, &mut s);
        s.child = None;
    }

    pub fn ca_pem(&self) -> PathBuf {
        PathBuf::from(&self.info.ca_cert_path)
    }

    /// Runs a `fleethub` admin command against this server; returns (status ok, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .expect("run fleethub");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
