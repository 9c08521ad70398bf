//! The MySQL/MariaDB driver behind [`super::server`]: runs the SQL of
//! [`super::sql`]; sessions run READ COMMITTED (InnoDB's default REPEATABLE READ
//! takes gap locks that deadlock concurrent bookings) and count matched rows.

use super::server::{Connector, ServerStore};
use super::sql::{Conn, Dialect, SqlRow, Val};
use crate::{Error, Result};
use mysql::prelude::Queryable;
use mysql::{Opts, OptsBuilder, Params, Value};

fn storage(e: mysql::Error) -> Error {
    // Code and SQLSTATE only: MySQL's messages quote the offending values.
    match e {
        mysql::Error::MySqlError(m) => Error::Storage(format!("mysql error {} ({})", m.code, m.state)),
        other => Error::Storage(format!("mysql: {}", other.to_string().chars().take(120).collect::<String>())),
    }
}

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

struct MyConn(mysql::Conn);

impl Conn for MyConn {
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }
    fn each(&mut self, sql: &str, values: &[Val<'_>], row: &mut dyn FnMut(&dyn SqlRow) -> Result<()>) -> Result<()> {
        let rows: Vec<mysql::Row> = self.0.exec(sql, params(values)).map_err(storage)?;
        rows.iter().try_for_each(|r| row(&MyRow(r)))
    }
    fn execute(&mut self, sql: &str, values: &[Val<'_>]) -> Result<u64> {
        self.0.exec_drop(sql, params(values)).map_err(storage)?;
        Ok(self.0.affected_rows())
    }
    fn insert(&mut self, sql: &str, values: &[Val<'_>]) -> Result<i64> {
        self.0.exec_drop(sql, params(values)).map_err(storage)?;
        i64::try_from(self.0.last_insert_id()).map_err(|_| Error::Storage("id out of range".into()))
    }
    fn batch(&mut self, sql: &str) -> Result<()> {
        self.0.query_drop(sql).map_err(storage)
    }
}

struct MyConnector(Opts);

impl Connector for MyConnector {
    fn connect(&self) -> Result<Box<dyn Conn + Send>> {
        let mut conn = mysql::Conn::new(self.0.clone()).map_err(storage)?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").map_err(storage)?;
        Ok(Box::new(MyConn(conn)))
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
        let opts = Opts::from_url(url).map_err(|_| Error::Storage("not a MySQL URL (mysql://user@host/db)".into()))?;
        // "Rows changed" counts matched rows, as on PostgreSQL and SQLite.
        let opts: Opts = OptsBuilder::from_opts(opts)
            .additional_capabilities(mysql::consts::CapabilityFlags::CLIENT_FOUND_ROWS)
            .into();
        ServerStore::open(Box::new(MyConnector(opts)), "mysql", SCHEMA)
    }
}
