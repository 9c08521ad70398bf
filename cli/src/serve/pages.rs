//! The `/admin` pages as maud templates: every value spliced in is escaped
//! by the template library (names, phone numbers, Cal.com's error messages
//! and company names are outside text), so no page builds HTML by hand.
//! Charts are inline SVG drawn here: no script, no CDN.

use crate::health::{lines, Line};
use callbook::rules::BreakerState;
use callbook::{Appointment, Bucket, Callback, CompanyId, Customer, Figures, Health, Window};
use maud::{html, Markup, DOCTYPE};

const STYLE: &str = "body{font:15px system-ui,sans-serif;margin:2rem;color:#222}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.4rem .5rem;text-align:left;\
vertical-align:top}.error{color:#a00}.done{background:#e8f5e9;padding:.5rem}form.inline{display:inline}\
input[name=note]{width:14rem}nav{display:flex;gap:1rem;align-items:baseline;border-bottom:1px solid #ddd;\
padding-bottom:.5rem;margin-bottom:1rem}nav .who{margin-left:auto}nav a[aria-current]{font-weight:bold}\
td.num{text-align:right;font-variant-numeric:tabular-nums}td.miss,.missed{background:#fdecea;color:#a00}\
.met{background:#e8f5e9}th.sub{padding-left:1.5rem;font-weight:normal}.tabs a{margin-right:.8rem}\
svg{display:block;margin:.5rem 0}svg text{font:11px system-ui,sans-serif;fill:#555}.anonymous{fill:#7e57c2}\
.known{fill:#42a5f5}.synced{fill:#43a047}.failed{fill:#e53935}.pending{fill:#fbc02d}.legend span{margin-right:1rem}\
.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}\
small,.note{color:#666}";

/// Which part of the admin area a page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Review,
    Callbacks,
}

/// The signed-in header: where one is, who one is, sign out.
#[derive(Debug)]
pub struct Nav<'a> {
    pub operator: &'a str,
    pub section: Section,
}

/// A whole page.
pub fn page(title: &str, nav: Option<&Nav<'_>>, main: Markup) -> String {
    let link = |section: Section, href: &str, text: &str, current: Option<Section>| {
        html! {
            @if current == Some(section) { a href=(href) aria-current="page" { (text) } }
            @else { a href=(href) { (text) } }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · callbook" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                @if let Some(nav) = nav {
                    nav {
                        (link(Section::Overview, "/admin/health", "Overview", Some(nav.section)))
                        (link(Section::Review, "/admin", "Manual review", Some(nav.section)))
                        (link(Section::Callbacks, "/admin/callbacks", "Callbacks", Some(nav.section)))
                        form.who method="post" action="/admin/logout" {
                            "Signed in as " span #operator { (nav.operator) } " "
                            button { "Sign out" }
                        }
                    }
                }
                h1 { (title) }
                (main)
            }
        }
    }
    .into_string()
}

pub fn paragraph(text: &str) -> Markup {
    html! { p { (text) } }
}

/// A refusal with its stable code.
pub fn refusal(message: &str, code: &str, back: &str) -> Markup {
    html! {
        p.error data-code=(code) { (message) " " code { (code) } }
        p { a href=(back) { "Back" } }
    }
}

pub fn login(problem: Option<&str>) -> Markup {
    html! {
        @if let Some(problem) = problem { p.error { (problem) } }
        form method="post" action="/admin/login" {
            label { "Your name " input name="operator" autocomplete="username" maxlength="200" required; }
            " "
            label { "Admin token " input type="password" name="token" autocomplete="current-password" required; }
            " "
            button type="submit" { "Sign in" }
        }
    }
}

fn done_note(done: Option<&str>) -> Markup {
    html! { @if let Some(done) = done { p.done role="status" { (done) } } }
}

/// The manual-review list: each appointment with its customer (when found).
pub fn review_list(done: Option<&str>, items: &[(Appointment, Option<Customer>)]) -> Markup {
    html! {
        (done_note(done))
        p { span #count { (items.len()) } " appointment(s) need a person." }
        @if !items.is_empty() {
            table {
                thead { tr { th { "Appointment" } th { "Starts (UTC)" } th { "Customer" } th { "Why" } th { "Attempts" } th { "Actions" } } }
                tbody {
                    @for (a, customer) in items {
                        tr data-appointment=(a.id) {
                            td { "#" (a.id) br; small { "company " (a.company_id) } }
                            td { (callbook::format_utc(&a.starts_at)) }
                            td {
                                @match customer {
                                    Some(c) => {
                                        (c.name) br;
                                        small { (c.phone) " · " (c.email.as_deref().unwrap_or("no email")) }
                                    }
                                    None => { "customer " (a.customer_id) }
                                }
                            }
                            td {
                                (a.review_reason.as_deref().unwrap_or("review")) br;
                                code { (a.sync_error_code.as_deref().unwrap_or("-")) } " "
                                (a.sync_error_message.as_deref().unwrap_or(""))
                            }
                            td { (a.sync_attempt_count) }
                            td {
                                form.inline method="post" action={ "/admin/appointments/" (a.id) "/retry" } {
                                    button name="retry" { "Retry" }
                                }
                                " "
                                form.inline method="post" action={ "/admin/appointments/" (a.id) "/resolve" } {
                                    input name="note" placeholder="why it is resolved" required aria-label={ "note for " (a.id) };
                                    " "
                                    button name="resolve" { "Resolve" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Open callbacks, oldest first, each with a Done button.
pub fn callbacks(done: Option<&str>, list: &[Callback], company_name: impl Fn(CompanyId) -> String) -> Markup {
    html! {
        (done_note(done))
        p { span #callbacks-count { (list.len()) } " open callback(s), oldest first." }
        @if !list.is_empty() {
            table {
                thead { tr { th { "Company" } th { "Name" } th { "Phone" } th { "Reason" } th { "When (UTC)" } th {} } }
                tbody {
                    @for c in list {
                        tr data-callback=(c.id) {
                            td { (company_name(c.company_id)) br; small { "company " (c.company_id) } }
                            td.name { (c.customer_name) }
                            td.phone { (c.phone.as_deref().unwrap_or("no number")) }
                            td.reason { (c.reason.as_deref().unwrap_or("")) }
                            td.when { (callbook::format_utc(&c.created_at)) }
                            td {
                                form.inline method="post" action={ "/admin/callbacks/" (c.id) "/done" } {
                                    button name="done" { "Done" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn figure_cell(line: &Line, figures: &Figures, company: &str) -> Markup {
    let value = (line.value)(figures).map(|v| v.to_string()).unwrap_or_default();
    html! {
        @if line.missed(figures) {
            td.num.miss data-figure=(line.key) data-company=(company) data-value=(value) title="outside the target" {
                ((line.text)(figures))
            }
        } @else {
            td.num data-figure=(line.key) data-company=(company) data-value=(value) { ((line.text)(figures)) }
        }
    }
}

fn breaker_text(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half-open",
        BreakerState::Open => "open",
    }
}

/// The operations overview of one window.
pub fn overview(h: &Health, drift: &[callbook::DriftCounts]) -> Markup {
    let missed = &h.total.targets_missed;
    html! {
        p.tabs {
            "Last: "
            @for w in Window::STANDARD {
                @if w == h.window { a href={ "/admin/health?window=" (w) } aria-current="page" { (w) } }
                @else { a href={ "/admin/health?window=" (w) } { (w) } }
            }
            small { "(or ?window=90m, 3d, …)" }
        }
        @if missed.is_empty() {
            p #targets.met { "Every target met over the last " (h.window) "." }
        } @else {
            p #targets.missed data-missed=(missed.join(",")) {
                "Targets missed over the last " (h.window) ": " (missed.join(", ")) "."
            }
        }
        table #figures {
            thead {
                tr {
                    th { "Last " (h.window) }
                    th { "Target" }
                    th.num data-company="all" { "All companies" }
                    @for c in &h.companies { th.num data-company=(c.company_id) { (c.name) } }
                }
            }
            tbody {
                @for line in lines(&h.targets) {
                    tr data-line=(line.key) {
                        @if line.sub { th.sub { (line.label) } } @else { th { (line.label) } }
                        td { (line.target.as_deref().unwrap_or("")) }
                        (figure_cell(&line, &h.total, "all"))
                        @for c in &h.companies { (figure_cell(&line, &c.figures, &c.company_id.to_string())) }
                    }
                }
                tr data-line="breaker" {
                    th { "Cal.com breaker" }
                    td { "closed" }
                    td {}
                    @for c in &h.companies {
                        @if c.breaker == BreakerState::Closed {
                            td.num data-figure="breaker" data-company=(c.company_id) { (breaker_text(c.breaker)) }
                        } @else {
                            td.num.miss data-figure="breaker" data-company=(c.company_id) { (breaker_text(c.breaker)) }
                        }
                    }
                }
            }
        }
        h2 { "Bookings" }
        (chart(h, "bookings", &[("anonymous", "anonymous callers", |b| b.anonymous), ("known", "known callers", |b| b.known)]))
        h2 { "Sync outcomes" }
        p.note { "Bookings of each bar by where their sync to Cal.com stands now." }
        (chart(h, "sync", &[("synced", "synced", |b| b.synced), ("failed", "failed", |b| b.failed), ("pending", "pending", |b| b.pending)]))
        h2 { "Cal.com breakers" }
        @if h.breakers.is_empty() {
            p { "No breaker has seen a failure yet." }
        } @else {
            table #breakers {
                thead { tr { th { "Endpoint" } th { "Key" } th { "State" } th { "Failures in a row" } th { "Open until (UTC)" } th { "Since (UTC)" } th { "Companies" } } }
                tbody {
                    @for b in &h.breakers {
                        tr data-breaker=(b.key) {
                            td { (b.endpoint) }
                            td { code { (b.key.rsplit('|').next().unwrap_or("")) } }
                            @if b.state == BreakerState::Closed { td { (breaker_text(b.state)) } }
                            @else { td.miss { (breaker_text(b.state)) } }
                            td.num { (b.consecutive_failures) }
                            td { (b.open_until.as_ref().map(callbook::format_utc).unwrap_or_default()) }
                            td { (callbook::format_utc(&b.since)) }
                            td { (b.companies.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) }
                        }
                    }
                }
            }
        }
        h2 { "Cal.com drift" }
        @if drift.is_empty() {
            p #drift { "No drift report yet: " code { "callbook calcom drift" } " (from cron, say) compares Cal.com with the database." }
        } @else {
            table #drift {
                thead { tr { th { "Company" } th { "Checked (UTC)" } th { "Missing here" } th { "Missing in Cal.com" } th { "Different start" } th { "Cancelled on one side" } } }
                tbody {
                    @for d in drift {
                        tr data-drift=(d.company_id) {
                            td { (d.company_id) }
                            td { (callbook::format_utc(&d.checked_at)) }
                            @for n in [d.missing_locally, d.missing_in_calcom, d.different_start, d.cancelled_one_side] {
                                @if n == 0 { td.num { (n) } } @else { td.num.miss { (n) } }
                            }
                        }
                    }
                }
            }
        }
        p.note {
            "Computed from the database at " (callbook::format_utc(&h.until)) " over appointments created since "
            (callbook::format_utc(&h.since)) ". Sync success: synced ÷ (synced + failed); manual-review rate: "
            "bookings flagged for review ÷ bookings; booking latency: from core taking the request to its insert; "
            "booking → synced: until Cal.com confirmed it. Reviews, callbacks, pending jobs and breakers are as of now."
        }
    }
}

/// One series of a chart: its CSS class, its label, its count in a bucket.
type Series<'a> = (&'a str, &'a str, fn(&Bucket) -> u64);

/// A stacked bar chart of the window's buckets, one colour per series.
fn chart(h: &Health, name: &str, series: &[Series<'_>]) -> Markup {
    const W: f64 = 720.0;
    const H: f64 = 140.0;
    const LEFT: f64 = 36.0;
    const BOTTOM: f64 = 18.0;
    let n = h.series.len().max(1) as f64;
    let total = |b: &Bucket| series.iter().map(|(_, _, f)| f(b)).sum::<u64>();
    let max = h.series.iter().map(total).max().unwrap_or(0).max(1);
    let plot = H - BOTTOM - 4.0;
    let step = (W - LEFT) / n;
    let label = |t: &chrono::DateTime<chrono::Utc>| {
        if h.bucket_seconds >= 86_400 {
            t.format("%m-%d").to_string()
        } else if h.window.seconds() >= 86_400 {
            t.format("%m-%d %H:%M").to_string()
        } else {
            t.format("%H:%M").to_string()
        }
    };
    let all: u64 = h.series.iter().map(total).sum();
    html! {
        svg id={ "chart-" (name) } width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img"
            aria-label={ (name) " per " (h.bucket_seconds / 60) "-minute bar, " (all) " in all" } data-total=(all) {
            line x1=(LEFT) y1=(plot + 4.0) x2=(W) y2=(plot + 4.0) stroke="#999" {}
            text x=(LEFT - 4.0) y="12" text-anchor="end" { (max) }
            text x=(LEFT - 4.0) y=(plot + 4.0) text-anchor="end" { "0" }
            @if let (Some(first), Some(last)) = (h.series.first(), h.series.last()) {
                text x=(LEFT) y=(H - 4.0) { (label(&first.start)) }
                text x=(W) y=(H - 4.0) text-anchor="end" { (label(&(last.start + chrono::Duration::seconds(h.bucket_seconds)))) " UTC" }
            }
            @for (i, bucket) in h.series.iter().enumerate() {
                g data-bar=(i) {
                    title {
                        (label(&bucket.start)) "–" (label(&(bucket.start + chrono::Duration::seconds(h.bucket_seconds)))) ": "
                        @for (j, (_, text, count)) in series.iter().enumerate() {
                            @if j > 0 { ", " }
                            (count(bucket)) " " (text)
                        }
                    }
                    @for (class, count, y, height) in stack(series, bucket, plot, max) {
                        @if count > 0 {
                            rect class=(class) x=(format!("{:.1}", LEFT + i as f64 * step + 1.0)) y=(format!("{y:.1}"))
                                width=(format!("{:.1}", (step - 2.0).max(1.0))) height=(format!("{height:.1}")) {}
                        }
                    }
                }
            }
        }
        p.legend {
            @for (class, text, _) in series {
                span { svg.swatch width="12" height="12" { rect class=(class) width="12" height="12" {} } (text) }
            }
        }
    }
}

/// The segments of one bar, bottom up: (class, count, y, height).
fn stack<'a>(series: &[Series<'a>], bucket: &Bucket, plot: f64, max: u64) -> Vec<(&'a str, u64, f64, f64)> {
    let mut base = plot + 4.0;
    series
        .iter()
        .map(|(class, _, f)| {
            let count = f(bucket);
            let height = count as f64 / max as f64 * plot;
            base -= height;
            (*class, count, base, height)
        })
        .collect()
}
