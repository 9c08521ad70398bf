//! The loopback fake Cal.com (core's `FakeCalcom`) as a process, for tests
//! in languages that cannot start it in-process (the PHP tests). Prints its
//! URL on the first line of stdout, then answers one line per command read
//! from stdin, and exits on `quit` or when stdin closes (so it never outlives
//! a test that dies):
//!
//! - `down` / `up`: every request answers 503 until `up` (an outage)
//! - `fail STATUS [N]`: the next N requests (default 1) answer STATUS
//! - `stats`: `{"requests","bookings","live_bookings","creates","duplicated_keys","rate_limited"}`
//! - `bookings`: the bookings it holds, as a JSON array
//! - `elsewhere EVENT_TYPE START ATTENDEE_JSON`: a booking made on Cal.com's
//!   own page (no callbook key; `START` RFC 3339, the attendee `{"name",
//!   "email"?, "phoneNumber"?}`); answers its uid
//!
//! Arguments name the event types it holds, as `ID:LENGTH_MINUTES` (others
//! answer 404, as Cal.com does): `cargo run -p callbook-c --example fake_calcom -- 123:30`

use callbook::calcom::fake::{EventType, FakeCalcom, Fault};
use callbook::SystemClock;
use std::io::{BufRead, Write};
use std::sync::Arc;

fn main() -> std::io::Result<()> {
    let event_types: Vec<EventType> = std::env::args()
        .skip(1)
        .map(|arg| {
            let parsed = arg.split_once(':').and_then(|(id, length)| Some((id.parse().ok()?, length.parse().ok()?)));
            let (id, length) = parsed.ok_or_else(|| std::io::Error::other(format!("not ID:LENGTH: {arg:?}")))?;
            Ok(EventType::new(id, length))
        })
        .collect::<std::io::Result<_>>()?;
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &event_types)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", fake.url())?;
    stdout.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["elsewhere", ..] => elsewhere(&fake, &line),
            ["down"] => {
                // A year is "until further notice": `up` ends it.
                fake.outage_until(chrono::Utc::now() + chrono::Duration::days(365));
                "ok".to_string()
            }
            ["up"] => {
                fake.outage_until(chrono::Utc::now() - chrono::Duration::seconds(1));
                "ok".to_string()
            }
            ["fail", status, rest @ ..] => match (status.parse::<u16>(), rest.first().map_or(Ok(1), |n| n.parse())) {
                (Ok(status), Ok(n)) => {
                    let message = format!("injected {status}");
                    fake.inject((0..n).map(|_| Fault::Status(status, message.clone())));
                    "ok".to_string()
                }
                _ => "error: fail STATUS [N]".to_string(),
            },
            ["stats"] => serde_json::to_string(&fake.stats())?,
            ["bookings"] => serde_json::to_string(&fake.bookings())?,
            ["quit"] => break,
            _ => format!("error: unknown command {line:?}"),
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}

/// `elsewhere EVENT_TYPE START ATTENDEE_JSON` (the JSON may hold spaces) → the uid, or `error: ...`.
fn elsewhere(fake: &FakeCalcom, line: &str) -> String {
    let mut parts = line.trim().splitn(4, char::is_whitespace).skip(1);
    let (event_type, start, attendee) = (parts.next(), parts.next(), parts.next().unwrap_or("{}"));
    let parsed = (|| {
        let event_type: i64 = event_type?.parse().ok()?;
        let start = chrono::DateTime::parse_from_rfc3339(start?).ok()?.with_timezone(&chrono::Utc);
        Some((event_type, start, serde_json::from_str(attendee).ok()?))
    })();
    match parsed {
        Some((event_type, start, attendee)) => fake
            .add_booking_elsewhere(event_type, start, attendee)
            .unwrap_or_else(|| format!("error: unknown event type {event_type}")),
        None => "error: elsewhere EVENT_TYPE START ATTENDEE_JSON".to_string(),
    }
}
