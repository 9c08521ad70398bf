//! The PostgreSQL driver behind [`super::server`]: runs the SQL of
//! [`super::sql`], its `?` placeholders numbered `$n`, each statement
//! prepared once per connection. Locks are transaction-level advisory
//! locks, released by COMMIT or ROLLBACK.

use super::lock::{lock_order, Lock};
use super::server::{Connector, JobListener, ServerStore};
use super::sql::{Conn, Dialect, SqlRow, Val};
use crate::{Error, Result};
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;

/// What a SQLSTATE means to callbook: the same transaction may pass when
/// run again (serialization failure, deadlock, lock not available), the
/// server cannot be reached (connection exceptions, shutdown, start-up),
/// or a plain storage error.
pub(crate) fn classify(sqlstate: &str, text: String) -> Error {
    match sqlstate {
        "40001" | "40P01" | "55P03" => Error::StorageBusy(text),
        s if s.starts_with("08") || matches!(s, "57P01" | "57P02" | "57P03") => Error::StorageUnavailable(text),
        _ => Error::Storage(text),
    }
}

fn storage(e: postgres::Error) -> Error {
    // The server's message and SQLSTATE; never the DETAIL, which can quote values.
    match e.as_db_error() {
        Some(db) => classify(db.code().code(), format!("postgres {}: {}", db.code().code(), db.message())),
        // No answer from the server: the connection is closed or the socket failed.
        None if e.is_closed() || io_failure(&e) => Error::StorageUnavailable(format!("postgres: {e}")),
        None => Error::Storage(format!("postgres: {e}")),
    }
}

fn io_failure(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

impl ToSql for Val<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Val::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Val::Int(i) if *ty == Type::TEXT || *ty == Type::VARCHAR => i.to_string().to_sql(ty, out),
            Val::Int(i) => i.to_sql(ty, out),
            Val::Text(s) => s.as_ref().to_sql(ty, out),
            Val::Bool(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            Val::Bool(b) => i64::from(*b).to_sql(ty, out),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// `?` → `$1`, `$2`, … (callbook's SQL has no `?` inside literals).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most this many prepared statements per connection (callbook has
/// fewer; the bound keeps a stray dynamic one from growing it for ever).
const STATEMENTS: usize = 256;

struct PgConn {
    client: Client,
    /// Prepared once per connection: a statement is then one round trip, not two.
    statements: HashMap<String, Statement>,
    /// The last transient refusal in this transaction (see `Conn::take_transient`).
    transient: Option<String>,
}

impl PgConn {
    fn params<'a>(params: &'a [Val<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
        params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
    }

    fn noted(&mut self, e: postgres::Error) -> Error {
        let e = storage(e);
        if let Error::StorageBusy(text) = &e {
            self.transient = Some(text.clone());
        }
        e
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = match self.client.prepare(&numbered(sql)) {
            Ok(st) => st,
            Err(e) => return Err(self.noted(e)),
        };
        if self.statements.len() >= STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

/// A result row: integers, booleans and text as the schema declares them.
struct PgRow<'r>(&'r postgres::Row);

impl SqlRow for PgRow<'_> {
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        let ty = self
            .0
            .columns()
            .get(i)
            .map(|c| c.type_().clone())
            .ok_or_else(|| Error::Storage("no such column".into()))?;
        let value = if ty == Type::INT8 {
            self.0.try_get::<_, Option<i64>>(i)
        } else if ty == Type::INT4 {
            self.0.try_get::<_, Option<i32>>(i).map(|v| v.map(i64::from))
        } else if ty == Type::BOOL {
            self.0.try_get::<_, Option<bool>>(i).map(|v| v.map(i64::from))
        } else {
            return match self.opt_text(i)? {
                Some(t) => t.trim().parse().map(Some).map_err(|_| Error::Storage(format!("not a number: {t:?}"))),
                None => Ok(None),
            };
        };
        value.map_err(storage)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.0.try_get::<_, Option<String>>(i).map_err(storage)
    }
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn each(&mut self, sql: &str, params: &[Val<'_>], row: &mut dyn FnMut(&dyn SqlRow) -> Result<()>) -> Result<()> {
        let st = self.statement(sql)?;
        let rows = match self.client.query(&st, &Self::params(params)) {
            Ok(rows) => rows,
            Err(e) => return Err(self.noted(e)),
        };
        for r in rows {
            row(&PgRow(&r))?;
        }
        Ok(())
    }
    fn execute(&mut self, sql: &str, params: &[Val<'_>]) -> Result<u64> {
        let st = self.statement(sql)?;
        self.client.execute(&st, &Self::params(params)).map_err(|e| self.noted(e))
    }
    fn insert(&mut self, sql: &str, params: &[Val<'_>]) -> Result<i64> {
        let st = self.statement(&format!("{sql} RETURNING id"))?;
        let row = self.client.query_one(&st, &Self::params(params)).map_err(|e| self.noted(e))?;
        row.try_get(0).map_err(storage)
    }
    fn batch(&mut self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).map_err(|e| self.noted(e))
    }
    /// Transaction-level advisory locks, in the order given (ascending: see
    /// `lock_order`), in one statement. PostgreSQL finds a deadlock among
    /// them and row locks alike (40P01, retried).
    fn take_locks(&mut self, locks: &[Lock]) -> Result<()> {
        let keys = lock_order(locks);
        if keys.is_empty() {
            return Ok(());
        }
        let calls = vec!["pg_advisory_xact_lock(?::bigint)"; keys.len()].join(", ");
        let params: Vec<Val<'_>> = keys.iter().map(|k| Val::Int(*k)).collect();
        self.each(&format!("SELECT {calls}"), &params, &mut |_| Ok(()))
    }
    fn take_transient(&mut self) -> Option<Error> {
        self.transient.take().map(Error::StorageBusy)
    }
}

struct PgConnector(postgres::Config);

impl Connector for PgConnector {
    fn connect(&self) -> Result<Box<dyn Conn + Send>> {
        let client = self.0.connect(NoTls).map_err(storage)?;
        Ok(Box::new(PgConn { client, statements: HashMap::new(), transient: None }))
    }
    fn listen(&self) -> Result<Option<Box<dyn JobListener>>> {
        let mut client = self.0.connect(NoTls).map_err(storage)?;
        client.batch_execute(&format!("LISTEN {JOBS_CHANNEL}")).map_err(storage)?;
        Ok(Some(Box::new(PgListener(client))))
    }
}

/// The channel a job's insert notifies (`pg_notify` in `sql.rs`'s `insert_job`).
const JOBS_CHANNEL: &str = "callbook_jobs";

/// `LISTEN callbook_jobs` on a connection of its own, as River and Oban do:
/// the blocking client's notifications, no async runtime.
struct PgListener(Client);

impl JobListener for PgListener {
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool> {
        use postgres::fallible_iterator::FallibleIterator;
        let woken = {
            let mut notifications = self.0.notifications();
            let woken = notifications.timeout_iter(timeout).next().map_err(storage)?.is_some();
            // Several bookings committed together wake one round of claims.
            while notifications.iter().next().map_err(storage)?.is_some() {}
            woken
        };
        if !woken && self.0.is_closed() {
            // The server went away: an empty answer at once, not a wait.
            return Err(Error::Storage("postgres: the listening connection closed".into()));
        }
        Ok(woken)
    }
}

const SCHEMA: super::server::Schema = &[
    include_str!("schema_postgres.sql"),
    include_str!("schema_postgres_v2.sql"),
    include_str!("schema_postgres_v3.sql"),
    include_str!("schema_postgres_v4.sql"),
    include_str!("schema_postgres_v5.sql"),
    include_str!("schema_postgres_v6.sql"),
];

impl ServerStore {
    /// Opens (creating the tables once) the PostgreSQL database at `url`
    /// (`postgres://user@host:5432/db`).
    pub fn postgres(url: &str) -> Result<Self> {
        let (url, size) = super::server::split_pool_size(url)?;
        Self::postgres_sized(&url, size)
    }

    pub(crate) fn postgres_sized(url: &str, size: Option<usize>) -> Result<Self> {
        let mut config: postgres::Config =
            url.parse().map_err(|_| Error::Storage("not a PostgreSQL URL (postgres://user@host/db)".into()))?;
        // A server that does not answer is `storage_unavailable` soon, not after the OS's TCP timeout.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        ServerStore::open(Box::new(PgConnector(config)), "postgres", SCHEMA, size)
    }
}
