//! Headers a session may not travel in.

// Headers a browser (the Fetch standard's forbidden request headers) or a proxy sets on its
// own: a session in one of them would be sent without the client choosing to, which is what
// header sessions rely on never happening.
pub(super) fn set_by_browsers(header: &str) -> bool {
    const NAMES: [&str; 22] = [
        "accept-charset",
        "accept-encoding",
        "access-control-request-headers",
        "access-control-request-method",
        "connection",
        "content-length",
        "cookie",
        "cookie2",
        "date",
        "dnt",
        "expect",
        "host",
        "keep-alive",
        "origin",
        "referer",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "via",
    ];
    NAMES.contains(&header)
        || ["proxy-", "sec-", "x-forwarded-"]
            .iter()
            .any(|prefix| header.starts_with(prefix))
}
