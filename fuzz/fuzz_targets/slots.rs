//! `GET /v2/slots` answers: any bytes Cal.com (or a proxy in between) may
//! send, read as JSON, then by `parse_slots`.
#![no_main]

use callbook::calcom::parse_slots;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = serde_json::from_slice::<Value>(data) else { return };
    if let Ok(slots) = parse_slots(&answer) {
        // What the availability check relies on: sorted and without repeats.
        assert!(slots.starts.windows(2).all(|w| w[0] < w[1]), "unsorted or repeated: {:?}", slots.starts);
        if slots.length.is_some() {
            assert!(!slots.starts.is_empty(), "a length without a slot");
        }
    }
});
