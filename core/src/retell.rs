//! Retell AI's request signature: `x-retell-signature: v=<unix ms>,d=<hex>`
//! where hex = HMAC-SHA256(key = Retell API key, message = raw body followed
//! by the timestamp string). Verified on the raw body bytes (re-serialised
//! JSON breaks on non-ASCII names), in constant time, and refused when the
//! timestamp is more than 5 minutes off.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far the signature's timestamp may be from now.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

fn mac(body: &[u8], api_key: &str, timestamp: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(api_key.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    mac
}

/// The header value Retell would send for `body` at `timestamp_ms` (for tests and tools).
pub fn sign_retell(body: &[u8], api_key: &str, timestamp_ms: i64) -> String {
    let ts = timestamp_ms.to_string();
    let digest = mac(body, api_key, &ts).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v={ts},d={hex}")
}

/// Is `header` a valid signature of `body` with `api_key`, made within 5 minutes of `now_ms`?
pub fn verify_retell_signature(body: &[u8], header: &str, api_key: &str, now_ms: i64) -> bool {
    let mut ts = None;
    let mut digest = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("v", v)) => ts = Some(v.trim()),
            Some(("d", d)) => digest = Some(d.trim()),
            _ => {}
        }
    }
    let (Some(ts), Some(digest)) = (ts, digest) else { return false };
    let Ok(ts_ms) = ts.parse::<i64>() else { return false };
    if api_key.is_empty() || (now_ms - ts_ms).abs() > MAX_SKEW_MS {
        return false;
    }
    let Some(bytes) = decode_hex(digest) else { return false };
    mac(body, api_key, ts).verify_slice(&bytes).is_ok()
}

pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let body = "{\"name\":\"Jürgen\"}".as_bytes();
        let header = sign_retell(body, "key_abc", 1_900_000_000_000);
        assert!(verify_retell_signature(body, &header, "key_abc", 1_900_000_000_000 + 60_000));
        assert!(!verify_retell_signature(body, &header, "key_abc", 1_900_000_000_000 + MAX_SKEW_MS + 1));
        assert!(!verify_retell_signature(body, &header, "other", 1_900_000_000_000));
        assert!(!verify_retell_signature(b"{}", &header, "key_abc", 1_900_000_000_000));
        assert!(!verify_retell_signature(body, "v=1,d=zz", "key_abc", 1));
    }
}
