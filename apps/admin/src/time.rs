//! Times as people and programs read them.

use std::time::{Duration, UNIX_EPOCH};

/// A Unix time in milliseconds as HTTP writes dates: `Tue, 01 Dec 2026 03:00:00 GMT`.
/// HTTP dates end with the year 9999 (the formatter panics past it): a later time, which only a
/// record cloakroom did not write can hold, prints as "-".
pub(crate) fn date(unix_ms: u64) -> String {
    const LAST_HTTP_DATE_MS: u64 = 253_402_300_799_999;
    if unix_ms > LAST_HTTP_DATE_MS {
        return "-".to_owned();
    }
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(unix_ms))
}

/// A duration rounded to what a person reads: `42s`, `17m`, `3h`, `12d`.
pub(crate) fn span(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..120 => format!("{secs}s"),
        120..7_200 => format!("{}m", secs / 60),
        7_200..172_800 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}
