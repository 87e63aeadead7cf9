use crate::cli::check::{Check, CheckContext, CheckResult};

/// Free space in the state directory for the edge hub's message queue.
pub struct DiskSpace;

/// Free bytes of the file system holding `dir` (POSIX `df -Pk`).
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let avail_kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(avail_kib * 1024)
}

#[async_trait::async_trait]
impl Check for DiskSpace {
    fn id(&self) -> &'static str {
        "queue-disk-space"
    }
    fn description(&self) -> &'static str {
        "enough disk space for the store-and-forward queue"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        let mut dir = c.homedir.clone();
        while !dir.exists() {
            match dir.parent() {
                Some(p) => dir = p.to_path_buf(),
                None => break,
            }
        }
        let Some(free) = free_bytes(&dir) else {
            return CheckResult::skipped(format!(
                "cannot measure the free space of {}",
                dir.display()
            ));
        };
        let need = c.edge_hub.queue_max_bytes;
        let mib = |b: u64| b / (1024 * 1024);
        if free >= need {
            CheckResult::ok(format!(
                "{} MiB free, queue bound {} MiB",
                mib(free),
                mib(need)
            ))
        } else {
            CheckResult::warn(
                format!(
                    "{} MiB free in {} but the queue may use {} MiB",
                    mib(free),
                    dir.display(),
                    mib(need)
                ),
                "free disk space or lower [edge_hub] queue_max_bytes",
            )
        }
    }
}
