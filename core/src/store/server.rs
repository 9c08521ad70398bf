//! The stores on a database server (PostgreSQL, MySQL/MariaDB): a small
//! pool of connections, one transaction per `write`, schema versions in
//! `callbook_schema`. The SQL is the one of [`super::sql`]; the drivers
//! (`postgres.rs`, `mysql.rs`) only run it. Many processes share the
//! database: the queue claims with `FOR UPDATE SKIP LOCKED`, and a booking
//! takes its company's row lock first, which keeps "one customer per known
//! phone" and capacities true across processes.

use super::sql::{Conn, SqlRow, SqlTx, Val};
use super::{Store, Tx, WriteFn};
use crate::{Error, Result};
use std::sync::Mutex;

/// How to open connections to one server database.
pub(crate) trait Connector: Send + Sync {
    fn connect(&self) -> Result<Box<dyn Conn + Send>>;
    /// A connection of its own that hears new jobs (PostgreSQL `LISTEN`);
    /// `None` where the server cannot (MySQL/MariaDB: workers poll).
    fn listen(&self) -> Result<Option<Box<dyn JobListener>>> {
        Ok(None)
    }
}

/// A dedicated connection listening for enqueued jobs.
pub(crate) trait JobListener: Send {
    /// Waits up to `timeout`: `true` when a job was announced (every
    /// announcement already received is consumed with it).
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool>;
}

/// The listening side of a store: the listener, once a worker asked for it.
#[derive(Default)]
pub(crate) struct Listening {
    wanted: std::sync::atomic::AtomicBool,
    listener: Mutex<Option<Box<dyn JobListener>>>,
}

/// A store on a database server: a small pool of connections, one
/// transaction per `write` (READ COMMITTED), any number of processes.
pub struct ServerStore {
    connector: Box<dyn Connector>,
    pool: Mutex<Vec<Box<dyn Conn + Send>>>,
    what: &'static str,
    listening: Listening,
}

impl std::fmt::Debug for ServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("ServerStore").field("server", &self.what).finish_non_exhaustive()
    }
}

/// The schema files: version 1 creates every table; each later one alters them.
pub(crate) type Schema = &'static [&'static str];

impl ServerStore {
    pub(crate) fn open(connector: Box<dyn Connector>, what: &'static str, schema: Schema) -> Result<Self> {
        let store = ServerStore { connector, pool: Mutex::default(), what, listening: Listening::default() };
        store.migrate(schema)?;
        Ok(store)
    }

    /// Brings the schema up to date, one version at a time; `callbook_schema`
    /// records each. Another process may be migrating at the same time: the
    /// loser's statements fail, and it finds the version written.
    fn migrate(&self, schema: Schema) -> Result<()> {
        let mut conn = self.connector.connect()?;
        conn.batch("CREATE TABLE IF NOT EXISTS callbook_schema (version BIGINT NOT NULL)")?;
        let newest = schema.len() as i64;
        let read_version = |conn: &mut Box<dyn Conn + Send>| -> Result<i64> {
            let mut version = None;
            conn.each("SELECT MAX(version) FROM callbook_schema", &[], &mut |r: &dyn SqlRow| {
                version = r.opt_int(0)?;
                Ok(())
            })?;
            Ok(version.unwrap_or(0))
        };
        let version = read_version(&mut conn)?;
        if version > newest {
            return Err(Error::Storage(format!("database schema {version} is newer than this callbook ({newest})")));
        }
        for (next, sql) in (1..).zip(schema.iter()).skip(version as usize) {
            let applied = sql
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty() && !s.lines().all(|l| l.trim_start().starts_with("--")))
                .try_for_each(|statement| conn.batch(statement));
            match applied {
                Ok(()) => {
                    conn.execute("INSERT INTO callbook_schema (version) VALUES (?)", &[Val::Int(next)]).map(|_| ())?
                }
                Err(e) if read_version(&mut conn)? < next => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Opens the database a `postgres://`, `postgresql://`, `mysql://` or
    /// `mariadb://` URL names, with the matching feature.
    pub fn open_url(url: &str) -> Result<Self> {
        let missing =
            |feature: &str| Error::Storage(format!("this build has no {feature} support (feature `{feature}`)"));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Self::postgres(url);
            #[cfg(not(feature = "postgres"))]
            return Err(missing("postgres"));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            #[cfg(feature = "mysql")]
            return Self::mysql(&url.replacen("mariadb://", "mysql://", 1));
            #[cfg(not(feature = "mysql"))]
            return Err(missing("mysql"));
        }
        let _ = missing;
        Err(Error::Storage("not a database server URL (postgres:// or mysql://)".into()))
    }

    fn take(&self) -> Result<Box<dyn Conn + Send>> {
        match self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(conn) => Ok(conn),
            None => self.connector.connect(),
        }
    }

    fn give_back(&self, conn: Box<dyn Conn + Send>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 16 {
            pool.push(conn);
        }
    }

    fn run(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>, read_only: bool) -> Result<()> {
        let mut conn = self.take()?;
        conn.batch(if read_only { "START TRANSACTION READ ONLY" } else { "START TRANSACTION" })?;
        // A panicking write is rolled back like a failed one and answers `internal`.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut SqlTx::new(&mut *conn))))
            .unwrap_or_else(|_| Err(Error::Internal("the write panicked; nothing of it was kept".into())));
        let ended = match &outcome {
            Ok(()) => conn.batch("COMMIT"),
            Err(_) => conn.batch("ROLLBACK"),
        };
        match ended {
            // A connection whose COMMIT or ROLLBACK failed is not reused.
            Ok(()) => self.give_back(conn),
            Err(e) if outcome.is_ok() => return Err(e),
            Err(_) => {}
        }
        outcome
    }
}

impl Store for ServerStore {
    /// The schema version recorded in `callbook_schema`.
    fn schema_version(&self) -> Result<i64> {
        let mut conn = self.take()?;
        let mut version = None;
        conn.each("SELECT MAX(version) FROM callbook_schema", &[], &mut |r: &dyn SqlRow| {
            version = r.opt_int(0)?;
            Ok(())
        })?;
        self.give_back(conn);
        Ok(version.unwrap_or(0))
    }

    fn write(&self, work: WriteFn) -> Result<()> {
        let mut work = Some(work);
        self.run(
            &mut |tx| match work.take() {
                Some(w) => w(tx),
                None => Err(Error::Storage("write ran twice".into())),
            },
            false,
        )
    }

    fn read(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.run(work, true)
    }

    fn listen_for_jobs(&self) -> Result<()> {
        self.listening.wanted.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut listener = self.listening.listener.lock().unwrap_or_else(|p| p.into_inner());
        if listener.is_none() {
            *listener = self.connector.listen()?;
        }
        Ok(())
    }

    /// Waits on the listening connection; sleeps (polling stays the
    /// fallback) where there is none, while another worker of this process
    /// holds it, or when it broke: then it is opened again at the next wait,
    /// which returns at once (jobs may have come while it was down).
    fn wait_for_jobs(&self, timeout: std::time::Duration) -> bool {
        let started = std::time::Instant::now();
        let sleep_rest = || std::thread::sleep(timeout.saturating_sub(started.elapsed()));
        let Ok(mut listener) = self.listening.listener.try_lock() else {
            sleep_rest();
            return false;
        };
        if listener.is_none() && self.listening.wanted.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(Some(reopened)) = self.connector.listen() {
                *listener = Some(reopened);
                return true;
            }
        }
        let Some(open) = listener.as_mut() else {
            drop(listener);
            sleep_rest();
            return false;
        };
        match open.wait(timeout) {
            Ok(woken) => woken,
            Err(_) => {
                *listener = None;
                drop(listener);
                sleep_rest();
                false
            }
        }
    }
}
