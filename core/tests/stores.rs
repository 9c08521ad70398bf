//! The conformance suite against every store this build has.

#[macro_use]
mod conformance;

mod memory {
    use callbook::store::{OpenOptions, Store, MEMORY};
    use std::sync::Arc;

    /// Through the name every binding passes on: `":memory:"` is a fresh `MemoryStore`.
    fn make() -> Arc<dyn Store> {
        callbook::store::open(MEMORY.as_ref(), &OpenOptions::default()).expect("opens")
    }
    conformance_suite!(make);

    #[test]
    fn each_open_of_memory_is_its_own_store() {
        let one = callbook::Callbook::open(MEMORY).expect("opens");
        let data = r#"{"companies": [{"id": 1, "name": "One"}]}"#;
        one.import(&callbook::ImportData::from_json(data).expect("parses")).expect("imports");
        let two = callbook::Callbook::open(MEMORY).expect("opens");
        assert_eq!(one.schema_version().expect("version"), 0, "nothing kept");
        assert_eq!(one.companies().expect("reads").len(), 1);
        assert!(two.companies().expect("reads").is_empty());
    }
}

mod sqlite {
    use callbook::store::{SqliteOptions, SqliteStore, Store};
    use callbook::Synchronous;
    use std::sync::Arc;

    fn make() -> Arc<dyn Store> {
        // Each test gets its own file; the directory is removed when the process ends.
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let options = SqliteOptions { synchronous: Synchronous::Normal, ..SqliteOptions::default() };
        Arc::new(SqliteStore::open_with(dir.join("callbook.db"), options).expect("opens"))
    }
    conformance_suite!(make);
}

#[cfg(feature = "postgres")]
mod postgres {
    use callbook::store::Store;
    use std::sync::Arc;

    fn make() -> Arc<dyn Store> {
        Arc::new(crate::conformance::server::TempServerStore::new("postgres"))
    }
    conformance_suite!(make);

    #[test]
    fn a_claim_in_progress_is_skipped_not_waited_for() {
        crate::claims_skip_each_other(make());
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use callbook::store::Store;
    use std::sync::Arc;

    fn make() -> Arc<dyn Store> {
        Arc::new(crate::conformance::server::TempServerStore::new("mysql"))
    }
    conformance_suite!(make);

    #[test]
    fn a_claim_in_progress_is_skipped_not_waited_for() {
        crate::claims_skip_each_other(make());
    }
}

/// Servers only (SQLite has one writer): while one worker's claim
/// transaction is still open, another claims the next jobs at once, none
/// twice. (On MySQL a claim that sorted instead of walking an index locked
/// every due row, and the second worker got nothing.)
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn claims_skip_each_other(store: std::sync::Arc<dyn callbook::store::Store>) {
    use callbook::*;
    let clock = std::sync::Arc::new(ManualClock::new(conformance::t0()));
    let book = Callbook::new(store.clone()).with_clock(clock.clone());
    book.import(&ImportData::from_json(conformance::FIXTURE).expect("parses")).expect("imports");
    for i in 0..40 {
        let start = format_utc(&(conformance::t0() + chrono::Duration::hours(24 + i)));
        book.book(&conformance::request("call_anon", "Ann", &start)).expect("books");
    }
    let (claimed_tx, claimed_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let now = clock.now();
    let first = std::thread::spawn(move || {
        callbook::store::write(&*store, move |tx| {
            let jobs = tx.claim_jobs(now, 16, "a", now + chrono::Duration::minutes(5))?;
            claimed_tx.send(jobs.iter().map(|j| j.id).collect::<Vec<_>>()).expect("sends");
            release_rx.recv().expect("released"); // the transaction stays open until then
            Ok(())
        })
    });
    let a = claimed_rx.recv().expect("a claimed");
    let b: Vec<JobId> = book.claim_jobs("b", 16).expect("b claims").iter().map(|j| j.id).collect();
    release_tx.send(()).expect("releases");
    first.join().expect("joins").expect("a commits");
    assert_eq!((a.len(), b.len()), (16, 16), "both got a full batch");
    assert!(a.iter().all(|id| !b.contains(id)), "no job twice");
}

/// Group commit on SQLite: many threads booking at once share transactions,
/// and the rules hold inside a batch.
mod group_commit {
    use crate::conformance::{request, t0, FIXTURE};
    use callbook::*;
    use chrono::Duration;
    use std::sync::{Arc, Barrier};

    #[test]
    fn concurrent_bookings_share_commits_and_keep_every_rule() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(callbook::store::SqliteStore::open(dir.path().join("group.db")).expect("opens")); // FULL
        let book = Callbook::new(store.clone()).with_clock(Arc::new(ManualClock::new(t0())));
        book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
        let before = store.writer_stats();
        let threads = 8;
        let per_thread = 40;
        let barrier = Barrier::new(threads);
        let results: Vec<Vec<Result<Booking>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (book, barrier) = (&book, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        (0..per_thread)
                            .map(|i| {
                                // Every thread books the same starts: the same call twice is one
                                // appointment; the same known phone is one customer.
                                let start = format_utc(&(t0() + Duration::days(1) + Duration::minutes(30 * i as i64)));
                                let call = ["call_anon", "call_known_a", "call_known_b", "call_anon_2"][t % 4];
                                if t == 7 && i % 5 == 0 {
                                    // A failing booking inside someone's batch.
                                    book.book(&request("call_anon", "X", "2001-01-01T10:00:00Z"))
                                } else {
                                    book.book(&request(call, "Sam", &start))
                                }
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("joins")).collect()
        });
        let after = store.writer_stats();
        let writes = after.writes - before.writes;
        let transactions = after.transactions - before.transactions;
        assert_eq!(writes, (threads * per_thread) as u64);
        assert!(transactions < writes, "group commit happened: {transactions} transactions for {writes} writes");

        let failed: Vec<_> = results.iter().flatten().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(failed.len(), 8);
        assert!(failed.iter().all(|e| e.code() == "start_in_past"));
        let ok: Vec<&Booking> = results.iter().flatten().filter_map(|r| r.as_ref().ok()).collect();
        let s = book.stats().expect("stats");
        let distinct: std::collections::HashSet<_> = ok.iter().map(|b| b.appointment_id).collect();
        assert_eq!(s.appointments["pending"], distinct.len() as u64);
        assert_eq!(s.jobs["available"], distinct.len() as u64, "one outbox job per appointment");
        // 4 calls x 40 starts, each booked by two threads: every (call, service, start) once.
        assert_eq!(distinct.len(), 4 * per_thread);
        assert_eq!(s.customers_known, 1, "the same known phone is one customer");
        assert_eq!(s.customers_anonymous, 2 * per_thread as u64, "anonymous callers are never merged");
    }

    /// Statements a booking runs on SQLite (#20 point 4), for a known caller
    /// booking for the first time: `book()` with the call registered before,
    /// and the agent registering the call from Retell's call object and
    /// booking in one transaction. A read added to the path fails this.
    #[test]
    fn statements_per_booking() {
        use callbook::store::SqliteStore;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(dir.path().join("count.db")).expect("opens"));
        let book = Callbook::new(store.clone()).with_clock(Arc::new(ManualClock::new(t0())));
        book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
        let before = store.writer_stats();
        book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
        let by_book = store.writer_stats().statements - before.statements;
        let agent = Agent::new(book.clone(), Secret::new(crate::conformance::RETELL_KEY));
        let body = r#"{"name":"book_appointment","call":{"call_id":"call_new","from_number":"+49 151 999 0000",
            "to_number":"+49301234567","direction":"inbound"},"args":{"customer_name":"Jürgen","date":"2030-01-08","time":"14:30","service_id":"1"}}"#;
        let before = store.writer_stats();
        let reply = crate::conformance::retell(&agent, body);
        assert_eq!(reply.body["ok"], true, "{}", reply.body);
        let by_agent = store.writer_stats().statements - before.statements;
        // Before #20: 9 and 14 (the remembered answer read on its own; the agent read
        // the call again in the booking and call and branch again for its sentence).
        assert_eq!((by_book, by_agent), (8, 10), "statements per booking: book(), agent");
    }

    /// The worker's bookkeeping waits for the bookings (#20): while bookings
    /// flow it waits (up to the patience) and then commits in a transaction
    /// of its own, never in a booking's; with no booking lately it commits
    /// at once.
    #[test]
    fn bookings_commit_before_the_workers_bookkeeping() {
        use callbook::store::{SqliteOptions, SqliteStore, Store};
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().expect("temp dir");
        let patience = Duration::from_secs(2);
        let options = SqliteOptions { background_patience: patience, ..Default::default() };
        let store = Arc::new(SqliteStore::open_with(dir.path().join("lanes.db"), options).expect("opens"));
        let book = Callbook::new(store.clone()).with_clock(Arc::new(ManualClock::new(t0())));
        // Nothing written yet: bookkeeping is not held back.
        let lone = store.writer_stats();
        store.write_background(Box::new(|_| Ok(()))).expect("commits at once");
        assert_eq!(store.writer_stats().transactions, lone.transactions + 1);
        book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");

        book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
        let before = store.writer_stats();
        let queued_at = Instant::now();
        let worker = {
            let store = store.clone();
            std::thread::spawn(move || store.write_background(Box::new(|_| Ok(()))))
        };
        while store.queued() == 0 {
            std::thread::yield_now();
        }
        // Bookings flow: the bookkeeping waits in the queue, and the next
        // booking commits alone, leaving it there.
        assert_eq!(store.writer_stats(), before);
        book.book(&request("call_known_b", "Eva", "2030-01-08T10:00:00Z")).expect("books");
        let booked = store.writer_stats();
        if queued_at.elapsed() < patience {
            assert_eq!((booked.transactions - before.transactions, booked.writes - before.writes), (1, 1));
            assert_eq!(store.queued(), 1, "the bookkeeping still waits");
        }
        worker.join().expect("joins").expect("committed after its patience");
        assert!(queued_at.elapsed() >= patience, "it waited while bookings flowed");
        let after = store.writer_stats();
        assert_eq!((after.transactions - before.transactions, after.writes - before.writes), (2, 2));
    }
}

/// A write that panics inside a group commit (issue 16: an absurd start
/// once panicked in the booking path) is rolled back alone and answers
/// `internal`; every other write of its group commits and answers, at once.
#[test]
fn a_panicking_write_is_rolled_back_alone_and_its_group_answers() {
    use callbook::store::{SqliteStore, Store, Tx};
    use callbook::{Company, CompanyId};
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path().join("panic.db")).expect("opens"));
    let company = |id: i64| Company::new(CompanyId(id), format!("Company {id}"));
    let now = chrono::Utc::now();
    // A first write holds the writer until the eight others have queued, so they share one group.
    let (release, held) = mpsc::channel::<()>();
    let holder = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store.write(Box::new(move |tx: &mut dyn Tx| {
                let _ = held.recv_timeout(Duration::from_secs(5));
                tx.upsert_company(&company(100), now)
            }))
        })
    };
    std::thread::sleep(Duration::from_millis(50)); // the holder has the writer
    let (done, answers) = mpsc::channel();
    let started = Instant::now();
    for i in 1..=8 {
        let (store, done) = (Arc::clone(&store), done.clone());
        std::thread::spawn(move || {
            let result = store.write(Box::new(move |tx: &mut dyn Tx| {
                tx.upsert_company(&company(i), now)?;
                if i == 3 {
                    panic!("injected: a bug in one booking");
                }
                Ok(())
            }));
            let _ = done.send((i, result.map_err(|e| e.code().to_string())));
        });
    }
    std::thread::sleep(Duration::from_millis(100)); // all eight queued behind the holder
    release.send(()).expect("releases");
    assert!(holder.join().expect("joins").is_ok());
    let mut results: Vec<(i64, Result<(), String>)> =
        (0..8).map(|_| answers.recv_timeout(Duration::from_secs(2)).expect("every write is answered")).collect();
    results.sort_by_key(|(i, _)| *i);
    assert!(started.elapsed() < Duration::from_secs(1) + Duration::from_millis(150), "{:?}", started.elapsed());
    for (i, result) in &results {
        match i {
            3 => assert_eq!(result, &Err("internal".to_string())),
            _ => assert_eq!(result, &Ok(()), "write {i}"),
        }
    }
    let kept = callbook::store::read(&*store, |tx| {
        (1..=8).map(|i| tx.company(CompanyId(i))).collect::<callbook::Result<Vec<_>>>()
    })
    .expect("reads");
    let ids: Vec<i64> = kept.iter().flatten().map(|c| c.id.0).collect();
    assert_eq!(ids, [1, 2, 4, 5, 6, 7, 8], "the panicking write left nothing");
}

/// Reads use their own connections (WAL): a read finishes while a write
/// transaction is open. If reads waited for the writer this test would hang.
#[test]
fn readers_never_wait_for_the_writer() {
    use crate::conformance::{t0, FIXTURE};
    use callbook::*;
    use std::sync::{Arc, Barrier};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(callbook::store::SqliteStore::open(dir.path().join("readers.db")).expect("opens"));
    let book = Callbook::new(store.clone()).with_clock(Arc::new(ManualClock::new(t0())));
    book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
    let inside = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    std::thread::scope(|s| {
        let (inside_w, release_w, store_w) = (inside.clone(), release.clone(), store.clone());
        let writer = s.spawn(move || {
            callbook::store::write(&*store_w, move |tx| {
                tx.upsert_company(&Company::new(CompanyId(9), "Late"), t0())?;
                inside_w.wait(); // the write transaction is open...
                release_w.wait(); // ...until the reader has finished
                Ok(())
            })
        });
        inside.wait();
        let stats = book.stats().expect("reads while the writer holds its transaction");
        assert_eq!(stats.customers_known, 0);
        let company = callbook::store::read(&*store, |tx| tx.company(CompanyId(9))).expect("reads");
        assert!(company.is_none(), "the open write is not visible yet");
        release.wait();
        writer.join().expect("joins").expect("writes");
    });
    assert!(callbook::store::read(&*store, |tx| tx.company(CompanyId(9))).expect("reads").is_some());
}

/// The overview's indexes (SQLite v8, servers v5) exist under the same
/// names, over the same columns, on every backend; on SQLite the overview's
/// window read walks `appointments_created` instead of the whole table.
mod health_indexes {
    /// (index, its columns in order).
    const INDEXES: [(&str, &str); 2] =
        [("appointments_created", "created_at"), ("sync_jobs_unfinished_age", "state,company_id,created_at")];

    #[test]
    fn sqlite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("indexes.db");
        drop(callbook::store::SqliteStore::open(&path).expect("opens"));
        let conn = rusqlite::Connection::open(&path).expect("opens");
        for (name, columns) in INDEXES {
            let mut st = conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno").expect("prepares");
            let found: Vec<String> =
                st.query_map([name], |r| r.get(0)).expect("queries").collect::<Result<_, _>>().expect("rows");
            assert_eq!(found.join(","), columns, "{name}");
        }
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT a.company_id FROM appointments a JOIN customers c ON c.id = a.customer_id
                 WHERE a.created_at > '2030-01-01' AND a.created_at <= '2030-01-02'",
            )
            .expect("prepares")
            .query_map([], |r| r.get::<_, String>(3))
            .expect("queries")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(plan.iter().any(|p| p.contains("USING INDEX appointments_created")), "{plan:?}");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres() {
        use crate::conformance::server::*;
        let name = fresh_name("idx");
        let url = create("postgres", &name);
        drop(callbook::store::ServerStore::postgres(&url).expect("opens"));
        for (index, columns) in INDEXES {
            let sql = format!(
                "SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indexrelid
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE c.relname = '{index}'"
            );
            let out = std::process::Command::new("psql").args([&url, "-tAc", &sql]).output().expect("psql");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), columns, "{index}");
        }
        drop_database("postgres", &name);
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn mysql() {
        use crate::conformance::server::*;
        let name = fresh_name("idx");
        let url = create("mysql", &name);
        drop(callbook::store::ServerStore::mysql(&url).expect("opens"));
        for (index, columns) in INDEXES {
            let sql = format!(
                "SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index) FROM information_schema.statistics
                 WHERE table_schema = '{name}' AND index_name = '{index}'"
            );
            let out = std::process::Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-u", "root", "-N", "-e", &sql])
                .output()
                .expect("mariadb");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), columns, "{index}");
        }
        drop_database("mysql", &name);
    }
}

/// The database servers under contention (issue 19): finer locks, retries
/// of transient refusals, the connection pool.
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod contention {
    use crate::conformance::server::TempServerStore;
    use crate::conformance::{request, t0, FIXTURE};
    use callbook::store::{Lock, RetryPolicy, Store, Tx};
    use callbook::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    fn company(id: i64, name: &str) -> Company {
        Company::new(CompanyId(id), name)
    }

    /// Two writes lock two rows in opposite order through the store's write
    /// path: the server picks one as the deadlock's victim, the store rolls
    /// it back and runs it again, and both commit. The caller never knows.
    fn a_deadlock_is_retried_and_both_writes_commit(kind: &'static str) {
        let store = Arc::new(TempServerStore::new(kind));
        let now = chrono::Utc::now();
        callbook::store::write(&*store, move |tx| {
            tx.upsert_company(&company(1, "one"), now)?;
            tx.upsert_company(&company(2, "two"), now)
        })
        .expect("seeds");
        let both_hold_one = Arc::new(Barrier::new(2));
        let runs = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = [(1, 2), (2, 1)]
            .into_iter()
            .map(|(first, second)| {
                let (store, barrier, runs) = (Arc::clone(&store), Arc::clone(&both_hold_one), Arc::clone(&runs));
                std::thread::spawn(move || {
                    store.write(Box::new(move |tx: &mut dyn Tx| {
                        tx.upsert_company(&company(first, "first"), now)?;
                        // The first runs wait until both hold their first row; a rerun goes straight on.
                        if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                            barrier.wait();
                        }
                        tx.upsert_company(&company(second, "second"), now)
                    }))
                })
            })
            .collect();
        for w in writers {
            w.join().expect("joins").expect("both writes commit");
        }
        let stats = store.server().retry_stats();
        assert_eq!((stats.retried, stats.gave_up), (1, 0), "the victim ran again, once");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    /// With no retries left the victim answers `storage_busy`, and nothing of it is kept.
    fn an_exhausted_retry_answers_storage_busy(kind: &'static str) {
        let policy = RetryPolicy { retries: 0, ..RetryPolicy::default() };
        let store = Arc::new(TempServerStore::with_retry(kind, policy));
        let now = chrono::Utc::now();
        callbook::store::write(&*store, move |tx| {
            tx.upsert_company(&company(1, "one"), now)?;
            tx.upsert_company(&company(2, "two"), now)
        })
        .expect("seeds");
        let barrier = Arc::new(Barrier::new(2));
        let writers: Vec<_> = [(1, 2), (2, 1)]
            .into_iter()
            .map(|(first, second)| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    store.write(Box::new(move |tx: &mut dyn Tx| {
                        tx.upsert_company(&company(first, &format!("by {first}")), now)?;
                        barrier.wait();
                        tx.upsert_company(&company(second, &format!("by {first}")), now)
                    }))
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().expect("joins")).collect();
        let codes: Vec<&str> = results.iter().filter_map(|r| r.as_ref().err()).map(Error::code).collect();
        assert_eq!(codes, ["storage_busy"], "{results:?}");
        assert_eq!(store.server().retry_stats().gave_up, 1);
        // The winner's names on both rows: the victim left nothing.
        let names = callbook::store::read(&*store, |tx| {
            Ok((tx.company(CompanyId(1))?.expect("one").name, tx.company(CompanyId(2))?.expect("two").name))
        })
        .expect("reads");
        assert_eq!(names.0, names.1, "{names:?}");
    }

    /// While a transaction holds one known caller's lock, another caller of
    /// the same company books at once; the same caller waits for it.
    fn different_callers_of_one_company_book_in_parallel(kind: &'static str) {
        let store: Arc<dyn Store> = Arc::new(TempServerStore::new(kind));
        let book = Callbook::new(Arc::clone(&store)).with_clock(Arc::new(ManualClock::new(t0())));
        book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
        let other = NewCall {
            retell_call_id: CallId("call_other".into()),
            company_id: Some(CompanyId(1)),
            branch_id: Some(BranchId(1)),
            from_number: Some("+491609999999".into()),
            ..Default::default()
        };
        book.register_call(&other).expect("registers");
        let (held_tx, held) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let holder = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                callbook::store::write(&*store, move |tx| {
                    tx.lock(&[Lock::Phone(CompanyId(1), "+491512345678".into())])?;
                    let _ = held_tx.send(());
                    let _ = released.recv_timeout(Duration::from_secs(10));
                    Ok(())
                })
            })
        };
        held.recv().expect("the lock is held");
        let start = |h| format_utc(&(t0() + chrono::Duration::hours(h)));
        // Another caller: not held up (the whole company was locked before issue 19).
        book.book(&request("call_other", "Otto", &start(30))).expect("books while the other caller's lock is held");
        // The same caller: waits until the holder ends.
        let (done_tx, done) = mpsc::channel();
        let same = {
            let book = Callbook::new(Arc::clone(&store)).with_clock(Arc::new(ManualClock::new(t0())));
            std::thread::spawn(move || {
                let _ = done_tx.send(book.book(&request("call_known_a", "Anna", &start(31))).map(|b| b.customer_id));
            })
        };
        assert!(done.recv_timeout(Duration::from_millis(400)).is_err(), "the same phone waits for its lock");
        release.send(()).expect("releases");
        holder.join().expect("joins").expect("the holder commits");
        done.recv_timeout(Duration::from_secs(10)).expect("then books").expect("books");
        same.join().expect("joins");
    }

    /// `?pool_size=2`: a third transaction at once waits for a connection.
    fn the_pool_keeps_its_size(kind: &'static str) {
        let store = Arc::new(TempServerStore::with_url_suffix(kind, "?pool_size=2"));
        assert_eq!(store.server().pool_size(), 2);
        let (held_tx, held) = mpsc::channel();
        let release = Arc::new(Barrier::new(3));
        let holders: Vec<_> = (0..2)
            .map(|_| {
                let (store, held_tx, release) = (Arc::clone(&store), held_tx.clone(), Arc::clone(&release));
                std::thread::spawn(move || {
                    store.read(&mut |_tx| {
                        let _ = held_tx.send(());
                        release.wait();
                        Ok(())
                    })
                })
            })
            .collect();
        held.recv().expect("one holds");
        held.recv().expect("two hold");
        let (done_tx, done) = mpsc::channel();
        let third = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let _ = done_tx.send(callbook::store::read(&*store, |tx| tx.companies().map(|c| c.len())));
            })
        };
        assert!(done.recv_timeout(Duration::from_millis(300)).is_err(), "no third connection");
        release.wait();
        for h in holders {
            h.join().expect("joins").expect("reads");
        }
        assert_eq!(done.recv_timeout(Duration::from_secs(10)).expect("then reads").expect("reads"), 0);
        third.join().expect("joins");
    }

    #[cfg(feature = "postgres")]
    mod postgres {
        #[test]
        fn a_deadlock_is_retried_and_both_writes_commit() {
            super::a_deadlock_is_retried_and_both_writes_commit("postgres");
        }
        #[test]
        fn an_exhausted_retry_answers_storage_busy() {
            super::an_exhausted_retry_answers_storage_busy("postgres");
        }
        #[test]
        fn different_callers_of_one_company_book_in_parallel() {
            super::different_callers_of_one_company_book_in_parallel("postgres");
        }
        #[test]
        fn the_pool_keeps_its_size() {
            super::the_pool_keeps_its_size("postgres");
        }
    }

    #[cfg(feature = "mysql")]
    mod mysql {
        #[test]
        fn a_deadlock_is_retried_and_both_writes_commit() {
            super::a_deadlock_is_retried_and_both_writes_commit("mysql");
        }
        #[test]
        fn an_exhausted_retry_answers_storage_busy() {
            super::an_exhausted_retry_answers_storage_busy("mysql");
        }
        #[test]
        fn different_callers_of_one_company_book_in_parallel() {
            super::different_callers_of_one_company_book_in_parallel("mysql");
        }
        #[test]
        fn the_pool_keeps_its_size() {
            super::the_pool_keeps_its_size("mysql");
        }
    }
}

/// A PostgreSQL server restarts under callbook (issue 19): bookings while
/// it is down answer `storage_unavailable` at once, a transaction cut off
/// by the shutdown leaves nothing, and the first booking after it is back
/// succeeds (the pool drops its dead connections and connects anew). The
/// server is a private one (initdb in a temporary directory, a free port):
/// stopping it disturbs no other test.
#[cfg(feature = "postgres")]
mod restart {
    use crate::conformance::{request, t0, FIXTURE};
    use callbook::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    struct PrivatePostgres {
        dir: tempfile::TempDir,
        bin: PathBuf,
        port: u16,
        /// initdb and the server refuse to run as root: then as `postgres`.
        as_postgres: bool,
    }

    impl PrivatePostgres {
        fn run(&self, program: &str, args: &[&str]) {
            let program = self.bin.join(program);
            let mut command = if self.as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&program);
                c
            } else {
                Command::new(&program)
            };
            let out = command.args(args).output().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
            assert!(out.status.success(), "{} {args:?}: {}", program.display(), String::from_utf8_lossy(&out.stderr));
        }

        fn data(&self) -> String {
            self.dir.path().join("data").to_str().expect("utf-8").to_string()
        }

        fn new() -> Self {
            let versions = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed");
            let mut versions: Vec<PathBuf> = versions.filter_map(|e| e.ok().map(|e| e.path())).collect();
            versions.sort_by_key(|p| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u32>().ok()));
            let bin = versions.last().expect("a version").join("bin");
            let uid = Command::new("id").arg("-u").output().expect("id");
            let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
            let dir = tempfile::tempdir().expect("temp dir");
            if as_postgres {
                let ok = Command::new("chown").args(["postgres", dir.path().to_str().expect("utf-8")]).status();
                assert!(ok.expect("chown").success());
            }
            // A free port, chosen by the system (port 0), released for the server.
            let port = std::net::TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("addr").port();
            let pg = PrivatePostgres { dir, bin, port, as_postgres };
            pg.run("initdb", &["-D", &pg.data(), "-A", "trust", "-U", "postgres", "--no-sync"]);
            pg.start();
            pg
        }

        fn start(&self) {
            let options =
                format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
            let log = self.dir.path().join("log");
            self.run(
                "pg_ctl",
                &["-D", &self.data(), "-o", &options, "-l", log.to_str().expect("utf-8"), "-w", "start"],
            );
        }

        /// Fast shutdown: open sessions are ended, their transactions rolled back.
        fn stop(&self) {
            self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        }

        fn url(&self) -> String {
            format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
        }
    }

    impl Drop for PrivatePostgres {
        fn drop(&mut self) {
            let data = self.data();
            let program = self.bin.join("pg_ctl");
            let mut command = if self.as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            let _ = command.args(["-D", &data, "-m", "immediate", "stop"]).output();
        }
    }

    fn exists(path: &Path) -> bool {
        path.exists()
    }

    #[test]
    fn bookings_fail_fast_while_postgres_is_down_and_succeed_after() {
        assert!(exists(Path::new("/usr/lib/postgresql")), "PostgreSQL's server binaries (tests/run installs them)");
        let pg = PrivatePostgres::new();
        let clock = Arc::new(ManualClock::new(t0()));
        let book = Callbook::open(pg.url()).expect("opens").with_clock(clock);
        book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
        let start = |h: i64| format_utc(&(t0() + chrono::Duration::hours(h)));
        for h in 0..3 {
            book.book(&request("call_known_a", "Anna", &start(24 + h))).expect("books");
        }

        // A transaction in flight when the server goes: its first write is lost with it.
        let (inside_tx, inside) = mpsc::channel();
        let (go_on, stopped) = mpsc::channel::<()>();
        let store = Arc::clone(book.store());
        let in_flight = std::thread::spawn(move || {
            callbook::store::write(&*store, move |tx| {
                tx.upsert_company(&Company::new(CompanyId(9), "Half"), t0())?;
                let _ = inside_tx.send(());
                let _ = stopped.recv_timeout(Duration::from_secs(30));
                tx.upsert_company(&Company::new(CompanyId(10), "Written"), t0())
            })
        });
        inside.recv().expect("inside the transaction");
        pg.stop();
        go_on.send(()).expect("goes on");
        let cut = in_flight.join().expect("joins").expect_err("the server went");
        assert_eq!(cut.code(), "storage_unavailable", "{cut}");

        for h in 0..3 {
            let started = std::time::Instant::now();
            let err = book.book(&request("call_anon", "Ann", &start(30 + h))).expect_err("the server is down");
            assert_eq!(err.code(), "storage_unavailable", "{err}");
            assert!(started.elapsed() < Duration::from_secs(5), "answers at once: {:?}", started.elapsed());
        }

        pg.start();
        let after = book.book(&request("call_anon", "Ann", &start(40))).expect("books once the server is back");
        assert!(!after.customer_phone.is_empty());
        // The same booking during the outage is made now (idempotent: it had left nothing).
        book.book(&request("call_anon", "Ann", &start(30))).expect("books");

        let stats = book.stats().expect("stats");
        assert_eq!(stats.appointments["pending"], 5, "3 before, 2 after, none from the outage");
        assert_eq!(stats.jobs["available"], 5, "one outbox job per appointment");
        assert_eq!((stats.customers_known, stats.customers_anonymous), (1, 2));
        let half =
            callbook::store::read(&**book.store(), |tx| Ok((tx.company(CompanyId(9))?, tx.company(CompanyId(10))?)));
        assert_eq!(half.expect("reads"), (None, None), "the cut-off transaction left nothing");
    }
}
