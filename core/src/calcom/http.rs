//! The real Cal.com client: ureq, blocking, one agent (connection pool)
//! per client, a per-request timeout; it remembers the rate-limit headers
//! of every answer per endpoint (`CalcomApi::observed_limit`).

use super::*;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::Mutex;

/// (breaker key, throttler name) → the latest headers seen.
type Observed = Mutex<HashMap<(String, &'static str), RateLimitHeaders>>;

/// The real client: ureq, blocking, with a per-request timeout. It
/// remembers the rate-limit headers of every answer per endpoint.
#[derive(Debug)]
pub struct HttpCalcom {
    agent: ureq::Agent,
    observed: Observed,
}

impl HttpCalcom {
    pub fn new(timeout: std::time::Duration) -> Self {
        HttpCalcom { agent: ureq::AgentBuilder::new().timeout(timeout).build(), observed: Mutex::default() }
    }

    fn request(&self, method: &str, endpoint: &Endpoint, path: &str) -> ureq::Request {
        self.versioned(method, endpoint, path, BOOKINGS_API_VERSION)
    }

    fn versioned(&self, method: &str, endpoint: &Endpoint, path: &str, version: &str) -> ureq::Request {
        let url = format!("{}{path}", endpoint.base_url.trim_end_matches('/'));
        self.agent
            .request(method, &url)
            .set("Authorization", &format!("Bearer {}", endpoint.api_key.expose()))
            .set("cal-api-version", version)
    }

    fn observe(&self, endpoint: &Endpoint, response: &ureq::Response) {
        let header = |name: &str| response.header(name).map(str::to_string);
        for name in [DEFAULT_THROTTLER, ATTENDEES_THROTTLER] {
            if let Some(seen) = rate_limit_headers(name, header) {
                let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
                observed.insert((endpoint.breaker_key(), name), seen);
            }
        }
    }

    fn send(&self, endpoint: &Endpoint, request: ureq::Request, body: Option<&Value>) -> Result<Value, ApiFailure> {
        let answer = match body {
            Some(b) => request.send_json(b),
            None => request.call(),
        };
        match answer {
            Ok(response) => {
                self.observe(endpoint, &response);
                response.into_json::<Value>().map_err(|e| ApiFailure::BadAnswer(e.to_string()))
            }
            Err(ureq::Error::Status(status, response)) => {
                self.observe(endpoint, &response);
                let retry = retry_after(status, |h| response.header(h).map(str::to_string), Utc::now());
                let body: Value = response.into_json().unwrap_or(Value::Null);
                Err(ApiFailure::Status { status, message: error_message(&body), retry_after: retry })
            }
            Err(ureq::Error::Transport(t)) => {
                let timed_out = std::error::Error::source(&t)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .is_some_and(|io| matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock));
                if timed_out || t.to_string().contains("timed out") {
                    Err(ApiFailure::Timeout)
                } else {
                    Err(ApiFailure::Network(t.kind().to_string()))
                }
            }
        }
    }
}

fn data<T: serde::de::DeserializeOwned>(answer: Value) -> Result<T, ApiFailure> {
    serde_json::from_value(answer["data"].clone()).map_err(|e| ApiFailure::BadAnswer(e.to_string()))
}

impl CalcomApi for HttpCalcom {
    fn create_booking(&self, endpoint: &Endpoint, payload: &Value) -> Result<CalBooking, ApiFailure> {
        data(self.send(endpoint, self.request("POST", endpoint, "/v2/bookings"), Some(payload))?)
    }

    fn find_bookings(&self, endpoint: &Endpoint, q: &BookingQuery) -> Result<BookingPage, ApiFailure> {
        let mut request = self
            .request("GET", endpoint, "/v2/bookings")
            .query("eventTypeId", &q.event_type_id.to_string())
            .query("afterStart", &crate::utc::format_utc(&q.after_start))
            .query("beforeEnd", &crate::utc::format_utc(&q.before_end))
            .query("take", &q.take.clamp(1, 250).to_string())
            .query("skip", &q.skip.to_string());
        if let Some(email) = &q.attendee_email {
            request = request.query("attendeeEmail", email);
        }
        if q.oldest_first {
            request = request.query("sortStart", "asc");
        }
        parse_booking_page(&self.send(endpoint, request, None)?).map_err(ApiFailure::BadAnswer)
    }

    fn get_booking(&self, endpoint: &Endpoint, uid: &str) -> Result<CalBooking, ApiFailure> {
        data(self.send(endpoint, self.request("GET", endpoint, &format!("/v2/bookings/{uid}")), None)?)
    }

    fn cancel_booking(
        &self,
        endpoint: &Endpoint,
        uid: &str,
        seat_uid: Option<&str>,
        reason: &str,
    ) -> Result<(), ApiFailure> {
        let body = match seat_uid {
            Some(seat) => json!({ "seatUid": seat }),
            None => json!({ "cancellationReason": reason }),
        };
        let request = self.request("POST", endpoint, &format!("/v2/bookings/{uid}/cancel"));
        self.send(endpoint, request, Some(&body)).map(|_| ())
    }

    fn reschedule_booking(&self, endpoint: &Endpoint, uid: &str, the_move: &Move) -> Result<CalBooking, ApiFailure> {
        let request = self.request("POST", endpoint, &format!("/v2/bookings/{uid}/reschedule"));
        data(self.send(endpoint, request, Some(&the_move.body()))?)
    }

    fn add_attendee(&self, endpoint: &Endpoint, uid: &str, attendee: &NewAttendee) -> Result<(), ApiFailure> {
        let body = serde_json::to_value(attendee).map_err(|e| ApiFailure::BadAnswer(e.to_string()))?;
        let request = self.request("POST", endpoint, &format!("/v2/bookings/{uid}/attendees"));
        self.send(endpoint, request, Some(&body)).map(|_| ())
    }

    fn slots(&self, endpoint: &Endpoint, q: &SlotQuery) -> Result<SlotAnswer, ApiFailure> {
        let request = self
            .versioned("GET", endpoint, "/v2/slots", SLOTS_API_VERSION)
            .query("eventTypeId", &q.event_type_id.to_string())
            .query("start", &crate::utc::format_utc(&q.start))
            .query("end", &crate::utc::format_utc(&q.end))
            .query("timeZone", &q.time_zone)
            .query("format", "range");
        let request = match &q.booking_uid_to_reschedule {
            Some(uid) => request.query("bookingUidToReschedule", uid),
            None => request,
        };
        parse_slots(&self.send(endpoint, request, None)?).map_err(ApiFailure::BadAnswer)
    }

    fn observed_limit(&self, endpoint: &Endpoint, throttler: &str) -> Option<RateLimitHeaders> {
        let observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        observed
            .iter()
            .find(|((key, name), _)| *name == throttler && *key == endpoint.breaker_key())
            .map(|(_, v)| v.clone())
    }
}
