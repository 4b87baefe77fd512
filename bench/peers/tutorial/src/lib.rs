//! What every peer shares: the tutorial's texts and its settings from the environment, so that
//! the peers differ only in how they keep the session, and the harness can read every peer's
//! answers with the same patterns.

/// The login form: one text field, `username`, posted to `/login`.
pub const LOGIN_FORM: &str = "<form method=\"post\" action=\"/login\">\
<p><input type=\"text\" name=\"username\"><p><input type=\"submit\" value=\"Login\"></form>";

/// The answer of `/` and `/whoami` without a session.
pub const NOT_LOGGED_IN: &str = "You are not logged in";

/// The answer of `/` to a logged-in user, after counting the visit.
pub fn visits_page(username: &str, visits: i64) -> String {
    format!("Logged in as {}. Visits: {visits}", escape(username))
}

/// The answer of `/whoami` to a logged-in user: the same check as `/`, without the count.
pub fn whoami_page(username: &str) -> String {
    format!("Logged in as {}.", escape(username))
}

/// Escapes text for HTML content and quoted attributes: the username is the user's own input.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Settings from the environment: `PORT` (listening on 127.0.0.1), `REDIS_URL` and
/// `SESSION_TTL` (idle timeout in seconds, slid by every visit).
pub struct Settings {
    pub port: u16,
    pub redis_url: String,
    pub ttl_secs: i64,
}

impl Settings {
    /// Reads the settings; a value that does not parse is an error rather than a silent default.
    pub fn from_env() -> Result<Self, String> {
        Ok(Self {
            port: parsed("PORT", 8080)?,
            redis_url: std::env::var("REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ttl_secs: parsed("SESSION_TTL", 1800)?,
        })
    }
}

fn parsed<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_username() {
        assert_eq!(
            visits_page("<b>&Ann", 2),
            "Logged in as &lt;b&gt;&amp;Ann. Visits: 2"
        );
        assert_eq!(whoami_page("'\""), "Logged in as &#39;&#34;.");
    }
}
