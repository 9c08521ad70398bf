//! The embedded SQLite store: WAL, a busy timeout, cached prepared
//! statements, migrations by `PRAGMA user_version`. One write connection;
//! reads use their own connections so they never wait for the writer.

use super::sql::{Conn, Dialect, SqlRow, SqlTx, Val};
use super::{Checkpoint, Store, Synchronous, Tx, WriteFn};
use crate::{Error, Result};
use rusqlite::{Connection, TransactionBehavior};
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::{Duration, Instant};

/// The schema, one file per version (`PRAGMA user_version` records it).
const SCHEMA: &[&str] = &[
    include_str!("schema_sqlite.sql"),
    include_str!("schema_sqlite_v2.sql"),
    include_str!("schema_sqlite_v3.sql"),
    include_str!("schema_sqlite_v4.sql"),
    include_str!("schema_sqlite_v5.sql"),
    include_str!("schema_sqlite_v6.sql"),
    include_str!("schema_sqlite_v7.sql"),
    include_str!("schema_sqlite_v8.sql"),
    include_str!("schema_sqlite_v9.sql"),
];
const SCHEMA_VERSION: i64 = SCHEMA.len() as i64;

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
    pub checkpoint: Checkpoint,
    /// How long the worker's bookkeeping (`Store::write_background`) may
    /// wait while bookings flow (one committed within this time); then what
    /// waited commits together, in a transaction of its own, so the worker
    /// takes the writer once per patience instead of once per write (a
    /// booking arriving meanwhile waits a sync for it). When no booking
    /// came within it, bookkeeping commits at once. Default 20 ms.
    pub background_patience: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            checkpoint: Checkpoint::Auto,
            background_patience: Duration::from_millis(20),
        }
    }
}

impl SqliteOptions {
    fn background_checkpoint(&self) -> bool {
        match self.checkpoint {
            Checkpoint::Auto => self.synchronous == Synchronous::Normal,
            Checkpoint::Inline => false,
            Checkpoint::Background => true,
        }
    }
}

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    writer: Arc<Mutex<Writer>>,
    /// Writes waiting for the writer: whoever holds it commits them together.
    group: Arc<Group>,
    readers: Mutex<Vec<Connection>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

/// The queue of waiting writes and the signal that a group was committed
/// (or the writer let go), so a waiting write learns its result without
/// taking the writer itself.
#[derive(Debug, Default)]
struct Group {
    queue: Mutex<VecDeque<Queued>>,
    released: Condvar,
    /// When a group with a booking (a foreground write) last committed.
    last_foreground: Mutex<Option<Instant>>,
}

impl Group {
    /// Wakes every waiting write; taking the queue lock first means none is
    /// between its check of the writer and its wait.
    fn notify(&self) {
        let _queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        self.released.notify_all();
    }
}

/// Most writes one group commit takes.
const MAX_BATCH: usize = 64;

/// A write waiting in the queue, and where its result goes.
struct Queued {
    work: WriteFn,
    slot: Arc<Slot>,
    /// The worker's bookkeeping: committed after the bookings, never with them.
    background: bool,
    since: Instant,
}

/// The next group from the queue: the bookings (in order) when any wait,
/// else the background writes (in order). A booking never shares its
/// commit with the worker's bookkeeping: measured at 1,000 bookings/s with
/// the worker syncing each one (`cargo bench -p callbook-cli --bench
/// serve`), a booking that carried the worker's writes in its transaction
/// waited p99 5.0-15.5 ms, one that commits alone 2.9-3.2 ms.
fn next_batch(queue: &mut VecDeque<Queued>) -> Vec<Queued> {
    let bookings = queue.iter().any(|q| !q.background);
    let (mut batch, mut rest): (VecDeque<Queued>, VecDeque<Queued>) =
        queue.drain(..).partition(|q| q.background != bookings);
    for q in batch.drain(batch.len().min(MAX_BATCH)..).rev() {
        rest.push_front(q);
    }
    *queue = rest;
    batch.into()
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queued")
    }
}

#[derive(Debug, Default)]
struct Slot(Mutex<Option<Result<()>>>);

impl Slot {
    fn take(&self) -> Option<Result<()>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
    fn fill(&self, result: Result<()>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
    }
    fn fill_if_empty(&self, result: Result<()>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(result);
    }
}

/// How the writer has been used (for tests and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (or rolled back).
    pub transactions: u64,
    /// Writes done in them; more writes than transactions means group commit happened.
    pub writes: u64,
    /// SQL statements the writes ran (transaction control not counted).
    pub statements: u64,
}

std::thread_local! {
    /// Statements run on this thread's connections: a group runs on the
    /// thread that commits it, so the difference across it is the group's.
    static STATEMENTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_statement() {
    STATEMENTS.with(|n| n.set(n.get() + 1));
}

fn statements_so_far() -> u64 {
    STATEMENTS.with(|n| n.get())
}

/// Commits between two WAL checkpoints (SQLite's own default is ~1000 pages).
const CHECKPOINT_EVERY: u32 = 256;

#[derive(Debug)]
struct Writer {
    conn: Connection,
    commits: u32,
    stats: WriterStats,
    /// Wakes the checkpointer; dropped with the store, which ends it.
    wake: Option<std::sync::mpsc::SyncSender<()>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).wake = None;
        if let Some(handle) = self.checkpointer.take() {
            let _ = handle.join();
        }
    }
}

/// Checkpoints the WAL on its own connection and thread, so no booking
/// pays for copying pages back into the database file (SQLite's automatic
/// checkpoint runs inside whichever commit crosses the threshold).
///
/// Two passes: the first copies the bulk while bookings go on; the second,
/// holding the writer for the few frames appended meanwhile, completes the
/// checkpoint so the next commit starts the WAL from the beginning. Without
/// it a steady stream of bookings never lets the WAL reset, and it grows.
fn spawn_checkpointer(
    path: &Path,
    options: &SqliteOptions,
    writer: Arc<Mutex<Writer>>,
    group: Arc<Group>,
) -> Result<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)> {
    let conn = connect(path, options)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let handle = std::thread::Builder::new()
        .name("callbook-checkpoint".into())
        .spawn(move || {
            let checkpoint = || conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).ok();
            while rx.recv().is_ok() {
                checkpoint();
                let held = writer.lock().unwrap_or_else(|p| p.into_inner());
                checkpoint();
                drop(held);
                group.notify();
            }
        })
        .map_err(|e| Error::Storage(format!("cannot start the checkpoint thread: {e}")))?;
    Ok((tx, handle))
}

impl SqliteStore {
    /// Opens (creating and migrating) the database file, durable by default.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut conn = connect(&path, &options)?;
        migrate(&mut conn)?;
        let background = options.background_checkpoint();
        if background {
            conn.execute_batch("PRAGMA wal_autocheckpoint=0")?;
        }
        let writer = Arc::new(Mutex::new(Writer { conn, commits: 0, stats: WriterStats::default(), wake: None }));
        let group = Arc::new(Group::default());
        let checkpointer = if background {
            let (wake, handle) = spawn_checkpointer(&path, &options, Arc::clone(&writer), Arc::clone(&group))?;
            writer.lock().unwrap_or_else(|p| p.into_inner()).wake = Some(wake);
            Some(handle)
        } else {
            None
        };
        Ok(SqliteStore { path, options, writer, group, readers: Mutex::new(Vec::new()), checkpointer })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writer_stats(&self) -> WriterStats {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).stats
    }

    /// Queues a write and commits groups until its own result is in (see
    /// `Store::write`).
    fn enqueue(&self, work: WriteFn, background: bool) -> Result<()> {
        let slot = Arc::new(Slot::default());
        let mut queue = self.group.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.push_back(Queued { work, slot: Arc::clone(&slot), background, since: Instant::now() });
        loop {
            // A group committed while this write waited may have included it.
            if let Some(result) = slot.take() {
                return result;
            }
            let writer = match self.writer.try_lock() {
                Ok(writer) => writer,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    // Someone is committing (or checkpointing): wait for the signal. The
                    // timeout only guards against a holder that never signals.
                    queue = self
                        .group
                        .released
                        .wait_timeout(queue, Duration::from_millis(50))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    continue;
                }
            };
            if let Some(wait) = self.hold_background(&queue) {
                drop(writer);
                queue = self.group.released.wait_timeout(queue, wait).unwrap_or_else(|p| p.into_inner()).0;
                continue;
            }
            let batch = next_batch(&mut queue);
            let bookings = batch.iter().any(|q| !q.background);
            drop(queue);
            let mut writer = writer;
            // Every write's panic is caught inside; should the commit itself
            // panic, no write of the group may be left waiting for an answer.
            let slots: Vec<Arc<Slot>> = batch.iter().map(|q| Arc::clone(&q.slot)).collect();
            if std::panic::catch_unwind(AssertUnwindSafe(|| commit_group(&mut writer, batch))).is_err() {
                slots.iter().for_each(|s| s.fill_if_empty(Err(Error::Internal("the commit panicked".into()))));
            }
            drop(writer);
            if bookings {
                *self.group.last_foreground.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
            queue = self.group.queue.lock().unwrap_or_else(|p| p.into_inner());
            self.group.released.notify_all();
        }
    }

    /// How long the writer should leave the queue alone: only background
    /// writes wait, a booking committed within the patience (bookings flow),
    /// and the oldest of them has waited less than it.
    fn hold_background(&self, queue: &VecDeque<Queued>) -> Option<Duration> {
        let oldest = queue.iter().try_fold(None::<Instant>, |oldest, q| {
            q.background.then(|| Some(oldest.map_or(q.since, |o: Instant| o.min(q.since))))
        })??;
        let last = (*self.group.last_foreground.lock().unwrap_or_else(|p| p.into_inner()))?;
        let patience = self.options.background_patience;
        (last.elapsed() < patience).then(|| patience.checked_sub(oldest.elapsed())).flatten().filter(|d| !d.is_zero())
    }

    /// Writes waiting in the group-commit queue (for tests).
    pub fn queued(&self) -> usize {
        self.group.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(options.busy_timeout)?;
    let sync = match options.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    // Switching to WAL needs a lock; a file already in WAL (the usual case,
    // and what other processes hold open) needs no switch.
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        conn.execute_batch("PRAGMA journal_mode=WAL")?;
    }
    // journal_size_limit: a WAL grown by a burst is cut back after the next
    // reset instead of keeping its size on disk for ever.
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON; PRAGMA journal_size_limit={};",
        64 << 20
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // Up to date (every open but the first): no write lock, so processes
    // opening while others book do not queue behind them.
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Storage(format!(
            "database schema {version} is newer than this callbook ({SCHEMA_VERSION})"
        )));
    }
    for sql in SCHEMA.iter().skip(version.max(0) as usize) {
        SqliteConn(&tx).batch(sql)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}

impl Store for SqliteStore {
    /// Group commit: the write joins a queue; whoever holds the writer takes
    /// every queued write (up to `MAX_BATCH`), runs each in its own
    /// SAVEPOINT, commits once (one sync), and answers them all. A lone
    /// write is committed at once: nothing waits for company.
    fn write(&self, work: WriteFn) -> Result<()> {
        self.enqueue(work, false)
    }

    /// Bookings queued with it commit first, and never in its transaction;
    /// while bookings flow it waits (up to `background_patience`) and then
    /// commits with the other bookkeeping that waited.
    fn write_background(&self, work: WriteFn) -> Result<()> {
        self.enqueue(work, true)
    }

    fn schema_version(&self) -> Result<i64> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        Ok(writer.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn read(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let c = connect(&self.path, &self.options)?;
                c.execute_batch("PRAGMA query_only=ON")?;
                c
            }
        };
        let result = {
            let tx = conn.transaction()?;
            work(&mut SqlTx::new(&mut SqliteConn(&tx)))
        };
        self.readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        result
    }
}

/// Runs a batch of writes in one transaction, each in its own savepoint,
/// and fills every write's slot: its own error if it failed (only its
/// savepoint is rolled back), the commit's error if the commit failed.
fn commit_group(writer: &mut Writer, batch: Vec<Queued>) {
    let storage = |e: &Error| Error::Storage(e.to_string());
    let tx = match writer.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = Error::from(e);
            batch.iter().for_each(|q| q.slot.fill(Err(storage(&e))));
            return;
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    let statements = statements_so_far();
    if batch.len() == 1 {
        results.extend(batch.into_iter().map(|q| (run_caught(&tx, q.work), q.slot)));
    } else {
        for q in batch {
            let result = in_savepoint(&tx, q.work);
            results.push((result, q.slot));
        }
    }
    let lone_failed = results.len() == 1 && results[0].0.is_err();
    let committed = if lone_failed { tx.rollback().map_err(Error::from) } else { tx.commit().map_err(Error::from) };
    writer.stats.transactions += 1;
    writer.stats.writes += results.len() as u64;
    writer.stats.statements += statements_so_far() - statements;
    for (result, slot) in results {
        slot.fill(match (&committed, result) {
            (Err(e), Ok(())) => Err(storage(e)),
            (_, result) => result,
        });
    }
    writer.commits = writer.commits.wrapping_add(1);
    if writer.commits % CHECKPOINT_EVERY == 0 {
        if let Some(wake) = &writer.wake {
            // Full channel: a checkpoint is already due, nothing to add.
            let _ = wake.try_send(());
        }
    }
}

/// Runs one write; a panic in it becomes `internal` (its caller's answer)
/// instead of unwinding through the group it shares the transaction with.
fn run_caught(conn: &Connection, mut work: WriteFn) -> Result<()> {
    std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut SqlTx::new(&mut SqliteConn(conn)))))
        .unwrap_or_else(|_| Err(Error::Internal("the write panicked; nothing of it was kept".into())))
}

fn in_savepoint(conn: &Connection, work: WriteFn) -> Result<()> {
    conn.prepare_cached("SAVEPOINT booking")?.execute([])?;
    let result = run_caught(conn, work);
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO booking")?.execute([])?;
    }
    conn.prepare_cached("RELEASE booking")?.execute([])?;
    result
}

/// SQLite behind the one SQL layer ([`super::sql`]): every statement
/// prepared once per connection and kept in its cache.
struct SqliteConn<'a>(&'a Connection);

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Owned(Value::Null),
            Val::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Val::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

struct SqliteRow<'r, 's>(&'r rusqlite::Row<'s>);

impl SqlRow for SqliteRow<'_, '_> {
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.0.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.0.get(i)?)
    }
}

impl Conn for SqliteConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn each(&mut self, sql: &str, params: &[Val<'_>], row: &mut dyn FnMut(&dyn SqlRow) -> Result<()>) -> Result<()> {
        count_statement();
        let mut statement = self.0.prepare_cached(sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        while let Some(r) = rows.next()? {
            row(&SqliteRow(r))?;
        }
        Ok(())
    }
    fn execute(&mut self, sql: &str, params: &[Val<'_>]) -> Result<u64> {
        count_statement();
        Ok(self.0.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))? as u64)
    }
    fn insert(&mut self, sql: &str, params: &[Val<'_>]) -> Result<i64> {
        self.execute(sql, params)?;
        Ok(self.0.last_insert_rowid())
    }
    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.0.execute_batch(sql)?)
    }
}
