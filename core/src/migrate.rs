//! Moving a callbook database to another one (`callbook migrate`): SQLite to
//! a server when a shop outgrows one machine, or back.
//!
//! Every table of the schema ([`TABLES`]; a test fails when the schema files
//! hold a table or a column this list lacks) is copied in key order, in
//! batches, from **one consistent snapshot** of the source (SQLite: one read
//! transaction; PostgreSQL: `REPEATABLE READ READ ONLY`; MySQL/MariaDB:
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT`), into **one transaction** on
//! the target: a migration that fails leaves the target as it was. Rows keep
//! their ids, so every reference holds; the target's sequences
//! (PostgreSQL `setval`, MySQL `AUTO_INCREMENT`) are then moved past them, so
//! the next booking there gets a fresh id.
//!
//! The target is created or migrated by the normal open path. It must be
//! empty (`target_not_empty`, naming the first table holding a row) unless
//! `append` is asked for; then the source's keys must be free in it
//! (`migrate_conflict`). Before the commit each table is read back from the
//! target and compared with what was read from the source: the row count and
//! a checksum, SHA-256 over a canonical text rendering of each row in key
//! order ([`checksums`] computes the same of any database), so a difference
//! between the backends' types (booleans, integers as text) cannot hide or
//! invent a difference (`migrate_mismatch`, naming the table).

use crate::{Error, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// How a column's values are read and rendered. Timestamps are text on
/// every backend (`YYYY-MM-DD HH:MM:SS.ffffff` UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    /// BOOLEAN on the servers, 0/1 in SQLite.
    Bool,
}

use Kind::{Bool, Int, Text};

/// One table: its columns (generated columns, MySQL's, are left out: the
/// target computes them) and the key its rows are read and hashed in order of.
#[derive(Debug)]
struct Table {
    name: &'static str,
    key: &'static [&'static str],
    columns: &'static [(&'static str, Kind)],
    /// `id` comes from a sequence (PostgreSQL BIGSERIAL, MySQL AUTO_INCREMENT).
    serial: bool,
}

const TIMES: [(&str, Kind); 2] = [("created_at", Text), ("updated_at", Text)];

/// Every table of the schema, parents before children (foreign keys hold
/// at each insert). `callbook_schema` (the servers' version record) is the
/// open path's, not data.
const TABLES: &[Table] = &[
    Table {
        name: "companies",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("name", Text),
            ("calcom_api_key", Text),
            ("calcom_api_base", Text),
            ("calcom_email_fallback", Text),
            ("calcom_webhook_secret", Text),
            ("min_cancel_notice_hours", Int),
            ("min_reschedule_notice_hours", Int),
            ("max_reschedules", Int),
            TIMES[0],
            TIMES[1],
        ],
        serial: false,
    },
    Table {
        name: "branches",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("company_id", Int),
            ("name", Text),
            ("timezone", Text),
            ("country", Text),
            ("phone_number", Text),
            TIMES[0],
            TIMES[1],
        ],
        serial: false,
    },
    Table {
        name: "services",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("company_id", Int),
            ("name", Text),
            ("calcom_event_type_id", Int),
            ("duration_minutes", Int),
            ("capacity", Int),
            ("min_cancel_notice_hours", Int),
            ("min_reschedule_notice_hours", Int),
            ("max_reschedules", Int),
            TIMES[0],
            TIMES[1],
        ],
        serial: false,
    },
    Table {
        name: "calls",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("retell_call_id", Text),
            ("company_id", Int),
            ("branch_id", Int),
            ("from_number", Text),
            ("to_number", Text),
            ("direction", Text),
            TIMES[0],
            TIMES[1],
        ],
        serial: true,
    },
    Table {
        name: "customers",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("company_id", Int),
            ("name", Text),
            ("email", Text),
            ("phone", Text),
            ("source", Text),
            ("anonymity_reason", Text),
            TIMES[0],
            TIMES[1],
        ],
        serial: true,
    },
    Table {
        name: "appointments",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("customer_id", Int),
            ("company_id", Int),
            ("branch_id", Int),
            ("service_id", Int),
            ("call_id", Int),
            ("starts_at", Text),
            ("ends_at", Text),
            ("status", Text),
            ("calcom_sync_status", Text),
            ("sync_origin", Text),
            ("metadata", Text),
            ("calcom_v2_booking_id", Int),
            ("calcom_v2_booking_uid", Text),
            ("calcom_v2_seat_uid", Text),
            ("sync_error_code", Text),
            ("sync_error_message", Text),
            ("sync_attempt_count", Int),
            ("sync_verified_at", Text),
            ("requires_manual_review", Bool),
            ("manual_review_flagged_at", Text),
            ("review_reason", Text),
            ("review_resolved_at", Text),
            ("review_resolved_by", Text),
            ("review_note", Text),
            ("idempotency_key", Text),
            ("calcom_webhook_at", Text),
            ("rescheduled_count", Int),
            ("previous_starts_at", Text),
            ("booking_latency_us", Int),
            TIMES[0],
            TIMES[1],
        ],
        serial: true,
    },
    Table {
        name: "sync_jobs",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("appointment_id", Int),
            ("company_id", Int),
            ("kind", Text),
            ("state", Text),
            ("attempt", Int),
            ("max_attempts", Int),
            ("run_at", Text),
            ("locked_until", Text),
            ("locked_by", Text),
            ("lease_token", Int),
            ("last_error", Text),
            TIMES[0],
            TIMES[1],
        ],
        serial: true,
    },
    Table {
        name: "appointment_changes",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("appointment_id", Int),
            ("company_id", Int),
            ("kind", Text),
            ("changed_by", Text),
            ("from_starts_at", Text),
            ("to_starts_at", Text),
            ("call_id", Int),
            ("operator", Text),
            ("reason", Text),
            ("created_at", Text),
        ],
        serial: true,
    },
    Table {
        name: "callbacks",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("company_id", Int),
            ("branch_id", Int),
            ("call_id", Int),
            ("customer_name", Text),
            ("phone", Text),
            ("reason", Text),
            ("status", Text),
            ("created_at", Text),
            ("done_at", Text),
            ("done_by", Text),
        ],
        serial: true,
    },
    Table {
        name: "call_availability",
        key: &["call_id", "service_id", "day"],
        columns: &[("call_id", Int), ("service_id", Int), ("day", Text), ("slots", Text), ("checked_at", Text)],
        serial: false,
    },
    Table {
        name: "calcom_breakers",
        key: &["key"],
        columns: &[
            ("key", Text),
            ("state", Text),
            ("consecutive_failures", Int),
            ("open_until", Text),
            ("cooldown_secs", Int),
            ("updated_at", Text),
        ],
        serial: false,
    },
    Table {
        name: "calcom_rate_windows",
        key: &["rate_key"],
        columns: &[
            ("rate_key", Text),
            ("sent", Text),
            ("blocked_until", Text),
            ("server_remaining", Int),
            ("server_until", Text),
            ("updated_at", Text),
        ],
        serial: false,
    },
    Table {
        name: "calcom_pulls",
        key: &["company_id", "event_type_id"],
        columns: &[
            ("company_id", Int),
            ("event_type_id", Int),
            ("after_start", Text),
            ("skip_count", Int),
            ("updated_at", Text),
        ],
        serial: false,
    },
    Table {
        name: "calcom_drift",
        key: &["company_id"],
        columns: &[
            ("company_id", Int),
            ("checked_at", Text),
            ("missing_locally", Int),
            ("missing_in_calcom", Int),
            ("different_start", Int),
            ("cancelled_one_side", Int),
        ],
        serial: false,
    },
];

impl Table {
    fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(c, _)| *c == name)
    }

    fn key_of(&self, row: &[Cell]) -> Vec<Cell> {
        self.key.iter().filter_map(|k| self.column_index(k)).filter_map(|i| row.get(i).cloned()).collect()
    }
}

/// One value as read from any backend, in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

type Row = Vec<Cell>;

/// The canonical rendering of a row: PostgreSQL's COPY text format (tab
/// between columns, `\N` for NULL, `t`/`f`, backslash escapes), one line.
/// The checksum hashes these lines; the PostgreSQL target is fed them.
fn render(row: &[Cell], out: &mut String) {
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match cell {
            Cell::Null => out.push_str("\\N"),
            Cell::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Cell::Bool(b) => out.push(if *b { 't' } else { 'f' }),
            Cell::Text(s) => {
                for c in s.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out.push('\n');
}

/// Row count and running checksum of one table.
#[derive(Default)]
struct Tally {
    rows: u64,
    hash: Sha256,
    line: String,
}

impl Tally {
    fn add(&mut self, row: &[Cell]) {
        self.line.clear();
        render(row, &mut self.line);
        self.hash.update(self.line.as_bytes());
        self.rows += 1;
    }
    fn checksum(self) -> String {
        self.hash.finalize().iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// A table as copied (or as [`checksums`] found it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableChecksum {
    pub name: String,
    pub rows: u64,
    /// SHA-256 (hex) of the canonical rendering of every row, in key order.
    pub checksum: String,
    /// The id the target's sequence hands out next (tables whose id a
    /// sequence assigns; after a migration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_id: Option<i64>,
}

/// What [`migrate()`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrateReport {
    /// Source and target as given, without user or password.
    pub from: String,
    pub to: String,
    pub append: bool,
    /// Every table, in copy order; rows and checksums verified on the target.
    pub tables: Vec<TableChecksum>,
    /// Rows copied in all.
    pub rows: u64,
    pub elapsed_ms: u64,
    pub rows_per_second: u64,
}

/// Where a migration is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigratePhase {
    /// Rows read from the source and written to the target.
    Copy,
    /// Rows read back from the target and compared.
    Verify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MigrateProgress {
    pub phase: MigratePhase,
    pub table: &'static str,
    /// Rows done in this phase, all tables so far.
    pub done: u64,
    /// Rows the source holds, all tables.
    pub total: u64,
}

/// Told of every batch: where the migration is.
pub type ProgressFn = Box<dyn FnMut(&MigrateProgress) + Send>;

/// How to migrate.
pub struct MigrateOptions {
    /// Copy into a target that already holds rows (the source's keys must be free there).
    pub append: bool,
    /// Rows per read and per write (1 to 10,000; default 500).
    pub batch: usize,
    /// Called after every batch.
    pub progress: Option<ProgressFn>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions { append: false, batch: 500, progress: None }
    }
}

impl std::fmt::Debug for MigrateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateOptions")
            .field("append", &self.append)
            .field("batch", &self.batch)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Most rows one batch may have.
pub const MAX_BATCH: usize = 10_000;

/// A database as a migration sees it: its own connection, raw rows.
trait Db {
    /// Starts the read snapshot every later read of the source sees.
    fn begin_snapshot(&mut self) -> Result<()>;
    /// Starts the target's one write transaction.
    fn begin_write(&mut self) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self) -> Result<()>;
    fn count(&mut self, table: &Table) -> Result<u64>;
    /// Every row in key order, handed over `batch` at a time.
    fn scan(&mut self, table: &Table, batch: usize, each: &mut dyn FnMut(Vec<Row>) -> Result<()>) -> Result<()>;
    /// Writes rows keeping their ids; a taken key is `migrate_conflict`.
    fn insert(&mut self, table: &Table, rows: &[Row]) -> Result<()>;
    /// Moves the table's id sequence past its highest id (inside the
    /// write transaction); the next id. MySQL does it in [`Db::after_commit`].
    fn fix_sequence(&mut self, table: &Table) -> Result<i64>;
    /// What needs its own transaction after the commit (MySQL's ALTER TABLE commits implicitly).
    fn after_commit(&mut self, _tables: &[&Table]) -> Result<()> {
        Ok(())
    }
}

fn conflict(table: &Table) -> Error {
    Error::MigrateConflict { table: table.name.to_string() }
}

/// `postgres://user:secret@host/db` → `postgres://host/db`.
fn redacted(target: &str) -> String {
    match (target.split_once("://"), target.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, rest))) => format!("{scheme}://{rest}"),
        _ => target.to_string(),
    }
}

fn text_of(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Opens `target` by the normal open path (creating or migrating its
/// schema), then a connection of the migration's own.
fn connect(target: &Path, must_exist: bool) -> Result<Box<dyn Db>> {
    let name = text_of(target);
    let server = crate::store::is_server_url(&name);
    if must_exist && !server && !target.exists() {
        return Err(Error::invalid("from", "source_not_found", format!("no database file at {name}")));
    }
    // Schema up to date on both sides, so the column lists above are theirs.
    drop(crate::store::open(target, &crate::store::OpenOptions::default())?);
    if server {
        return open_server(&name);
    }
    #[cfg(feature = "sqlite")]
    return Ok(Box::new(lite::Lite::connect(target)?));
    #[cfg(not(feature = "sqlite"))]
    Err(Error::Storage("this build has no SQLite support (feature sqlite)".into()))
}

/// A connection of the migration's own to a server database.
fn open_server(url: &str) -> Result<Box<dyn Db>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(Box::new(pg::Pg::connect(url)?));
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        #[cfg(feature = "mysql")]
        return Ok(Box::new(my::My::connect(url)?));
    }
    Err(Error::Storage(format!("this build cannot open {}", redacted(url))))
}

fn same_database(from: &Path, to: &Path) -> bool {
    if from == to {
        return true;
    }
    match (from.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copies every table of the database `from` (a SQLite file or a
/// `postgres://`/`mysql://` URL) into `to`, in one snapshot of the source
/// and one transaction on the target, keeping ids; verifies row counts and
/// checksums before the commit and moves the target's sequences past the
/// copied ids.
///
/// Errors: `target_not_empty` (a row in the target, without `append`),
/// `migrate_conflict` (with `append`, a key of the source is taken in the
/// target), `migrate_mismatch` (a table read back differs; nothing is
/// committed), `source_not_found`, `same_database`, `invalid_argument`
/// (batch), `storage`.
pub fn migrate(from: impl AsRef<Path>, to: impl AsRef<Path>, mut options: MigrateOptions) -> Result<MigrateReport> {
    let (from, to) = (from.as_ref(), to.as_ref());
    if !(1..=MAX_BATCH).contains(&options.batch) {
        return Err(Error::invalid("batch", "invalid_argument", format!("batch must be 1 to {MAX_BATCH} rows")));
    }
    if same_database(from, to) {
        return Err(Error::invalid("to", "same_database", "the source and the target are the same database"));
    }
    let started = Instant::now();
    let mut source = connect(from, true)?;
    let mut target = connect(to, false)?;
    source.begin_snapshot()?;
    let total = TABLES.iter().try_fold(0u64, |n, t| Ok::<_, Error>(n + source.count(t)?))?;
    target.begin_write()?;
    let copied = copy_all(&mut *source, &mut *target, &mut options, total);
    let tables = match copied {
        Ok(tables) => tables,
        Err(e) => {
            let _ = target.rollback();
            let _ = source.rollback();
            return Err(e);
        }
    };
    target.commit()?;
    source.rollback()?; // a read snapshot: nothing to keep
    let serial: Vec<&Table> = TABLES.iter().filter(|t| t.serial).collect();
    target.after_commit(&serial)?;
    let rows = tables.iter().map(|t| t.rows).sum();
    let elapsed = started.elapsed();
    Ok(MigrateReport {
        from: redacted(&text_of(from)),
        to: redacted(&text_of(to)),
        append: options.append,
        tables,
        rows,
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        rows_per_second: (rows as f64 / elapsed.as_secs_f64().max(1e-6)) as u64,
    })
}

fn copy_all(
    source: &mut dyn Db,
    target: &mut dyn Db,
    options: &mut MigrateOptions,
    total: u64,
) -> Result<Vec<TableChecksum>> {
    if !options.append {
        for table in TABLES {
            if target.count(table)? > 0 {
                return Err(Error::TargetNotEmpty { table: table.name.to_string() });
            }
        }
    }
    let batch = options.batch;
    let append = options.append;
    let mut progress = |phase, table: &'static str, done| {
        if let Some(f) = options.progress.as_mut() {
            f(&MigrateProgress { phase, table, done, total });
        }
    };
    // Copy: every table from the snapshot, hashed as it is read.
    let mut read = Vec::with_capacity(TABLES.len());
    let mut done = 0u64;
    for table in TABLES {
        let mut tally = Tally::default();
        // With `append` the target holds other rows too: only the copied keys are compared.
        let mut keys: HashSet<Vec<Cell>> = HashSet::new();
        source.scan(table, batch, &mut |rows| {
            rows.iter().for_each(|r| tally.add(r));
            if append {
                keys.extend(rows.iter().map(|r| table.key_of(r)));
            }
            target.insert(table, &rows)?;
            done += rows.len() as u64;
            progress(MigratePhase::Copy, table.name, done);
            Ok(())
        })?;
        read.push((table, tally.rows, tally.checksum(), keys));
    }
    // Verify: read back in the same transaction; a difference commits nothing.
    let mut out = Vec::with_capacity(TABLES.len());
    let mut done = 0u64;
    for (table, rows, checksum, keys) in read {
        let mut tally = Tally::default();
        target.scan(table, batch, &mut |found| {
            for r in found.iter().filter(|r| !append || keys.contains(&table.key_of(r))) {
                tally.add(r);
            }
            done += found.len() as u64;
            progress(MigratePhase::Verify, table.name, done.min(total));
            Ok(())
        })?;
        let (found_rows, found) = (tally.rows, tally.checksum());
        if found_rows != rows || found != checksum {
            return Err(Error::MigrateMismatch {
                table: table.name.to_string(),
                detail: format!("{rows} rows read, {found_rows} found in the target; checksums {checksum} and {found}"),
            });
        }
        let next_id = if table.serial { Some(target.fix_sequence(table)?) } else { None };
        out.push(TableChecksum { name: table.name.to_string(), rows, checksum, next_id });
    }
    Ok(out)
}

/// Row count and checksum of every table of the database `db`, in one
/// snapshot (the rendering [`migrate()`] verifies with): two databases
/// with equal checksums hold the same rows, whatever their backends.
pub fn checksums(db: impl AsRef<Path>) -> Result<Vec<TableChecksum>> {
    let mut conn = connect(db.as_ref(), true)?;
    conn.begin_snapshot()?;
    let mut out = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let mut tally = Tally::default();
        conn.scan(table, 1000, &mut |rows| {
            rows.iter().for_each(|r| tally.add(r));
            Ok(())
        })?;
        out.push(TableChecksum {
            name: table.name.to_string(),
            rows: tally.rows,
            checksum: tally.checksum(),
            next_id: None,
        });
    }
    conn.rollback()?;
    Ok(out)
}

/// The tables a migration copies, in order.
pub fn migrated_tables() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.name).collect()
}

/// `SELECT <columns> FROM <table> ORDER BY <key>`, identifiers quoted with
/// `quote`; `order` renders one key column of the given kind (byte order for text).
fn select_sql(table: &Table, quote: fn(&str) -> String, order: fn(&str, Kind) -> String) -> String {
    let columns: Vec<String> = table.columns.iter().map(|(c, _)| quote(c)).collect();
    let key: Vec<String> = table
        .key
        .iter()
        .map(|k| order(&quote(k), table.columns.iter().find(|(c, _)| c == k).map_or(Int, |(_, kind)| *kind)))
        .collect();
    format!("SELECT {} FROM {} ORDER BY {}", columns.join(", "), quote(table.name), key.join(", "))
}

#[cfg(any(feature = "sqlite", feature = "mysql"))]
fn insert_sql(table: &Table, quote: fn(&str) -> String, rows: usize) -> String {
    let columns: Vec<String> = table.columns.iter().map(|(c, _)| quote(c)).collect();
    let one = format!("({})", vec!["?"; columns.len()].join(", "));
    format!("INSERT INTO {} ({}) VALUES {}", quote(table.name), columns.join(", "), vec![one; rows].join(", "))
}

#[cfg(feature = "sqlite")]
mod lite {
    use super::{conflict, insert_sql, select_sql, Cell, Db, Kind, Row, Table};
    use crate::{Error, Result};
    use rusqlite::types::{ToSqlOutput, Value, ValueRef};
    use rusqlite::Connection;
    use std::path::Path;

    pub(super) struct Lite(Connection);

    impl Lite {
        pub(super) fn connect(path: &Path) -> Result<Self> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.execute_batch("PRAGMA foreign_keys=ON;")?;
            Ok(Lite(conn))
        }
    }

    fn quote(name: &str) -> String {
        format!("\"{name}\"")
    }

    fn order(column: &str, _: Kind) -> String {
        column.to_string() // BINARY collation: byte order
    }

    impl rusqlite::ToSql for Cell {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(match self {
                Cell::Null => ToSqlOutput::Owned(Value::Null),
                Cell::Int(n) => ToSqlOutput::Owned(Value::Integer(*n)),
                Cell::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
                Cell::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            })
        }
    }

    fn cell(value: ValueRef<'_>, kind: Kind) -> Result<Cell> {
        let bad = |what: &str| Error::Storage(format!("unexpected {what} in a {kind:?} column"));
        Ok(match (value, kind) {
            (ValueRef::Null, _) => Cell::Null,
            (ValueRef::Integer(n), Kind::Int) => Cell::Int(n),
            (ValueRef::Integer(n), Kind::Bool) => Cell::Bool(n != 0),
            (ValueRef::Integer(n), Kind::Text) => Cell::Text(n.to_string()),
            (ValueRef::Text(t), Kind::Text) => {
                Cell::Text(String::from_utf8(t.to_vec()).map_err(|_| bad("text that is not UTF-8"))?)
            }
            (ValueRef::Text(t), Kind::Int) => {
                Cell::Int(std::str::from_utf8(t).ok().and_then(|t| t.trim().parse().ok()).ok_or_else(|| bad("text"))?)
            }
            (ValueRef::Real(_), _) => return Err(bad("real number")),
            (ValueRef::Blob(_), _) => return Err(bad("blob")),
            (ValueRef::Text(_), Kind::Bool) => return Err(bad("text")),
        })
    }

    fn is_unique_violation(e: &rusqlite::Error) -> bool {
        matches!(e, rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
    }

    impl Db for Lite {
        fn begin_snapshot(&mut self) -> Result<()> {
            // The snapshot starts at the first read (the counts), in WAL mode without blocking writers.
            Ok(self.0.execute_batch("BEGIN DEFERRED")?)
        }
        fn begin_write(&mut self) -> Result<()> {
            Ok(self.0.execute_batch("BEGIN IMMEDIATE")?)
        }
        fn commit(&mut self) -> Result<()> {
            Ok(self.0.execute_batch("COMMIT")?)
        }
        fn rollback(&mut self) -> Result<()> {
            if !self.0.is_autocommit() {
                self.0.execute_batch("ROLLBACK")?;
            }
            Ok(())
        }
        fn count(&mut self, table: &Table) -> Result<u64> {
            let n: i64 = self.0.query_row(&format!("SELECT COUNT(*) FROM {}", quote(table.name)), [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        }
        fn scan(&mut self, table: &Table, batch: usize, each: &mut dyn FnMut(Vec<Row>) -> Result<()>) -> Result<()> {
            let mut statement = self.0.prepare(&select_sql(table, quote, order))?;
            let mut rows = statement.query([])?;
            let mut chunk = Vec::with_capacity(batch);
            while let Some(r) = rows.next()? {
                let row = table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, kind))| cell(r.get_ref(i)?, *kind))
                    .collect::<Result<Row>>()?;
                chunk.push(row);
                if chunk.len() == batch {
                    each(std::mem::replace(&mut chunk, Vec::with_capacity(batch)))?;
                }
            }
            if !chunk.is_empty() {
                each(chunk)?;
            }
            Ok(())
        }
        fn insert(&mut self, table: &Table, rows: &[Row]) -> Result<()> {
            // One prepared single-row INSERT: no round trips to save on a file.
            let mut statement = self.0.prepare_cached(&insert_sql(table, quote, 1))?;
            for row in rows {
                statement.execute(rusqlite::params_from_iter(row.iter())).map_err(|e| {
                    if is_unique_violation(&e) {
                        conflict(table)
                    } else {
                        Error::from(e)
                    }
                })?;
            }
            Ok(())
        }
        fn fix_sequence(&mut self, table: &Table) -> Result<i64> {
            // INTEGER PRIMARY KEY: SQLite hands out MAX(id) + 1 by itself.
            let max: Option<i64> =
                self.0.query_row(&format!("SELECT MAX(id) FROM {}", quote(table.name)), [], |r| r.get(0))?;
            Ok(max.unwrap_or(0) + 1)
        }
    }
}

#[cfg(feature = "postgres")]
mod pg {
    use super::{conflict, render, select_sql, Cell, Db, Kind, Row, Table};
    use crate::{Error, Result};
    use postgres::types::Type;
    use postgres::{Client, NoTls};
    use std::io::Write;

    pub(super) struct Pg(Client);

    fn storage(e: &postgres::Error) -> Error {
        // SQLSTATE and message; never the DETAIL, which can quote values.
        match e.as_db_error() {
            Some(db) => Error::Storage(format!("postgres {}: {}", db.code().code(), db.message())),
            None => Error::Storage(format!("postgres: {e}")),
        }
    }

    fn quote(name: &str) -> String {
        format!("\"{name}\"")
    }

    fn order(column: &str, kind: Kind) -> String {
        match kind {
            Kind::Text => format!("{column} COLLATE \"C\""), // byte order, as SQLite and MySQL's binary
            _ => column.to_string(),
        }
    }

    impl Pg {
        pub(super) fn connect(url: &str) -> Result<Self> {
            let config: postgres::Config =
                url.parse().map_err(|_| Error::Storage("not a PostgreSQL URL (postgres://user@host/db)".into()))?;
            Ok(Pg(config.connect(NoTls).map_err(|e| storage(&e))?))
        }
        fn run(&mut self, sql: &str) -> Result<()> {
            self.0.batch_execute(sql).map_err(|e| storage(&e))
        }
    }

    fn cell(row: &postgres::Row, i: usize, kind: Kind) -> Result<Cell> {
        let ty = row.columns().get(i).map(|c| c.type_().clone()).ok_or_else(|| Error::Storage("no column".into()))?;
        let got = |e: postgres::Error| storage(&e);
        let int = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
        Ok(match kind {
            _ if ty == Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(got)?.map_or(Cell::Null, |b| {
                if kind == Kind::Bool {
                    Cell::Bool(b)
                } else {
                    Cell::Int(i64::from(b))
                }
            }),
            Kind::Int | Kind::Bool => {
                let n = if ty == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i).map_err(got)?.map(i64::from)
                } else if ty == Type::INT2 {
                    row.try_get::<_, Option<i16>>(i).map_err(got)?.map(i64::from)
                } else {
                    row.try_get::<_, Option<i64>>(i).map_err(got)?
                };
                match (kind, n) {
                    (Kind::Bool, Some(n)) => Cell::Bool(n != 0),
                    _ => int(n),
                }
            }
            Kind::Text => row.try_get::<_, Option<String>>(i).map_err(got)?.map_or(Cell::Null, Cell::Text),
        })
    }

    impl Db for Pg {
        fn begin_snapshot(&mut self) -> Result<()> {
            self.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        }
        fn begin_write(&mut self) -> Result<()> {
            self.run("START TRANSACTION")
        }
        fn commit(&mut self) -> Result<()> {
            self.run("COMMIT")
        }
        fn rollback(&mut self) -> Result<()> {
            self.run("ROLLBACK")
        }
        fn count(&mut self, table: &Table) -> Result<u64> {
            let row = self
                .0
                .query_one(&format!("SELECT COUNT(*) FROM {}", quote(table.name)), &[])
                .map_err(|e| storage(&e))?;
            let n: i64 = row.try_get(0).map_err(|e| storage(&e))?;
            Ok(u64::try_from(n).unwrap_or(0))
        }
        fn scan(&mut self, table: &Table, batch: usize, each: &mut dyn FnMut(Vec<Row>) -> Result<()>) -> Result<()> {
            // A cursor: the server hands over `batch` rows at a time.
            self.run(&format!("DECLARE callbook_migrate NO SCROLL CURSOR FOR {}", select_sql(table, quote, order)))?;
            let fetch = format!("FETCH FORWARD {batch} FROM callbook_migrate");
            loop {
                let found = self.0.query(&fetch, &[]).map_err(|e| storage(&e))?;
                if found.is_empty() {
                    break;
                }
                let rows = found
                    .iter()
                    .map(|r| table.columns.iter().enumerate().map(|(i, (_, kind))| cell(r, i, *kind)).collect())
                    .collect::<Result<Vec<Row>>>()?;
                each(rows)?;
            }
            self.run("CLOSE callbook_migrate")
        }
        fn insert(&mut self, table: &Table, rows: &[Row]) -> Result<()> {
            // COPY in the text format: the canonical rendering is that format.
            let columns: Vec<String> = table.columns.iter().map(|(c, _)| quote(c)).collect();
            let sql = format!("COPY {} ({}) FROM STDIN", quote(table.name), columns.join(", "));
            let mut text = String::new();
            rows.iter().for_each(|r| render(r, &mut text));
            let mut writer = self.0.copy_in(&sql).map_err(|e| storage(&e))?;
            writer.write_all(text.as_bytes()).map_err(|e| Error::Storage(format!("postgres COPY: {e}")))?;
            writer.finish().map_err(|e| match e.code() {
                Some(code) if *code == postgres::error::SqlState::UNIQUE_VIOLATION => conflict(table),
                _ => storage(&e),
            })?;
            Ok(())
        }
        fn fix_sequence(&mut self, table: &Table) -> Result<i64> {
            let name = quote(table.name);
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{name}', 'id'), GREATEST(COALESCE(MAX(id), 0), 1), \
                 MAX(id) IS NOT NULL), COALESCE(MAX(id), 0) + 1 FROM {name}"
            );
            let row = self.0.query_one(&sql, &[]).map_err(|e| storage(&e))?;
            row.try_get(1).map_err(|e| storage(&e))
        }
    }
}

#[cfg(feature = "mysql")]
mod my {
    use super::{conflict, insert_sql, select_sql, Cell, Db, Kind, Row, Table};
    use crate::{Error, Result};
    use mysql::prelude::Queryable;
    use mysql::{Opts, Params, Value};

    pub(super) struct My(mysql::Conn);

    fn storage(e: &mysql::Error) -> Error {
        // Code and SQLSTATE only: MySQL's messages quote the offending values.
        match e {
            mysql::Error::MySqlError(m) => Error::Storage(format!("mysql error {} ({})", m.code, m.state)),
            other => Error::Storage(format!("mysql: {}", other.to_string().chars().take(120).collect::<String>())),
        }
    }

    fn quote(name: &str) -> String {
        format!("`{name}`")
    }

    fn order(column: &str, kind: Kind) -> String {
        match kind {
            Kind::Text => format!("CAST({column} AS BINARY)"), // byte order, no padding
            _ => column.to_string(),
        }
    }

    /// Placeholders one statement may have.
    const MAX_PLACEHOLDERS: usize = 65_535;

    impl My {
        pub(super) fn connect(url: &str) -> Result<Self> {
            let opts = Opts::from_url(&url.replacen("mariadb://", "mysql://", 1))
                .map_err(|_| Error::Storage("not a MySQL URL (mysql://user@host/db)".into()))?;
            Ok(My(mysql::Conn::new(opts).map_err(|e| storage(&e))?))
        }
        fn run(&mut self, sql: &str) -> Result<()> {
            self.0.query_drop(sql).map_err(|e| storage(&e))
        }
    }

    fn cell(value: Option<&Value>, kind: Kind) -> Result<Cell> {
        let bad = || Error::Storage(format!("unexpected value in a {kind:?} column"));
        let number = |n: i64| match kind {
            Kind::Bool => Cell::Bool(n != 0),
            Kind::Int => Cell::Int(n),
            Kind::Text => Cell::Text(n.to_string()),
        };
        Ok(match value {
            None | Some(Value::NULL) => Cell::Null,
            Some(Value::Int(n)) => number(*n),
            Some(Value::UInt(n)) => number(i64::try_from(*n).map_err(|_| bad())?),
            Some(Value::Bytes(b)) => match kind {
                Kind::Text => Cell::Text(String::from_utf8(b.clone()).map_err(|_| bad())?),
                _ => number(std::str::from_utf8(b).ok().and_then(|t| t.trim().parse().ok()).ok_or_else(bad)?),
            },
            Some(_) => return Err(bad()),
        })
    }

    fn value(cell: &Cell) -> Value {
        match cell {
            Cell::Null => Value::NULL,
            Cell::Int(n) => Value::Int(*n),
            Cell::Bool(b) => Value::Int(i64::from(*b)),
            Cell::Text(t) => Value::Bytes(t.as_bytes().to_vec()),
        }
    }

    impl Db for My {
        fn begin_snapshot(&mut self) -> Result<()> {
            // The snapshot needs REPEATABLE READ (under READ COMMITTED each statement sees its own).
            self.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
            self.run("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        }
        fn begin_write(&mut self) -> Result<()> {
            self.run("START TRANSACTION")
        }
        fn commit(&mut self) -> Result<()> {
            self.run("COMMIT")
        }
        fn rollback(&mut self) -> Result<()> {
            self.run("ROLLBACK")
        }
        fn count(&mut self, table: &Table) -> Result<u64> {
            let n: Option<u64> =
                self.0.query_first(format!("SELECT COUNT(*) FROM {}", quote(table.name))).map_err(|e| storage(&e))?;
            Ok(n.unwrap_or(0))
        }
        fn scan(&mut self, table: &Table, batch: usize, each: &mut dyn FnMut(Vec<Row>) -> Result<()>) -> Result<()> {
            // A streamed result: rows arrive as they are read, `batch` handed over at a time.
            let mut result = self.0.query_iter(select_sql(table, quote, order)).map_err(|e| storage(&e))?;
            let mut chunk = Vec::with_capacity(batch);
            for r in result.by_ref() {
                let r = r.map_err(|e| storage(&e))?;
                let row = table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, kind))| cell(r.as_ref(i), *kind))
                    .collect::<Result<Row>>()?;
                chunk.push(row);
                if chunk.len() == batch {
                    each(std::mem::replace(&mut chunk, Vec::with_capacity(batch)))?;
                }
            }
            if !chunk.is_empty() {
                each(chunk)?;
            }
            Ok(())
        }
        fn insert(&mut self, table: &Table, rows: &[Row]) -> Result<()> {
            let per_statement = (MAX_PLACEHOLDERS / table.columns.len()).max(1);
            for part in rows.chunks(per_statement) {
                let params: Vec<Value> = part.iter().flat_map(|r| r.iter().map(value)).collect();
                self.0.exec_drop(insert_sql(table, quote, part.len()), Params::Positional(params)).map_err(
                    |e| match &e {
                        mysql::Error::MySqlError(m) if m.code == 1062 => conflict(table),
                        _ => storage(&e),
                    },
                )?;
            }
            Ok(())
        }
        fn fix_sequence(&mut self, table: &Table) -> Result<i64> {
            let max: Option<i64> = self
                .0
                .query_first(format!("SELECT COALESCE(MAX(id), 0) FROM {}", quote(table.name)))
                .map_err(|e| storage(&e))?;
            Ok(max.unwrap_or(0) + 1)
        }
        fn after_commit(&mut self, tables: &[&Table]) -> Result<()> {
            // ALTER TABLE commits implicitly: after the copy's own commit. An
            // AUTO_INCREMENT at or below the highest id becomes MAX(id) + 1.
            for table in tables {
                let next = self.fix_sequence(table)?;
                self.run(&format!("ALTER TABLE {} AUTO_INCREMENT = {next}", quote(table.name)))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{render, Cell, Kind, TABLES};
    use std::collections::BTreeMap;

    /// A column as a schema file declares it: its type and whether a sequence assigns it.
    #[derive(Debug, Clone)]
    struct Declared {
        ty: String,
        serial: bool,
    }

    type Schema = BTreeMap<String, BTreeMap<String, Declared>>;

    /// Splits at commas outside parentheses.
    fn items(body: &str) -> Vec<String> {
        let (mut out, mut depth, mut current) = (Vec::new(), 0i32, String::new());
        for c in body.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(std::mem::take(&mut current).trim().to_string());
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        if !current.trim().is_empty() {
            out.push(current.trim().to_string());
        }
        out
    }

    fn name(word: &str) -> String {
        word.trim_matches(|c| c == '`' || c == '"').to_lowercase()
    }

    /// A column definition, or `None` for a constraint or a generated column (the target computes it).
    fn column(item: &str) -> Option<(String, Declared)> {
        let mut words = item.split_whitespace();
        let first = words.next()?;
        let upper = item.to_uppercase();
        let ty = words.next().unwrap_or_default().to_uppercase();
        let first_upper = first.to_uppercase();
        // `KEY name (…)` and `INDEX name (…)` are MySQL's indexes; a column may be called `key`.
        let index = ["INDEX", "KEY"].contains(&first_upper.as_str()) && kind_of(&ty).is_none();
        if ["PRIMARY", "UNIQUE", "FOREIGN", "CONSTRAINT", "CHECK"].contains(&first_upper.as_str())
            || index
            || upper.contains(" AS (")
        {
            return None;
        }
        let serial = ty == "BIGSERIAL" || ty == "SERIAL" || upper.contains("AUTO_INCREMENT");
        Some((name(first), Declared { ty, serial }))
    }

    /// Every table and column the schema files of one backend create, in version order.
    fn schema(backend: &str) -> Schema {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let mut files: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(&dir)
            .expect("schema directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let stem = p.file_name()?.to_str()?.strip_suffix(".sql")?.to_string();
                let rest = stem.strip_prefix(&format!("schema_{backend}"))?;
                let version = if rest.is_empty() { 1 } else { rest.strip_prefix("_v")?.parse().ok()? };
                Some((version, p))
            })
            .collect();
        files.sort();
        assert!(files.len() > 1, "{backend}: schema files found");
        let mut tables = Schema::new();
        for (_, file) in files {
            let text = std::fs::read_to_string(&file).expect("reads");
            let text: String = text.lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
            for statement in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                let words: Vec<&str> = statement.split_whitespace().collect();
                let upper: Vec<String> = words.iter().take(3).map(|w| w.to_uppercase()).collect();
                match (upper.first().map(String::as_str), upper.get(1).map(String::as_str)) {
                    (Some("CREATE"), Some("TABLE")) => {
                        let table = name(words[2].split('(').next().unwrap_or_default());
                        let open = statement.find('(').expect("a column list");
                        let close = statement.rfind(')').expect("a column list");
                        let columns = items(&statement[open + 1..close]).iter().filter_map(|i| column(i)).collect();
                        tables.insert(table, columns);
                    }
                    (Some("DROP"), Some("TABLE")) => {
                        tables.remove(&name(words[2]));
                    }
                    (Some("ALTER"), Some("TABLE")) => {
                        let table = tables.get_mut(&name(words[2])).expect("altered table exists");
                        let rest = statement.splitn(4, char::is_whitespace).nth(3).unwrap_or_default();
                        for item in items(rest) {
                            let upper = item.to_uppercase();
                            let mut parts = item.split_whitespace();
                            if upper.starts_with("ADD COLUMN") {
                                let definition: String = parts.skip(2).collect::<Vec<_>>().join(" ");
                                if let Some((c, d)) = column(&definition) {
                                    table.insert(c, d);
                                }
                            } else if upper.starts_with("DROP COLUMN") {
                                table.remove(&name(parts.nth(2).unwrap_or_default()));
                            } else if upper.starts_with("MODIFY") || upper.starts_with("ALTER COLUMN") {
                                let skip = if upper.starts_with("MODIFY") { 1 } else { 2 };
                                let definition: String = parts.skip(skip).collect::<Vec<_>>().join(" ");
                                if let Some((c, d)) = column(&definition) {
                                    table.insert(c, d);
                                }
                            } else {
                                panic!(
                                    "{}: ALTER TABLE … {item:?} is not understood here: teach this test",
                                    file.display()
                                );
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        tables
    }

    fn kind_of(ty: &str) -> Option<Kind> {
        let base = ty.split('(').next().unwrap_or_default();
        match base {
            "INTEGER" | "BIGINT" | "BIGSERIAL" | "INT" => Some(Kind::Int),
            "TEXT" | "VARCHAR" => Some(Kind::Text),
            "BOOLEAN" => Some(Kind::Bool),
            _ => None,
        }
    }

    /// The migration's list is the schema: a table or a column added to a
    /// schema file and not to `TABLES` fails here (and so does one dropped).
    #[test]
    fn every_table_and_column_of_every_schema_is_migrated() {
        for backend in ["sqlite", "postgres", "mysql"] {
            let declared = schema(backend);
            let listed: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
            let mut tables: Vec<&str> = declared.keys().map(String::as_str).collect();
            tables.sort_unstable();
            let mut sorted = listed.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, tables, "{backend}: the tables migrate copies are the tables of the schema");
            for table in TABLES {
                let columns = &declared[table.name];
                let mut want: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
                want.sort_unstable();
                let have: Vec<&str> = columns.keys().map(String::as_str).collect();
                assert_eq!(want, have, "{backend}: the columns of {}", table.name);
                for (column, kind) in table.columns {
                    let d = &columns[*column];
                    let found = kind_of(&d.ty).unwrap_or_else(|| panic!("{backend}: type {} of {column}", d.ty));
                    // SQLite keeps booleans as INTEGER 0/1.
                    let fits = found == *kind || (backend == "sqlite" && *kind == Kind::Bool && found == Kind::Int);
                    assert!(fits, "{backend}: {}.{column} is {} but listed as {kind:?}", table.name, d.ty);
                }
                if backend != "sqlite" {
                    let serial = columns.get("id").is_some_and(|d| d.serial);
                    assert_eq!(serial, table.serial, "{backend}: {} id from a sequence", table.name);
                }
                for key in table.key {
                    assert!(table.column_index(key).is_some(), "{}: key {key} is a column", table.name);
                }
            }
        }
    }

    /// Parents come before children: every table a `REFERENCES` names is copied earlier.
    #[test]
    fn tables_are_copied_after_the_tables_they_reference() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        for entry in std::fs::read_dir(dir).expect("schema directory").filter_map(Result::ok) {
            let text = std::fs::read_to_string(entry.path()).expect("reads");
            let text: String = text.lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
            for statement in text.split(';') {
                let words: Vec<&str> = statement.split_whitespace().collect();
                let Some(at) = words.iter().position(|w| w.eq_ignore_ascii_case("TABLE")) else { continue };
                let Some(table) = words.get(at + 1).map(|w| name(w.split('(').next().unwrap_or_default())) else {
                    continue;
                };
                let Some(position) = TABLES.iter().position(|t| t.name == table) else { continue };
                for (i, w) in words.iter().enumerate() {
                    if w.eq_ignore_ascii_case("REFERENCES") {
                        let parent = name(words[i + 1].split('(').next().unwrap_or_default());
                        let before = TABLES.iter().position(|t| t.name == parent).expect("parent is migrated");
                        assert!(before < position, "{parent} is copied before {table}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_canonical_rendering_escapes_what_would_be_ambiguous() {
        let mut line = String::new();
        render(
            &[
                Cell::Int(-7),
                Cell::Null,
                Cell::Text("\\N".into()),
                Cell::Text("a\tb\nc\rd\\".into()),
                Cell::Bool(true),
                Cell::Bool(false),
                Cell::Text(String::new()),
            ],
            &mut line,
        );
        assert_eq!(line, "-7\t\\N\t\\\\N\ta\\tb\\nc\\rd\\\\\tt\tf\t\n");
        // NULL and the text "\N" differ, as do an empty text and NULL.
        let mut null = String::new();
        render(&[Cell::Null], &mut null);
        let mut empty = String::new();
        render(&[Cell::Text(String::new())], &mut empty);
        assert_ne!(null, empty);
    }
}
