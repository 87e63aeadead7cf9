//! Linux `/proc` readers: a server's resident memory and CPU time, whole-machine CPU, and
//! finding the server process (by its command line and data directory, or by the port it
//! listens on). Everything returns `None` when the information is not available (another
//! OS, a process that went away, no permission).

use std::path::{Path, PathBuf};

/// `VmRSS` of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field_kib(&status, "VmRSS:").map(|kib| kib * 1024)
}

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time of a process in nanoseconds: the sum over its live threads of
/// `/proc/PID/task/TID/schedstat` (time on CPU), or, if larger, the process total
/// `utime + stime` of `/proc/PID/stat` (clock ticks; it also counts threads that exited).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let mut sum = 0u64;
    let mut any = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let p = t.path().join("schedstat");
            if let Some(ns) = std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                sum += ns;
                any = true;
            }
        }
    }
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_utime_stime(&s))
        .map(|t| t * 10_000_000); // USER_HZ = 100 on Linux
    match (any, ticks) {
        (true, Some(t)) => Some(sum.max(t)),
        (true, None) => Some(sum),
        (false, t) => t,
    }
}

/// `(utime, stime)` of a process in nanoseconds: its CPU time in user space and in the kernel
/// (`/proc/PID/stat`, clock ticks of 10 ms, so read it over windows of seconds).
pub fn user_kernel_ns(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (utime, stime) = stat_utime_and_stime(&stat)?;
    Some((utime * 10_000_000, stime * 10_000_000)) // USER_HZ = 100 on Linux
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line.
fn stat_utime_stime(stat: &str) -> Option<u64> {
    stat_utime_and_stime(stat).map(|(utime, stime)| utime + stime)
}

/// `(utime, stime)` (fields 14 and 15) of a `/proc/PID/stat` line.
fn stat_utime_and_stime(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is parenthesized and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// Whole-machine CPU counters from `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MachineCpu {
    pub busy: u64,
    pub steal: u64,
    pub total: u64,
}

impl MachineCpu {
    pub fn read() -> Option<MachineCpu> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        parse_machine_cpu(&stat)
    }

    /// (busy cores, stolen cores) between `self` (earlier) and `later`, over `seconds`.
    pub fn cores_until(&self, later: &MachineCpu, seconds: f64) -> (f64, f64) {
        if seconds <= 0.0 {
            return (0.0, 0.0);
        }
        let ticks = |a: u64, b: u64| b.saturating_sub(a) as f64 / 100.0 / seconds;
        (ticks(self.busy, later.busy), ticks(self.steal, later.steal))
    }
}

fn parse_machine_cpu(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some(MachineCpu {
        busy,
        steal: get(7),
        total: busy + idle,
    })
}

/// CPU time (clock ticks, `utime + stime`) and command name of every process.
pub fn all_process_ticks() -> Vec<(u32, String, u64)> {
    pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let name = stat[stat.find('(')? + 1..stat.rfind(')')?].to_string();
            Some((pid, name, stat_utime_stime(&stat)?))
        })
        .collect()
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The data directory a `fleethub serve` command line uses (flag, then environment, then
/// the default), not yet resolved against the process's working directory.
fn serve_data_dir(args: &[String], env_data_dir: Option<String>) -> Option<PathBuf> {
    let exe = Path::new(args.first()?).file_name()?.to_str()?;
    if exe != "fleethub" || !args.iter().skip(1).any(|a| a == "serve") {
        return None;
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--data-dir" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--data-dir=") {
            return Some(PathBuf::from(v));
        }
    }
    Some(PathBuf::from(
        env_data_dir.unwrap_or_else(|| "./fleethub-data".into()),
    ))
}

fn env_var(pid: u32, name: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    raw.split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .find_map(|kv| kv.strip_prefix(&prefix).map(str::to_string))
}

/// The `fleethub serve` process whose data directory is `data_dir`.
pub fn find_fleethub_server(data_dir: &Path) -> Option<u32> {
    let want = std::fs::canonicalize(data_dir).ok()?;
    let me = std::process::id();
    pids().into_iter().filter(|p| *p != me).find(|&pid| {
        let Some(args) = cmdline(pid) else {
            return false;
        };
        let Some(dir) = serve_data_dir(&args, env_var(pid, "FLEETHUB_DATA_DIR")) else {
            return false;
        };
        let dir = if dir.is_relative() {
            match std::fs::read_link(format!("/proc/{pid}/cwd")) {
                Ok(cwd) => cwd.join(dir),
                Err(_) => return false,
            }
        } else {
            dir
        };
        std::fs::canonicalize(dir).is_ok_and(|d| d == want)
    })
}

/// Inodes of the TCP sockets listening on `port` (IPv4 and IPv6).
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let lport = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "0A"
                && lport == Some(port)
                && let Ok(inode) = inode.parse()
            {
                out.push(inode);
            }
        }
    }
    out
}

/// The process that owns a TCP socket listening on `port`.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    pids().into_iter().find(|pid| {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().map(|s| wanted.iter().any(|w| w == s)))
                .unwrap_or(false)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tfleethub\nVmPeak:\t  100 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(status_field_kib(status, "VmRSS:"), Some(20480));
        let stat = "123 (my (odd) name) S 1 123 123 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 3";
        assert_eq!(stat_utime_stime(stat), Some(300));
        assert_eq!(stat_utime_and_stime(stat), Some((250, 50)));
        let m = parse_machine_cpu("cpu  100 5 50 1000 10 1 2 7 0 0\ncpu0 1 2 3\n").unwrap();
        assert_eq!(m.busy, 165);
        assert_eq!(m.steal, 7);
        assert_eq!(m.total, 1175);
        let later = MachineCpu {
            busy: 365,
            steal: 27,
            total: 0,
        };
        assert_eq!(m.cores_until(&later, 1.0), (2.0, 0.2));
    }

    #[test]
    fn serve_command_lines() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            serve_data_dir(
                &args("/x/fleethub serve --data-dir /tmp/d --bind 127.0.0.1"),
                None
            ),
            Some(PathBuf::from("/tmp/d"))
        );
        assert_eq!(
            serve_data_dir(&args("fleethub serve --data-dir=rel"), None),
            Some(PathBuf::from("rel"))
        );
        assert_eq!(
            serve_data_dir(&args("fleethub serve"), Some("/env".into())),
            Some(PathBuf::from("/env"))
        );
        assert_eq!(
            serve_data_dir(&args("fleethub serve"), None),
            Some(PathBuf::from("./fleethub-data"))
        );
        assert_eq!(
            serve_data_dir(&args("fleethub info --data-dir /tmp/d"), None),
            None
        );
        assert_eq!(serve_data_dir(&args("mosquitto -c serve"), None), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_ns(me).is_some());
        assert!(MachineCpu::read().unwrap().total > 0);
        assert!(all_process_ticks().iter().any(|(p, _, _)| *p == me));
    }

    #[test]
    fn finds_the_owner_of_a_listening_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
    }
}
