//! The PostgreSQL driver behind [`super::server`]: runs the SQL of
//! [`super::sql`], its `?` placeholders numbered `$n`.

use super::server::{Connector, JobListener, ServerStore};
use super::sql::{Conn, Dialect, SqlRow, Val};
use crate::{Error, Result};
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, NoTls};

fn storage(e: postgres::Error) -> Error {
    // The server's message and SQLSTATE; never the DETAIL, which can quote values.
    match e.as_db_error() {
        Some(db) => Error::Storage(format!("postgres {}: {}", db.code().code(), db.message())),
        None => Error::Storage(format!("postgres: {e}")),
    }
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

struct PgConn(Client);

impl PgConn {
    fn params<'a>(params: &'a [Val<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
        params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
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
        for r in self.0.query(&numbered(sql), &Self::params(params)).map_err(storage)? {
            row(&PgRow(&r))?;
        }
        Ok(())
    }
    fn execute(&mut self, sql: &str, params: &[Val<'_>]) -> Result<u64> {
        self.0.execute(&numbered(sql), &Self::params(params)).map_err(storage)
    }
    fn insert(&mut self, sql: &str, params: &[Val<'_>]) -> Result<i64> {
        let row =
            self.0.query_one(&numbered(&format!("{sql} RETURNING id")), &Self::params(params)).map_err(storage)?;
        row.try_get(0).map_err(storage)
    }
    fn batch(&mut self, sql: &str) -> Result<()> {
        self.0.batch_execute(sql).map_err(storage)
    }
}

struct PgConnector(postgres::Config);

impl Connector for PgConnector {
    fn connect(&self) -> Result<Box<dyn Conn + Send>> {
        Ok(Box::new(PgConn(self.0.connect(NoTls).map_err(storage)?)))
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
        let config: postgres::Config =
            url.parse().map_err(|_| Error::Storage("not a PostgreSQL URL (postgres://user@host/db)".into()))?;
        ServerStore::open(Box::new(PgConnector(config)), "postgres", SCHEMA)
    }
}
