//! `callbook migrate` end to end: a SQLite file with synced bookings moved
//! to PostgreSQL and back, the JSON summary, the refusals and their exit codes.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn callbook(args: &[&str]) -> (Value, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_callbook"))
        .arg("--json")
        .args(args)
        .env_remove("CALLBOOK_DB")
        .env("CALLBOOK_HORIZON_DAYS", "40000")
        .output()
        .expect("runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object on stdout, got {stdout:?}");
    (serde_json::from_str(lines[0]).expect("stdout is JSON"), out.status.code().expect("exit code"))
}

fn on(db: &Path, args: &[&str]) -> (Value, i32) {
    let mut all = vec!["--db", db.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    callbook(&all)
}

const DIRECTORY: &str = r#"{
  "companies": [{"id": 1, "name": "Salon", "calcom_api_key": "cal_live_supersecret"}],
  "branches": [{"id": 1, "company_id": 1, "name": "Mitte", "timezone": "Europe/Berlin", "country": "DE", "phone_number": "+4930123456"}],
  "services": [{"id": 1, "company_id": 1, "name": "Cut", "calcom_event_type_id": 123, "duration_minutes": 30}],
  "calls": [
    {"id": 1, "retell_call_id": "call_abc", "company_id": 1, "branch_id": 1, "from_number": "anonymous"},
    {"id": 2, "retell_call_id": "call_known", "company_id": 1, "branch_id": 1, "from_number": "0151 2345678"}
  ]
}"#;

/// A PostgreSQL database of the test's own, dropped at the end.
struct Pg(String);

impl Pg {
    fn new() -> Self {
        let name = format!("cb_cli_migrate_{}", std::process::id());
        Self::sql(&format!("DROP DATABASE IF EXISTS {name}"));
        Self::sql(&format!("CREATE DATABASE {name}"));
        Pg(name)
    }
    fn sql(statement: &str) {
        let out = Command::new("psql").args(["-h", "127.0.0.1", "-U", "postgres", "-qc", statement]).output();
        assert!(out.expect("psql runs").status.success(), "{statement}");
    }
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.0)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
            ])
            .output();
    }
}

fn checksums(report: &Value) -> Vec<(String, u64, String)> {
    report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_string(),
                t["rows"].as_u64().expect("rows"),
                t["checksum"].as_str().expect("checksum").to_string(),
            )
        })
        .collect()
}

#[test]
fn migrate_moves_a_sqlite_file_to_postgres_and_back() {
    let fake = callbook::calcom::fake::FakeCalcom::with_event_types(
        std::sync::Arc::new(callbook::SystemClock),
        &[callbook::calcom::fake::EventType::new(123, 30)],
    )
    .expect("fake");
    let dir = tempfile::tempdir().expect("temp dir");
    let a = dir.path().join("a.db");
    let file = dir.path().join("directory.json");
    std::fs::write(&file, DIRECTORY).expect("writes");
    assert_eq!(on(&a, &["import", file.to_str().expect("utf-8")]).1, 0);
    for (call, start) in [("call_known", "2099-01-08T13:00:00Z"), ("call_abc", "2099-01-08T14:00:00Z")] {
        let (v, code) = on(&a, &["book", "--call", call, "--name", "Max", "--start", start]);
        assert_eq!(code, 0, "{v}");
    }
    let (v, code) = on(&a, &["sync", "--once", "--calcom-url", fake.url()]);
    assert_eq!((code, v["synced"].as_u64()), (0, Some(2)), "{v}");
    let a_path = a.to_str().expect("utf-8").to_string();

    let pg = Pg::new();
    let url = pg.url();
    let (to_pg, code) = callbook(&["migrate", "--from", &a_path, "--to", &url, "--batch", "1"]);
    assert_eq!(code, 0, "{to_pg}");
    let sums = checksums(&to_pg);
    let names: Vec<&str> = sums.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, callbook::migrated_tables());
    let rows = |name: &str| sums.iter().find(|(n, _, _)| n == name).map(|(_, r, _)| *r);
    assert_eq!(
        (rows("companies"), rows("calls"), rows("appointments"), rows("sync_jobs")),
        (Some(1), Some(2), Some(2), Some(2))
    );
    assert!(sums.iter().all(|(_, _, c)| c.len() == 64), "SHA-256 in hex");
    assert_eq!(to_pg["rows"].as_u64(), Some(sums.iter().map(|(_, r, _)| r).sum()));
    assert_eq!(to_pg["to"], url.replace("postgres@", ""), "no user in the summary");
    let next = to_pg["tables"].as_array().and_then(|t| t.iter().find(|t| t["name"] == "appointments")).expect("row");
    assert_eq!(next["next_id"], 3, "the sequence after the copied ids");

    // The target now holds rows: refused (a domain refusal: exit 3), naming the table.
    let (refused, code) = callbook(&["migrate", "--from", &a_path, "--to", &url]);
    assert_eq!((code, refused["error"]["code"].as_str()), (3, Some("target_not_empty")), "{refused}");
    assert_eq!(refused["error"]["table"], "companies");

    // Back to a new SQLite file: the same rows, the same stats.
    let b = dir.path().join("b.db");
    let b_path = b.to_str().expect("utf-8").to_string();
    let (back, code) = callbook(&["migrate", "--from", &url, "--to", &b_path]);
    assert_eq!(code, 0, "{back}");
    assert_eq!(checksums(&back), sums);
    assert_eq!(on(&b, &["stats"]), on(&a, &["stats"]));
    let (booked, code) = on(&b, &["book", "--call", "call_known", "--name", "Max", "--start", "2099-01-09T13:00:00Z"]);
    assert_eq!((code, booked["appointment_id"].as_i64()), (0, Some(3)), "{booked}");

    // --append into a target that has these ids: a conflict, nothing written.
    let (conflict, code) = callbook(&["migrate", "--from", &a_path, "--to", &b_path, "--append"]);
    assert_eq!((code, conflict["error"]["code"].as_str()), (3, Some("migrate_conflict")), "{conflict}");
    // --append into an empty target works like a plain copy.
    let c = dir.path().join("c.db");
    let (appended, code) = callbook(&["migrate", "--from", &a_path, "--to", c.to_str().expect("utf-8"), "--append"]);
    assert_eq!((code, appended["append"].as_bool()), (0, Some(true)), "{appended}");
    assert_eq!(checksums(&appended), sums);
}

#[test]
fn migrate_refuses_bad_arguments_with_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = dir.path().join("a.db");
    assert_eq!(on(&a, &["init"]).1, 0);
    let a = a.to_str().expect("utf-8");
    let missing = dir.path().join("missing.db");
    let (v, code) = callbook(&["migrate", "--from", missing.to_str().expect("utf-8"), "--to", a]);
    assert_eq!((code, v["error"]["code"].as_str()), (2, Some("source_not_found")), "{v}");
    let (v, code) = callbook(&["migrate", "--from", a, "--to", a]);
    assert_eq!((code, v["error"]["code"].as_str()), (2, Some("same_database")), "{v}");
    let b = dir.path().join("b.db");
    let (v, code) = callbook(&["migrate", "--from", a, "--to", b.to_str().expect("utf-8"), "--batch", "0"]);
    assert_eq!((code, v["error"]["code"].as_str()), (2, Some("invalid_argument")), "{v}");
    let (v, code) = callbook(&["migrate", "--from", a]);
    assert_eq!((code, v["error"]["code"].as_str()), (2, Some("usage")), "{v}");
}

#[test]
fn migrate_prints_a_table_per_line_without_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = dir.path().join("a.db");
    assert_eq!(on(&a, &["init"]).1, 0);
    let b = dir.path().join("b.db");
    let out = Command::new(env!("CARGO_BIN_EXE_callbook"))
        .args(["migrate", "--from", a.to_str().expect("utf-8"), "--to", b.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.starts_with("copied 0 rows from "), "{text}");
    assert!(text.contains("checksums verified"), "{text}");
    for table in callbook::migrated_tables() {
        assert!(text.lines().any(|l| l.trim_start().starts_with(table)), "{table} in {text}");
    }
}
