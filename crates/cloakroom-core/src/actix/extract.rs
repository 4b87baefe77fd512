//! [`Session`] as an actix-web extractor.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::session::Session;

/// Error when a handler asks for a [`Session`] but no [`SessionMiddleware`](super::SessionMiddleware)
/// wraps the route: a wiring mistake, answered with a 500 and a log line rather than a silently
/// empty session.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MissingSessionMiddleware;

impl std::fmt::Display for MissingSessionMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no session middleware wraps this route")
    }
}

impl std::error::Error for MissingSessionMiddleware {}

impl ResponseError for MissingSessionMiddleware {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        tracing::error!("a handler asked for a Session but no SessionMiddleware wraps the route");
        HttpResponse::InternalServerError()
            .content_type("text/plain; charset=utf-8")
            .body("Internal server error.\n")
    }
}

impl FromRequest for Session {
    type Error = MissingSessionMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            request
                .extensions()
                .get::<Session>()
                .cloned()
                .ok_or(MissingSessionMiddleware),
        )
    }
}
