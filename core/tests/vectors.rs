//! The shared vectors in `tests/vectors/` (the Node and WASM tests load the
//! same files) give the same answers through the Rust API.

use callbook::calcom::*;
use callbook::retell::*;
use callbook::rules::*;
use callbook::*;
use serde_json::Value;

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/../tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("vector file is JSON");
    let cases = doc["cases"].as_array().expect("cases").clone();
    assert!(!cases.is_empty(), "{name} has cases");
    cases
}

#[test]
fn anonymous_detection() {
    for case in load("anonymous.json") {
        let got = detect_anonymous(case["input"].as_str()).map(|r| r.as_str().to_string());
        assert_eq!(got.as_deref(), case["reason"].as_str(), "input {}", case["input"]);
    }
}

#[test]
fn phone_classification() {
    for case in load("phone.json") {
        let region = region_of(case["region"].as_str().expect("region"));
        let got = classify_caller(case["input"].as_str(), region);
        let want = match (case["known"].as_str(), case["anonymous"].as_str()) {
            (Some(e164), _) => Caller::Known(e164.to_string()),
            (None, Some(reason)) => Caller::Anonymous(AnonymityReason::parse(reason).expect("reason")),
            _ => panic!("case needs known or anonymous: {case}"),
        };
        assert_eq!(got, want, "input {}", case["input"]);
    }
}

#[test]
fn email_normalisation() {
    for case in load("email.json") {
        let got = normalize_email(case["input"].as_str());
        let kind = match &got {
            EmailInput::None => "none",
            EmailInput::Valid(_) => "valid",
            EmailInput::Invalid(_) => "invalid",
        };
        assert_eq!(kind, case["kind"], "input {}", case["input"]);
        assert_eq!(got.valid(), case["output"].as_str(), "input {}", case["input"]);
    }
}

#[test]
fn placeholder_phones() {
    for case in load("placeholder_phone.json") {
        let got = placeholder_phone(
            case["name"].as_str().expect("name"),
            CallDbId(case["call_db_id"].as_i64().expect("id")),
            case["unix_seconds"].as_i64().expect("seconds"),
        );
        assert_eq!(got, case["expected"].as_str().expect("expected"), "{case}");
    }
}

#[test]
fn booking_request_validation() {
    for case in load("booking_request.json") {
        let request: BookingRequest = serde_json::from_value(case["request"].clone()).expect("request parses");
        let got: Vec<(String, String)> =
            validate_booking_request(&request).into_iter().map(|p| (p.field, p.code)).collect();
        let want: Vec<(String, String)> = case["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .map(|p| (p["field"].as_str().expect("field").into(), p["code"].as_str().expect("code").into()))
            .collect();
        assert_eq!(got, want, "{}", case["name"]);
    }
}

#[test]
fn job_transitions() {
    for case in load("job_transitions.json") {
        let job: JobSnapshot = serde_json::from_value(case["job"].clone()).expect("job");
        let event: JobEvent = serde_json::from_value(case["event"].clone()).expect("event");
        let now = serde_json::from_value(case["now"].clone()).expect("now");
        let got = transition(&job, &event, now);
        match (case.get("expected"), case.get("refused")) {
            (Some(expected), None) => {
                let expected: JobSnapshot = serde_json::from_value(expected.clone()).expect("expected");
                assert_eq!(got, Ok(expected), "{}", case["name"]);
            }
            (None, Some(refused)) => {
                let refused: Refusal = serde_json::from_value(refused.clone()).expect("refusal");
                assert_eq!(got, Err(refused), "{}", case["name"]);
            }
            _ => panic!("case needs expected or refused: {}", case["name"]),
        }
    }
}

#[test]
fn retell_signatures() {
    for case in load("retell_signature.json") {
        let s = |k: &str| case[k].as_str().unwrap_or_else(|| panic!("{k}")).to_string();
        let got = verify_retell_signature(
            s("body").as_bytes(),
            &s("header"),
            &s("apiKey"),
            case["nowMs"].as_i64().expect("now"),
        );
        assert_eq!(got, case["valid"].as_bool().expect("valid"), "{}", case["name"]);
    }
}

#[test]
fn calcom_payloads() {
    for case in load("calcom_payload.json") {
        let input: PayloadInput = serde_json::from_value(case["input"].clone()).expect("input parses");
        match (calcom_payload(&input), case.get("payload"), case.get("error")) {
            (Ok(got), Some(want), None) => assert_eq!(&got, want, "{}", case["name"]),
            (Err(e), None, Some(code)) => assert_eq!(e.code(), code, "{}", case["name"]),
            (got, _, _) => panic!("{}: unexpected {got:?}", case["name"]),
        }
    }
}
