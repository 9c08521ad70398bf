//! `callbook health` and the lines of the `/admin/health` overview: one list
//! of figures, each with its target, so the terminal and the page say the
//! same thing about the same numbers from core (`Callbook::health`).

use crate::Failure;
use callbook::{Callbook, Figures, Health, Targets, Window};
use serde_json::Value;

/// One figure of the overview.
#[derive(Debug)]
pub struct Line {
    /// Stable name (the page's `data-figure`).
    pub key: &'static str,
    pub label: &'static str,
    /// A detail of the line above it.
    pub sub: bool,
    /// The target as a person reads it.
    pub target: Option<String>,
    /// The name in `targets_missed` this line shows.
    pub target_name: Option<&'static str>,
    pub text: fn(&Figures) -> String,
    /// The raw value (ratios 0..1, milliseconds, seconds, counts).
    pub value: fn(&Figures) -> Option<f64>,
}

impl Line {
    pub fn missed(&self, figures: &Figures) -> bool {
        self.target_name.is_some_and(|name| figures.targets_missed.iter().any(|m| m == name))
    }
}

pub fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.1}%", v * 100.0))
}

pub fn millis(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.1} ms"),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{:.1} s", ms / 1000.0),
    }
}

/// An age in seconds, coarsely: `42 s`, `12 min`, `1 h`, `5 h 12 min`, `3 d 4 h`; `–` for none.
pub fn age(seconds: i64) -> String {
    match seconds {
        s if s <= 0 => "–".into(),
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 && s % 3600 < 60 => format!("{} h", s / 3600),
        s if s < 86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s % 86_400 < 3600 => format!("{} d", s / 86_400),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The overview's figures, in the order shown.
pub fn lines(t: &Targets) -> Vec<Line> {
    let ms = |v: f64| if v >= 1000.0 { format!("{} s", v / 1000.0) } else { format!("{v} ms") };
    vec![
        Line {
            key: "bookings",
            label: "Bookings",
            sub: false,
            target: None,
            target_name: None,
            text: |f| f.bookings.to_string(),
            value: |f| Some(f.bookings as f64),
        },
        Line {
            key: "bookings_anonymous",
            label: "anonymous callers",
            sub: true,
            target: None,
            target_name: None,
            text: |f| f.bookings_anonymous.to_string(),
            value: |f| Some(f.bookings_anonymous as f64),
        },
        Line {
            key: "bookings_known",
            label: "known callers",
            sub: true,
            target: None,
            target_name: None,
            text: |f| f.bookings_known.to_string(),
            value: |f| Some(f.bookings_known as f64),
        },
        Line {
            key: "sync_success_rate",
            label: "Cal.com sync success",
            sub: false,
            target: Some(format!("≥ {}", percent(Some(t.sync_success_rate_min)))),
            target_name: Some("sync_success_rate"),
            text: |f| percent(f.sync_success_rate),
            value: |f| f.sync_success_rate,
        },
        Line {
            key: "sync_outcomes",
            label: "synced / failed / pending",
            sub: true,
            target: None,
            target_name: None,
            text: |f| format!("{} / {} / {}", f.synced, f.sync_failed, f.sync_pending),
            value: |f| Some(f.synced as f64),
        },
        Line {
            key: "manual_review_rate",
            label: "Manual-review rate",
            sub: false,
            target: Some(format!("≤ {}", percent(Some(t.manual_review_rate_max)))),
            target_name: Some("manual_review_rate"),
            text: |f| percent(f.manual_review_rate),
            value: |f| f.manual_review_rate,
        },
        Line {
            key: "manual_reviews_open",
            label: "Manual reviews open",
            sub: false,
            target: None,
            target_name: None,
            text: |f| f.manual_reviews_open.to_string(),
            value: |f| Some(f.manual_reviews_open as f64),
        },
        Line {
            key: "callbacks_open",
            label: "Callbacks open",
            sub: false,
            target: None,
            target_name: None,
            text: |f| f.callbacks_open.to_string(),
            value: |f| Some(f.callbacks_open as f64),
        },
        Line {
            key: "pending_over_1h",
            label: "Sync jobs pending over 1 h",
            sub: false,
            target: Some(format!("none older than {}", age(t.pending_max_seconds))),
            target_name: Some("pending_over_1h"),
            text: |f| f.pending_over_1h.to_string(),
            value: |f| Some(f.pending_over_1h as f64),
        },
        Line {
            key: "oldest_pending_seconds",
            label: "oldest pending job",
            sub: true,
            target: None,
            target_name: None,
            text: |f| age(f.oldest_pending_seconds),
            value: |f| Some(f.oldest_pending_seconds as f64),
        },
        Line {
            key: "booking_p50",
            label: "Booking latency p50",
            sub: false,
            target: Some(format!("≤ {}", ms(t.booking_p50_ms_max))),
            target_name: Some("booking_p50"),
            text: |f| millis(f.booking_latency_ms.p50),
            value: |f| f.booking_latency_ms.p50,
        },
        Line {
            key: "booking_p95",
            label: "p95",
            sub: true,
            target: Some(format!("≤ {}", ms(t.booking_p95_ms_max))),
            target_name: Some("booking_p95"),
            text: |f| millis(f.booking_latency_ms.p95),
            value: |f| f.booking_latency_ms.p95,
        },
        Line {
            key: "booking_p99",
            label: "p99",
            sub: true,
            target: None,
            target_name: None,
            text: |f| millis(f.booking_latency_ms.p99),
            value: |f| f.booking_latency_ms.p99,
        },
        Line {
            key: "sync_p50",
            label: "Booking → synced p50",
            sub: false,
            target: None,
            target_name: None,
            text: |f| millis(f.sync_latency_ms.p50),
            value: |f| f.sync_latency_ms.p50,
        },
        Line {
            key: "sync_p99",
            label: "p99",
            sub: true,
            target: Some(format!("≤ {}", ms(t.sync_p99_ms_max))),
            target_name: Some("sync_p99"),
            text: |f| millis(f.sync_latency_ms.p99),
            value: |f| f.sync_latency_ms.p99,
        },
    ]
}

/// `callbook health`: the overview as a table, or the JSON object; the
/// caller exits 1 when a target is missed.
pub fn command(book: &Callbook, window: &str) -> Result<(Value, String), Failure> {
    let window = Window::parse(window)?;
    let health = book.health(window)?;
    Ok((serde_json::to_value(&health).unwrap_or_default(), table(&health)))
}

fn table(h: &Health) -> String {
    let mut columns: Vec<(String, &Figures)> = vec![("all companies".into(), &h.total)];
    columns.extend(h.companies.iter().map(|c| (format!("{} (#{})", c.name, c.company_id), &c.figures)));
    let mut rows: Vec<Vec<String>> = vec![std::iter::once(String::new())
        .chain(std::iter::once("target".to_string()))
        .chain(columns.iter().map(|(name, _)| name.clone()))
        .collect()];
    for line in lines(&h.targets) {
        let label = if line.sub { format!("  {}", line.label) } else { line.label.to_string() };
        let mut row = vec![label, line.target.clone().unwrap_or_default()];
        for (_, figures) in &columns {
            let mark = if line.missed(figures) { " ✗" } else { "" };
            row.push(format!("{}{mark}", (line.text)(figures)));
        }
        rows.push(row);
    }
    let mut breakers = vec![String::new(), String::new()];
    breakers[0] = "Cal.com breaker".into();
    breakers.push(String::new());
    breakers.extend(h.companies.iter().map(|c| c.breaker.to_string()));
    rows.push(breakers);
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = format!("callbook health: the last {} (until {})\n", h.window, callbook::format_utc(&h.until));
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out.push_str(&if h.total.targets_missed.is_empty() {
        "every target met".to_string()
    } else {
        format!("targets missed: {}", h.total.targets_missed.join(", "))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_a_person_reads_them() {
        assert_eq!((percent(Some(0.955)), percent(None)), ("95.5%".to_string(), "–".to_string()));
        assert_eq!([millis(Some(0.42)), millis(Some(150.0)), millis(Some(2600.0))], ["0.4 ms", "150 ms", "2.6 s"]);
        assert_eq!(
            [age(0), age(42), age(720), age(18 * 3600 + 60), age(3 * 86_400 + 7200)],
            ["–", "42 s", "12 min", "18 h 1 min", "3 d 2 h"]
        );
        let targets: Vec<Option<String>> = lines(&Targets::default()).into_iter().map(|l| l.target).collect();
        assert!(targets.contains(&Some("≥ 95.0%".into())) && targets.contains(&Some("≤ 2 s".into())));
        assert!(targets.contains(&Some("none older than 1 h".into())));
    }
}
