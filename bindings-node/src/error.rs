//! Core errors become JS `Error`s whose `code` is the core's code. Sync
//! calls set it natively (napi's status string is the JS `code`); promises
//! carry `code\u{1f}message` in the reason and `index.js` splits it.

use napi::Status;

/// A JS error code (napi sets it as the thrown `Error`'s `code`).
#[derive(Debug, Clone)]
pub struct Code(pub String);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

pub fn to_js(e: callbook::Error) -> napi::Error<Code> {
    napi::Error::new(Code(e.code().to_string()), e.to_string())
}

pub fn bad_argument(message: impl ToString) -> napi::Error<Code> {
    napi::Error::new(Code("invalid_argument".into()), message.to_string())
}

pub fn not_configured(message: impl ToString) -> napi::Error<Code> {
    napi::Error::new(Code("not_configured".into()), message.to_string())
}

/// For promises (napi's async rejections only carry a `Status`).
pub fn to_js_async(e: callbook::Error) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("{}\u{1f}{e}", e.code()))
}
