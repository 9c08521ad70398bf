//! The manual-review page at `/admin`: appointments that need a person, with
//! their error, attempts and customer; a button to retry and a form to
//! resolve with a note. Plain server-rendered HTML with forms, no script.
//!
//! Access: the token from `CALLBOOK_ADMIN_TOKEN`, sent as
//! `Authorization: Bearer <token>` or typed into the login form, which sets
//! an HttpOnly, SameSite=Strict cookie holding an HMAC of a fixed text under
//! the token (never the token itself). Without a token the page is off (503).

use callbook::{Appointment, AppointmentId, Callbook, Secret};
use std::fmt::Write as _;

pub const COOKIE: &str = "callbook_admin";

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

/// The admin area for one token.
#[derive(Debug, Clone)]
pub struct Admin {
    token: Option<Secret>,
}

fn session_of(token: &Secret) -> String {
    callbook::calcom::sign_calcom(b"callbook admin session", token.expose())
}

impl Admin {
    pub fn new(token: Option<String>) -> Self {
        Admin { token: token.filter(|t| !t.is_empty()).map(Secret::new) }
    }

    /// Is the request allowed, by its `Authorization` or `Cookie` header?
    pub fn allows(&self, authorization: Option<&str>, cookie: Option<&str>) -> bool {
        let Some(token) = &self.token else { return false };
        if let Some(given) = authorization.and_then(|h| h.strip_prefix("Bearer ")) {
            return token.matches(given.trim());
        }
        let session = cookie
            .into_iter()
            .flat_map(|c| c.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value);
        session.is_some_and(|s| Secret::new(session_of(token)).matches(s))
    }

    /// Handles one request under `/admin`. `form` is the decoded POST body.
    pub fn handle(
        &self,
        book: &Callbook,
        method: &str,
        path: &str,
        query: &str,
        form: &[(String, String)],
        allowed: bool,
    ) -> Page {
        let Some(token) = &self.token else {
            return html(
                503,
                "Admin is off",
                "<p>Set <code>CALLBOOK_ADMIN_TOKEN</code> to turn the admin page on.</p>",
            );
        };
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match (method, path) {
            ("POST", "/admin/login") => {
                if token.matches(field("token").unwrap_or_default()) {
                    let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/admin", session_of(token));
                    Page::Redirect { location: "/admin".into(), cookie: Some(cookie) }
                } else {
                    login(401, Some("That token is not right."))
                }
            }
            ("POST", "/admin/logout") => Page::Redirect {
                location: "/admin".into(),
                cookie: Some(format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0")),
            },
            _ if !allowed => login(401, None),
            ("GET", "/admin") => list(book, query),
            ("POST", _) => match action(path) {
                Some((id, "retry")) => outcome(
                    book.review_retry(id)
                        .map(|_| format!("Appointment {id} is pending again; the worker will sync it.")),
                ),
                Some((id, "resolve")) => {
                    let by = field("by").filter(|b| !b.trim().is_empty()).unwrap_or("admin");
                    let note = field("note").unwrap_or_default();
                    outcome(book.review_resolve(id, by, note).map(|_| format!("Appointment {id} is resolved.")))
                }
                _ => html(404, "Not found", "<p>No such page.</p>"),
            },
            _ => html(404, "Not found", "<p>No such page.</p>"),
        }
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
            r#"{problem}<form method="post" action="/admin/login"><label>Admin token
            <input type="password" name="token" autocomplete="current-password" required></label>
            <button type="submit">Sign in</button></form>"#
        ),
    )
}

fn list(book: &Callbook, query: &str) -> Page {
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
        <form method="post" action="/admin/logout"><button>Sign out</button></form>"#,
        n = appointments.len()
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

    #[test]
    fn access_needs_the_token_or_its_session() {
        let admin = Admin::new(Some("s3cret".into()));
        assert!(admin.allows(Some("Bearer s3cret"), None));
        assert!(!admin.allows(Some("Bearer nope"), None));
        let session = session_of(&Secret::new("s3cret"));
        assert!(admin.allows(None, Some(&format!("a=b; {COOKIE}={session}"))));
        assert!(!admin.allows(None, Some(&format!("{COOKIE}=s3cret"))));
        assert!(!admin.allows(None, None));
        assert!(!Admin::new(None).allows(Some("Bearer "), None));
        assert!(!Admin::new(Some(String::new())).allows(Some("Bearer "), None));
    }

    #[test]
    fn escaping_and_actions() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(action("/admin/appointments/12/retry"), Some((AppointmentId(12), "retry")));
        assert_eq!(action("/admin/appointments/x/retry"), None);
    }
}
