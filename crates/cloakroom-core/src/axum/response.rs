//! The HTTP face of a session error.

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CACHE_CONTROL, HeaderValue, RETRY_AFTER};

use crate::adapter;
use crate::error::Error;

impl Error {
    /// The status an HTTP layer answers this error with: 503 for anything wrong with the store
    /// (unreachable, erroring, holding unreadable data, refusing our credentials after a
    /// reconnect), 413 for data past the configured limits (most often a client's form field
    /// stored in the session), 500 for a mistake in the handler's own use of the session.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The response [`adapter::error_reply`] describes: a short generic body chosen by status,
/// `Cache-Control: no-store`, and `Retry-After: 1` on a 503. The error itself goes to the log,
/// never to the client.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let reply = adapter::error_reply(&self);
        let mut response = (self.status(), reply.body).into_response();
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if reply.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn each_kind_of_error_gets_its_status() -> Result<(), Box<dyn std::error::Error>> {
        let status = |kind| Error::new(kind, "x").status();
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
        let response = Error::new(ErrorKind::Unavailable, "secret detail").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let header = |name| response.headers().get(name).map(|v| v.as_bytes());
        assert_eq!(header(RETRY_AFTER), Some(&b"1"[..]));
        assert_eq!(header(CACHE_CONTROL), Some(&b"no-store"[..]));
        // The body is the generic text, never the error's.
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        let collected = runtime.block_on(http_body_util::BodyExt::collect(response.into_body()))?;
        let body = collected.to_bytes();
        assert_eq!(
            &body[..],
            b"Service temporarily unavailable, please retry shortly.\n"
        );
        Ok(())
    }
}
