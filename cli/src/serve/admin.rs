//! The admin area: `/admin`, the manual-review list (appointments that
//! need a person, with their error, attempts and customer; Retry, and
//! Resolve with a note); `/admin/health`, the operations overview of a
//! window (`?window=24h`); `/admin/callbacks`, open callback requests with a
//! Done button. Server-rendered through maud templates (`pages`), forms and
//! inline SVG, no script.
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

use super::pages::{self, Nav, Section};
use callbook::{AppointmentId, CallbackId, CallbackStatus, Callbook, Clock, Secret, Window};
use chrono::{DateTime, Duration, Utc};
use maud::Markup;
use std::collections::HashMap;
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
                None,
                pages::paragraph("Set CALLBOOK_ADMIN_TOKEN to turn the admin page on."),
            );
        };
        let field = |name: &str| request.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
        let bearer = request.authorization.is_some_and(|h| h.starts_with("Bearer "));
        if request.method == "POST" && !bearer && !Self::same_origin(request) {
            return html(403, "Refused", None, pages::paragraph("This form was not sent from this page."));
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
                    None => html(500, "Not signed in", None, pages::paragraph("No session could be started.")),
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
    let nav = |section| Nav { operator, section };
    let query = |name: &str| {
        form_urlencoded::parse(request.query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    };
    let done = query("done");
    let not_found = || html(404, "Not found", Some(&nav(Section::Review)), pages::paragraph("No such page."));
    match (request.method, request.path) {
        ("GET", "/admin") => match review_items(book) {
            Ok(items) => {
                html(200, "Manual review", Some(&nav(Section::Review)), pages::review_list(done.as_deref(), &items))
            }
            Err(e) => failed(&e, &nav(Section::Review), "/admin"),
        },
        ("GET", "/admin/health") => {
            let window = match query("window").as_deref().map(Window::parse).unwrap_or(Ok(Window::DAY)) {
                Ok(window) => window,
                Err(e) => return failed(&e, &nav(Section::Overview), "/admin/health"),
            };
            match book.health(window).and_then(|h| Ok((h, book.last_drift()?))) {
                Ok((health, drift)) => {
                    html(200, "Overview", Some(&nav(Section::Overview)), pages::overview(&health, &drift))
                }
                Err(e) => failed(&e, &nav(Section::Overview), "/admin/health"),
            }
        }
        ("GET", "/admin/callbacks") => {
            let listed = book.callbacks(Some(CallbackStatus::Open)).and_then(|list| Ok((list, book.companies()?)));
            match listed {
                Ok((list, companies)) => {
                    let name = |id: callbook::CompanyId| {
                        companies
                            .iter()
                            .find(|c| c.id == id)
                            .map_or_else(|| format!("company {id}"), |c| c.name.clone())
                    };
                    html(
                        200,
                        "Callbacks",
                        Some(&nav(Section::Callbacks)),
                        pages::callbacks(done.as_deref(), &list, name),
                    )
                }
                Err(e) => failed(&e, &nav(Section::Callbacks), "/admin/callbacks"),
            }
        }
        ("POST", path) => match action(path) {
            Some(("appointments", id, "retry")) => outcome(
                book.review_retry(AppointmentId(id))
                    .map(|_| format!("Appointment {id} is pending again; the worker will sync it.")),
                &nav(Section::Review),
                "/admin",
            ),
            Some(("appointments", id, "resolve")) => {
                let note = field("note").unwrap_or_default();
                outcome(
                    book.review_resolve(AppointmentId(id), operator, note)
                        .map(|_| format!("Appointment {id} is resolved.")),
                    &nav(Section::Review),
                    "/admin",
                )
            }
            // Signed with the operator who signed in, like a resolve.
            Some(("callbacks", id, "done")) => outcome(
                book.callback_done(CallbackId(id), operator)
                    .map(|c| format!("Callback {id} is done ({}).", c.done_by.as_deref().unwrap_or(operator))),
                &nav(Section::Callbacks),
                "/admin/callbacks",
            ),
            _ => not_found(),
        },
        _ => not_found(),
    }
}

/// The review list with each appointment's customer.
fn review_items(book: &Callbook) -> callbook::Result<Vec<(callbook::Appointment, Option<callbook::Customer>)>> {
    let list = book.review_list()?;
    Ok(list
        .into_iter()
        .map(|a| {
            let customer = book.customer(a.company_id, a.customer_id).ok().flatten();
            (a, customer)
        })
        .collect())
}

/// `/admin/{appointments|callbacks}/{id}/{verb}` → (what, id, verb).
fn action(path: &str) -> Option<(&str, i64, &str)> {
    let rest = path.strip_prefix("/admin/")?;
    let mut parts = rest.split('/');
    let (what, id, verb) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((what, id.parse().ok()?, verb))
}

/// An action done (back to the list, saying so) or refused (with its code).
fn outcome(result: callbook::Result<String>, nav: &Nav<'_>, back: &str) -> Page {
    match result {
        Ok(done) => Page::Redirect { location: format!("{back}?done={}", encode(&done)), cookie: None },
        Err(e) => failed(&e, nav, back),
    }
}

fn failed(e: &callbook::Error, nav: &Nav<'_>, back: &str) -> Page {
    let status = match e.kind() {
        callbook::ErrorKind::Internal => 500,
        callbook::ErrorKind::Input => 400,
        callbook::ErrorKind::Rejected => 409,
    };
    html(status, "Not done", Some(nav), pages::refusal(&e.to_string(), e.code(), back))
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn html(status: u16, title: &str, nav: Option<&Nav<'_>>, main: Markup) -> Page {
    Page::Html { status, body: pages::page(title, nav, main) }
}

fn login(status: u16, problem: Option<&str>) -> Page {
    html(status, "callbook admin", None, pages::login(problem))
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
    fn actions_name_what_which_and_how() {
        assert_eq!(action("/admin/appointments/12/retry"), Some(("appointments", 12, "retry")));
        assert_eq!(action("/admin/callbacks/3/done"), Some(("callbacks", 3, "done")));
        assert_eq!(action("/admin/appointments/x/retry"), None);
        assert_eq!(action("/admin/callbacks/3/done/again"), None);
    }

    /// Script tags and attribute breakers in every outside text a page
    /// shows: a company's name, a customer's name and email, Cal.com's error
    /// message, a callback's name, number and reason, the operator's name,
    /// the `done` note in the query. The templates escape them all.
    #[test]
    fn outside_text_never_becomes_markup() {
        use callbook::store::{SyncFailure, Tx};
        let clock = Arc::new(ManualClock::new(t0()));
        let book = Callbook::new(Arc::new(callbook::store::MemoryStore::new())).with_clock(clock.clone());
        let directory = serde_json::json!({
            "companies": [{"id": 1, "name": "<script>alert('company')</script>", "calcom_api_key": "k"}],
            "branches": [{"id": 1, "company_id": 1, "name": "B", "phone_number": "+4930123456"}],
            "services": [{"id": 1, "company_id": 1, "name": "S", "duration_minutes": 30}],
            "calls": [{"retell_call_id": "c1", "company_id": 1, "branch_id": 1, "from_number": "anonymous"}]
        });
        book.import(&callbook::ImportData::from_json(&directory.to_string()).expect("parses")).expect("imports");
        let booked = book
            .book(&callbook::BookingRequest {
                retell_call_id: "c1".into(),
                customer_name: "\"><img src=x onerror=alert('name')>".into(),
                start: Some("2030-01-02T10:00:00Z".into()),
                ..Default::default()
            })
            .expect("books");
        let failure = SyncFailure {
            code: "400".into(),
            message: "<script>alert('calcom')</script>' onmouseover='alert(1)".into(),
            flag: true,
        };
        let id = booked.appointment_id;
        let now = clock.now();
        callbook::store::write(&**book.store(), move |tx: &mut dyn Tx| {
            tx.record_sync_failure(callbook::CompanyId(1), id, &failure, now)
        })
        .expect("fails");
        book.request_callback(&callbook::CallbackRequest {
            retell_call_id: "c1".into(),
            customer_name: "<svg onload=alert('cb')>".into(),
            reason: Some("</td><script>alert('reason')</script>".into()),
            phone: Some("\" autofocus onfocus=\"alert(1)".into()),
            ..Default::default()
        })
        .expect("files");

        let admin = Admin::new(Some("s3cret".into()), false, clock.clone());
        let login = post("/admin/login", &[("operator", "<b onclick=alert('op')>Eve</b>"), ("token", "s3cret")], None);
        let cookie = match admin.handle(&book, &login) {
            Page::Redirect { cookie: Some(cookie), .. } => cookie.split(';').next().unwrap_or_default().to_string(),
            other => panic!("not signed in: {other:?}"),
        };
        let page = |path: &'static str, query: &'static str| match admin
            .handle(&book, &Request { path, query, ..get(Some(&cookie), None) })
        {
            Page::Html { status: 200, body } => body,
            other => panic!("{path}: {other:?}"),
        };
        let review = page("/admin", "done=%3Cscript%3Ealert('done')%3C%2Fscript%3E");
        let overview = page("/admin/health", "window=7d");
        let callbacks = page("/admin/callbacks", "");
        for (name, body) in [("review", &review), ("overview", &overview), ("callbacks", &callbacks)] {
            for raw in ["<script", "<img", "<b onclick", "<svg onload", "\" autofocus"] {
                assert!(!body.contains(raw), "{name} holds {raw:?} unescaped");
            }
            // Every `<` of outside text is escaped, so each one left opens a
            // tag of the template: none may carry an event handler (a quote
            // breaking out of an attribute would add one).
            let handlers: Vec<&str> = body
                .split('<')
                .skip(1)
                .filter_map(|tag| tag.split('>').next())
                .filter(|tag| tag.split_whitespace().skip(1).any(|a| a.starts_with("on") && a.contains('=')))
                .collect();
            assert!(handlers.is_empty(), "{name}: {handlers:?}");
            assert!(body.contains("&lt;b onclick=alert('op')&gt;Eve&lt;/b&gt;"), "{name}: the operator, escaped");
        }
        assert!(review.contains("&lt;script&gt;alert('done')&lt;/script&gt;"));
        assert!(review.contains("&quot;&gt;&lt;img src=x onerror=alert('name')&gt;"));
        assert!(review.contains("&lt;script&gt;alert('calcom')&lt;/script&gt;"));
        assert!(overview.contains("&lt;script&gt;alert('company')&lt;/script&gt;"));
        assert!(callbacks.contains("&lt;/td&gt;&lt;script&gt;alert('reason')&lt;/script&gt;"));
        assert!(callbacks.contains("&quot; autofocus onfocus=&quot;alert(1)"));
    }

    #[test]
    fn a_callback_is_done_by_the_operator_who_signed_in() {
        let clock = Arc::new(ManualClock::new(t0()));
        let book = Callbook::new(Arc::new(callbook::store::MemoryStore::new())).with_clock(clock.clone());
        let directory = r#"{"companies": [{"id": 1, "name": "Salon"}],
            "branches": [{"id": 1, "company_id": 1, "name": "B", "phone_number": "+4930123456"}],
            "calls": [{"retell_call_id": "c1", "company_id": 1, "branch_id": 1, "from_number": "+49 151 2345678"}]}"#;
        book.import(&callbook::ImportData::from_json(directory).expect("parses")).expect("imports");
        let filed = book
            .request_callback(&callbook::CallbackRequest {
                retell_call_id: "c1".into(),
                customer_name: "Kim".into(),
                reason: Some("wants a person".into()),
                ..Default::default()
            })
            .expect("files");
        let admin = Admin::new(Some("s3cret".into()), false, clock.clone());
        let cookie = sign_in(&admin, &book);
        let path = format!("/admin/callbacks/{}/done", filed.id);
        let done = admin.handle(&book, &post(&path, &[], Some(&cookie)));
        assert!(
            matches!(&done, Page::Redirect { location, .. } if location.starts_with("/admin/callbacks?done=")),
            "{done:?}"
        );
        let stored = book.callbacks(None).expect("lists").remove(0);
        assert_eq!((stored.status, stored.done_by.as_deref()), (CallbackStatus::Done, Some("Ada")));
        // Again: answered as it is (done by Ada), not done twice.
        assert_eq!(status(&admin.handle(&book, &post(&path, &[], Some(&cookie)))), 303);
        assert_eq!(status(&admin.handle(&book, &post("/admin/callbacks/99/done", &[], Some(&cookie)))), 409);
        // A bad window is the operator's input: 400 with its code.
        let bad = Request { path: "/admin/health", query: "window=forever", ..get(Some(&cookie), None) };
        assert!(
            matches!(admin.handle(&book, &bad), Page::Html { status: 400, ref body } if body.contains("invalid_window"))
        );
    }
}
