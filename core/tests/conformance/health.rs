//! The operations overview on every store: a known mix of bookings over
//! three days, synced, failing and flagged through the real worker and the
//! fake Cal.com, counted per window and company from the database.

use super::*;
use std::sync::Mutex;

/// A clock that moves by `step` after every reading: a booking reads it
/// once when core takes the request and once at the insert, so its stored
/// latency is exactly `step`.
#[derive(Debug)]
pub struct StepClock {
    now: Mutex<(DateTime<Utc>, Duration)>,
}

impl StepClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        StepClock { now: Mutex::new((start, Duration::zero())) }
    }
    /// From now on at `t`, moving `step` after each reading.
    pub fn set(&self, t: DateTime<Utc>, step: Duration) {
        *self.now.lock().expect("clock") = (t, step);
    }
}

impl Clock for StepClock {
    fn now(&self) -> DateTime<Utc> {
        let mut now = self.now.lock().expect("clock");
        let t = now.0;
        now.0 = t + now.1;
        t
    }
}

const HEALTH_FIXTURE: &str = r#"{
  "companies": [
    {"id": 1, "name": "Salon Berlin", "calcom_api_key": "cal_live_health_one"},
    {"id": 2, "name": "Praxis Hamburg", "calcom_api_key": "cal_live_health_two"}
  ],
  "branches": [
    {"id": 1, "company_id": 1, "name": "Mitte", "timezone": "Europe/Berlin", "country": "DE", "phone_number": "+49 30 1234567"},
    {"id": 2, "company_id": 2, "name": "Altona", "timezone": "Europe/Berlin", "country": "DE", "phone_number": "+49 40 1234567"}
  ],
  "services": [
    {"id": 1, "company_id": 1, "name": "Haircut", "calcom_event_type_id": 1001, "duration_minutes": 30},
    {"id": 2, "company_id": 2, "name": "Checkup", "calcom_event_type_id": 2001, "duration_minutes": 30}
  ],
  "calls": [
    {"id": 10, "retell_call_id": "c1_anon", "company_id": 1, "branch_id": 1, "from_number": "anonymous"},
    {"id": 11, "retell_call_id": "c1_known", "company_id": 1, "branch_id": 1, "from_number": "+49 151 2345678"},
    {"id": 12, "retell_call_id": "c2_known", "company_id": 2, "branch_id": 2, "from_number": "+49 151 7654321"},
    {"id": 13, "retell_call_id": "c2_anon", "company_id": 2, "branch_id": 2, "from_number": "restricted"}
  ]
}"#;

fn stored_customer(book: &Callbook, b: &Booking) -> CustomerId {
    book.appointment(b.appointment_id).expect("appointment").customer_id
}

fn ms(v: Option<f64>) -> Option<i64> {
    v.map(|v| v.round() as i64)
}

pub fn health_counts_windows_and_companies_from_the_database(make: MakeStore) {
    let clock = Arc::new(StepClock::new(t0()));
    let book = Callbook::new(make()).with_clock(clock.clone());
    book.import(&ImportData::from_json(HEALTH_FIXTURE).expect("parses")).expect("imports");
    let fake = FakeCalcom::with_event_types(clock.clone(), &[EventType::new(1001, 30), EventType::new(2001, 30)])
        .expect("fake starts");
    let api = Arc::new(HttpCalcom::new(std::time::Duration::from_secs(5)));
    // One thread: the faults below meet the jobs in claim order.
    let config = WorkerConfig { calcom_url: fake.url().into(), threads: 1, ..Default::default() };
    let worker = Worker::new(book.clone(), api, config);
    let booking = |call: &str, service: i64, latency_ms: i64, start: &str| {
        let now = clock.now();
        clock.set(now, Duration::milliseconds(latency_ms));
        let b = book.book(&BookingRequest { service_id: Some(service), ..request(call, "Kim", start) }).expect("books");
        clock.set(clock.now(), Duration::zero());
        b
    };
    let sync_at = |t: DateTime<Utc>| {
        clock.set(t, Duration::zero());
        worker.run_once().expect("runs")
    };
    let end = t0() + Duration::days(3);

    // Three days before the end (in 7d only): an anonymous booking, synced a second later.
    let a = booking("c1_anon", 1, 10, "2030-01-20T09:00:00Z");
    sync_at(t0() + Duration::seconds(1));
    // 18 hours before the end: two known bookings; company 1's meets a 500
    // (it stays failed, retried later), company 2's is synced 2.6 s after it was taken.
    let day2 = end - Duration::hours(18);
    clock.set(day2, Duration::zero());
    let b = booking("c1_known", 1, 200, "2030-01-20T10:00:00Z");
    let c = booking("c2_known", 2, 20, "2030-01-20T11:00:00Z");
    fake.inject([Fault::Status(500, "upstream down".into())]);
    let report = sync_at(day2 + Duration::seconds(3));
    assert_eq!((report.synced, report.retried), (1, 1), "{report:?}");
    // Half an hour before the end: company 1's retry meets another 500, and
    // an anonymous booking Cal.com refuses (400: flagged at once); a callback.
    clock.set(end - Duration::minutes(30), Duration::zero());
    let d = booking("c2_anon", 2, 400, "2030-01-20T12:00:00Z");
    fake.inject([Fault::Status(500, "upstream down".into()), Fault::Status(400, "invalid event type".into())]);
    let report = sync_at(end - Duration::minutes(29));
    assert_eq!((report.retried, report.flagged), (1, 1), "{report:?}");
    book.request_callback(&CallbackRequest {
        retell_call_id: "c2_known".into(),
        customer_name: "Kim".into(),
        reason: Some("wants a person".into()),
        ..Default::default()
    })
    .expect("files");
    // An appointment made elsewhere (no call: Cal.com's own page) is no booking of callbook's.
    let elsewhere = NewAppointment {
        customer_id: stored_customer(&book, &c),
        company_id: CompanyId(2),
        branch_id: BranchId(2),
        service_id: ServiceId(2),
        call_id: None,
        starts_at: t0() + Duration::days(20),
        ends_at: t0() + Duration::days(20) + Duration::minutes(30),
        sync_origin: SyncOrigin::Calcom,
        metadata: Default::default(),
        requires_manual_review: false,
        review_reason: None,
        idempotency_key: "made-in-calcom".into(),
        booking_latency_us: None,
        now: end - Duration::minutes(10),
    };
    callbook::store::write(&**book.store(), move |tx| tx.insert_appointment(&elsewhere)).expect("writes");
    clock.set(end, Duration::zero());

    let stored = |b: &Booking| book.appointment(b.appointment_id).expect("appointment");
    assert_eq!(
        [&a, &b, &c, &d].map(|x| stored(x).booking_latency_us),
        [Some(10_000), Some(200_000), Some(20_000), Some(400_000)],
        "each booking keeps how long core took"
    );
    assert_eq!(
        [&a, &b, &c, &d].map(|x| stored(x).calcom_sync_status),
        [SyncStatus::Synced, SyncStatus::Failed, SyncStatus::Synced, SyncStatus::Failed]
    );

    let [hour, day, week]: [Health; 3] =
        book.health_windows(&Window::STANDARD).expect("health").try_into().expect("three");
    assert_eq!(book.health(Window::DAY).expect("one window"), day, "one window alone reads the same");

    // The week: all four.
    let t = &week.total;
    assert_eq!((t.bookings, t.bookings_anonymous, t.bookings_known), (4, 2, 2));
    assert_eq!((t.synced, t.sync_failed, t.sync_pending), (2, 2, 0));
    assert_eq!((t.sync_success_rate, t.manual_review_flagged, t.manual_review_rate), (Some(0.5), 1, Some(0.25)));
    assert_eq!((t.manual_reviews_open, t.callbacks_open, t.pending_over_1h), (1, 1, 1));
    assert_eq!(t.oldest_pending_seconds, 18 * 3600, "company 1's create, waiting for its retry");
    let booked = &t.booking_latency_ms;
    assert_eq!((booked.count, ms(booked.p50), ms(booked.p95), ms(booked.p99)), (4, Some(20), Some(400), Some(400)));
    let synced = &t.sync_latency_ms;
    assert_eq!((synced.count, ms(synced.p50), ms(synced.p99)), (2, Some(1000), Some(2600)));
    assert_eq!(
        t.targets_missed,
        ["sync_success_rate", "manual_review_rate", "booking_p95", "sync_p99", "pending_over_1h"]
    );

    // The last 24 hours: b, c, d; the last hour: d.
    let t = &day.total;
    assert_eq!((t.bookings, t.bookings_anonymous, t.synced, t.sync_failed), (3, 1, 1, 2));
    assert_eq!((ms(t.booking_latency_ms.p50), ms(t.booking_latency_ms.p95)), (Some(200), Some(400)));
    assert_eq!(
        t.targets_missed,
        ["sync_success_rate", "manual_review_rate", "booking_p50", "booking_p95", "sync_p99", "pending_over_1h"]
    );
    let t = &hour.total;
    assert_eq!(
        (t.bookings, t.bookings_anonymous, t.sync_success_rate, t.manual_review_rate),
        (1, 1, Some(0.0), Some(1.0))
    );
    assert_eq!(t.sync_latency_ms.p99, None, "nothing synced in the hour: no figure, no miss");
    // Work waiting is the same in every window.
    assert_eq!((t.manual_reviews_open, t.callbacks_open, t.pending_over_1h), (1, 1, 1));

    // Per company (the week).
    let company = |id: i64| week.companies.iter().find(|c| c.company_id == CompanyId(id)).expect("company");
    let (one, two) = (&company(1).figures, &company(2).figures);
    assert_eq!(company(1).name, "Salon Berlin");
    assert_eq!((one.bookings, one.synced, one.sync_failed, one.manual_review_flagged), (2, 1, 1, 0));
    assert_eq!((one.pending_over_1h, one.oldest_pending_seconds, one.callbacks_open), (1, 18 * 3600, 0));
    assert_eq!((two.bookings, two.synced, two.sync_failed, two.manual_review_flagged), (2, 1, 1, 1));
    assert_eq!((two.manual_reviews_open, two.callbacks_open, two.pending_over_1h), (1, 1, 0));
    assert_eq!(two.oldest_pending_seconds, 0);

    // Company 1's breaker saw the two 500s (closed: two failures are not five).
    let breaker = week.breakers.iter().find(|b| b.companies == [CompanyId(1)]).expect("company 1's breaker");
    assert_eq!(
        (breaker.endpoint.as_str(), breaker.state, breaker.consecutive_failures),
        (fake.url(), BreakerState::Closed, 2)
    );
    assert!(!breaker.key.contains("cal_live"), "the key is never shown");
    assert_eq!(company(1).breaker, BreakerState::Closed);

    // Charts: hourly bars over the day, each (start, start + 1 h] like the
    // window; b exactly 18 hours back closes bar 5, c just after opens bar 6,
    // d is in the last.
    assert_eq!((day.bucket_seconds, day.series.len()), (3600, 24));
    let bar = |i: usize| {
        let s = &day.series[i];
        (s.anonymous, s.known, s.synced, s.failed, s.pending)
    };
    assert_eq!((bar(5), bar(6), bar(23)), ((0, 1, 0, 1, 0), (0, 1, 1, 0, 0), (1, 0, 0, 1, 0)));
    assert_eq!(day.series.iter().map(|s| s.anonymous + s.known).sum::<u64>(), 3);

    // The JSON the CLI prints: the issue's names at the top.
    let json = serde_json::to_value(&day).expect("json");
    assert_eq!((json["window"].as_str(), json["bookings"].as_u64()), (Some("24h"), Some(3)));
    assert_eq!((json["pending_over_1h"].as_u64(), json["oldest_pending_seconds"].as_i64()), (Some(1), Some(18 * 3600)));
    assert!(json["sync_success_rate"].as_f64().is_some() && json["manual_review_rate"].as_f64().is_some());
    assert!(json["targets_missed"].is_array());
}
