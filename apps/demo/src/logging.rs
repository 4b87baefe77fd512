//! The demo's logs: plain text (coloured only on a terminal) or JSON lines (`LOG_FORMAT=json`),
//! filtered by `RUST_LOG`, and a span per request that names its session.

use std::io::IsTerminal as _;

use anyhow::bail;

/// Starts logging to stdout, as `LOG_FORMAT` asks: `text` (the default) or `json`. Colour
/// codes only when stdout is a terminal, so that a file or a log collector gets plain text.
///
/// # Errors
///
/// `LOG_FORMAT` is neither `text` nor `json`.
pub fn init_logging() -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match std::env::var("LOG_FORMAT").ok().as_deref() {
        None | Some("" | "text") => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        // Each line one JSON object with the fields of the event and of its spans: the
        // request's method, path and session.
        Some("json") => builder.json().flatten_event(true).init(),
        Some(other) => bail!("LOG_FORMAT={other:?}: use text or json"),
    }
    Ok(())
}

/// The span of one request. Its `session` field is left empty for cloakroom to fill with the
/// short id of the request's session (a prefix of the hash that names it in the store, never
/// the token), the id the store's spans carry too.
pub fn request_span(method: &str, path: &str) -> tracing::Span {
    tracing::info_span!("request", method, path, session = tracing::field::Empty)
}
