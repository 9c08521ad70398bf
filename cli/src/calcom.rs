//! `callbook calcom pull|drift`: Cal.com's side read back. A backfill holds
//! every booking of the companies' event types as an appointment (progress
//! on a terminal; run it again to resume or to pick up new ones); a drift
//! report lists where Cal.com and the database disagree and exits 1 if
//! they do.

use crate::Failure;
use callbook::{CalcomReadOptions, CalcomReader, Callbook, DriftReport};
use clap::Subcommand;
use serde_json::{json, Value};
use std::io::IsTerminal;

#[derive(Debug, Subcommand)]
pub enum CalcomAction {
    /// Hold every Cal.com booking as an appointment (idempotent; resumes where it stopped).
    Pull {
        #[arg(long)]
        company: Option<i64>,
        /// Days before today to read (default 30).
        #[arg(long, default_value_t = 30)]
        days_back: i64,
        /// Days after today to read (default 365).
        #[arg(long, default_value_t = 365)]
        days_ahead: i64,
        /// Cal.com API base (default https://api.cal.com).
        #[arg(long)]
        calcom_url: Option<String>,
    },
    /// Where Cal.com and the database disagree, from now on; exit code 1 when they do.
    Drift {
        #[arg(long)]
        company: Option<i64>,
        #[arg(long, default_value_t = 365)]
        days_ahead: i64,
        #[arg(long)]
        calcom_url: Option<String>,
    },
}

fn reader(book: Callbook, company: Option<i64>, days_back: i64, days_ahead: i64, url: Option<String>) -> CalcomReader {
    let mut options = CalcomReadOptions { company_id: company, days_back, days_ahead, ..Default::default() };
    options.calcom_url = url.unwrap_or(options.calcom_url);
    CalcomReader::http(book, options)
}

/// The rate limit waits in real time.
fn sleep_until(until: chrono::DateTime<chrono::Utc>) {
    let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
    std::thread::sleep(wait.max(std::time::Duration::from_millis(10)));
}

pub fn run(book: Callbook, action: CalcomAction) -> Result<(Value, String), Failure> {
    match action {
        CalcomAction::Pull { company, days_back, days_ahead, calcom_url } => {
            let reader = reader(book, company, days_back, days_ahead, calcom_url);
            let terminal = std::io::stderr().is_terminal();
            let report = reader.pull(&mut sleep_until, &mut |p| {
                if terminal {
                    eprint!(
                        "\rcompany {} event type {}: {}/{} bookings read   ",
                        p.company, p.event_type, p.listed, p.total
                    );
                }
            })?;
            if terminal {
                eprintln!();
            }
            let text = format!(
                "{} bookings read in {} requests: {} held now, {} held before, {} made by callbook, {} cancelled, \
                 {} not placed (no one service for the event type); {} event types resumed",
                report.listed,
                report.requests,
                report.imported,
                report.known,
                report.ours,
                report.cancelled,
                report.unplaced,
                report.resumed
            );
            Ok((json!(report), text))
        }
        CalcomAction::Drift { company, days_ahead, calcom_url } => {
            let report = reader(book, company, 0, days_ahead, calcom_url).drift(&mut sleep_until)?;
            let (value, text) = (json!(report), drift_text(&report));
            if report.total() == 0 {
                Ok((value, text))
            } else {
                Err(Failure::answer(value, text, 1))
            }
        }
    }
}

fn drift_text(report: &DriftReport) -> String {
    let mut lines = Vec::new();
    for c in &report.companies {
        lines.push(format!(
            "company {}: {} missing locally, {} missing in Cal.com, {} at a different start, {} cancelled on one side",
            c.company_id,
            c.missing_locally.len(),
            c.missing_in_calcom.len(),
            c.different_start.len(),
            c.cancelled_one_side.len()
        ));
    }
    lines.push(if report.total() == 0 { "no drift".into() } else { format!("{} differences", report.total()) });
    lines.join("\n")
}
