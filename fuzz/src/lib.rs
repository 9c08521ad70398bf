//! What the fuzz targets share: the input framing, a directory of tenants to
//! book against, and a scripted Cal.com (no network in a fuzz run).

use callbook::calcom::*;
use callbook::store::*;
use callbook::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

/// Tuesday 2030-01-01 08:00 UTC: every target's "now" unless the input moves it.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 8, 0, 0).single().unwrap_or_default()
}

pub const RETELL_KEY: &str = "key_fuzz_retell";
/// The secret `tests/contract/calcom/webhook_*.json` were signed with, so their
/// recorded signatures verify as they are.
/// Company 1's Cal.com webhook secret (company 2's has `-2` appended).
pub const WEBHOOK_SECRET: &str = "callbook-test-webhook-secret";

/// Reads a fuzz input front to back. Never fails: past the end it yields
/// zeros and empty strings, so every byte string is a valid input.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        let (first, rest) = self.data.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.data = rest;
        first
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn i64(&mut self) -> i64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        i64::from_le_bytes(b)
    }
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
    /// A string of a length given by one byte (lossy UTF-8: the HTTP layer hands core `&str`).
    pub fn short_str(&mut self) -> String {
        let n = usize::from(self.u8());
        String::from_utf8_lossy(self.bytes(n)).into_owned()
    }
    /// A byte string of a length given by two bytes.
    pub fn long_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.bytes(n)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }
}

/// Three companies, four branches in three countries and zones (one with a
/// half-hour DST shift), services with and without a capacity, and calls of
/// every kind of caller. Call ids used by `tests/vectors` are among them, so
/// the seed bodies book for real.
pub const DIRECTORY: &str = r#"{
  "companies": [
    {"id": 1, "name": "Salon Berlin", "calcom_api_key": "cal_live_one", "calcom_webhook_secret": "callbook-test-webhook-secret"},
    {"id": 2, "name": "Praxis Hamburg", "calcom_api_key": "cal_live_two", "calcom_webhook_secret": "callbook-test-webhook-secret-2"},
    {"id": 3, "name": "Surf Lord Howe", "calcom_api_key": "cal_live_three", "calcom_email_fallback": "noreply+{appointment}@surf.example"}
  ],
  "branches": [
    {"id": 1, "company_id": 1, "name": "Mitte", "timezone": "Europe/Berlin", "country": "DE", "phone_number": "+49 30 1234567"},
    {"id": 2, "company_id": 2, "name": "Altona", "timezone": "Europe/Berlin", "phone_number": "+49 40 1234567"},
    {"id": 3, "company_id": 1, "name": "Manhattan", "timezone": "America/New_York", "country": "US", "phone_number": "+1 212 555 0100"},
    {"id": 4, "company_id": 3, "name": "Island", "timezone": "Australia/Lord_Howe", "country": "AU", "phone_number": "+61 2 9876 5432"}
  ],
  "services": [
    {"id": 1, "company_id": 1, "name": "Haircut", "calcom_event_type_id": 1001, "duration_minutes": 30},
    {"id": 2, "company_id": 2, "name": "Checkup", "calcom_event_type_id": 2001, "duration_minutes": 45},
    {"id": 3, "company_id": 1, "name": "Colour", "calcom_event_type_id": 1002, "duration_minutes": 60, "capacity": 2},
    {"id": 4, "company_id": 3, "name": "Lesson", "duration_minutes": 90}
  ],
  "calls": [
    {"id": 10, "retell_call_id": "call_anon", "company_id": 1, "branch_id": 1, "from_number": "anonymous"},
    {"id": 11, "retell_call_id": "call_known_a", "company_id": 1, "branch_id": 1, "from_number": "+49 151 2345678"},
    {"id": 12, "retell_call_id": "call_known_b", "to_number": "+49301234567", "from_number": "0151 2345678"},
    {"id": 13, "retell_call_id": "call_c2", "company_id": 2, "branch_id": 2, "from_number": "+491512345678"},
    {"id": 14, "retell_call_id": "call_no_company", "from_number": "+491700000001"},
    {"id": 15, "retell_call_id": "call_no_branch", "company_id": 1, "from_number": "+491700000002"},
    {"id": 16, "retell_call_id": "call_ny", "branch_id": 3, "from_number": "(212) 555-0199"},
    {"id": 17, "retell_call_id": "call_c2_anon", "company_id": 2, "branch_id": 2, "from_number": "restricted"},
    {"id": 18, "retell_call_id": "call_lh", "company_id": 3, "branch_id": 4, "from_number": "0412 345 678"},
    {"id": 19, "retell_call_id": "call_abc", "company_id": 1, "branch_id": 3, "from_number": "+14155550100"},
    {"id": 20, "retell_call_id": "call_x", "company_id": 2, "branch_id": 2, "from_number": "sip:+4940999999@pbx.example"},
    {"id": 21, "retell_call_id": "call_1", "company_id": 1, "branch_id": 1, "from_number": "+49 30 9999999"}
  ]
}"#;

/// The directory, parsed once (the parse is not what these targets fuzz).
pub fn directory() -> &'static ImportData {
    static DATA: OnceLock<ImportData> = OnceLock::new();
    DATA.get_or_init(|| ImportData::from_json(DIRECTORY).unwrap_or_else(|e| panic!("the fuzz directory: {e}")))
}

/// A fresh store with the directory imported, on a manual clock at `t0`:
/// every run starts from the same state, so a crash replays.
pub fn fresh_book() -> (Callbook, Arc<ManualClock>, Arc<MemoryStore>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let store = Arc::new(MemoryStore::new());
    let book = Callbook::new(store.clone()).with_clock(clock.clone());
    book.import(directory()).unwrap_or_else(|e| panic!("the fuzz directory imports: {e}"));
    (book, clock, store)
}

/// One scripted answer of Cal.com to a sync job.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Done. A create makes a booking whose uid derives from the
    /// appointment's key (unique, as Cal.com's are); `seat` makes it a seat
    /// of a seated event type (the key then is in the seat's metadata).
    /// `lost`: Cal.com did it, but the answer never arrived (a timeout).
    Booked {
        seat: bool,
        lost: bool,
    },
    Failure(ApiFailure),
}

/// Cal.com as a script: slots every 30 minutes across the asked range (like
/// an open calendar), and sync answers taken from a queue the fuzz input
/// fills (an empty queue answers with a network error).
#[derive(Debug, Default)]
pub struct ScriptedCalcom {
    answers: Mutex<VecDeque<Answer>>,
    /// Bookings "in Cal.com", for the lookup a retried create makes.
    listed: Mutex<Vec<CalBooking>>,
}

impl ScriptedCalcom {
    pub fn push(&self, answer: Answer) {
        self.answers.lock().unwrap_or_else(|p| p.into_inner()).push_back(answer);
    }

    fn next(&self) -> Answer {
        let next = self.answers.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        next.unwrap_or(Answer::Failure(ApiFailure::Network("scripted: no answer".into())))
    }
}

/// The booking Cal.com would make for a create payload.
fn booking_for(payload: &Value, seat: bool, n: usize) -> CalBooking {
    let metadata = payload.get("metadata").and_then(Value::as_object).cloned();
    let key = metadata.as_ref().and_then(|m| m.get(METADATA_KEY)).and_then(Value::as_str).unwrap_or("none");
    let seat_uid = seat.then(|| format!("seat-{key}"));
    let attendee = CalAttendee {
        name: payload.pointer("/attendee/name").and_then(Value::as_str).map(str::to_string),
        email: payload.pointer("/attendee/email").and_then(Value::as_str).map(str::to_string),
        seat_uid: seat_uid.clone(),
        metadata: if seat { metadata.clone() } else { None },
        phone_number: None,
    };
    CalBooking {
        id: 1000 + n as i64,
        uid: format!("bk-{key}"),
        start: payload.get("start").and_then(Value::as_str).map(str::to_string),
        end: None,
        status: Some("accepted".into()),
        metadata: if seat { None } else { metadata },
        seat_uid,
        event_type_id: payload.get("eventTypeId").and_then(Value::as_i64),
        attendees: vec![attendee],
    }
}

impl CalcomApi for ScriptedCalcom {
    fn create_booking(&self, _endpoint: &Endpoint, payload: &Value) -> Result<CalBooking, ApiFailure> {
        match self.next() {
            Answer::Booked { seat, lost } => {
                let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
                let booking = booking_for(payload, seat, listed.len());
                listed.push(booking.clone());
                if lost {
                    Err(ApiFailure::Timeout)
                } else {
                    Ok(booking)
                }
            }
            Answer::Failure(f) => Err(f),
        }
    }
    fn find_bookings(&self, _endpoint: &Endpoint, _query: &BookingQuery) -> Result<BookingPage, ApiFailure> {
        let bookings = self.listed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(BookingPage { total: bookings.len() as u64, has_next_page: false, bookings })
    }
    fn get_booking(&self, _endpoint: &Endpoint, uid: &str) -> Result<CalBooking, ApiFailure> {
        let listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        let found = listed.iter().find(|b| b.uid == uid).cloned();
        found.ok_or_else(|| ApiFailure::Status { status: 404, message: "not found".into(), retry_after: None })
    }
    /// A move answered as scripted: the moved booking under a new uid
    /// (listed, the old one kept as it is), or the failure.
    fn reschedule_booking(&self, _endpoint: &Endpoint, uid: &str, the_move: &Move) -> Result<CalBooking, ApiFailure> {
        match self.next() {
            Answer::Booked { lost, .. } => {
                let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
                let old = listed.iter().find(|b| b.uid == uid).cloned();
                let n = listed.len();
                let mut moved = old.unwrap_or_else(|| booking_for(&Value::Null, the_move.seat_uid.is_some(), n));
                moved.id = 1000 + n as i64;
                moved.uid = format!("{uid}-moved-{n}");
                moved.start = Some(format_utc(&the_move.start));
                listed.push(moved.clone());
                if lost {
                    Err(ApiFailure::Timeout)
                } else {
                    Ok(moved)
                }
            }
            Answer::Failure(f) => Err(f),
        }
    }
    fn cancel_booking(&self, _endpoint: &Endpoint, _uid: &str, _seat: Option<&str>, _reason: &str) -> Result<(), ApiFailure> {
        match self.next() {
            Answer::Booked { lost: false, .. } => Ok(()),
            Answer::Booked { lost: true, .. } => Err(ApiFailure::Timeout),
            Answer::Failure(f) => Err(f),
        }
    }
    fn add_attendee(&self, _endpoint: &Endpoint, _uid: &str, _attendee: &NewAttendee) -> Result<(), ApiFailure> {
        match self.next() {
            Answer::Booked { lost: false, .. } => Ok(()),
            Answer::Booked { lost: true, .. } => Err(ApiFailure::Timeout),
            Answer::Failure(f) => Err(f),
        }
    }
    fn slots(&self, _endpoint: &Endpoint, query: &SlotQuery) -> Result<SlotAnswer, ApiFailure> {
        let mut starts = Vec::new();
        let mut at = query.start;
        while at <= query.end && starts.len() < 48 {
            starts.push(at);
            at += Duration::minutes(30);
        }
        Ok(SlotAnswer { starts, length: Some(Duration::minutes(45)) })
    }
}
