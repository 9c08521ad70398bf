//! `callbook serve`: the HTTP service a team runs as is, on the embedded
//! SQLite database. Routes:
//!
//! - `POST /retell/function` (and `/retell/function/{name}` for agents in
//!   "args only" mode): Retell custom function calls, answered by core's [`Agent`].
//! - `POST /calcom/webhook`: Cal.com's changes, applied by core.
//! - `GET /metrics` (Prometheus text), `GET /healthz`.
//! - `/admin`: the manual-review page.
//!
//! The sync worker runs inside on its own threads. SIGTERM or SIGINT stops
//! taking requests, lets requests and jobs in hand finish (jobs claimed but
//! not started go back to the queue), and returns. Bodies are capped at
//! 64 KiB. Logs go to stderr and hold ids, never names, numbers or secrets.

mod admin;
mod metrics;

use crate::Failure;
use admin::{Admin, Page};
use callbook::{Agent, Callbook, HttpCalcom, RunReport, Secret, WebhookOutcome, Worker, WorkerConfig};
use metrics::Metrics;
use serde::Serialize;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tiny_http::{Header, Request, Response, Server};

pub const MAX_BODY: usize = 64 * 1024;

/// How `serve` runs (from the command line and the environment).
#[derive(Debug)]
pub struct Options {
    pub listen: String,
    pub calcom_url: String,
    pub http_threads: usize,
    /// 0: no worker in this process.
    pub worker_threads: usize,
    pub timeout: Duration,
    pub retell_api_key: Option<Secret>,
    pub calcom_webhook_secret: Option<Secret>,
    pub admin_token: Option<String>,
}

/// What `serve` did, printed when it stops.
#[derive(Debug, Serialize)]
pub struct ServeReport {
    pub listen: String,
    pub requests: u64,
    pub worker: RunReport,
}

struct App {
    book: Callbook,
    agent: Option<Agent>,
    webhook_secret: Option<Secret>,
    admin: Admin,
    metrics: Metrics,
    worker: Option<Arc<Worker>>,
    requests: AtomicU64,
}

fn log(line: std::fmt::Arguments<'_>) {
    eprintln!("{} serve: {line}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"));
}

pub fn run(book: Callbook, options: Options) -> Result<ServeReport, Failure> {
    let server = Server::http(&options.listen).map_err(|e| Failure {
        code: "listen".into(),
        message: format!("cannot listen on {}: {e}", options.listen),
        exit: 1,
    })?;
    let addr = server.server_addr().to_ip().map_or(options.listen.clone(), |a| a.to_string());
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| Failure {
            code: "signal".into(),
            message: e.to_string(),
            exit: 1,
        })?;
    }
    // libphonenumber loads its metadata on first use: not on a caller's time.
    let _ = callbook::normalize_phone("+49 30 1234567", None);
    let metrics = Metrics::new();
    let worker = (options.worker_threads > 0).then(|| {
        let api = Arc::new(HttpCalcom::new(options.timeout));
        let config = WorkerConfig {
            threads: options.worker_threads,
            base_url: options.calcom_url.clone(),
            ..WorkerConfig::default()
        };
        let m = metrics.clone();
        Arc::new(Worker::new(book.clone(), api, config).on_event(move |e| m.sync_event(e)))
    });
    for (name, missing) in [
        ("RETELL_API_KEY", options.retell_api_key.is_none()),
        ("CALCOM_WEBHOOK_SECRET", options.calcom_webhook_secret.is_none()),
        ("CALLBOOK_ADMIN_TOKEN", options.admin_token.is_none()),
    ] {
        if missing {
            log(format_args!("{name} is not set: its endpoint answers 503"));
        }
    }
    let app = Arc::new(App {
        agent: options.retell_api_key.map(|key| Agent::new(book.clone(), key)),
        book,
        webhook_secret: options.calcom_webhook_secret,
        admin: Admin::new(options.admin_token),
        metrics,
        worker: worker.clone(),
        requests: AtomicU64::new(0),
    });
    // The one line on stdout before the report: tools and tests read the port from it.
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    log(format_args!(
        "listening on {addr}, {} HTTP threads, worker threads {}",
        options.http_threads, options.worker_threads
    ));

    let worker_thread = worker.map(|w| {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || w.run(&stop, Duration::from_millis(200)))
    });
    let server = Arc::new(server);
    let handlers: Vec<_> = (0..options.http_threads.max(1))
        .map(|_| {
            let (server, app, stop) = (Arc::clone(&server), Arc::clone(&app), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match server.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(request)) => handle(&app, request),
                        Ok(None) => {}
                        Err(e) => {
                            log(format_args!("accept failed: {e}"));
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for h in handlers {
        let _ = h.join();
    }
    drop(server);
    log(format_args!("stopped taking requests; waiting for the jobs in hand"));
    let worker_report = worker_thread.and_then(|t| t.join().ok()).unwrap_or_default();
    log(format_args!("stopped: {} jobs run, {} handed back", worker_report.jobs, worker_report.released));
    Ok(ServeReport { listen: addr, requests: app.requests.load(Ordering::Relaxed), worker: worker_report })
}

fn header<'a>(request: &'a Request, name: &'static str) -> Option<&'a str> {
    request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str())
}

fn content_type(value: &str) -> Option<Header> {
    Header::from_bytes("Content-Type", value).ok()
}

/// An answer before it is sent.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: &serde_json::Value) -> Self {
        Reply { status, content_type: "application/json", body: body.to_string(), headers: Vec::new() }
    }
    fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(status, &serde_json::json!({"ok": false, "code": code, "message": message}))
    }
}

/// Reads the body, at most `MAX_BODY` bytes; `None` when it is larger or broken.
fn body_of(request: &mut Request) -> Option<Vec<u8>> {
    if request.body_length().is_some_and(|n| n > MAX_BODY) {
        return None;
    }
    let mut body = Vec::new();
    request.as_reader().take(MAX_BODY as u64 + 1).read_to_end(&mut body).ok()?;
    (body.len() <= MAX_BODY).then_some(body)
}

fn handle(app: &App, mut request: Request) {
    app.requests.fetch_add(1, Ordering::Relaxed);
    let method = request.method().as_str().to_ascii_uppercase();
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let route = route_name(path);
    let reply = match body_of(&mut request) {
        None => Reply::error(413, "body_too_large", "the body is larger than 64 KiB"),
        Some(body) => dispatch(app, &request, &method, path, query, &body),
    };
    app.metrics.request(route, reply.status);
    let mut response = Response::from_string(reply.body).with_status_code(reply.status);
    if let Some(h) = content_type(reply.content_type) {
        response.add_header(h);
    }
    for (name, value) in reply.headers {
        if let Ok(h) = Header::from_bytes(name, value) {
            response.add_header(h);
        }
    }
    // The client may have gone; nothing to do about it.
    let _ = request.respond(response);
}

fn route_name(path: &str) -> &'static str {
    match path {
        p if p == "/retell/function" || p.starts_with("/retell/function/") => "retell_function",
        "/calcom/webhook" => "calcom_webhook",
        "/metrics" => "metrics",
        "/healthz" => "healthz",
        p if p == "/admin" || p.starts_with("/admin/") => "admin",
        _ => "other",
    }
}

fn dispatch(app: &App, request: &Request, method: &str, path: &str, query: &str, body: &[u8]) -> Reply {
    match (method, route_name(path)) {
        ("POST", "retell_function") => retell(app, request, path, body),
        ("POST", "calcom_webhook") => calcom_webhook(app, request, body),
        ("GET", "metrics") => {
            let errors = app.worker.as_ref().map_or(0, |w| w.storage_errors());
            let text = app.metrics.render(&app.book, errors);
            Reply {
                status: 200,
                content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body: text,
                headers: Vec::new(),
            }
        }
        ("GET", "healthz") => match app.book.ping() {
            Ok(()) => Reply::json(200, &serde_json::json!({"ok": true})),
            Err(e) => Reply::error(503, e.code(), "the database cannot be read"),
        },
        (_, "admin") => {
            let form: Vec<(String, String)> =
                form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            let allowed = app.admin.allows(header(request, "Authorization"), header(request, "Cookie"));
            match app.admin.handle(&app.book, method, path, query, &form, allowed) {
                Page::Html { status, body } => {
                    Reply { status, content_type: "text/html; charset=utf-8", body, headers: Vec::new() }
                }
                Page::Redirect { location, cookie } => {
                    let mut headers = vec![("Location", location)];
                    headers.extend(cookie.map(|c| ("Set-Cookie", c)));
                    Reply { status: 303, content_type: "text/plain", body: String::new(), headers }
                }
            }
        }
        (_, "other") => Reply::error(404, "not_found", "no such route"),
        _ => Reply::error(405, "method_not_allowed", "this route takes another method"),
    }
}

fn retell(app: &App, request: &Request, path: &str, body: &[u8]) -> Reply {
    let Some(agent) = &app.agent else {
        return Reply::error(503, "not_configured", "RETELL_API_KEY is not set");
    };
    let function = path.strip_prefix("/retell/function/").filter(|f| !f.is_empty());
    let signature = header(request, "X-Retell-Signature").unwrap_or_default();
    let started = Instant::now();
    let reply = agent.answer(body, signature, function);
    app.metrics.booked(started.elapsed().as_secs_f64(), reply.booking.as_ref().map(|b| b.anonymous));
    if reply.status >= 500 {
        log(format_args!("retell function failed: {}", reply.body["code"]));
    }
    Reply::json(reply.status, &reply.body)
}

fn calcom_webhook(app: &App, request: &Request, body: &[u8]) -> Reply {
    let Some(secret) = &app.webhook_secret else {
        return Reply::error(503, "not_configured", "CALCOM_WEBHOOK_SECRET is not set");
    };
    let signature = header(request, "X-Cal-Signature-256").unwrap_or_default();
    match app.book.calcom_webhook(body, signature, secret.expose()) {
        Ok(outcome) => {
            let result = match &outcome {
                WebhookOutcome::Cancelled { .. } => "cancelled",
                WebhookOutcome::Rescheduled { .. } => "rescheduled",
                WebhookOutcome::AlreadyApplied { .. } => "already_applied",
                WebhookOutcome::UnknownBooking { uid } => {
                    log(format_args!("Cal.com webhook for unknown booking uid {uid:?}: ignored"));
                    "unknown_booking"
                }
                WebhookOutcome::Ignored { trigger } => {
                    log(format_args!("Cal.com webhook {trigger:?}: not acted on"));
                    "ignored"
                }
            };
            app.metrics.webhook(result);
            let mut body = serde_json::to_value(&outcome).unwrap_or_default();
            body["ok"] = true.into();
            Reply::json(200, &body)
        }
        Err(e) => {
            let status = match e.code() {
                "bad_signature" => 401,
                _ if e.kind() == callbook::ErrorKind::Internal => 500,
                _ => 400,
            };
            app.metrics.webhook(e.code());
            Reply::error(status, e.code(), &e.to_string())
        }
    }
}
