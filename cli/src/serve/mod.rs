//! `callbook serve`: the HTTP service a team runs as is, on the embedded
//! SQLite database. Routes:
//!
//! - `POST /retell/function` (and `/retell/function/{name}` for agents in
//!   "args only" mode): Retell custom function calls, answered by core's [`Agent`].
//! - `POST /calcom/webhook/{company_id}`: Cal.com's changes to that
//!   company's bookings, verified with its own secret and applied by core;
//!   `POST /calcom/webhook` for a single-tenant install (secret from
//!   `CALCOM_WEBHOOK_SECRET`).
//! - `GET /metrics` (Prometheus text), `GET /healthz`.
//! - `/admin`: the manual-review page.
//!
//! The sync worker runs inside on its own threads. SIGTERM or SIGINT stops
//! taking requests, lets requests and jobs in hand finish (jobs claimed but
//! not started go back to the queue), and returns. Bodies are capped at
//! 64 KiB. Logs go to stderr and hold ids, never names, numbers or secrets.

mod admin;
mod listen;
mod metrics;
mod pages;

use crate::Failure;
use admin::{Admin, Page};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use callbook::{Agent, Callbook, RunReport, Secret, WebhookOutcome, Worker, WorkerConfig};
pub use listen::Limits;
use metrics::Metrics;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_BODY: usize = 64 * 1024;
/// A body that has not arrived by then is refused (slow clients hold no thread).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How `serve` runs (from the command line and the environment).
#[derive(Debug)]
pub struct Options {
    pub listen: String,
    pub http_threads: usize,
    /// `None`: no worker in this process.
    pub worker: Option<WorkerConfig>,
    pub availability: callbook::AvailabilityConfig,
    pub retell_api_key: Option<Secret>,
    pub calcom_webhook_secret: Option<Secret>,
    pub admin_token: Option<String>,
    /// When set, `/metrics` wants `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    /// The admin session cookie is `Secure`.
    pub cookie_secure: bool,
    pub limits: Limits,
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
    metrics_token: Option<Secret>,
    /// The Cal.com base of companies that name none (to find their breakers).
    calcom_base: String,
    admin: Admin,
    metrics: Metrics,
    worker: Option<Arc<Worker>>,
    requests: AtomicU64,
}

fn log(line: std::fmt::Arguments<'_>) {
    eprintln!("{} serve: {line}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"));
}

pub fn run(book: Callbook, options: Options) -> Result<ServeReport, Failure> {
    let failure =
        |code: &str, message: String| Failure { code: code.into(), message, exit: 1, detail: None, output: None };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.http_threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| failure("runtime", e.to_string()))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&options.listen))
        .map_err(|e| failure("listen", format!("cannot listen on {}: {e}", options.listen)))?;
    let addr = listener.local_addr().map_or(options.listen.clone(), |a| a.to_string());
    // libphonenumber loads its metadata on first use: not on a caller's time.
    let _ = callbook::rules::normalize_phone("+49 30 1234567", None);
    let metrics = Metrics::new();
    let worker = options.worker.map(|config| {
        let m = metrics.clone();
        Arc::new(Worker::http(book.clone(), config).on_event(move |e| m.sync_event(e)))
    });
    for (name, endpoint, missing) in [
        ("RETELL_API_KEY", "/retell/function", options.retell_api_key.is_none()),
        (
            "CALCOM_WEBHOOK_SECRET",
            "/calcom/webhook (each company's own URL has its own secret)",
            options.calcom_webhook_secret.is_none(),
        ),
        ("CALLBOOK_ADMIN_TOKEN", "/admin", options.admin_token.is_none()),
    ] {
        if missing {
            log(format_args!("{name} is not set: {endpoint} answers 503"));
        }
    }
    let calcom_base = options.availability.calcom_url.clone();
    let availability = Arc::new(callbook::Availability::http(book.clone(), options.availability));
    let app = Arc::new(App {
        agent: options.retell_api_key.map(|key| Agent::new(book.clone(), key).with_availability(availability)),
        book,
        webhook_secret: options.calcom_webhook_secret,
        metrics_token: options.metrics_token,
        calcom_base,
        admin: Admin::new(options.admin_token, options.cookie_secure, Arc::new(callbook::SystemClock)),
        metrics,
        worker: worker.clone(),
        requests: AtomicU64::new(0),
    });
    // The one line on stdout before the report: tools and tests read the port from it.
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let worker_threads = worker.as_ref().map_or(0, |w| w.config().threads);
    log(format_args!("listening on {addr}, {} HTTP threads, worker threads {worker_threads}", options.http_threads));

    let stop = Arc::new(AtomicBool::new(false));
    let worker_thread = worker.map(|w| {
        let stop = Arc::clone(&stop);
        let idle = Duration::from_millis(w.config().idle_ms);
        std::thread::spawn(move || {
            background_priority();
            w.run(&stop, idle)
        })
    });
    let router = axum::Router::new().fallback(handle).with_state(Arc::clone(&app));
    let stop_signal = async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        log(format_args!("stopping: no new requests; answering those in hand"));
    };
    let refused = || app.metrics.connection_refused();
    runtime.block_on(listen::serve(listener, router, options.limits, stop_signal, refused));
    // Requests in hand have been answered; now the jobs in hand finish.
    stop.store(true, Ordering::SeqCst);
    drop(runtime);
    log(format_args!("stopped taking requests; waiting for the jobs in hand"));
    let worker_report = worker_thread.and_then(|t| t.join().ok()).unwrap_or_default();
    log(format_args!("stopped: {} jobs run, {} handed back", worker_report.jobs, worker_report.released));
    Ok(ServeReport { listen: addr, requests: app.requests.load(Ordering::Relaxed), worker: worker_report })
}

/// The worker is background work: its threads (this one and those it
/// starts, which inherit it) yield the CPU to the threads answering calls
/// when both want it (Linux: nice 10 for the calling thread only). Its
/// writes still commit with the bookings (`Store::write_background`).
fn background_priority() {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(None, 10);
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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

/// Every request: the body is read (at most `MAX_BODY`, within 10 s), then
/// the answer is made on the blocking pool (core is synchronous: a booking
/// waits for its commit).
async fn handle(
    State(app): State<Arc<App>>,
    peer: Option<axum::Extension<listen::Peer>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    app.requests.fetch_add(1, Ordering::Relaxed);
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await;
    let reply = match read {
        Err(_) => Reply::error(408, "body_timeout", "the body did not arrive in time"),
        Ok(Err(_)) => Reply::error(413, "body_too_large", "the body is larger than 64 KiB"),
        Ok(Ok(body)) => {
            let app = Arc::clone(&app);
            let peer = peer.map(|p| p.0 .0.ip());
            tokio::task::spawn_blocking(move || {
                let request = Incoming { headers: &headers, method: method.as_str(), path: &path, query: &query, peer };
                dispatch(&app, &request, &body)
            })
            .await
            .unwrap_or_else(|_| Reply::error(500, "internal", "internal error"))
        }
    };
    app.metrics.request(route_name(uri.path()), reply.status);
    let mut response = Response::new(axum::body::Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let out = response.headers_mut();
    out.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.append(name, value);
        }
    }
    response
}

fn route_name(path: &str) -> &'static str {
    match path {
        p if p == "/retell/function" || p.starts_with("/retell/function/") => "retell_function",
        p if p == "/calcom/webhook" || p.starts_with("/calcom/webhook/") => "calcom_webhook",
        "/metrics" => "metrics",
        "/healthz" => "healthz",
        p if p == "/admin" || p.starts_with("/admin/") => "admin",
        _ => "other",
    }
}

/// A request as `dispatch` reads it.
struct Incoming<'a> {
    headers: &'a HeaderMap,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    peer: Option<std::net::IpAddr>,
}

fn dispatch(app: &App, incoming: &Incoming<'_>, body: &[u8]) -> Reply {
    let (request, method, path) = (incoming.headers, incoming.method, incoming.path);
    match (method, route_name(path)) {
        ("POST", "retell_function") => retell(app, request, path, body),
        ("POST", "calcom_webhook") => calcom_webhook(app, request, path, body),
        ("GET", "metrics") => {
            if let Some(token) = &app.metrics_token {
                let given = header(request, "Authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
                if !token.matches(given.trim()) {
                    let mut reply = Reply::error(401, "unauthorized", "/metrics wants Authorization: Bearer <token>");
                    reply.headers.push(("WWW-Authenticate", "Bearer".into()));
                    return reply;
                }
            }
            let errors = app.worker.as_ref().map_or(0, |w| w.storage_errors());
            let text = app.metrics.render(&app.book, &app.calcom_base, errors);
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
            let admin_request = admin::Request {
                method,
                path,
                query: incoming.query,
                form: form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
                authorization: header(request, "Authorization"),
                cookie: header(request, "Cookie"),
                host: header(request, "Host"),
                origin: header(request, "Origin"),
                sec_fetch_site: header(request, "Sec-Fetch-Site"),
                peer: incoming.peer,
            };
            match app.admin.handle(&app.book, &admin_request) {
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

fn retell(app: &App, request: &HeaderMap, path: &str, body: &[u8]) -> Reply {
    let Some(agent) = &app.agent else {
        return Reply::error(503, "not_configured", "RETELL_API_KEY is not set");
    };
    let function = path.strip_prefix("/retell/function/").filter(|f| !f.is_empty());
    let signature = header(request, "X-Retell-Signature").unwrap_or_default();
    let started = Instant::now();
    let reply = agent.answer(body, signature, function);
    let function = reply.function.map_or("none", |f| f.as_str());
    if let Some(booking) = &reply.booking {
        app.metrics.booked(started.elapsed().as_secs_f64(), Some(booking.anonymous));
        if !booking.availability_checked {
            log(format_args!(
                "appointment {} booked without an availability check in its call",
                booking.appointment_id
            ));
        }
    } else if function == "book_appointment" {
        app.metrics.booked(started.elapsed().as_secs_f64(), None);
    }
    let result = match reply.body["ok"].as_bool() {
        Some(true) => "ok",
        _ => reply.body["code"].as_str().unwrap_or("error"),
    };
    app.metrics.answered(function, result);
    if let Some(change) = &reply.change {
        app.metrics.changed(change.kind.as_str());
    }
    if reply.status >= 500 {
        log(format_args!("retell function failed: {}", reply.body["code"]));
    }
    Reply::json(reply.status, &reply.body)
}

fn calcom_webhook(app: &App, request: &HeaderMap, path: &str, body: &[u8]) -> Reply {
    let signature = header(request, "X-Cal-Signature-256").unwrap_or_default();
    let outcome = match path.strip_prefix("/calcom/webhook/") {
        Some(company) => match company.parse::<i64>() {
            Ok(id) if id > 0 => app.book.calcom_webhook(callbook::CompanyId(id), body, signature),
            _ => return Reply::error(404, "not_found", "no such company"),
        },
        None => match &app.webhook_secret {
            Some(secret) => app.book.calcom_webhook_single_tenant(body, signature, secret.expose()),
            None => return Reply::error(503, "not_configured", "CALCOM_WEBHOOK_SECRET is not set"),
        },
    };
    match outcome {
        Ok(outcome) => {
            match &outcome {
                WebhookOutcome::UnknownBooking { uid } => {
                    log(format_args!("Cal.com webhook for unknown booking uid {uid:?}: ignored"));
                }
                WebhookOutcome::Ignored { trigger } => log(format_args!("Cal.com webhook {trigger:?}: not acted on")),
                _ => {}
            }
            app.metrics.webhook(outcome.result());
            let mut body = serde_json::to_value(&outcome).unwrap_or_default();
            body["ok"] = true.into();
            Reply::json(200, &body)
        }
        Err(e) => {
            let status = match e.code() {
                "bad_signature" => 401,
                "company_not_found" => 404,
                "webhook_not_configured" => 503,
                _ if e.kind() == callbook::ErrorKind::Internal => 500,
                _ => 400,
            };
            app.metrics.webhook(e.code());
            Reply::error(status, e.code(), &e.to_string())
        }
    }
}
