//! The MySQL/MariaDB driver behind [`super::server`]: runs the SQL of
//! [`super::sql`]; sessions run READ COMMITTED (InnoDB's default REPEATABLE READ
//! takes gap locks that deadlock concurrent bookings) and count matched rows.
//! Locks are named user locks (`GET_LOCK`), which belong to the session, not
//! the transaction: released with `RELEASE_ALL_LOCKS()` right after COMMIT
//! or ROLLBACK, or by the server when the connection goes.

use super::lock::{lock_order, Lock};
use super::server::{Connector, ServerStore};
use super::sql::{Conn, Dialect, SqlRow, Val};
use crate::{Error, Result};
use mysql::prelude::Queryable;
use mysql::{Opts, OptsBuilder, Params, Value};

/// What a server error code means to callbook: the same transaction may
/// pass when run again (1213 deadlock, 1205 lock wait timeout), the server
/// is going or gone (1053 shutdown, 1927 connection killed, 2006/2013 gone
/// away, 1040 too many connections), or a plain storage error.
pub(crate) fn classify(code: u16, text: String) -> Error {
    match code {
        1213 | 1205 => Error::StorageBusy(text),
        1040 | 1053 | 1927 | 2006 | 2013 => Error::StorageUnavailable(text),
        _ => Error::Storage(text),
    }
}

fn storage(e: mysql::Error) -> Error {
    // Code and SQLSTATE only: MySQL's messages quote the offending values.
    let text = |e: &mysql::Error| format!("mysql: {}", e.to_string().chars().take(120).collect::<String>());
    match e {
        mysql::Error::MySqlError(m) => classify(m.code, format!("mysql error {} ({})", m.code, m.state)),
        // Socket, packet and connect failures: no server at the other end.
        ref other @ (mysql::Error::IoError(_) | mysql::Error::CodecError(_)) => Error::StorageUnavailable(text(other)),
        ref other @ mysql::Error::DriverError(
            mysql::DriverError::ConnectTimeout | mysql::DriverError::CouldNotConnect(_) | mysql::DriverError::Timeout,
        ) => Error::StorageUnavailable(text(other)),
        other => Error::Storage(text(&other)),
    }
}

/// How long a booking waits for one of its locks before the try counts as
/// refused (`storage_busy`, retried): locks are held for milliseconds.
const LOCK_WAIT_SECS: i64 = 5;

fn value(v: &Val<'_>) -> Value {
    match v {
        Val::Null => Value::NULL,
        Val::Int(i) => Value::Int(*i),
        Val::Text(s) => Value::Bytes(s.as_bytes().to_vec()),
        Val::Bool(b) => Value::Int(i64::from(*b)),
    }
}

fn params(values: &[Val<'_>]) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values.iter().map(value).collect())
    }
}

/// A result row: MySQL sends numbers as numbers or text depending on the protocol.
struct MyRow<'r>(&'r mysql::Row);

impl SqlRow for MyRow<'_> {
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.0.as_ref(i) {
            None | Some(Value::NULL) => Ok(None),
            Some(Value::Int(n)) => Ok(Some(*n)),
            Some(Value::UInt(n)) => {
                i64::try_from(*n).map(Some).map_err(|_| Error::Storage("number out of range".into()))
            }
            Some(Value::Bytes(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| Error::Storage("not a number".into())),
            Some(_) => Err(Error::Storage("not a number".into())),
        }
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.0.as_ref(i) {
            None | Some(Value::NULL) => Ok(None),
            Some(Value::Bytes(b)) => {
                String::from_utf8(b.clone()).map(Some).map_err(|_| Error::Storage("text is not UTF-8".into()))
            }
            Some(Value::Int(n)) => Ok(Some(n.to_string())),
            Some(Value::UInt(n)) => Ok(Some(n.to_string())),
            Some(other) => Ok(Some(other.as_sql(true))),
        }
    }
}

struct MyConn {
    conn: mysql::Conn,
    /// The session holds user locks of this transaction (released by `finish`).
    user_locks: bool,
    /// The last transient refusal in this transaction (see `Conn::take_transient`).
    transient: Option<String>,
}

impl MyConn {
    fn noted(&mut self, e: mysql::Error) -> Error {
        let e = storage(e);
        if let Error::StorageBusy(text) = &e {
            self.transient = Some(text.clone());
        }
        e
    }
}

impl Conn for MyConn {
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }
    fn each(&mut self, sql: &str, values: &[Val<'_>], row: &mut dyn FnMut(&dyn SqlRow) -> Result<()>) -> Result<()> {
        let rows: Vec<mysql::Row> = self.conn.exec(sql, params(values)).map_err(|e| self.noted(e))?;
        rows.iter().try_for_each(|r| row(&MyRow(r)))
    }
    fn execute(&mut self, sql: &str, values: &[Val<'_>]) -> Result<u64> {
        self.conn.exec_drop(sql, params(values)).map_err(|e| self.noted(e))?;
        Ok(self.conn.affected_rows())
    }
    fn insert(&mut self, sql: &str, values: &[Val<'_>]) -> Result<i64> {
        self.conn.exec_drop(sql, params(values)).map_err(|e| self.noted(e))?;
        i64::try_from(self.conn.last_insert_id()).map_err(|_| Error::Storage("id out of range".into()))
    }
    fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn.query_drop(sql).map_err(|e| self.noted(e))
    }
    /// Named locks (server-wide, so the name carries the database), all in
    /// one statement, in the order given (ascending: see `lock_order`). A
    /// lock not had within `LOCK_WAIT_SECS` refuses the try (`storage_busy`).
    fn take_locks(&mut self, locks: &[Lock]) -> Result<()> {
        let keys = lock_order(locks);
        if keys.is_empty() {
            return Ok(());
        }
        // From here the session may hold some of them, whatever happens next.
        self.user_locks = true;
        let calls = vec!["GET_LOCK(CONCAT('callbook:', LEFT(DATABASE(), 40), ':', ?), ?)"; keys.len()].join(", ");
        let values: Vec<Val<'_>> =
            keys.iter().flat_map(|k| [Val::Text(format!("{k:016x}").into()), Val::Int(LOCK_WAIT_SECS)]).collect();
        let mut all = false;
        self.each(&format!("SELECT {calls}"), &values, &mut |r| {
            all = (0..keys.len()).map(|i| r.opt_int(i)).collect::<Result<Vec<_>>>()?.iter().all(|v| *v == Some(1));
            Ok(())
        })?;
        if all {
            Ok(())
        } else {
            let text = "mysql: a lock was not had within the wait (GET_LOCK)".to_string();
            self.transient = Some(text.clone());
            Err(Error::StorageBusy(text))
        }
    }
    /// COMMIT or ROLLBACK, and the user locks go with it, in one round trip.
    fn finish(&mut self, commit: bool) -> Result<()> {
        let end = if commit { "COMMIT" } else { "ROLLBACK" };
        if std::mem::take(&mut self.user_locks) {
            // If the COMMIT fails the second statement does not run; the
            // connection is then dropped, which releases the locks too.
            self.batch(&format!("{end}; DO RELEASE_ALL_LOCKS()"))
        } else {
            self.batch(end)
        }
    }
    fn take_transient(&mut self) -> Option<Error> {
        self.transient.take().map(Error::StorageBusy)
    }
}

struct MyConnector(Opts);

impl Connector for MyConnector {
    fn connect(&self) -> Result<Box<dyn Conn + Send>> {
        let mut conn = mysql::Conn::new(self.0.clone()).map_err(storage)?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").map_err(storage)?;
        Ok(Box::new(MyConn { conn, user_locks: false, transient: None }))
    }
}

const SCHEMA: super::server::Schema = &[
    include_str!("schema_mysql.sql"),
    include_str!("schema_mysql_v2.sql"),
    include_str!("schema_mysql_v3.sql"),
    include_str!("schema_mysql_v4.sql"),
    include_str!("schema_mysql_v5.sql"),
    include_str!("schema_mysql_v6.sql"),
];

impl ServerStore {
    /// Opens (creating the tables once) the MySQL or MariaDB database at
    /// `url` (`mysql://user:password@host:3306/db`; MariaDB 10.6+ or MySQL 8
    /// for `SKIP LOCKED`).
    pub fn mysql(url: &str) -> Result<Self> {
        let (url, size) = super::server::split_pool_size(url)?;
        Self::mysql_sized(&url, size)
    }

    pub(crate) fn mysql_sized(url: &str, size: Option<usize>) -> Result<Self> {
        let opts = Opts::from_url(url).map_err(|_| Error::Storage("not a MySQL URL (mysql://user@host/db)".into()))?;
        let connect_timeout = opts.get_tcp_connect_timeout().or(Some(std::time::Duration::from_secs(5)));
        // "Rows changed" counts matched rows, as on PostgreSQL and SQLite.
        let opts: Opts = OptsBuilder::from_opts(opts)
            .additional_capabilities(mysql::consts::CapabilityFlags::CLIENT_FOUND_ROWS)
            // A server that does not answer is `storage_unavailable` soon, not after the OS's TCP timeout.
            .tcp_connect_timeout(connect_timeout)
            .into();
        ServerStore::open(Box::new(MyConnector(opts)), "mysql", SCHEMA, size)
    }
}
