//! The stores on a database server (PostgreSQL, MySQL/MariaDB): a pool of
//! connections, one transaction per `write`, schema versions in
//! `callbook_schema`. The SQL is the one of [`super::sql`]; the drivers
//! (`postgres.rs`, `mysql.rs`) only run it. Many processes share the
//! database: the queue claims with `FOR UPDATE SKIP LOCKED`, and a booking
//! locks what its rules read (its caller's phone, its slot: see
//! [`super::lock`]), which keeps "one customer per known phone" and
//! capacities true across processes while other callers book in parallel.
//!
//! A transient refusal (deadlock, serialization failure, lock wait) rolls
//! the transaction back and runs it again ([`super::retry`]); a lost
//! connection is dropped from the pool, and the next write connects anew.

use super::retry::{retry_delay, Jitter, RetryPolicy, RetryStats};
use super::sql::{Conn, SqlRow, SqlTx, Val};
use super::{Store, Tx, WriteFn};
use crate::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

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

/// Connections per process when the URL does not say (`?pool_size=N`).
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long a write waits for a free connection when all are in use.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// The pool: idle connections, and how many are open (idle or in use).
#[derive(Default)]
struct Pool {
    idle: Vec<Box<dyn Conn + Send>>,
    open: usize,
}

/// A store on a database server: a pool of connections, one transaction
/// per `write` (READ COMMITTED), any number of processes.
pub struct ServerStore {
    connector: Box<dyn Connector>,
    pool: Mutex<Pool>,
    freed: Condvar,
    size: usize,
    what: &'static str,
    retry: RetryPolicy,
    jitter: Mutex<Jitter>,
    retried: AtomicU64,
    gave_up: AtomicU64,
    listening: Listening,
}

impl std::fmt::Debug for ServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("ServerStore")
            .field("server", &self.what)
            .field("pool_size", &self.size)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The schema files: version 1 creates every table; each later one alters them.
pub(crate) type Schema = &'static [&'static str];

/// Splits callbook's own `pool_size=N` (1 to 1000) off a server URL's query;
/// the rest goes to the driver, which refuses parameters it does not know.
pub fn split_pool_size(url: &str) -> Result<(String, Option<usize>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut size = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("pool_size", n)) => {
                let n: usize =
                    n.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                        Error::Storage(format!("pool_size must be a number from 1 to 1000, not {n:?}"))
                    })?;
                size = Some(n);
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) };
    Ok((url, size))
}

impl ServerStore {
    pub(crate) fn open(
        connector: Box<dyn Connector>,
        what: &'static str,
        schema: Schema,
        size: Option<usize>,
    ) -> Result<Self> {
        let store = ServerStore {
            connector,
            pool: Mutex::default(),
            freed: Condvar::new(),
            size: size.unwrap_or(DEFAULT_POOL_SIZE).max(1),
            what,
            retry: RetryPolicy::default(),
            jitter: Mutex::new(Jitter::from_entropy()),
            retried: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            listening: Listening::default(),
        };
        store.migrate(schema)?;
        Ok(store)
    }

    /// The same store with another retry policy and a seeded jitter (tests pin the waits).
    pub fn with_retry(mut self, policy: RetryPolicy, seed: u64) -> Self {
        self.retry = policy;
        self.jitter = Mutex::new(Jitter::new(seed));
        self
    }

    /// What retries have done since the store was opened.
    pub fn retry_stats(&self) -> RetryStats {
        RetryStats { retried: self.retried.load(Ordering::Relaxed), gave_up: self.gave_up.load(Ordering::Relaxed) }
    }

    /// Connections this process keeps at most.
    pub fn pool_size(&self) -> usize {
        self.size
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
    /// `mariadb://` URL names, with the matching feature. `?pool_size=N`
    /// sets how many connections this process keeps at most (default 16).
    pub fn open_url(url: &str) -> Result<Self> {
        Self::open_url_with(url, None)
    }

    /// [`ServerStore::open_url`] with a pool size from the open options
    /// (the URL's `pool_size` wins over it).
    pub fn open_url_with(url: &str, pool_size: Option<usize>) -> Result<Self> {
        let (url, in_url) = split_pool_size(url)?;
        let size = in_url.or(pool_size);
        let missing =
            |feature: &str| Error::Storage(format!("this build has no {feature} support (feature `{feature}`)"));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Self::postgres_sized(&url, size);
            #[cfg(not(feature = "postgres"))]
            return Err(missing("postgres"));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            #[cfg(feature = "mysql")]
            return Self::mysql_sized(&url.replacen("mariadb://", "mysql://", 1), size);
            #[cfg(not(feature = "mysql"))]
            return Err(missing("mysql"));
        }
        let _ = (missing, size);
        Err(Error::Storage("not a database server URL (postgres:// or mysql://)".into()))
    }

    /// A connection: an idle one, else a new one while fewer than the pool
    /// size are open, else the next one given back (waiting at most
    /// [`POOL_WAIT`]). `true` with a connection made just now.
    fn take(&self) -> Result<(Box<dyn Conn + Send>, bool)> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok((conn, false));
            }
            if pool.open < self.size {
                pool.open += 1;
                drop(pool);
                return match self.connector.connect() {
                    Ok(conn) => Ok((conn, true)),
                    Err(e) => {
                        self.discard();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::StorageBusy(format!("all {} connections of this process are in use", self.size)));
            }
            pool = self.freed.wait_timeout(pool, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn give_back(&self, conn: Box<dyn Conn + Send>) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).idle.push(conn);
        self.freed.notify_one();
    }

    /// A connection that is closed or broken leaves the pool (dropping it
    /// closes it; the server ends what it held).
    fn discard(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.open = pool.open.saturating_sub(1);
        drop(pool);
        self.freed.notify_one();
    }

    /// Runs `work` in one transaction, again after a transient refusal (see
    /// [`retry_delay`]); `storage_busy` once the retries are spent.
    fn run(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>, read_only: bool) -> Result<()> {
        let mut tried = 0;
        loop {
            tried += 1;
            // No connection free for `POOL_WAIT`: answered as it is, not
            // retried (each retry would wait as long again).
            let conn = self.begin(read_only)?;
            let Err(e) = self.run_once(conn, work) else {
                return Ok(());
            };
            let jitter = self.jitter.lock().unwrap_or_else(|p| p.into_inner()).next_unit();
            match retry_delay(&self.retry, &e, tried, jitter) {
                Some(wait) => {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(wait);
                }
                None => {
                    if super::retry::is_transient(&e) {
                        self.gave_up.fetch_add(1, Ordering::Relaxed);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// A connection with a transaction begun on it. An idle connection may
    /// have died meanwhile (the server restarted): its BEGIN fails before
    /// anything of the work was sent, so the next one is tried, and at last
    /// a new one, whose failure is the answer.
    fn begin(&self, read_only: bool) -> Result<Box<dyn Conn + Send>> {
        let begin = if read_only { "START TRANSACTION READ ONLY" } else { "START TRANSACTION" };
        loop {
            let (mut conn, fresh) = self.take()?;
            match conn.batch(begin) {
                Ok(()) => return Ok(conn),
                Err(e) => {
                    drop(conn);
                    self.discard();
                    if fresh || !matches!(e, Error::StorageUnavailable(_)) {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn run_once(&self, mut conn: Box<dyn Conn + Send>, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        // A panicking write is rolled back like a failed one and answers `internal`.
        let mut outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut SqlTx::new(&mut *conn))))
            .unwrap_or_else(|_| Err(Error::Internal("the write panicked; nothing of it was kept".into())));
        // The server refused a statement as transient: whatever the work made
        // of that error (it may have gone on), the transaction is rolled back
        // and run again, never committed in part.
        if let Some(busy) = conn.take_transient() {
            if !matches!(outcome, Err(Error::StorageBusy(_))) {
                outcome = Err(busy);
            }
        }
        let ended = conn.finish(outcome.is_ok());
        match ended {
            Ok(()) => self.give_back(conn),
            // A connection whose COMMIT or ROLLBACK failed is not reused.
            Err(e) => {
                drop(conn);
                self.discard();
                if outcome.is_ok() {
                    return Err(e);
                }
            }
        }
        outcome
    }
}

impl Store for ServerStore {
    /// The schema version recorded in `callbook_schema`.
    fn schema_version(&self) -> Result<i64> {
        let (mut conn, _) = self.take()?;
        let mut version = None;
        let read = conn.each("SELECT MAX(version) FROM callbook_schema", &[], &mut |r: &dyn SqlRow| {
            version = r.opt_int(0)?;
            Ok(())
        });
        match read {
            Ok(()) => self.give_back(conn),
            Err(e) => {
                drop(conn);
                self.discard();
                return Err(e);
            }
        }
        Ok(version.unwrap_or(0))
    }

    /// `work` may run more than once (after a deadlock or a serialization
    /// failure it is rolled back and run again): it must not act outside
    /// the transaction.
    fn write(&self, mut work: WriteFn) -> Result<()> {
        self.run(&mut *work, false)
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

#[cfg(test)]
mod tests {
    use super::split_pool_size;

    #[test]
    fn pool_size_is_taken_off_the_url_and_the_rest_kept() {
        let split = |url| split_pool_size(url).expect("valid");
        assert_eq!(split("postgres://app@db/callbook?pool_size=8"), ("postgres://app@db/callbook".into(), Some(8)));
        assert_eq!(
            split("mysql://root@127.0.0.1/cb?prefer_socket=false&pool_size=2&tcp_nodelay=true"),
            ("mysql://root@127.0.0.1/cb?prefer_socket=false&tcp_nodelay=true".into(), Some(2))
        );
        assert_eq!(split("postgres://app@db/callbook"), ("postgres://app@db/callbook".into(), None));
        assert_eq!(
            split("postgres://app@db/cb?sslmode=disable"),
            ("postgres://app@db/cb?sslmode=disable".into(), None)
        );
        for bad in ["0", "1001", "eight", ""] {
            let err = split_pool_size(&format!("postgres://db/cb?pool_size={bad}")).expect_err("refused");
            assert_eq!(err.code(), "storage", "{bad}");
        }
    }

    #[test]
    fn the_open_options_name_it_as_every_binding_does() {
        for json in [r#"{"poolSize": 4}"#, r#"{"pool_size": 4}"#] {
            let options: crate::store::OpenOptions = serde_json::from_str(json).expect("parses");
            assert_eq!(options.pool_size, Some(4), "{json}");
        }
    }
}
