//! `examples/grafana/`: the dashboard is well-formed Grafana JSON whose
//! panels query only metrics `callbook serve` exports, and the alert rules
//! watch every target of the design with those metrics. (`tests/run` also
//! runs `promtool check rules` and `promtool test rules` on them.)

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/grafana").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `callbook_…` name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.match_indices("callbook_")
        .map(|(i, _)| {
            text[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect()
        })
        .collect()
}

fn cli(db: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_callbook")).arg("--db").arg(db).arg("--json").args(args).output();
    serde_json::from_slice(&out.expect("runs").stdout).expect("JSON")
}

/// The metric families one scrape of `callbook serve` declares, with the
/// sample names each writes. A family shows only once it has a sample, so
/// the database has a company with a key and a booking the worker of that
/// process synced.
fn exported() -> BTreeSet<String> {
    use callbook::calcom::fake::{EventType, FakeCalcom};
    let fake = FakeCalcom::with_event_types(std::sync::Arc::new(callbook::SystemClock), &[EventType::new(123, 30)])
        .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("grafana.db");
    let directory = dir.path().join("directory.json");
    std::fs::write(
        &directory,
        r#"{"companies": [{"id": 1, "name": "Salon", "calcom_api_key": "cal_live_grafana"}],
            "branches": [{"id": 1, "company_id": 1, "name": "Mitte", "phone_number": "+4930123456"}],
            "services": [{"id": 1, "company_id": 1, "name": "Cut", "calcom_event_type_id": 123, "duration_minutes": 30}],
            "calls": [{"retell_call_id": "call_g", "company_id": 1, "branch_id": 1, "from_number": "anonymous"}]}"#,
    )
    .expect("writes");
    cli(&db, &["import", directory.to_str().expect("utf-8")]);
    let start = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT10:00:00Z").to_string();
    cli(&db, &["book", "--call", "call_g", "--name", "Kim", "--start", &start]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_callbook"))
        .arg("--db")
        .arg(&db)
        .args(["serve", "--listen", "127.0.0.1:0", "--worker-threads", "1", "--calcom-url", fake.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut first).expect("reads");
    let url = first.trim().strip_prefix("listening on ").expect("announces its address").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while cli(&db, &["stats"])["appointments"]["synced"] != 1 {
        assert!(std::time::Instant::now() < deadline, "the worker in serve syncs the booking");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let text = ureq::get(&format!("{url}/metrics")).call().expect("scrapes").into_string().expect("text");
    let _ = child.kill();
    let _ = child.wait();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let samples: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(samples.iter().map(|suffix| format!("{name}{suffix}")));
        }
    }
    names
}

#[test]
fn the_dashboard_and_the_alerts_use_only_exported_metrics() {
    let dashboard: Value = serde_json::from_str(&example("callbook-dashboard.json")).expect("dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "the overview's panels");
    let mut ids = BTreeSet::new();
    let mut exprs = String::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("title");
        assert!(ids.insert(panel["id"].as_i64().expect("id")), "{title}: ids are unique");
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_i64().expect("x"), grid["w"].as_i64().expect("w"));
        assert!(x >= 0 && w > 0 && x + w <= 24 && grid["h"].as_i64().is_some_and(|h| h > 0), "{title}: {grid}");
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty()).expect("targets");
        for target in targets {
            let expr = target["expr"].as_str().filter(|e| !e.trim().is_empty()).expect("expr");
            exprs.push_str(expr);
            exprs.push('\n');
        }
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["window", "company"]);
    assert_eq!(dashboard["templating"]["list"][0]["query"], "1h,24h,7d", "the overview's three windows");

    let alerts = example("alerts.yml");
    let exported = exported();
    for (what, text) in [("dashboard", &exprs), ("alerts", &alerts)] {
        let unknown: Vec<String> = metric_names(text).into_iter().filter(|n| !exported.contains(n)).collect();
        assert!(unknown.is_empty(), "{what} queries metrics serve does not export: {unknown:?}");
    }
    assert!(exported.contains("callbook_callbacks_open"), "{exported:?}");

    // Every target of the design has an alert on its own metric.
    let rules: Vec<&str> = alerts.split("- alert: ").skip(1).collect();
    for needle in [
        r#"callbook_health_sync_success_ratio{window="1h"}) < 0.95"#,
        "callbook_health_pending_over_1h",
        r#"callbook_health_manual_review_ratio{window="24h"}) > 0.05"#,
        "callbook_breaker_state",
        "callbook_worker_storage_errors_total",
        r#"quantile="0.5"}) > 0.15"#,
        r#"quantile="0.95"}) > 0.3"#,
        r#"quantile="0.99"}) > 2"#,
    ] {
        assert_eq!(rules.iter().filter(|r| r.contains(needle)).count(), 1, "one alert on {needle}");
    }
}
