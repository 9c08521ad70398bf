//! Durability: a process booking from many threads is killed with SIGKILL
//! mid-stream; after reopening, every booking whose confirmation was
//! returned is there, complete, and nothing is half-written.

#[allow(unused_macros)]
#[macro_use]
mod conformance;

use callbook::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const CHILD: &str = "CALLBOOK_CRASH_CHILD";
const THREADS: usize = 8;

/// The child: books forever from 8 threads, printing each confirmation.
fn child(db: &str) -> ! {
    let book = Callbook::open(db).expect("opens"); // synchronous=FULL, the default
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let book = &book;
            s.spawn(move || {
                let base = chrono::Utc::now() + chrono::Duration::days(1);
                for i in 0.. {
                    // Each thread its own starts, all within the 365-day horizon.
                    let start = format_utc(&(base + chrono::Duration::minutes(t as i64 * 40_000 + i)));
                    let call = ["call_anon", "call_known_a"][t % 2];
                    let b = book.book(&conformance::request(call, "Crash", &start)).expect("books");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "confirmed {}", b.appointment_id);
                    let _ = out.flush();
                }
            });
        }
    });
    unreachable!("the child is killed before it stops booking")
}

#[test]
fn killed_mid_stream_loses_no_confirmed_booking() {
    if let Ok(db) = std::env::var(CHILD) {
        child(&db);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crash.db");
    Callbook::open(&db)
        .expect("opens")
        .import(&ImportData::from_json(conformance::FIXTURE).expect("parses"))
        .expect("imports");

    let mut process = Command::new(std::env::current_exe().expect("test binary"))
        .args(["killed_mid_stream_loses_no_confirmed_booking", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = process.stdout.take().expect("stdout");
    let mut confirmed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(id) = line.strip_prefix("confirmed ") {
            confirmed.push(AppointmentId(id.parse().expect("an id")));
            if confirmed.len() == 400 {
                process.kill().expect("SIGKILL"); // mid-stream: other threads are inside book()
                break;
            }
        }
    }
    let _ = process.wait();
    assert_eq!(confirmed.len(), 400, "the child confirmed bookings before it was killed");

    let book = Callbook::open(&db).expect("reopens");
    for id in &confirmed {
        let a = book.appointment(*id).expect("every confirmed booking survived");
        assert!(book.customer(a.company_id, a.customer_id).expect("reads").is_some(), "its customer too");
        assert_eq!(book.jobs_of(*id).expect("jobs").len(), 1, "and its outbox job");
    }
    // Nothing half-written: every stored appointment has its customer and exactly one job.
    let s = book.stats().expect("stats");
    let appointments: u64 = s.appointments.values().sum();
    assert!(appointments >= confirmed.len() as u64);
    assert_eq!(s.jobs.values().sum::<u64>(), appointments);
    for id in 1..=appointments as i64 {
        let a = book.appointment(AppointmentId(id)).expect("ids are dense: no hole from a half write");
        assert!(book.customer(a.company_id, a.customer_id).expect("reads").is_some());
    }
}
