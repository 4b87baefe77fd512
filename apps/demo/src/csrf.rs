//! Login CSRF protection by double submit.
//!
//! The form carries a random token that must match a cookie of the same value. A cross-site
//! page can make the browser post the form, but it cannot read or set the cookie: it is
//! `SameSite=Strict` (so the browser does not send it on a cross-site post at all), `HttpOnly`,
//! and `__Host-` prefixed when cookies are `Secure`, so a sibling subdomain cannot plant one. No
//! session is created for the form, so showing it costs the store nothing.

use cloakroom::SessionToken;

/// The CSRF cookie's settings, which follow the session cookie's `Secure` setting.
#[derive(Debug, Clone, Copy)]
pub struct Csrf {
    secure: bool,
}

impl Csrf {
    /// The settings for an app whose session cookies are `Secure` or not.
    pub fn new(secure: bool) -> Self {
        Self { secure }
    }

    fn cookie_name(self) -> &'static str {
        if self.secure {
            "__Host-cloakroom-csrf"
        } else {
            "cloakroom-csrf"
        }
    }

    /// The `Set-Cookie` value that hands `token` to the browser. The token is base64url text, so
    /// the value is a valid header value.
    pub fn set_cookie(self, token: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict{secure}",
            self.cookie_name()
        )
    }

    /// Whether `field`, the form's token, matches the token in the request's cookie, when the
    /// request carries exactly one well-formed one.
    pub fn matches<'a>(
        self,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        field: Option<&str>,
    ) -> bool {
        match (self.cookie_token(cookie_headers), field) {
            (Some(cookie), Some(field)) => same_token(&cookie, field),
            _ => false,
        }
    }

    fn cookie_token<'a>(
        self,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<String> {
        // As bytes: another cookie of the site that is not ASCII must not hide this one.
        let mut found = cloakroom::cookies::values_named(cookie_headers, self.cookie_name());
        match (found.next(), found.next()) {
            (Some(token), None) => std::str::from_utf8(token)
                .ok()
                .filter(|token| SessionToken::parse(token).is_some())
                .map(str::to_owned),
            _ => None,
        }
    }
}

/// Compares two tokens without an early exit, so the time taken says nothing about where they
/// differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
