//! `callbook`: the operator's command line. Each command converts its
//! arguments, calls the core once, and prints the answer (one JSON object
//! with `--json`). Errors carry the core's stable code; the exit code says
//! whose fault it was: 2 bad usage or input, 3 refused by a domain rule, 1 other.

mod about;
mod calcom;
mod demo;
mod health;
mod journey;
mod migrate;
mod serve;

use callbook::{
    AppointmentId, BookingRequest, Callbook, ChangeRequest, CustomerId, Error, ErrorKind, ImportData, Worker,
    WorkerConfig,
};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "callbook", version = about::version(), about = "Voice-agent bookings, confirmed locally and synced to Cal.com")]
struct Cli {
    /// SQLite database file.
    #[arg(long, global = true, env = "CALLBOOK_DB", default_value = "callbook.db")]
    db: PathBuf,
    /// SQLite durability: `full` (default: a confirmed booking survives a
    /// power cut) or `normal` (faster; may lose the last commits on power loss).
    #[arg(long, global = true, env = "CALLBOOK_SYNCHRONOUS", default_value = "full", value_parser = ["full", "normal"])]
    synchronous: String,
    /// How far ahead a start may be, in days (default 365).
    #[arg(long, global = true, env = "CALLBOOK_HORIZON_DAYS")]
    horizon_days: Option<i64>,
    /// SQLite: who copies the WAL back into the database file: `auto`
    /// (default: inline with `full`, `serve` and `normal` in the background),
    /// `inline` (inside a commit) or `background` (a thread of its own).
    #[arg(long, global = true, env = "CALLBOOK_CHECKPOINT", default_value = "auto", value_parser = ["auto", "inline", "background"])]
    checkpoint: String,
    /// Print one JSON object (errors too, as {"error":{"code","message"}}).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or migrate the database.
    Init,
    /// Load companies, branches, services and calls from a JSON file.
    Import { file: PathBuf },
    /// Book an appointment for a registered call.
    Book {
        /// The Retell call id.
        #[arg(long)]
        call: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        /// Service id; may be left out when the company has one service.
        #[arg(long)]
        service: Option<i64>,
        /// ISO 8601 start.
        #[arg(long, conflicts_with_all = ["date", "time"])]
        start: Option<String>,
        /// A date (2030-01-08, 08.01.2030, today, morgen, friday, ...), with --time.
        #[arg(long, requires = "time")]
        date: Option<String>,
        /// HH:MM in the branch's time zone.
        #[arg(long, requires = "date")]
        time: Option<String>,
    },
    /// Free starts for a service on a day, from Cal.com minus local bookings.
    Slots {
        #[arg(long)]
        service: i64,
        /// A date (2030-01-08, 08.01.2030, today, morgen, friday, ...).
        #[arg(long)]
        date: String,
        /// Remember the answer for this Retell call: its booking must take one of these starts.
        #[arg(long)]
        call: Option<String>,
        /// Cal.com API base (default https://api.cal.com); paths such as /v2/slots are appended.
        #[arg(long)]
        calcom_url: Option<String>,
        /// Per-request timeout in seconds (default 5: a caller is waiting).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Counts by sync status, jobs by state, manual reviews, breaker state.
    Stats,
    /// The operations overview against the design's targets, per company and
    /// in total; exits 1 when a target is missed (for cron and CI).
    Health {
        /// How far back: <n>m, <n>h or <n>d (1h, 24h, 7d).
        #[arg(long, default_value = "24h")]
        window: String,
    },
    /// Run the sync worker: push pending appointments to Cal.com.
    Sync {
        /// Run until no job is due, then exit.
        #[arg(long)]
        once: bool,
        /// Cal.com API base (default https://api.cal.com); paths such as /v2/bookings are appended.
        #[arg(long)]
        calcom_url: Option<String>,
        /// Jobs run at once (default 1).
        #[arg(long)]
        threads: Option<usize>,
        /// Per-request timeout in seconds (default 30).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// The manual-review queue.
    Review {
        #[command(subcommand)]
        action: ReviewAction,
    },
    /// A company's upcoming appointments for a caller's phone number.
    Appointments {
        #[arg(long)]
        company: i64,
        #[arg(long)]
        phone: String,
    },
    /// Cancel an appointment (Cal.com is told by the worker); the company's policy applies unless --force.
    Cancel {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
        /// Who cancels (default: $USER).
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
        #[arg(long)]
        force: bool,
    },
    /// Move an appointment to a new start; every booking rule applies, the policy unless --force.
    Reschedule {
        id: i64,
        /// ISO 8601 new start.
        #[arg(long, conflicts_with_all = ["date", "time"])]
        start: Option<String>,
        /// The new date (in the branch's zone), with --time.
        #[arg(long, requires = "time")]
        date: Option<String>,
        #[arg(long, requires = "date")]
        time: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
        #[arg(long)]
        force: bool,
    },
    /// Cal.com's side read back: a backfill of its bookings, a drift report.
    Calcom {
        #[command(subcommand)]
        action: calcom::CalcomAction,
    },
    /// Callback requests the agent filed.
    Callbacks {
        #[command(subcommand)]
        action: journey::CallbackAction,
    },
    /// Set a customer's email (when it has none); Cal.com bookings get the customer as attendee.
    CustomerEmail {
        #[arg(long)]
        customer: i64,
        #[arg(long)]
        email: String,
    },
    /// The HTTP service: Retell function calls, Cal.com webhooks, /metrics,
    /// /healthz and the /admin review page, with the sync worker inside.
    /// Stops on SIGTERM or SIGINT without losing a job.
    Serve {
        /// Address to listen on (port 0: any free port; the first line printed names it).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Cal.com API base (default https://api.cal.com); paths such as /v2/bookings are appended.
        #[arg(long)]
        calcom_url: Option<String>,
        /// Threads answering HTTP requests.
        #[arg(long, default_value_t = 8)]
        http_threads: usize,
        /// Sync worker threads (0: run no worker in this process).
        #[arg(long, default_value_t = 2)]
        worker_threads: usize,
        /// The worker's per-request timeout to Cal.com in seconds (default 30).
        #[arg(long)]
        timeout: Option<u64>,
        /// Verifies x-retell-signature.
        #[arg(long, env = "RETELL_API_KEY", hide_env_values = true)]
        retell_api_key: Option<String>,
        /// Verifies X-Cal-Signature-256.
        #[arg(long, env = "CALCOM_WEBHOOK_SECRET", hide_env_values = true)]
        calcom_webhook_secret: Option<String>,
        /// Opens /admin.
        #[arg(long, env = "CALLBOOK_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// When set, /metrics answers only `Authorization: Bearer <token>`.
        #[arg(long, env = "CALLBOOK_METRICS_TOKEN", hide_env_values = true)]
        metrics_token: Option<String>,
        /// Marks the /admin session cookie `Secure` (served over https, e.g. behind a proxy).
        #[arg(long)]
        cookie_secure: bool,
        /// Seconds a client has to send its request headers; also the
        /// longest a kept-alive connection may sit idle.
        #[arg(long, default_value_t = 10)]
        header_timeout: u64,
        /// Open connections at most; more are closed at once.
        #[arg(long, default_value_t = 512)]
        max_connections: usize,
    },
    /// Copy every table of one database into another (SQLite file or
    /// postgres:// / mysql:// URL), in one snapshot of the source, keeping
    /// ids; verifies row counts and checksums. --db is not used.
    Migrate {
        /// The database to copy: a SQLite file or a server URL.
        #[arg(long)]
        from: String,
        /// The database to fill (created or migrated first): empty unless --append.
        #[arg(long)]
        to: String,
        /// Copy into a target that already holds rows (the source's ids must be free there).
        #[arg(long)]
        append: bool,
        /// Rows per read and per write (1 to 10000).
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Book a realistic mix of callers on a temporary database and report.
    Demo {
        /// How many calls to simulate.
        #[arg(long, default_value_t = 200)]
        calls: usize,
        /// Seed for the simulated callers.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Print a shell completion script, e.g. `callbook completions bash > /etc/bash_completion.d/callbook`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
enum ReviewAction {
    /// Appointments waiting for a person.
    List,
    /// One appointment with its jobs.
    Show { id: i64 },
    /// Back to pending with a fresh sync job.
    Retry { id: i64 },
    /// Take it off the list, saying why.
    Resolve {
        id: i64,
        #[arg(long)]
        note: String,
        /// Who resolves it (default: $USER).
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
}

/// A failure of the command: a core error, or bad input found by the CLI.
pub(crate) struct Failure {
    code: String,
    message: String,
    exit: u8,
    /// The core error's JSON (`Error::to_json`), when the failure is one.
    detail: Option<Value>,
    /// An answer printed as usual, with a non-zero exit (a drift report that found drift).
    output: Option<Box<(Value, String)>>,
}

impl Failure {
    pub(crate) fn answer(value: Value, text: String, exit: u8) -> Self {
        Failure {
            code: String::new(),
            message: String::new(),
            exit,
            detail: None,
            output: Some(Box::new((value, text))),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let exit = match e.kind() {
            ErrorKind::Input => 2,
            ErrorKind::Rejected => 3,
            _ => 1,
        };
        Failure { code: e.code().to_string(), message: e.to_string(), exit, detail: Some(e.to_json()), output: None }
    }
}

fn main() -> ExitCode {
    let json_wanted = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let failure = Failure {
                code: "usage".into(),
                message: e.to_string().trim().to_string(),
                exit: 2,
                detail: None,
                output: None,
            };
            return report(Err(failure), json_wanted);
        }
    };
    let json = cli.json;
    let health = matches!(cli.command, Command::Health { .. });
    let result = run(cli);
    // `health` answers as usual, then says by its exit code whether a target was missed.
    let missed =
        health && result.as_ref().is_ok_and(|(v, _)| v["targets_missed"].as_array().is_some_and(|m| !m.is_empty()));
    let code = report(result, json);
    if missed {
        ExitCode::from(1)
    } else {
        code
    }
}

fn report(result: Result<(Value, String), Failure>, json: bool) -> ExitCode {
    match result {
        Ok((value, text)) => {
            if json {
                println!("{value}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(Failure { output: Some(answer), exit, .. }) => {
            let (value, text) = *answer;
            if json {
                println!("{value}");
            } else {
                println!("{text}");
            }
            ExitCode::from(exit)
        }
        Err(f) => {
            if json {
                let error = f.detail.unwrap_or_else(|| json!({"code": f.code, "message": f.message}));
                println!("{}", json!({ "error": error }));
            } else {
                eprintln!("error [{}]: {}", f.code, f.message);
            }
            ExitCode::from(f.exit)
        }
    }
}

fn run(cli: Cli) -> Result<(Value, String), Failure> {
    let g =
        Global { db: cli.db, synchronous: cli.synchronous, horizon_days: cli.horizon_days, checkpoint: cli.checkpoint };
    match cli.command {
        Command::Init => {
            let version = open(&g)?.schema_version()?;
            let path = redacted(&g.db.display().to_string());
            Ok((
                json!({"database": path, "schema_version": version}),
                format!("database {path} ready (schema {version})"),
            ))
        }
        Command::Import { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Failure {
                code: "io".into(),
                message: format!("{}: {e}", file.display()),
                exit: 2,
                detail: None,
                output: None,
            })?;
            let data = ImportData::from_json(&text)?;
            let summary = open(&g)?.import(&data)?;
            let text = format!(
                "imported {} companies, {} branches, {} services, {} calls",
                summary.companies, summary.branches, summary.services, summary.calls
            );
            Ok((json!(summary), text))
        }
        Command::Book { call, name, email, service, start, date, time } => {
            let request = BookingRequest {
                retell_call_id: call,
                customer_name: name,
                customer_email: email,
                service_id: service,
                start,
                date,
                time,
            };
            let book = open(&g)?;
            // libphonenumber loads its metadata on first use (about a second in a
            // debug build): not inside the booking, whose latency is kept.
            let _ = callbook::rules::normalize_phone("+49 30 1234567", None);
            let b = book.book(&request)?;
            let text = format!(
                "appointment {} {} for customer {}{} at {} (Cal.com sync {})",
                b.appointment_id,
                b.status,
                b.customer_id,
                if b.anonymous { " (anonymous caller)" } else { "" },
                callbook::format_utc(&b.starts_at),
                b.calcom_sync_status
            );
            Ok((json!(b), text))
        }
        Command::Slots { service, date, call, calcom_url, timeout } => {
            let mut config = callbook::AvailabilityConfig::default();
            config.calcom_url = calcom_url.unwrap_or(config.calcom_url);
            config.timeout_ms = timeout.map_or(config.timeout_ms, |s| s * 1000);
            let availability = callbook::Availability::http(open(&g)?, config);
            let request = callbook::AvailabilityRequest {
                retell_call_id: call,
                service_id: Some(service),
                date,
                ..Default::default()
            };
            let slots = availability.check(&request)?;
            let text = if slots.slots.is_empty() {
                format!("nothing free on {}", slots.date)
            } else {
                let list: Vec<String> = slots.slots.iter().map(callbook::format_utc).collect();
                format!("free on {} ({} in UTC): {}", slots.date, slots.time_zone, list.join(", "))
            };
            Ok((json!(slots), text))
        }
        Command::Stats => {
            let s = open(&g)?.stats()?;
            let line = |m: &std::collections::BTreeMap<String, u64>| {
                m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            };
            let text = format!(
                "appointments: {}\njobs: {}\nmanual review: {}\ncustomers: {} known, {} anonymous\nbreakers: {}",
                line(&s.appointments),
                line(&s.jobs),
                s.manual_review,
                s.customers_known,
                s.customers_anonymous,
                if s.breakers.is_empty() {
                    "none yet".to_string()
                } else {
                    s.breakers.iter().map(|b| format!("{} {}", b.key, b.state)).collect::<Vec<_>>().join(", ")
                }
            );
            Ok((json!(s), text))
        }
        Command::Health { window } => health::command(&open(&g)?, &window),
        Command::Sync { once, calcom_url, threads, timeout } => {
            let book = open(&g)?;
            let worker = Worker::http(book, worker_config(calcom_url, threads, timeout));
            let report = if once {
                worker.run_once()?
            } else {
                // Runs until the process is stopped; a job cut off mid-attempt
                // is claimed again when its lease runs out.
                let idle = std::time::Duration::from_millis(worker.config().idle_ms);
                worker.run(&std::sync::atomic::AtomicBool::new(false), idle)
            };
            let text = format!(
                "{} jobs: {} synced ({} adopted), {} retrying, {} flagged, {} deferred by the breaker, {} by the rate limit",
                report.jobs, report.synced, report.adopted, report.retried, report.flagged, report.deferred_breaker, report.deferred_rate_limit
            );
            Ok((json!(report), text))
        }
        Command::Review { action } => review(&open(&g)?, action),
        Command::Appointments { company, phone } => journey::appointments(&open(&g)?, company, &phone),
        Command::Cancel { id, reason, by, force } => {
            journey::cancel(&open(&g)?, &journey::operator_request(id, by, force, reason))
        }
        Command::Reschedule { id, start, date, time, reason, by, force } => {
            let request = ChangeRequest {
                new_start: start,
                new_date: date,
                new_time: time,
                ..journey::operator_request(id, by, force, reason)
            };
            journey::reschedule(&open(&g)?, &request)
        }
        Command::Callbacks { action } => journey::callbacks(&open(&g)?, action),
        Command::Calcom { action } => calcom::run(open(&g)?, action),
        Command::CustomerEmail { customer, email } => {
            let queued = open(&g)?.set_customer_email(CustomerId(customer), &email)?;
            Ok((
                json!({"customer_id": customer, "attendee_updates_queued": queued}),
                format!("email set; {queued} Cal.com bookings will get the customer as attendee"),
            ))
        }
        Command::Serve {
            listen,
            calcom_url,
            http_threads,
            worker_threads,
            timeout,
            retell_api_key,
            calcom_webhook_secret,
            admin_token,
            metrics_token,
            cookie_secure,
            header_timeout,
            max_connections,
        } => {
            let secret = |s: Option<String>| s.filter(|s| !s.is_empty()).map(callbook::Secret::new);
            let mut availability = callbook::AvailabilityConfig::default();
            availability.calcom_url = calcom_url.clone().unwrap_or(availability.calcom_url);
            let options = serve::Options {
                listen,
                http_threads,
                worker: (worker_threads > 0).then(|| worker_config(calcom_url, Some(worker_threads), timeout)),
                availability,
                retell_api_key: secret(retell_api_key),
                calcom_webhook_secret: secret(calcom_webhook_secret),
                admin_token,
                metrics_token: secret(metrics_token),
                cookie_secure,
                limits: serve::Limits {
                    header_timeout: std::time::Duration::from_secs(header_timeout.max(1)),
                    max_connections,
                },
            };
            // Sustained concurrent load: the checkpoint off the commit path (README).
            let checkpoint = if g.checkpoint == "auto" { "background".to_string() } else { g.checkpoint.clone() };
            let g = Global { checkpoint, ..g };
            let report = serve::run(open(&g)?, options)?;
            let text = format!(
                "stopped after {} requests; worker: {} jobs, {} synced, {} handed back",
                report.requests, report.worker.jobs, report.worker.synced, report.worker.released
            );
            Ok((json!(report), text))
        }
        Command::Migrate { from, to, append, batch } => migrate::run(&from, &to, append, batch),
        Command::Demo { calls, seed } => {
            let report = demo::run(calls, seed)?;
            let text = report.to_text();
            Ok((json!(report), text))
        }
        Command::Completions { shell } => {
            let script = about::completions(shell);
            Ok((json!({ "shell": shell.to_string(), "script": script }), script.trim_end().to_string()))
        }
    }
}

/// A server URL without its user and password.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, rest))) => format!("{scheme}://{rest}"),
        _ => url.to_string(),
    }
}

/// The global flags that say which database and how to open it.
struct Global {
    db: PathBuf,
    synchronous: String,
    horizon_days: Option<i64>,
    checkpoint: String,
}

/// The database named by `--db`, with `--synchronous` and `--horizon-days`.
fn open(g: &Global) -> Result<Callbook, Failure> {
    let synchronous =
        if g.synchronous == "normal" { callbook::Synchronous::Normal } else { callbook::Synchronous::Full };
    let checkpoint = match g.checkpoint.as_str() {
        "inline" => Some(callbook::store::Checkpoint::Inline),
        "background" => Some(callbook::store::Checkpoint::Background),
        _ => None,
    };
    Ok(Callbook::open_with(
        &g.db,
        &callbook::OpenOptions { synchronous, horizon_days: g.horizon_days, checkpoint, ..Default::default() },
    )?)
}

/// The worker's settings: core's defaults, with what the flags name.
fn worker_config(calcom_url: Option<String>, threads: Option<usize>, timeout: Option<u64>) -> WorkerConfig {
    let mut config = WorkerConfig::default();
    config.calcom_url = calcom_url.unwrap_or(config.calcom_url);
    config.threads = threads.unwrap_or(config.threads);
    config.timeout_ms = timeout.map_or(config.timeout_ms, |s| s * 1000);
    config
}

fn review_line(a: &callbook::Appointment) -> String {
    format!(
        "#{} {} starts {} — {} {} (attempts {}): {}",
        a.id,
        a.review_reason.as_deref().unwrap_or("review"),
        callbook::format_utc(&a.starts_at),
        a.calcom_sync_status,
        a.sync_error_code.as_deref().unwrap_or("-"),
        a.sync_attempt_count,
        a.sync_error_message.as_deref().unwrap_or("")
    )
}

fn review(book: &Callbook, action: ReviewAction) -> Result<(Value, String), Failure> {
    Ok(match action {
        ReviewAction::List => {
            let list = book.review_list()?;
            let text = if list.is_empty() {
                "nothing to review".to_string()
            } else {
                list.iter().map(review_line).collect::<Vec<_>>().join("\n")
            };
            (json!({ "appointments": list }), text)
        }
        ReviewAction::Show { id } => {
            let (appointment, jobs) = book.review_show(AppointmentId(id))?;
            let text = format!(
                "{}\njobs: {}",
                review_line(&appointment),
                jobs.iter()
                    .map(|j| format!("{} {} attempt {}", j.kind, j.state, j.attempt))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            (json!({ "appointment": appointment, "jobs": jobs }), text)
        }
        ReviewAction::Retry { id } => {
            let a = book.review_retry(AppointmentId(id))?;
            let text = format!("appointment {id} is pending again; the worker will sync it");
            (json!({ "appointment": a }), text)
        }
        ReviewAction::Resolve { id, note, by } => {
            let a = book.review_resolve(AppointmentId(id), &by, &note)?;
            (json!({ "appointment": a }), format!("appointment {id} resolved by {by}"))
        }
    })
}
