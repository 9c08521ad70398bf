//! Who is calling and how to reach them: withheld-number detection, phone
//! normalisation to E.164 (with any region), caller classification, and
//! email normalisation (typed or spoken), on any text.
//!
//! Input: `[region: 2 bytes][text: the rest]`. The region bytes pick one of
//! the regions libphonenumber knows or, when they are letters, name one.
#![no_main]

use callbook::rules::*;
use callbook_fuzz::Reader;
use libfuzzer_sys::fuzz_target;

/// Regions callbook's tenants are in, and a few with unusual numbering plans.
const REGIONS: &[&str] = &["DE", "AT", "CH", "US", "GB", "FR", "IT", "AU", "BR", "IN", "JP", "LI", "SM", "VA", "XK"];

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let (a, b) = (input.u8(), input.u8());
    let code = if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() {
        String::from_utf8_lossy(&[a, b]).into_owned()
    } else {
        REGIONS[usize::from(a) % REGIONS.len()].to_string()
    };
    let region = if b == 0 { None } else { region_of(&code) };
    let text = String::from_utf8_lossy(input.rest()).into_owned();

    let phone = normalize_phone(&text, region);
    if let Some(e164) = &phone {
        assert!(e164.starts_with('+') && e164[1..].bytes().all(|c| c.is_ascii_digit()), "not E.164: {e164:?}");
        assert!(e164.len() >= 8, "too short to identify anyone: {e164:?}");
        // Core asks this of stored E.164 numbers only (whether Cal.com gets the phone).
        let _ = is_valid_phone(e164);
    }
    let anonymous = detect_anonymous(Some(&text));
    match classify_caller(Some(&text), region) {
        // The security boundary: a caller is known only by a number that normalises.
        Caller::Known(e164) => {
            assert_eq!(anonymous, None, "{text:?} is withheld but known");
            assert_eq!(Some(&e164), phone.as_ref());
        }
        Caller::Anonymous(reason) => {
            if let Some(first) = anonymous {
                assert_eq!(reason, first);
            } else {
                assert_eq!(phone, None, "{text:?} normalises but counts as anonymous");
            }
        }
    }

    match normalize_email(Some(&text)) {
        EmailInput::None => assert!(text.trim().is_empty()),
        EmailInput::Valid(address) => {
            assert!(is_valid_email(&address), "{address:?}");
            assert_eq!(address, address.to_lowercase());
            // Stored addresses are compared as stored: normalising again changes nothing.
            assert_eq!(normalize_email(Some(&address)), EmailInput::Valid(address.clone()));
        }
        EmailInput::Invalid(raw) => assert_eq!(raw, text.trim()),
    }
    let _ = is_valid_email(&text);
});
