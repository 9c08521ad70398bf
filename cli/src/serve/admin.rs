//! The manual-review page at `/admin`: appointments that need a person, with
//! their error, attempts and customer; a button to retry and a form to
//! resolve with a note. Plain server-rendered HTML with forms, no script.
//!
//! Access: the token from `CALLBOOK_ADMIN_TOKEN`, sent as `Authorization:
//! Bearer <token>` (scripts), or typed into the login form with the
//! operator's name. A login starts a session: a random id in an HttpOnly,
//! SameSite=Strict cookie (`Secure` with `--cookie-secure`), kept in this
//! process only, so logging out or restarting ends it, and it expires 12
//! hours after sign-in. What an operator resolves is signed with the name
//! they signed in with. A browser's POST must come from this page: its
//! `Origin` must be this host, and `Sec-Fetch-Site`, when sent, same-origin.
//! Five failed logins from one address within 15 minutes lock that address
//! out until the window ends.

use callbook::{Appointment, AppointmentId, Callbook, Clock, Secret};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub const COOKIE: &str = "callbook_admin";
/// How long a session lasts after sign-in.
pub const SESSION_HOURS: i64 = 12;
/// Failed logins allowed per address and window.
pub const MAX_FAILED_LOGINS: u32 = 5;
pub const LOGIN_WINDOW_MINUTES: i64 = 15;
/// Sessions kept at most (the oldest goes first).
const MAX_SESSIONS: usize = 1000;

/// A page or a redirect for the HTTP layer to send.
#[derive(Debug)]
pub enum Page {
    Html {
        status: u16,
        body: String,
    },
    /// 303 to `location`, optionally setting the session cookie.
    Redirect {
        location: String,
        cookie: Option<String>,
    },
}

/// One request to `/admin`, as the HTTP layer read it.
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// The decoded POST body.
    pub form: Vec<(String, String)>,
    pub authorization: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
    pub peer: Option<IpAddr>,
}

#[derive(Debug, Clone)]
struct Session {
    operator: String,
    issued: DateTime<Utc>,
}

/// The admin area for one token.
#[derive(Debug)]
pub struct Admin {
    token: Option<Secret>,
    cookie_secure: bool,
    clock: Arc<dyn Clock>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Failed logins per address: how many, since when.
    failures: Mutex<HashMap<IpAddr, (u32, DateTime<Utc>)>>,
}

/// 32 random bytes as hex: a session id nobody can guess.
fn session_id() -> String {
    let mut bytes = [0u8; 32];
    // The OS's generator failing leaves zeros; refuse rather than hand them out.
    if getrandom::getrandom(&mut bytes).is_err() {
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Admin {
    pub fn new(token: Option<String>, cookie_secure: bool, clock: Arc<dyn Clock>) -> Self {
        Admin {
            token: token.filter(|t| !t.is_empty()).map(Secret::new),
            cookie_secure,
            clock,
            sessions: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Who is signed in: the session's operator, or `admin (token)` for a
    /// request carrying the token itself; `None`: nobody.
    fn operator(&self, request: &Request<'_>) -> Option<String> {
        let token = self.token.as_ref()?;
        if let Some(given) = request.authorization.and_then(|h| h.strip_prefix("Bearer ")) {
            return token.matches(given.trim()).then(|| "admin (token)".to_string());
        }
        let id = cookie_value(request.cookie)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.get(id)?.clone();
        if self.clock.now() - session.issued >= Duration::hours(SESSION_HOURS) {
            sessions.remove(id);
            return None;
        }
        Some(session.operator)
    }

    /// A browser's POST made by this page, not by another site: checked
    /// when the request rides on the cookie (a token header cannot be sent
    /// by another site's form).
    fn same_origin(request: &Request<'_>) -> bool {
        if request.sec_fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
            return false;
        }
        match (request.origin, request.host) {
            (Some(origin), Some(host)) => {
                origin.split_once("://").is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
            }
            // Browsers send Origin with every POST; without one, only a fetch-site header vouches.
            (None, _) => request.sec_fetch_site.is_some(),
            (Some(_), None) => false,
        }
    }

    /// Is this address locked out for failed logins?
    fn locked_out(&self, peer: Option<IpAddr>) -> bool {
        let (Some(peer), now) = (peer, self.clock.now()) else { return false };
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures
            .get(&peer)
            .is_some_and(|(n, since)| *n >= MAX_FAILED_LOGINS && now - *since < Duration::minutes(LOGIN_WINDOW_MINUTES))
    }

    fn failed_login(&self, peer: Option<IpAddr>) {
        let (Some(peer), now) = (peer, self.clock.now()) else { return };
        let window = Duration::minutes(LOGIN_WINDOW_MINUTES);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 10_000 {
            failures.retain(|_, (_, since)| now - *since < window);
        }
        let entry = failures.entry(peer).or_insert((0, now));
        if now - entry.1 >= window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    fn sign_in(&self, operator: &str) -> Option<String> {
        let id = session_id();
        if id.is_empty() {
            return None;
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions.iter().min_by_key(|(_, s)| s.issued).map(|(k, _)| k.clone());
            oldest.map(|k| sessions.remove(&k));
        }
        sessions.insert(id.clone(), Session { operator: operator.to_string(), issued: self.clock.now() });
        let secure = if self.cookie_secure { "; Secure" } else { "" };
        let age = SESSION_HOURS * 3600;
        Some(format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={age}{secure}"))
    }

    fn sign_out(&self, request: &Request<'_>) -> String {
        if let Some(id) = cookie_value(request.cookie) {
            self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        }
        let secure = if self.cookie_secure { "; Secure" } else { "" };
        format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0{secure}")
    }

    /// Handles one request under `/admin`.
    pub fn handle(&self, book: &Callbook, request: &Request<'_>) -> Page {
        let Some(token) = &self.token else {
            return html(
                503,
                "Admin is off",
                "<p>Set <code>CALLBOOK_ADMIN_TOKEN</code> to turn the admin page on.</p>",
            );
        };
        let field = |name: &str| request.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
        let bearer = request.authorization.is_some_and(|h| h.starts_with("Bearer "));
        if request.method == "POST" && !bearer && !Self::same_origin(request) {
            return html(403, "Refused", "<p>This form was not sent from this page.</p>");
        }
        match (request.method, request.path) {
            ("POST", "/admin/login") => {
                if self.locked_out(request.peer) {
                    return login(429, Some("Too many failed sign-ins: wait a few minutes."));
                }
                let name = field("operator").unwrap_or_default();
                if !token.matches(field("token").unwrap_or_default()) {
                    self.failed_login(request.peer);
                    return login(401, Some("That token is not right."));
                }
                if name.is_empty() || name.chars().count() > 200 {
                    return login(400, Some("Say who you are (at most 200 characters)."));
                }
                match self.sign_in(name) {
                    Some(cookie) => Page::Redirect { location: "/admin".into(), cookie: Some(cookie) },
                    None => html(500, "Not signed in", "<p>No session could be started.</p>"),
                }
            }
            ("POST", "/admin/logout") => {
                Page::Redirect { location: "/admin".into(), cookie: Some(self.sign_out(request)) }
            }
            _ => match self.operator(request) {
                None => login(401, None),
                Some(operator) => signed_in(book, request, &operator),
            },
        }
    }
}

/// The value of the session cookie among a request's cookies.
fn cookie_value(header: Option<&str>) -> Option<&str> {
    header
        .into_iter()
        .flat_map(|c| c.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

fn signed_in(book: &Callbook, request: &Request<'_>, operator: &str) -> Page {
    let field = |name: &str| request.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match (request.method, request.path) {
        ("GET", "/admin") => list(book, request.query, operator),
        ("POST", path) => match action(path) {
            Some((id, "retry")) => outcome(
                book.review_retry(id).map(|_| format!("Appointment {id} is pending again; the worker will sync it.")),
            ),
            Some((id, "resolve")) => {
                let note = field("note").unwrap_or_default();
                outcome(book.review_resolve(id, operator, note).map(|_| format!("Appointment {id} is resolved.")))
            }
            _ => html(404, "Not found", "<p>No such page.</p>"),
        },
        _ => html(404, "Not found", "<p>No such page.</p>"),
    }
}

/// `/admin/appointments/{id}/{retry|resolve}` → (id, verb).
fn action(path: &str) -> Option<(AppointmentId, &str)> {
    let rest = path.strip_prefix("/admin/appointments/")?;
    let (id, verb) = rest.split_once('/')?;
    Some((AppointmentId(id.parse().ok()?), verb))
}

fn outcome(result: callbook::Result<String>) -> Page {
    match result {
        Ok(done) => Page::Redirect { location: format!("/admin?done={}", encode(&done)), cookie: None },
        Err(e) => html(
            if e.kind() == callbook::ErrorKind::Internal { 500 } else { 409 },
            "Not done",
            &format!(
                r#"<p class="error" data-code="{code}">{message} <code>{code}</code></p><p><a href="/admin">Back to the list</a></p>"#,
                code = escape(e.code()),
                message = escape(&e.to_string())
            ),
        ),
    }
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str =
    "body{font:15px system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;width:100%}\
th,td{border-bottom:1px solid #ddd;padding:.5rem;text-align:left;vertical-align:top}.error{color:#a00}\
.done{background:#e8f5e9;padding:.5rem}form.inline{display:inline}input[name=note]{width:14rem}";

fn html(status: u16, title: &str, main: &str) -> Page {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · callbook</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1>{main}</body></html>",
        title = escape(title)
    );
    Page::Html { status, body }
}

fn login(status: u16, problem: Option<&str>) -> Page {
    let problem = problem.map(|p| format!(r#"<p class="error">{}</p>"#, escape(p))).unwrap_or_default();
    html(
        status,
        "callbook admin",
        &format!(
            r#"{problem}<form method="post" action="/admin/login"><label>Your name
            <input name="operator" autocomplete="username" maxlength="200" required></label>
            <label>Admin token
            <input type="password" name="token" autocomplete="current-password" required></label>
            <button type="submit">Sign in</button></form>"#
        ),
    )
}

fn list(book: &Callbook, query: &str, operator: &str) -> Page {
    let appointments = match book.review_list() {
        Ok(list) => list,
        Err(e) => return html(500, "Manual review", &format!(r#"<p class="error">{}</p>"#, escape(&e.to_string()))),
    };
    let done = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| format!(r#"<p class="done" role="status">{}</p>"#, escape(&v)))
        .unwrap_or_default();
    let mut main = format!(
        r#"{done}<p><span id="count">{n}</span> appointment(s) need a person.</p>
        <form method="post" action="/admin/logout">Signed in as <span id="operator">{who}</span>
        <button>Sign out</button></form>"#,
        n = appointments.len(),
        who = escape(operator)
    );
    if !appointments.is_empty() {
        main.push_str(
            "<table><thead><tr><th>Appointment</th><th>Starts (UTC)</th><th>Customer</th><th>Why</th>\
             <th>Attempts</th><th>Actions</th></tr></thead><tbody>",
        );
        for a in &appointments {
            row(book, a, &mut main);
        }
        main.push_str("</tbody></table>");
    }
    html(200, "Manual review", &main)
}

fn row(book: &Callbook, a: &Appointment, out: &mut String) {
    let customer = book.customer(a.company_id, a.customer_id).ok().flatten();
    let who = customer.map_or_else(
        || format!("customer {}", a.customer_id),
        |c| {
            format!(
                "{}<br><small>{} · {}</small>",
                escape(&c.name),
                escape(&c.phone),
                escape(c.email.as_deref().unwrap_or("no email"))
            )
        },
    );
    let _ = write!(
        out,
        r#"<tr data-appointment="{id}"><td>#{id}<br><small>company {company}</small></td><td>{starts}</td><td>{who}</td>
        <td>{reason}<br><code>{code}</code> {message}</td><td>{attempts}</td><td>
        <form class="inline" method="post" action="/admin/appointments/{id}/retry"><button name="retry">Retry</button></form>
        <form class="inline" method="post" action="/admin/appointments/{id}/resolve">
        <input name="note" placeholder="why it is resolved" required aria-label="note for {id}">
        <button name="resolve">Resolve</button></form></td></tr>"#,
        id = a.id,
        company = a.company_id,
        starts = callbook::format_utc(&a.starts_at),
        reason = escape(a.review_reason.as_deref().unwrap_or("review")),
        code = escape(a.sync_error_code.as_deref().unwrap_or("-")),
        message = escape(a.sync_error_message.as_deref().unwrap_or("")),
        attempts = a.sync_attempt_count,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbook::ManualClock;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-01T08:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    fn post<'a>(path: &'a str, form: &[(&str, &str)], cookie: Option<&'a str>) -> Request<'a> {
        Request {
            method: "POST",
            path,
            form: form.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            cookie,
            host: Some("127.0.0.1:8080"),
            origin: Some("http://127.0.0.1:8080"),
            sec_fetch_site: Some("same-origin"),
            peer: Some(IpAddr::from([10, 0, 0, 1])),
            ..Default::default()
        }
    }

    /// Signs in and returns the cookie pair (`name=value`).
    fn sign_in(admin: &Admin, book: &Callbook) -> String {
        match admin.handle(book, &post("/admin/login", &[("operator", "Ada"), ("token", "s3cret")], None)) {
            Page::Redirect { cookie: Some(cookie), .. } => cookie.split(';').next().unwrap_or_default().to_string(),
            other => panic!("not signed in: {other:?}"),
        }
    }

    fn status(page: &Page) -> u16 {
        match page {
            Page::Html { status, .. } => *status,
            Page::Redirect { .. } => 303,
        }
    }

    fn get<'a>(cookie: Option<&'a str>, authorization: Option<&'a str>) -> Request<'a> {
        Request { method: "GET", path: "/admin", cookie, authorization, ..Default::default() }
    }

    #[test]
    fn sessions_end_at_logout_expiry_and_restart() {
        let clock = Arc::new(ManualClock::new(t0()));
        let book = Callbook::new(Arc::new(callbook::store::MemoryStore::new()));
        let admin = Admin::new(Some("s3cret".into()), false, clock.clone());
        assert_eq!(status(&admin.handle(&book, &get(None, Some("Bearer s3cret")))), 200);
        assert_eq!(status(&admin.handle(&book, &get(None, Some("Bearer nope")))), 401);
        let cookie = sign_in(&admin, &book);
        assert_eq!(status(&admin.handle(&book, &get(Some(&cookie), None))), 200);
        // A cookie made up, or one from another process (a restart), is nobody's.
        assert_eq!(status(&admin.handle(&book, &get(Some("callbook_admin=00ff"), None))), 401);
        let restarted = Admin::new(Some("s3cret".into()), false, clock.clone());
        assert_eq!(status(&restarted.handle(&book, &get(Some(&cookie), None))), 401);
        // Logging out ends the session even for a copy of the cookie kept elsewhere.
        let out = admin.handle(&book, &post("/admin/logout", &[], Some(&cookie)));
        assert!(matches!(out, Page::Redirect { cookie: Some(ref c), .. } if c.contains("Max-Age=0")));
        assert_eq!(status(&admin.handle(&book, &get(Some(&cookie), None))), 401);
        // Twelve hours after sign-in it has expired.
        let cookie = sign_in(&admin, &book);
        clock.advance(Duration::hours(SESSION_HOURS) - Duration::seconds(1));
        assert_eq!(status(&admin.handle(&book, &get(Some(&cookie), None))), 200);
        clock.advance(Duration::seconds(1));
        assert_eq!(status(&admin.handle(&book, &get(Some(&cookie), None))), 401);
    }

    #[test]
    fn cross_site_posts_and_guessed_tokens_are_refused() {
        let clock = Arc::new(ManualClock::new(t0()));
        let book = Callbook::new(Arc::new(callbook::store::MemoryStore::new()));
        let admin = Admin::new(Some("s3cret".into()), true, clock.clone());
        let cookie = sign_in(&admin, &book);
        let retry = |origin: Option<&'static str>, site: Option<&'static str>| {
            let request =
                Request { origin, sec_fetch_site: site, ..post("/admin/appointments/1/retry", &[], Some(&cookie)) };
            status(&admin.handle(&book, &request))
        };
        assert_eq!(retry(Some("https://evil.example"), Some("cross-site")), 403);
        assert_eq!(retry(Some("https://evil.example"), None), 403);
        assert_eq!(retry(Some("http://127.0.0.1:8080"), Some("cross-site")), 403);
        assert_eq!(retry(None, None), 403);
        assert_eq!(retry(Some("http://127.0.0.1:8080"), Some("same-origin")), 409, "ours: not on the list");
        // Secure cookies when asked for.
        let login = admin.handle(&book, &post("/admin/login", &[("operator", "Ada"), ("token", "s3cret")], None));
        assert!(matches!(login, Page::Redirect { cookie: Some(ref c), .. } if c.ends_with("; Secure")));
        // Five wrong tokens lock the address out, even for the right one, until the window ends.
        for _ in 0..MAX_FAILED_LOGINS {
            let wrong = admin.handle(&book, &post("/admin/login", &[("operator", "Eve"), ("token", "guess")], None));
            assert_eq!(status(&wrong), 401);
        }
        let right = || admin.handle(&book, &post("/admin/login", &[("operator", "Ada"), ("token", "s3cret")], None));
        assert_eq!(status(&right()), 429);
        let elsewhere = Request {
            peer: Some(IpAddr::from([10, 0, 0, 2])),
            ..post("/admin/login", &[("operator", "Ada"), ("token", "s3cret")], None)
        };
        assert_eq!(status(&admin.handle(&book, &elsewhere)), 303, "another address is not locked out");
        clock.advance(Duration::minutes(LOGIN_WINDOW_MINUTES));
        assert_eq!(status(&right()), 303);
    }

    #[test]
    fn escaping_and_actions() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(action("/admin/appointments/12/retry"), Some((AppointmentId(12), "retry")));
        assert_eq!(action("/admin/appointments/x/retry"), None);
    }
}
