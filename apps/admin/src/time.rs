//! Times as people and programs read them.

use std::time::Duration;

/// A Unix time in milliseconds as HTTP writes dates, as the demo's sessions page shows it.
pub(crate) fn date(unix_ms: u64) -> String {
    cloakroom_demo::pages::http_date(unix_ms)
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
