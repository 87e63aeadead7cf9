//! A running worker: a task in this process or a child process speaking the worker's
//! stdio protocol.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Launcher;
use super::worker::{self, ConnectedReport, WorkerEvent, WorkerResult, WorkerSpec};

/// Bound on a worker process exiting after its result.
const EXIT_GRACE: Duration = Duration::from_secs(20);

/// A running worker.
pub(super) enum WorkerHandle {
    InProcess {
        connected: Option<oneshot::Receiver<ConnectedReport>>,
        go: Option<oneshot::Sender<()>>,
        result: Option<oneshot::Receiver<WorkerResult>>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    },
    Exec {
        child: Box<Child>,
        stdin: Option<ChildStdin>,
        lines: Lines<BufReader<ChildStdout>>,
    },
}

impl WorkerHandle {
    pub(super) async fn start(
        launcher: &Launcher,
        spec: WorkerSpec,
    ) -> anyhow::Result<WorkerHandle> {
        match launcher {
            Launcher::InProcess => {
                let (ctx, crx) = oneshot::channel();
                let (gtx, grx) = oneshot::channel::<()>();
                let (rtx, rrx) = oneshot::channel();
                let task = tokio::spawn(worker::run_worker(
                    spec,
                    ctx,
                    async move { grx.await.is_ok() },
                    rtx,
                ));
                Ok(WorkerHandle::InProcess {
                    connected: Some(crx),
                    go: Some(gtx),
                    result: Some(rrx),
                    task,
                })
            }
            Launcher::Exec { program, args } => {
                let mut child = tokio::process::Command::new(program)
                    .args(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting worker {}", program.display()))?;
                let mut stdin = child.stdin.take().context("worker stdin")?;
                let stdout = child.stdout.take().context("worker stdout")?;
                let mut line = serde_json::to_vec(&spec)?;
                line.push(b'\n');
                stdin.write_all(&line).await?;
                stdin.flush().await?;
                Ok(WorkerHandle::Exec {
                    child: Box::new(child),
                    stdin: Some(stdin),
                    lines: BufReader::new(stdout).lines(),
                })
            }
        }
    }

    pub(super) fn pid(&self) -> Option<u32> {
        match self {
            WorkerHandle::InProcess { .. } => Some(std::process::id()),
            WorkerHandle::Exec { child, .. } => child.id(),
        }
    }

    async fn next_event(
        lines: &mut Lines<BufReader<ChildStdout>>,
        until: Instant,
    ) -> anyhow::Result<WorkerEvent> {
        let line = tokio::time::timeout_at(until, lines.next_line())
            .await
            .context("the worker did not report in time")??
            .context("the worker exited without reporting (see its stderr)")?;
        serde_json::from_str(&line).with_context(|| format!("bad worker line: {line}"))
    }

    pub(super) async fn connected(&mut self, until: Instant) -> anyhow::Result<ConnectedReport> {
        match self {
            WorkerHandle::InProcess { connected, .. } => {
                let rx = connected.take().context("already waited")?;
                tokio::time::timeout_at(until, rx)
                    .await
                    .context("the worker did not report in time")?
                    .context("the worker failed before connecting")
            }
            WorkerHandle::Exec { lines, .. } => match Self::next_event(lines, until).await? {
                WorkerEvent::Connected(r) => Ok(r),
                other @ WorkerEvent::Result(_) => bail!("unexpected worker event {other:?}"),
            },
        }
    }

    pub(super) async fn go(&mut self) {
        match self {
            WorkerHandle::InProcess { go, .. } => {
                if let Some(go) = go.take() {
                    let _ = go.send(());
                }
            }
            WorkerHandle::Exec { stdin, .. } => {
                if let Some(s) = stdin.as_mut() {
                    let _ = s.write_all(b"go\n").await;
                    let _ = s.flush().await;
                }
            }
        }
    }

    pub(super) async fn result(&mut self, until: Instant) -> anyhow::Result<WorkerResult> {
        match self {
            WorkerHandle::InProcess { result, .. } => {
                let rx = result.take().context("already waited")?;
                tokio::time::timeout_at(until, rx)
                    .await
                    .context("the worker did not report in time")?
                    .context("the worker failed before reporting")
            }
            WorkerHandle::Exec { lines, .. } => match Self::next_event(lines, until).await? {
                WorkerEvent::Result(r) => Ok(r),
                other @ WorkerEvent::Connected(_) => bail!("unexpected worker event {other:?}"),
            },
        }
    }

    /// Waits (bounded) for the worker to disconnect and end; kills a late child.
    pub(super) async fn finish(self) -> Option<String> {
        match self {
            WorkerHandle::InProcess { task, .. } => {
                match tokio::time::timeout(EXIT_GRACE, task).await {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(e))) => Some(format!("worker failed: {e:#}")),
                    Ok(Err(e)) => Some(format!("worker task failed: {e}")),
                    Err(_) => Some("worker did not end in time".into()),
                }
            }
            WorkerHandle::Exec {
                mut child, stdin, ..
            } => {
                drop(stdin);
                match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                    Ok(Ok(s)) if s.success() => None,
                    Ok(Ok(s)) => Some(format!("worker exited with {s}")),
                    Ok(Err(e)) => Some(format!("waiting for the worker: {e}")),
                    Err(_) => {
                        let _ = child.kill().await;
                        Some("worker did not exit in time: killed".into())
                    }
                }
            }
        }
    }
}
