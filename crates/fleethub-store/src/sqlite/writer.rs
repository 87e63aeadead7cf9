//! The store's writer thread: the one connection that writes. It runs the queued write jobs in
//! transactions of up to [`MAX_BATCH`] jobs (group commit: one WAL commit for all of them) and
//! answers each job once its transaction has committed. A job runs alone in its transaction
//! when nothing else is queued (a failure rolls the transaction back), else inside a savepoint
//! of its own, so that a failing job undoes only its own changes. Telemetry appends queued next
//! to each other run as one append in one savepoint (one sequence lookup per partition, not
//! per message); when that fails, each of them runs again in a savepoint of its own, so every
//! caller's messages are still stored all or none. While a transaction holds nothing but
//! appends, they run without savepoints: a failing one rolls back the transaction, and the
//! appends it held are stored again, each in a savepoint of its own.

use super::telemetry::{self, Inserts};
use crate::{Result, StoreError, TelemetryMessage};
use rusqlite::{Connection, Statement};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;
/// Longest a transaction waits for more telemetry appends before it commits (see
/// [`GroupWindow`]).
const GROUP_WINDOW: Duration = Duration::from_millis(1);
/// How often the queue is looked at while waiting.
const GROUP_SLICE: Duration = Duration::from_micros(100);

/// What a generic job does once its transaction has ended (given the commit error, if any).
pub(super) type Completion = Box<dyn FnOnce(Option<&str>) + Send>;
/// A generic write job: it runs as [`Slot`] says and returns what to do once the transaction
/// has ended and whether it succeeded.
pub(super) type RunJob = Box<dyn FnOnce(&Connection, Slot<'_, '_>) -> (Completion, bool) + Send>;
/// The stored messages (numbered) and the partition count.
pub(super) type AppendReply = Result<(Vec<TelemetryMessage>, u32)>;

/// A telemetry append (see [`super::pool::Pool::append_telemetry`]).
pub(super) struct Append {
    pub messages: Vec<TelemetryMessage>,
    /// The partition count as the caller knew it (0: not known yet).
    pub known: u32,
    pub reply: oneshot::Sender<AppendReply>,
}

pub(super) enum Job {
    Run(RunJob),
    Append(Append),
}

/// How a job runs.
pub(super) enum Slot<'a, 'c> {
    /// Alone in its transaction: a failure rolls the transaction back.
    Alone,
    /// Beside other jobs, inside a savepoint of its own.
    Savepoint(&'a mut TxControl<'c>),
    /// Not at all: no transaction could be started.
    Refused(String),
}

/// What to answer once the transaction has ended.
enum Done {
    Run(Completion),
    Append(oneshot::Sender<AppendReply>, AppendReply),
}

impl Done {
    fn finish(self, commit_err: Option<&str>) {
        match self {
            Done::Run(c) => c(commit_err),
            Done::Append(reply, r) => {
                let r = match commit_err {
                    None => r,
                    Some(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                };
                let _ = reply.send(r);
            }
        }
    }
}

/// The writer's transaction control, prepared once (parsing it for every job showed in
/// profiles).
pub(super) struct TxControl<'c> {
    begin: Statement<'c>,
    commit: Statement<'c>,
    rollback: Statement<'c>,
    savepoint: Statement<'c>,
    release: Statement<'c>,
    rollback_to: Statement<'c>,
}

impl<'c> TxControl<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(TxControl {
            begin: conn.prepare("BEGIN IMMEDIATE")?,
            commit: conn.prepare("COMMIT")?,
            rollback: conn.prepare("ROLLBACK")?,
            savepoint: conn.prepare("SAVEPOINT job")?,
            release: conn.prepare("RELEASE job")?,
            rollback_to: conn.prepare("ROLLBACK TO job")?,
        })
    }

    /// Runs `f` so that when it fails, only its own changes are undone.
    pub(super) fn in_savepoint<T>(
        &mut self,
        conn: &Connection,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        self.savepoint.execute([])?;
        match f(conn) {
            Ok(v) => {
                self.release.execute([])?;
                Ok(v)
            }
            Err(e) => {
                self.rollback_to.execute([])?;
                self.release.execute([])?;
                Err(e)
            }
        }
    }
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "the writer thread owns the connection and closes it when the queue ends"
)]
pub(super) fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>) {
    keep_savepoint_journal_in_memory(&conn);
    let mut tx = match TxControl::prepare(&conn) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "store: cannot prepare the writer's statements");
            while let Some(job) = rx.blocking_recv() {
                refuse(&conn, job, &e.to_string());
            }
            return;
        }
    };
    let mut inserts = Inserts::new(&conn);
    let mut queued: Vec<Job> = Vec::new();
    let mut done: Vec<Done> = Vec::new();
    let mut window = GroupWindow::default();
    while let Some(first) = rx.blocking_recv() {
        if let Err(e) = tx.begin.execute([]) {
            tracing::error!(error = %e, "store: cannot begin a transaction");
            refuse(&conn, first, &e.to_string());
            continue;
        }
        queued.push(first);
        let mut state = TxState::new();
        let mut taken = 1 + take_queued(&mut rx, &mut queued, MAX_BATCH - 1);
        // A job alone in its transaction needs no savepoint: when it fails, rolling back the
        // transaction undoes exactly its changes. Jobs that join later get savepoints.
        if let [_] = queued.as_slice() {
            let job = queued.pop().expect("one job");
            state.only_appends = matches!(job, Job::Append(_));
            if !run_alone(&conn, &mut inserts, job, &mut done) {
                let _ = tx.rollback.execute([]);
                done.drain(..).for_each(|d| d.finish(None));
                continue;
            }
            taken += take_queued(&mut rx, &mut queued, MAX_BATCH - taken);
        }
        // Run what is queued (and what queues up meanwhile), then, while the group window
        // wants more appends, look at the queue again every slice.
        let mut until = None;
        let appends = loop {
            while !queued.is_empty() {
                run_queued(
                    &conn,
                    &mut tx,
                    &mut inserts,
                    &mut queued,
                    &mut done,
                    &mut state,
                );
                taken += take_queued(&mut rx, &mut queued, MAX_BATCH - taken);
            }
            let appends = appends_in(&done);
            let until = *until.get_or_insert_with(|| Instant::now() + GROUP_WINDOW);
            if !window.wants_more(appends, taken) || Instant::now() >= until {
                break appends;
            }
            std::thread::sleep(GROUP_SLICE);
            taken += take_queued(&mut rx, &mut queued, MAX_BATCH - taken);
        };
        window.committed(appends);
        let err = match state.doomed {
            Some(e) => Some(e),
            None => tx.commit.execute([]).err().map(|e| e.to_string()),
        };
        if err.is_some() {
            let _ = tx.rollback.execute([]);
            tracing::error!(error = ?err, "store: commit failed");
        }
        done.drain(..).for_each(|d| d.finish(err.as_deref()));
    }
}

/// Keeps the savepoints' journal in memory. Every savepoint (one per job beside others, one
/// per run of appends) records the first change it makes to a page by copying the page into
/// the transaction's statement journal, which SQLite by default moves to a temporary file
/// once it holds 64 KiB and from then on writes with two `pwrite`s per page, even though the
/// journal is only ever read by a `ROLLBACK TO` within the same transaction. Under steady
/// telemetry those writes were about half of the writer's `pwrite`s (docs/benchmarks.md, "Issue
/// 11, fourth pass"). In memory, releasing a savepoint truncates the journal again, so it holds
/// at most the pages one savepoint changed. A failure leaves SQLite's default (the journal on
/// disk): slower, not wrong.
fn keep_savepoint_journal_in_memory(conn: &Connection) {
    if let Err(e) = conn.pragma_update(None, "temp_store", "MEMORY") {
        tracing::warn!(error = %e, "store: cannot keep the writer's savepoint journal in memory");
    }
}

/// Adaptive group commit for telemetry. At one publish in flight per device, the devices
/// whose appends a commit answered send their next message only after it: committing at
/// once gives each commit the few that happened to arrive meanwhile, and every commit costs
/// the same (WAL frames of every page it changed, two `pwrite`s each). So a transaction
/// holding telemetry appends waits, up to [`GROUP_WINDOW`], until it holds as many appends
/// as the previous commit did: the devices answered last time have come back. A commit of
/// a single append (a lone device) does not make the next one wait, so a device sending
/// alone gets its acknowledgement as before; nothing waits when no telemetry is in the
/// transaction.
#[derive(Default)]
struct GroupWindow {
    /// Appends in the previous commit.
    last: usize,
}

impl GroupWindow {
    /// Whether a transaction holding `appends` appends (of `taken` jobs) waits for more.
    fn wants_more(&self, appends: usize, taken: usize) -> bool {
        appends > 0 && self.last > 1 && appends < self.last && taken < MAX_BATCH
    }

    fn committed(&mut self, appends: usize) {
        self.last = appends;
    }
}

fn appends_in(done: &[Done]) -> usize {
    done.iter()
        .filter(|d| matches!(d, Done::Append(..)))
        .count()
}

/// Moves up to `room` queued jobs into `queued`; returns how many.
fn take_queued(rx: &mut mpsc::Receiver<Job>, queued: &mut Vec<Job>, room: usize) -> usize {
    let mut n = 0;
    while n < room {
        match rx.try_recv() {
            Ok(job) => {
                queued.push(job);
                n += 1;
            }
            Err(_) => break,
        }
    }
    n
}

fn refuse(conn: &Connection, job: Job, e: &str) {
    match job {
        Job::Run(f) => f(conn, Slot::Refused(e.to_string())).0(None),
        Job::Append(a) => {
            let e = StoreError::Backend(format!("cannot begin a transaction: {e}"));
            let _ = a.reply.send(Err(e));
        }
    }
}

/// Runs the only job of a transaction; whether it succeeded.
fn run_alone(conn: &Connection, inserts: &mut Inserts<'_>, job: Job, done: &mut Vec<Done>) -> bool {
    match job {
        Job::Run(f) => {
            let (completion, ok) = f(conn, Slot::Alone);
            done.push(Done::Run(completion));
            ok
        }
        Job::Append(a) => {
            let r = append_one(inserts, a.messages, a.known);
            let ok = r.is_ok();
            done.push(Done::Append(a.reply, r));
            ok
        }
    }
}

/// What the writer knows about the transaction it is filling.
struct TxState {
    /// It holds telemetry appends only, all of which succeeded: a failing append can then be
    /// undone by rolling back the whole transaction and storing the others again, so appends
    /// run without savepoints (see [`append_unguarded`]).
    only_appends: bool,
    /// It must not commit (a rollback did not end it): every job in it fails with this.
    doomed: Option<String>,
}

impl TxState {
    /// A transaction just begun (holding nothing, so nothing but appends).
    fn new() -> Self {
        TxState {
            only_appends: true,
            doomed: None,
        }
    }
}

/// Runs the `queued` jobs in order. A generic job runs in a savepoint; a run of appends
/// shares one, or, while the transaction holds only appends, runs without one.
fn run_queued<'c>(
    conn: &Connection,
    tx: &mut TxControl<'c>,
    inserts: &mut Inserts<'c>,
    queued: &mut Vec<Job>,
    done: &mut Vec<Done>,
    state: &mut TxState,
) {
    let mut jobs = queued.drain(..).peekable();
    while let Some(job) = jobs.next() {
        match job {
            Job::Run(f) => {
                state.only_appends = false;
                done.push(Done::Run(f(conn, Slot::Savepoint(tx)).0));
            }
            Job::Append(a) => {
                let mut run = vec![a];
                while let Some(Job::Append(_)) = jobs.peek() {
                    if let Some(Job::Append(a)) = jobs.next() {
                        run.push(a);
                    }
                }
                if state.only_appends && state.doomed.is_none() {
                    append_unguarded(conn, tx, inserts, run, done, state);
                } else {
                    append_run(conn, tx, inserts, run, done);
                }
            }
        }
    }
}

/// Appends a run of callers' messages without a savepoint, in a transaction that holds
/// appends only. A savepoint copies every page it is the first to change into the statement
/// journal (in memory: about a page per message at one publish in flight, 1.3k instructions
/// each), only to be able to undo a failure that hardly ever happens. When the run fails, the
/// whole transaction is rolled back and every append it held is stored again, each in a
/// savepoint of its own, so that only the failing ones fail.
fn append_unguarded<'c>(
    conn: &Connection,
    tx: &mut TxControl<'c>,
    inserts: &mut Inserts<'c>,
    mut run: Vec<Append>,
    done: &mut Vec<Done>,
    state: &mut TxState,
) {
    let e = match append_together(inserts, &mut run) {
        Ok(count) => {
            for a in run {
                done.push(Done::Append(a.reply, Ok((a.messages, count))));
            }
            return;
        }
        Err(e) => e,
    };
    tracing::warn!(error = %e, "store: a telemetry append failed; the transaction's appends are stored again one by one");
    state.only_appends = false;
    // Every earlier job of this transaction is an append that succeeded (`only_appends`).
    let mut again: Vec<Append> = Vec::with_capacity(done.len() + run.len());
    let mut kept = Vec::new();
    for d in done.drain(..) {
        match d {
            Done::Append(reply, Ok((messages, _))) => again.push(Append {
                messages,
                known: 0,
                reply,
            }),
            other => kept.push(other),
        }
    }
    done.extend(kept);
    again.extend(run);
    let _ = tx.rollback.execute([]);
    let began = if conn.is_autocommit() {
        tx.begin.execute([]).map(drop).map_err(|e| e.to_string())
    } else {
        Err("the transaction could not be rolled back".to_string())
    };
    if let Err(e) = began {
        tracing::error!(error = %e, "store: cannot start the telemetry appends again");
        state.doomed = Some(e.clone());
        for a in again {
            done.push(Done::Append(a.reply, Err(StoreError::Backend(e.clone()))));
        }
        return;
    }
    for a in again {
        let r = tx.in_savepoint(conn, |_| append_one(inserts, a.messages, a.known));
        done.push(Done::Append(a.reply, r));
    }
}

fn append_one(
    inserts: &mut Inserts<'_>,
    mut messages: Vec<TelemetryMessage>,
    known: u32,
) -> AppendReply {
    let mut rows: Vec<&mut TelemetryMessage> = messages.iter_mut().collect();
    let count = telemetry::append(inserts, &mut rows, known)?;
    Ok((messages, count))
}

/// Appends several callers' messages as one append, every caller's messages numbered where
/// they lie, so that each gets its own back; the partition count.
fn append_together(inserts: &mut Inserts<'_>, run: &mut [Append]) -> Result<u32> {
    let known = run.iter().map(|a| a.known).max().unwrap_or(0);
    let mut rows: Vec<&mut TelemetryMessage> =
        run.iter_mut().flat_map(|a| a.messages.iter_mut()).collect();
    telemetry::append(inserts, &mut rows, known)
}

/// Appends several callers' messages as one append in one savepoint; when that fails, each
/// caller's in a savepoint of its own (so only the failing ones fail).
fn append_run<'c>(
    conn: &Connection,
    tx: &mut TxControl<'c>,
    inserts: &mut Inserts<'c>,
    mut run: Vec<Append>,
    done: &mut Vec<Done>,
) {
    if let [_] = run.as_slice() {
        let a = run.pop().expect("one append");
        let r = tx.in_savepoint(conn, |_| append_one(inserts, a.messages, a.known));
        done.push(Done::Append(a.reply, r));
        return;
    }
    let together = tx.in_savepoint(conn, |_| append_together(inserts, &mut run));
    for a in run {
        let r = match &together {
            Ok(count) => Ok((a.messages, *count)),
            Err(_) => tx.in_savepoint(conn, |_| append_one(inserts, a.messages, a.known)),
        };
        done.push(Done::Append(a.reply, r));
    }
    if let Err(e) = together {
        tracing::warn!(error = %e, "store: a combined telemetry append failed; appended one by one");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(device: &str, reply_to: &mut Vec<oneshot::Receiver<AppendReply>>) -> Job {
        let (reply, rx) = oneshot::channel();
        reply_to.push(rx);
        Job::Append(Append {
            messages: vec![
                crate::suite::telemetry(&format!("{device}-1"), 0),
                crate::suite::telemetry(&format!("{device}-2"), 0),
            ],
            known: 0,
            reply,
        })
    }

    /// Appends in a transaction of appends only run without savepoints; when one fails, the
    /// transaction is rolled back and the appends run before it in the same transaction are
    /// stored again, so that only the failing one fails and the others are stored in full,
    /// numbered without gaps.
    #[test]
    fn a_failing_append_without_savepoints_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::pool::open_connection(
            &dir.path().join("w.db"),
            super::super::Durability::Process,
        )
        .unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn.execute_batch(&super::super::append_tests::refuse_bad_devices("FAIL"))
            .unwrap();
        let mut tx = TxControl::prepare(&conn).unwrap();
        let mut inserts = Inserts::new(&conn);
        let (mut done, mut replies) = (Vec::new(), Vec::new());
        let mut state = TxState::new();
        tx.begin.execute([]).unwrap();
        let mut queued = vec![append("a", &mut replies), append("b", &mut replies)];
        run_queued(
            &conn,
            &mut tx,
            &mut inserts,
            &mut queued,
            &mut done,
            &mut state,
        );
        assert!(state.only_appends, "no savepoint yet");
        let mut queued = vec![append("c", &mut replies), append("bad-d", &mut replies)];
        run_queued(
            &conn,
            &mut tx,
            &mut inserts,
            &mut queued,
            &mut done,
            &mut state,
        );
        assert!(!state.only_appends && state.doomed.is_none());
        tx.commit.execute([]).unwrap();
        done.drain(..).for_each(|d| d.finish(None));
        let mut numbers = Vec::new();
        for (i, mut rx) in replies.into_iter().enumerate() {
            match (i, rx.try_recv().unwrap()) {
                (3, r) => assert!(r.is_err(), "the failing append fails"),
                (_, r) => {
                    let (stored, _) = r.unwrap();
                    numbers.extend(stored.iter().map(|m| m.sequence_number));
                }
            }
        }
        numbers.sort_unstable();
        let devices: Vec<String> = conn
            .prepare("SELECT device_id FROM telemetry ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(devices.len(), 6, "{devices:?}");
        assert!(
            devices.iter().all(|d| !d.starts_with("bad-")),
            "{devices:?}"
        );
        let rowids: Vec<u64> = conn
            .prepare("SELECT seq FROM telemetry ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|r| r.unwrap() as u64)
            .collect();
        assert_eq!(numbers, rowids, "every returned number names its row");
    }

    #[test]
    fn only_telemetry_after_a_grouped_commit_waits_and_only_for_as_many_as_then() {
        let mut w = GroupWindow::default();
        // The first commit, and a lone device after its own commit: no wait.
        assert!(!w.wants_more(1, 1));
        w.committed(1);
        assert!(!w.wants_more(1, 1));
        // After a commit of five appends: wait while fewer than five are in.
        w.committed(5);
        assert!(w.wants_more(1, 1));
        assert!(w.wants_more(4, 9));
        assert!(!w.wants_more(5, 5));
        assert!(!w.wants_more(7, 7));
        // A transaction without telemetry (registrations, twin writes) never waits, nor a
        // full one.
        assert!(!w.wants_more(0, 3));
        assert!(!w.wants_more(2, MAX_BATCH));
        // Traffic that thins out: the window follows the last commit.
        w.committed(2);
        assert!(w.wants_more(1, 1));
        w.committed(1);
        assert!(!w.wants_more(1, 1));
    }
}
