//! The HTTP face of a session error.

use axum_core::response::{IntoResponse, Response};
use cloakroom_core::{Error, ErrorKind};
use http::StatusCode;
use http::header::{CACHE_CONTROL, HeaderValue, RETRY_AFTER};

/// A session error turned into a response: handlers return `Result<_, SessionRejection>` and use
/// `?` on session calls.
///
/// The body is a short generic text chosen by status; the error itself goes to the log.
#[derive(Debug)]
pub struct SessionRejection(pub Error);

impl From<Error> for SessionRejection {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl std::fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SessionRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl SessionRejection {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        // Anything wrong with the store (unreachable, erroring, holding unreadable data, or
        // refusing our credentials after a reconnect) is a 503: the service cannot keep
        // sessions right now. Mistakes in the handler's own use of the session are 500s.
        // Data too large for the configured limits most often comes from the client (a form
        // field stored in the session): a 413.
        if self.0.is_storage() || self.0.kind() == ErrorKind::Config {
            StatusCode::SERVICE_UNAVAILABLE
        } else if self.0.kind() == ErrorKind::TooLarge {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = ?self.0, "session store unavailable");
        } else {
            tracing::error!(error = ?self.0, "session error");
        }
        let body = if status == StatusCode::SERVICE_UNAVAILABLE {
            "Service temporarily unavailable, please retry shortly.\n"
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            "Request too large.\n"
        } else {
            "Internal server error.\n"
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_gets_its_status() {
        let status = |kind| SessionRejection(Error::new(kind, "x")).status();
        assert_eq!(
            status(ErrorKind::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(ErrorKind::Corrupt), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(ErrorKind::TooLarge), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            status(ErrorKind::NoSession),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let response =
            SessionRejection(Error::new(ErrorKind::TooLarge, "secret detail")).into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
