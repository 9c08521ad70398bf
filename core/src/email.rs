//! Email addresses as callers give them: typed, blank, or spoken through
//! speech-to-text ("max at example dot com").

use std::str::FromStr;

/// What a caller's email text turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailInput {
    /// Nothing given (missing, empty or blank). Stored as NULL, never `''`.
    None,
    /// A syntactically valid address, trimmed and lowercased.
    Valid(String),
    /// Something was given but it is no address: stored as NULL, the raw text
    /// kept in the appointment metadata.
    Invalid(String),
}

impl EmailInput {
    pub fn valid(&self) -> Option<&str> {
        match self {
            EmailInput::Valid(e) => Some(e),
            _ => None,
        }
    }
}

/// Spoken separators, longest first so "dot com" wins over "dot".
const SPOKEN: &[(&str, &str)] = &[
    ("(at)", "@"),
    ("[at]", "@"),
    ("(dot)", "."),
    ("[dot]", "."),
    (" at ", "@"),
    (" ät ", "@"),
    (" dot ", "."),
    (" punkt ", "."),
    (" underscore ", "_"),
    (" unterstrich ", "_"),
    (" dash ", "-"),
    (" hyphen ", "-"),
    (" minus ", "-"),
    (" bindestrich ", "-"),
];

/// Normalises a caller's email text. Addresses are compared lowercased: the
/// domain is case-insensitive by RFC, and no mail provider a caller would
/// name treats the local part otherwise.
pub fn normalize_email(text: Option<&str>) -> EmailInput {
    let Some(raw) = text else { return EmailInput::None };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return EmailInput::None;
    }
    let lowered = trimmed.to_lowercase();
    let candidate = if lowered.contains('@') { lowered.replace(' ', "") } else { unspeak(&lowered) };
    if is_valid_email(&candidate) {
        EmailInput::Valid(candidate)
    } else {
        EmailInput::Invalid(trimmed.to_string())
    }
}

/// Turns "max punkt muster at example dot com" into "max.muster@example.com".
/// Words that are left over (a space inside the address) make it ambiguous,
/// and then the text stays invalid.
fn unspeak(lowered: &str) -> String {
    let mut s = format!(" {} ", lowered.split_whitespace().collect::<Vec<_>>().join(" "));
    for (word, symbol) in SPOKEN {
        // Replace repeatedly: adjacent matches share their spaces.
        while s.contains(word) {
            let padded = if word.starts_with(' ') { format!(" {symbol} ") } else { symbol.to_string() };
            s = s.replacen(word, &padded, 1);
        }
    }
    let parts: Vec<&str> = s.split_whitespace().collect();
    // Symbols are surrounded by spaces now; join only around them.
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let is_symbol = matches!(*part, "@" | "." | "_" | "-");
        let prev_symbol = i > 0 && matches!(parts[i - 1], "@" | "." | "_" | "-");
        if i > 0 && !is_symbol && !prev_symbol {
            out.push(' ');
        }
        out.push_str(part);
    }
    out
}

/// Syntax check: an addr-spec Cal.com takes. Cal.com validates attendee
/// emails with class-validator's `@IsEmail()` (validator.js `isEmail`, default
/// options), so an address is valid here only when it is valid there too: a
/// dot-atom local part of at most 64 characters, and a domain of labels
/// (letters, digits, hyphens; no underscore, no hyphen at either end, at
/// most 63 characters) ending in a top-level domain of two letters or more.
pub fn is_valid_email(candidate: &str) -> bool {
    if candidate.len() > 254 || candidate.contains(char::is_whitespace) {
        return false;
    }
    let Ok(addr) = email_address::EmailAddress::from_str(candidate) else { return false };
    let (local, domain) = (addr.local_part(), addr.domain());
    let local_ok = local.chars().count() <= 64
        && local.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.chars().count() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    let tld_ok = labels.last().is_some_and(|tld| {
        (tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic))
            || (tld.len() > 4 && tld.to_ascii_lowercase().starts_with("xn--"))
    });
    addr.display_part().is_empty()
        && !candidate.contains(['<', '>', '"', '(', ')'])
        && local_ok
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && tld_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoken_forms() {
        let n = |s: &str| normalize_email(Some(s));
        assert_eq!(n("max at example dot com"), EmailInput::Valid("max@example.com".into()));
        assert_eq!(n("Max Punkt Muster at Web Punkt de"), EmailInput::Valid("max.muster@web.de".into()));
        assert_eq!(n("  "), EmailInput::None);
        assert_eq!(
            n("max mustermann at example dot com"),
            EmailInput::Invalid("max mustermann at example dot com".into())
        );
        assert_eq!(n(" Jane@Example.COM "), EmailInput::Valid("jane@example.com".into()));
    }
}
