//! Who is calling: withheld-number detection and phone normalisation.
//!
//! This is the security boundary of callbook. When in doubt a caller is
//! anonymous: a false "anonymous" only creates one customer too many, a false
//! "known" would hand a stranger someone else's customer record.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a caller counts as anonymous. Stored on the customer and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymityReason {
    /// No number at all.
    Missing,
    /// Empty or only whitespace.
    Blank,
    /// A withheld-caller word such as "anonymous", "restricted" or "no caller id".
    WithheldWord,
    /// A SIP URI whose user part is anonymous (`sip:anonymous@anonymous.invalid`).
    SipAnonymous,
    /// The all-zero number some PBXs send (`0000000000`).
    AllZero,
    /// A carrier sentinel number put in place of a withheld one (Twilio's `+266696687`, ...).
    CarrierSentinel,
    /// Text with no digit in it.
    NoDigits,
    /// Has digits, but no phone number can be read from it.
    Unparseable,
}

impl AnonymityReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AnonymityReason::Missing => "missing",
            AnonymityReason::Blank => "blank",
            AnonymityReason::WithheldWord => "withheld_word",
            AnonymityReason::SipAnonymous => "sip_anonymous",
            AnonymityReason::AllZero => "all_zero",
            AnonymityReason::CarrierSentinel => "carrier_sentinel",
            AnonymityReason::NoDigits => "no_digits",
            AnonymityReason::Unparseable => "unparseable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL_REASONS.iter().copied().find(|r| r.as_str() == s)
    }
}

const ALL_REASONS: [AnonymityReason; 8] = [
    AnonymityReason::Missing,
    AnonymityReason::Blank,
    AnonymityReason::WithheldWord,
    AnonymityReason::SipAnonymous,
    AnonymityReason::AllZero,
    AnonymityReason::CarrierSentinel,
    AnonymityReason::NoDigits,
    AnonymityReason::Unparseable,
];

impl fmt::Display for AnonymityReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Words providers put in the caller-id field instead of a number, after
/// lowercasing and turning `_`, `-` and runs of spaces into one space.
const WITHHELD_WORDS: &[&str] = &[
    "anonymous",
    "anon",
    "blocked",
    "private",
    "restricted",
    "unknown",
    "unavailable",
    "withheld",
    "not available",
    "no caller id",
    "no callerid",
    "no number",
    "caller id blocked",
    "callerid blocked",
    "private number",
    "unknown number",
    "unknown caller",
    "withheld number",
    "number withheld",
    "restricted number",
    "blocked number",
    "out of area",
    "unavailable number",
    "not provided",
    "nocallerid",
    "presentation restricted",
    // German carriers and PBXs
    "anonym",
    "unbekannt",
    "unterdrückt",
    "rufnummer unterdrückt",
    "privat",
    "nicht verfügbar",
    "keine rufnummer",
];

/// Digits of the numbers carriers send in place of a withheld one
/// (Twilio, spelled on a keypad: ANONYMOUS, RESTRICTED, BLOCKED, UNKNOWN, UNAVAILABLE).
const CARRIER_SENTINELS: &[&str] = &["266696687", "7378742833", "2562533", "8656696", "86282452253"];

/// Is this caller id a withheld number? `None` means it may be a real number
/// (it still has to parse as one: see [`classify_caller`]).
pub fn detect_anonymous(from_number: Option<&str>) -> Option<AnonymityReason> {
    let Some(raw) = from_number else { return Some(AnonymityReason::Missing) };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Some(AnonymityReason::Blank);
    }
    let lowered = trimmed.to_lowercase();
    if is_withheld_word(&lowered) {
        return Some(AnonymityReason::WithheldWord);
    }
    if let Some(user) = sip_user(&lowered) {
        let user = user.trim();
        if user.is_empty() || is_withheld_word(user) || lowered.contains("anonymous.invalid") {
            return Some(AnonymityReason::SipAnonymous);
        }
        if has_digits(user) && user.chars().filter(char::is_ascii_digit).all(|c| c == '0') {
            return Some(AnonymityReason::SipAnonymous);
        }
    }
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Some(AnonymityReason::NoDigits);
    }
    if digits.bytes().all(|b| b == b'0') {
        return Some(AnonymityReason::AllZero);
    }
    if CARRIER_SENTINELS.contains(&digits.as_str()) {
        return Some(AnonymityReason::CarrierSentinel);
    }
    None
}

fn has_digits(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit())
}

fn is_withheld_word(lowered: &str) -> bool {
    let cleaned: String = lowered
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '<' || c == '>' || c.is_whitespace())
        .chars()
        .map(|c| if c == '_' || c == '-' || c == '.' { ' ' } else { c })
        .collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    WITHHELD_WORDS.contains(&words.join(" ").as_str())
}

/// The user part of a SIP/SIPS URI anywhere in the text (`"Name" <sip:user@host;params>`).
fn sip_user(lowered: &str) -> Option<&str> {
    let start = lowered.find("sips:").map(|i| i + 5).or_else(|| lowered.find("sip:").map(|i| i + 4))?;
    let rest = &lowered[start..];
    let end = rest.find(['@', '>', ';', '?']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// An ISO 3166 alpha-2 region such as `DE`, used to read national numbers.
pub fn region_of(code: &str) -> Option<phonenumber::country::Id> {
    code.trim().to_ascii_uppercase().parse().ok()
}

/// Parses a phone number to E.164 (`+491512345678`), reading national numbers
/// in `region`. `None` when it cannot be read as a phone number.
///
/// libphonenumber takes ~15 µs a number, the largest cost of a booking, and
/// regulars call again and again: answers are memoised (a pure function, so
/// the cache changes no result), bounded and cleared when full.
pub fn normalize_phone(text: &str, region: Option<phonenumber::country::Id>) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Memo = HashMap<(String, Option<phonenumber::country::Id>), Option<String>>;
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    const MEMO_CAPACITY: usize = 16_384;
    let memo = MEMO.get_or_init(Mutex::default);
    let key = (text.to_string(), region);
    if let Some(hit) = memo.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return hit.clone();
    }
    let answer = parse_phone(text, region);
    let mut memo = memo.lock().unwrap_or_else(|p| p.into_inner());
    if memo.len() >= MEMO_CAPACITY {
        memo.clear();
    }
    memo.insert(key, answer.clone());
    answer
}

fn parse_phone(text: &str, region: Option<phonenumber::country::Id>) -> Option<String> {
    let cleaned = strip_uri(text.trim());
    // libphonenumber reads "00" international prefixes only with a region; help it.
    let parsed = phonenumber::parse(region, cleaned).ok()?;
    if !phonenumber::is_viable(cleaned) && !cleaned.starts_with('+') {
        return None;
    }
    // E.164 is the country code and the national number with its leading
    // zeros: written here, as libphonenumber's formatter would, without its
    // format-pattern lookup (a tenth of a booking's instructions).
    let e164 = format!("+{}{}", parsed.country().code(), parsed.national());
    // A number must have at least a country code and a few digits to identify anyone.
    (e164.len() >= 8).then_some(e164)
}

/// Is this E.164 number one libphonenumber holds valid (as Cal.com requires)?
pub fn is_valid_phone(e164: &str) -> bool {
    phonenumber::parse(None, e164).map(|n| phonenumber::is_valid(&n)).unwrap_or(false)
}

/// The region of an E.164 number, if libphonenumber knows it.
pub fn phone_region(e164: &str) -> Option<phonenumber::country::Id> {
    phonenumber::parse(None, e164).ok()?.country().id()
}

fn strip_uri(s: &str) -> &str {
    let lowered_prefix = |p: &str| s.get(..p.len()).is_some_and(|head| head.eq_ignore_ascii_case(p));
    if lowered_prefix("tel:") {
        return &s[4..];
    }
    if lowered_prefix("sip:") || lowered_prefix("sips:") {
        let rest = &s[s.find(':').map_or(0, |i| i + 1)..];
        return &rest[..rest.find(['@', ';']).unwrap_or(rest.len())];
    }
    s
}

/// What callbook knows about the person on the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A number that identifies the caller, in E.164.
    Known(String),
    /// Withheld or unreadable: never matched to anyone.
    Anonymous(AnonymityReason),
}

/// Anonymous detection followed by normalisation: anything that is not
/// anonymous must still parse as a phone number to count as known.
pub fn classify_caller(from_number: Option<&str>, region: Option<phonenumber::country::Id>) -> Caller {
    if let Some(reason) = detect_anonymous(from_number) {
        return Caller::Anonymous(reason);
    }
    match from_number.and_then(|n| normalize_phone(n, region)) {
        Some(e164) => Caller::Known(e164),
        None => Caller::Anonymous(AnonymityReason::Unparseable),
    }
}

/// `{anonymous, reason}` for a caller id, as every binding answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Anonymity {
    pub anonymous: bool,
    pub reason: Option<AnonymityReason>,
}

/// [`detect_anonymous`] in the shape the bindings answer.
pub fn anonymity(from_number: Option<&str>) -> Anonymity {
    let reason = detect_anonymous(from_number);
    Anonymity { anonymous: reason.is_some(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_uris() {
        assert_eq!(detect_anonymous(Some("  Anonymous ")), Some(AnonymityReason::WithheldWord));
        assert_eq!(detect_anonymous(Some("NO_CALLER_ID")), Some(AnonymityReason::WithheldWord));
        assert_eq!(
            detect_anonymous(Some("\"Anonymous\" <sip:anonymous@anonymous.invalid>")),
            Some(AnonymityReason::SipAnonymous)
        );
        assert_eq!(detect_anonymous(Some("+266696687")), Some(AnonymityReason::CarrierSentinel));
        assert_eq!(detect_anonymous(Some("+49 151 2345678")), None);
    }

    #[test]
    fn german_forms_are_one_number() {
        let de = region_of("DE");
        for n in ["+49 151 2345678", "0151 2345678", "+491512345678", "0049 151 2345678"] {
            assert_eq!(normalize_phone(n, de).as_deref(), Some("+491512345678"), "{n}");
        }
    }

    #[test]
    fn digits_that_are_no_number_are_anonymous() {
        assert_eq!(classify_caller(Some("12"), region_of("DE")), Caller::Anonymous(AnonymityReason::Unparseable));
    }
}
