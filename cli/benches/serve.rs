//! Load test of `callbook serve`'s Retell endpoint over loopback HTTP.
//!
//! `cargo bench -p callbook-cli --bench serve [-- --quick] [-- --repeat N]`
//!
//! Starts `callbook serve` (SQLite, FULL unless `BENCH_SYNCHRONOUS=normal`)
//! and sends signed `book_appointment` calls at a fixed rate from keep-alive
//! connections, every one a new call and caller: once with the worker
//! syncing to the loopback fake Cal.com at the same time, once without it.
//! Open loop: each request has a scheduled send time and its latency is
//! counted from that time, so a stall shows up in the figures instead of
//! slowing the sender (no coordinated omission). In the same run: `GET
//! /healthz` at the same rate (the HTTP path plus one read) and the disk's
//! own limit (4 KiB appended and `fdatasync`ed, as a commit does). With
//! `--repeat N` everything runs N times and the spread of the p99s is
//! printed, so one noisy run does not decide. `BENCH_SERVE_WRAPPER` runs
//! serve under another program (`valgrind --tool=callgrind`), and
//! `BENCH_RATE` / `BENCH_SECONDS` set the load (README: the serve path's profile).

use callbook::calcom::fake::{EventType, FakeCalcom};
use callbook::retell::sign_retell;
use callbook::SystemClock;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RETELL_KEY: &str = "key_bench";
const CONNECTIONS: usize = 16;

struct Run {
    sent: usize,
    seconds: f64,
    latencies_us: Vec<u64>,
    failures: usize,
}

impl Run {
    fn pct(&self, p: f64) -> u64 {
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us.get(i).copied().unwrap_or(0)
    }
    fn print(&self, name: &str) {
        println!(
            "{name:<22} {:>7.0} req/s  p50 {:>6} us  p90 {:>6} us  p99 {:>6} us  max {:>7} us  failures {}",
            self.sent as f64 / self.seconds,
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.latencies_us.last().copied().unwrap_or(0),
            self.failures
        );
    }
}

/// One request on a keep-alive connection; returns the status.
fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<u16> {
    stream.get_mut().write_all(request)?;
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(status)
}

fn load(addr: &str, rate: u64, seconds: u64, make: impl Fn(usize) -> Vec<u8> + Sync) -> Run {
    let total = (rate * seconds) as usize;
    let start = Instant::now() + Duration::from_millis(50);
    let results: Vec<(Vec<u64>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CONNECTIONS)
            .map(|c| {
                let make = &make;
                scope.spawn(move || {
                    let mut stream = BufReader::new(TcpStream::connect(addr).expect("connects"));
                    stream.get_ref().set_nodelay(true).expect("nodelay");
                    let (mut latencies, mut failures) = (Vec::new(), 0);
                    for i in (c..total).step_by(CONNECTIONS) {
                        let due = start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let request = make(i);
                        match exchange(&mut stream, &request) {
                            Ok(200) => {}
                            _ => failures += 1,
                        }
                        latencies.push(due.elapsed().as_micros() as u64);
                    }
                    (latencies, failures)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut latencies_us: Vec<u64> = results.iter().flat_map(|(l, _)| l.iter().copied()).collect();
    latencies_us.sort_unstable();
    Run { sent: total, seconds, latencies_us, failures: results.iter().map(|(_, f)| f).sum() }
}

/// The disk's own limit: `n` appends of 4 KiB, each followed by `fdatasync`.
fn fsync_probe(dir: &Path, n: usize) -> Run {
    let mut file = std::fs::File::create(dir.join("fsync-probe")).expect("creates");
    let page = [7u8; 4096];
    let start = Instant::now();
    let mut latencies_us: Vec<u64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            file.write_all(&page).expect("writes");
            file.sync_data().expect("syncs");
            t.elapsed().as_micros() as u64
        })
        .collect();
    latencies_us.sort_unstable();
    Run { sent: n, seconds: start.elapsed().as_secs_f64(), latencies_us, failures: 0 }
}

/// `callbook serve` on a fresh database in `dir`, worker threads `workers`.
struct Server {
    child: std::process::Child,
    addr: String,
}

impl Server {
    fn start(dir: &Path, calcom_url: &str, workers: u32, synchronous: &str) -> Server {
        let db = dir.join(format!("bench-{}.db", rand_suffix()));
        let directory = dir.join("directory.json");
        std::fs::write(
            &directory,
            r#"{"companies": [{"id": 1, "name": "Salon", "calcom_api_key": "cal_bench"}],
                "branches": [{"id": 1, "company_id": 1, "name": "Mitte", "country": "DE", "phone_number": "+4930123456"}],
                "services": [{"id": 1, "company_id": 1, "name": "Cut", "calcom_event_type_id": 1, "duration_minutes": 30}]}"#,
        )
        .expect("writes");
        let bin = env!("CARGO_BIN_EXE_callbook");
        let status =
            Command::new(bin).arg("--db").arg(&db).arg("import").arg(&directory).stdout(Stdio::null()).status();
        assert!(status.expect("import runs").success());
        // BENCH_SERVE_WRAPPER runs serve under a profiler (README: the serve path's profile).
        let wrapper = std::env::var("BENCH_SERVE_WRAPPER").unwrap_or_default();
        let mut command = match wrapper.split_whitespace().collect::<Vec<_>>().split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .arg("--db")
            .arg(&db)
            .args(["--synchronous", synchronous])
            .args(["--checkpoint", &std::env::var("BENCH_CHECKPOINT").unwrap_or_else(|_| "auto".into())])
            .args(["serve", "--listen", "127.0.0.1:0", "--calcom-url", calcom_url])
            .args(["--worker-threads", &workers.to_string()])
            .env("RETELL_API_KEY", RETELL_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut first).expect("reads");
        let addr = first.trim().trim_start_matches("listening on http://").to_string();
        Server { child, addr }
    }

    fn healthz(&self, rate: u64, seconds: u64) -> Run {
        let health = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr).into_bytes();
        load(&self.addr, rate, seconds, |_| health.clone())
    }

    fn bookings(&self, rate: u64, seconds: u64) -> Run {
        let addr = &self.addr;
        let day0 = chrono::Utc::now().date_naive() + chrono::Days::new(30);
        load(addr, rate, seconds, |i| {
            let from = if i % 3 == 0 { "anonymous".to_string() } else { format!("+49151{:07}", i) };
            let start = chrono::NaiveDateTime::from(day0) + chrono::Duration::minutes(15 * i as i64);
            let body = serde_json::json!({
                "name": "book_appointment",
                "call": {"call_id": format!("call_bench_{i}"), "from_number": from, "to_number": "+4930123456"},
                "args": {"customer_name": "Bench Caller", "start": format!("{}Z", start.format("%Y-%m-%dT%H:%M:%S"))}
            })
            .to_string();
            let signature = sign_retell(body.as_bytes(), RETELL_KEY, chrono::Utc::now().timestamp_millis());
            let head = format!(
                "POST /retell/function HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 X-Retell-Signature: {signature}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            [head.into_bytes(), body.into_bytes()].concat()
        })
    }

    /// The server's own view: the booking histogram (answer made, commit
    /// included, without HTTP and the client's scheduling): p50 and p99 bounds.
    fn histogram(&self) -> Option<(f64, f64)> {
        let mut stream = BufReader::new(TcpStream::connect(&self.addr).expect("connects"));
        let scrape = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        stream.get_mut().write_all(scrape.as_bytes()).expect("sends");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("callbook_booking_duration_seconds_bucket{le=\""))
            .filter_map(|l| l.split_once("\"} "))
            .filter_map(|(le, n)| Some((le.parse::<f64>().unwrap_or(f64::INFINITY), n.trim().parse::<f64>().ok()?)))
            .collect();
        let &(_, total) = buckets.last()?;
        let within = |p: f64| buckets.iter().find(|(_, n)| *n >= total * p).map_or(f64::INFINITY, |(le, _)| *le);
        Some((within(0.5) * 1e6, within(0.99) * 1e6))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let repeat: usize =
        args.iter().position(|a| a == "--repeat").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(1).max(1);
    let (rate, seconds) = if quick { (500, 2) } else { (1000, 10) };
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (rate, seconds) = (env("BENCH_RATE", rate), env("BENCH_SECONDS", seconds));
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(1, 30)]).expect("fake Cal.com");
    // Cal.com's own limit would hold the worker to 120 a minute; the bench measures the endpoint.
    fake.set_limit_per_minute(1_000_000);
    let synchronous = std::env::var("BENCH_SYNCHRONOUS").unwrap_or_else(|_| "full".into());
    let workers: u32 = std::env::var("BENCH_WORKERS").ok().and_then(|w| w.parse().ok()).unwrap_or(2);
    println!(
        "callbook serve (synchronous={synchronous}), loopback, {CONNECTIONS} keep-alive connections, \
         {rate} req/s for {seconds} s (open loop), {repeat} run(s)"
    );
    let mut p99s: Vec<[u64; 4]> = Vec::new();
    for run in 1..=repeat {
        println!("-- run {run}");
        let disk = fsync_probe(dir.path(), if quick { 200 } else { 2000 });
        disk.print("disk 4 KiB + fdatasync");
        let with_worker = Server::start(dir.path(), fake.url(), workers, &synchronous);
        let health = with_worker.healthz(rate, seconds);
        health.print("GET /healthz");
        let on = with_worker.bookings(rate, seconds);
        on.print(&format!("booking, worker x{workers}"));
        let server_on = with_worker.histogram();
        drop(with_worker);
        let without = Server::start(dir.path(), fake.url(), 0, &synchronous);
        let off = without.bookings(rate, seconds);
        off.print("booking, worker off");
        let server_off = without.histogram();
        drop(without);
        for (name, h) in [("worker on", server_on), ("worker off", server_off)] {
            if let Some((p50, p99)) = h {
                println!("  server side, {name} (histogram bounds): p50 <= {p50:.0} us, p99 <= {p99:.0} us");
            }
        }
        println!(
            "  booking p99 - disk p99: worker on {} us, off {} us; booking/healthz p99 {:.2}x",
            on.pct(0.99) as i64 - disk.pct(0.99) as i64,
            off.pct(0.99) as i64 - disk.pct(0.99) as i64,
            on.pct(0.99) as f64 / health.pct(0.99).max(1) as f64
        );
        assert_eq!(health.failures + on.failures + off.failures, 0, "every request answered 200");
        p99s.push([disk.pct(0.99), health.pct(0.99), on.pct(0.99), off.pct(0.99)]);
    }
    let spread = |i: usize| {
        let v: Vec<u64> = p99s.iter().map(|r| r[i]).collect();
        format!("{}–{} us", v.iter().min().unwrap_or(&0), v.iter().max().unwrap_or(&0))
    };
    println!(
        "p99 over {repeat} run(s): disk {}, healthz {}, booking worker on {}, worker off {}",
        spread(0),
        spread(1),
        spread(2),
        spread(3)
    );
    let met = p99s.iter().filter(|r| r[2] < 2000).count();
    println!(
        "goal p99 < 2000 us at 1000 req/s (worker on): {}",
        if quick { "(quick run: see the full run)".to_string() } else { format!("met in {met} of {repeat} runs") }
    );
}
