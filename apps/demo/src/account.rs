//! "Your sessions", `GET /sessions`: the user's live sessions (when each began and was last
//! seen, this one marked), a button to end any other one (`POST /sessions/end`) and one to end
//! all others (`POST /sessions/end-others`), as the account pages of large sites have.
//!
//! The forms are protected as the login form is: a token in the form that must match a
//! `SameSite=Strict` cookie ([`Csrf`]). The session cookie being `SameSite=Lax` already keeps
//! cross-site posts from carrying it; the token keeps a same-site page that was not this one
//! from ending sessions too.

use cloakroom::{Error, ErrorKind, Session, SessionKey, SessionToken, UserSession};

use crate::csrf::Csrf;
use crate::pages::{Page, Reply, escape, http_date, page_html, parse_form, unreadable_form_status};

/// The fields of the forms of the sessions page, as the browser posts them.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SessionsForm {
    csrf: Option<String>,
    // The session to end, as the page named it (its key in the store).
    session: Option<String>,
}

impl SessionsForm {
    /// Reads a posted body (see [`parse_form`]).
    pub fn parse(content_type: Option<&[u8]>, body: &[u8]) -> Result<Self, u16> {
        parse_form(content_type, body)
    }
}

/// The user the request's session was logged in as, if any: the id the per-user index knows.
async fn username(session: &Session) -> Result<Option<String>, Error> {
    match session.get::<String>("username").await {
        Ok(name) => Ok(name),
        // A username this app did not write reads as logged out, as on the other pages.
        Err(e) if e.kind() == ErrorKind::Decode => Ok(None),
        Err(e) => Err(e),
    }
}

/// `GET /sessions`: the page, or a redirect to the login form without a session.
pub async fn sessions(session: &Session, csrf: Csrf) -> Result<Reply, Error> {
    let Some(username) = username(session).await? else {
        return Ok(Reply::Redirect("/login"));
    };
    let own = session.key().await?;
    let listed = session.manager().sessions_of(&username).await?;
    let token = SessionToken::generate()?.to_text();
    let mut rows = String::new();
    for listed in &listed {
        rows.push_str(&row(listed, own.as_ref() == Some(&listed.key), &token));
    }
    let others = listed
        .iter()
        .filter(|l| own.as_ref() != Some(&l.key))
        .count();
    let end_all = if others > 0 {
        format!(
            "<form method=\"post\" action=\"/sessions/end-others\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <button type=\"submit\">End all other sessions</button></form>\n"
        )
    } else {
        String::new()
    };
    Ok(Reply::Page(Page {
        status: 200,
        html: page_html(&format!(
            "<h1>Your sessions, {}</h1>\n\
             <table>\n<tr><th>Session</th><th>Signed in</th><th>Last seen</th><th>Ends if unused</th><th></th></tr>\n\
             {rows}</table>\n{end_all}<p><a href=\"/\">Back</a></p>\n",
            escape(&username)
        )),
        set_cookie: Some(csrf.set_cookie(&token)),
        no_store: true,
    }))
}

fn row(listed: &UserSession, current: bool, token: &str) -> String {
    let action = if current {
        "<td><strong>This session</strong></td>".to_owned()
    } else {
        format!(
            "<td><form method=\"post\" action=\"/sessions/end\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <input type=\"hidden\" name=\"session\" value=\"{}\">\
             <button type=\"submit\">End</button></form></td>",
            listed.key.as_str()
        )
    };
    format!(
        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>{action}</tr>\n",
        listed.key.short(),
        http_date(listed.created_ms),
        http_date(listed.last_seen_ms),
        http_date(listed.idle_deadline_ms),
    )
}

/// `POST /sessions/end`: ends one session of the user (any of theirs, this one included; never
/// another user's), then back to the page.
pub async fn end<'a>(
    session: &Session,
    csrf: Csrf,
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    form: Result<SessionsForm, u16>,
) -> Result<Reply, Error> {
    let form = match checked(csrf, cookie_headers, form) {
        Ok(form) => form,
        Err(reply) => return Ok(reply),
    };
    let Some(username) = username(session).await? else {
        return Ok(Reply::Redirect("/login"));
    };
    let Some(key) = form.session.as_deref().and_then(SessionKey::from_stored) else {
        return Ok(refusal(400, "That is not a session of yours."));
    };
    // A key of another user's session is refused by the index: nothing happens.
    session.manager().end_session_of(&username, &key).await?;
    Ok(Reply::Redirect("/sessions"))
}

/// `POST /sessions/end-others`: ends every session of the user but this one.
pub async fn end_others<'a>(
    session: &Session,
    csrf: Csrf,
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    form: Result<SessionsForm, u16>,
) -> Result<Reply, Error> {
    if let Err(reply) = checked(csrf, cookie_headers, form) {
        return Ok(reply);
    }
    if username(session).await?.is_none() {
        return Ok(Reply::Redirect("/login"));
    }
    session.end_other_sessions().await?;
    Ok(Reply::Redirect("/sessions"))
}

// The form, when it could be read and its token matches its cookie; else the page to answer.
fn checked<'a>(
    csrf: Csrf,
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    form: Result<SessionsForm, u16>,
) -> Result<SessionsForm, Reply> {
    let form = match form {
        Ok(form) => form,
        Err(status) => {
            return Err(refusal(
                unreadable_form_status(status),
                "The form could not be read.",
            ));
        }
    };
    if !csrf.matches(cookie_headers, form.csrf.as_deref()) {
        return Err(refusal(
            403,
            "This form has expired or came from another site. Please try again.",
        ));
    }
    Ok(form)
}

fn refusal(status: u16, message: &str) -> Reply {
    Reply::Page(Page {
        status,
        html: page_html(&format!(
            "<p role=\"alert\">{}</p>\n<p><a href=\"/sessions\">Your sessions</a></p>\n",
            escape(message)
        )),
        set_cookie: None,
        no_store: false,
    })
}
