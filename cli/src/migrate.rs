//! `callbook migrate --from <url|path> --to <url|path>`: every table of one
//! database copied into another (core's `callbook::migrate`), with a
//! progress bar on a terminal.

use crate::Failure;
use callbook::{MigrateOptions, MigratePhase, MigrateProgress, MigrateReport};
use serde_json::{json, Value};
use std::io::IsTerminal;

pub fn run(from: &str, to: &str, append: bool, batch: usize) -> Result<(Value, String), Failure> {
    // On a terminal a bar on stderr (stdout keeps the one answer, `--json` too); elsewhere nothing.
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template("{msg:>22} {bar:40} {pos}/{len} rows")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    });
    let shown = bar.clone();
    let progress = move |p: &MigrateProgress| {
        if let Some(bar) = &shown {
            bar.set_length(p.total);
            bar.set_position(p.done);
            let phase = match p.phase {
                MigratePhase::Copy => "copying",
                MigratePhase::Verify => "verifying",
            };
            bar.set_message(format!("{phase} {}", p.table));
        }
    };
    let options = MigrateOptions { append, batch, progress: Some(Box::new(progress)) };
    let result = callbook::migrate(from, to, options);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result?;
    Ok((json!(report), text(&report)))
}

fn text(report: &MigrateReport) -> String {
    let mut lines = vec![format!(
        "copied {} rows from {} to {}{} in {} ms ({} rows/s); row counts and checksums verified",
        report.rows,
        report.from,
        report.to,
        if report.append { " (appended)" } else { "" },
        report.elapsed_ms,
        report.rows_per_second
    )];
    for t in &report.tables {
        let next = t.next_id.map(|n| format!(", next id {n}")).unwrap_or_default();
        lines.push(format!("  {:<20} {:>8} rows  sha256 {}{next}", t.name, t.rows, &t.checksum[..16]));
    }
    lines.join("\n")
}
