//! The HTTP face of a session error, for actix-web.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};

use crate::adapter;
use crate::error::Error;

/// The response [`adapter::error_reply`] describes: a short generic body chosen by status
/// (503 for a store failure, 413 for a limit, 500 for misuse), `Cache-Control: no-store`, and
/// `Retry-After: 1` on a 503. The error itself goes to the log, never to the client.
impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let reply = adapter::error_reply(self);
        let mut response = HttpResponse::build(ResponseError::status_code(self));
        response
            .content_type("text/plain; charset=utf-8")
            .insert_header((CACHE_CONTROL, "no-store"));
        if reply.retry_after {
            response.insert_header((RETRY_AFTER, "1"));
        }
        response.body(reply.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn each_kind_of_error_gets_its_status_and_a_generic_body()
    -> Result<(), Box<dyn std::error::Error>> {
        let status = |kind| ResponseError::status_code(&Error::new(kind, "x"));
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
        let response = Error::new(ErrorKind::Unavailable, "secret detail").error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let header = |name| response.headers().get(name).map(|v| v.as_bytes().to_vec());
        assert_eq!(header(RETRY_AFTER), Some(b"1".to_vec()));
        assert_eq!(header(CACHE_CONTROL), Some(b"no-store".to_vec()));
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        let body = runtime
            .block_on(actix_web::body::to_bytes(response.into_body()))
            .map_err(|e| format!("{e:?}"))?;
        assert_eq!(
            &body[..],
            b"Service temporarily unavailable, please retry shortly.\n"
        );
        Ok(())
    }
}
