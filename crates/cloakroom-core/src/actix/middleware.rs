//! The actix-web middleware: a `Transform` and the service it wraps each app's routes in.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{CACHE_CONTROL, COOKIE, HeaderValue, SET_COOKIE, VARY};
use actix_web::{HttpMessage, ResponseError};

use crate::adapter::{self, Finished};
use crate::builder::SessionBuilder;
use crate::error::{Error, ErrorKind, Result};
use crate::session::SessionManager;
use crate::store::Store;

/// Adds a [`Session`](crate::Session) to every request and saves it when the handler has returned; the
/// actix-web counterpart of the axum `SessionLayer`, with the same guarantees.
///
/// The session is looked up lazily, on the handler's first use. When the handler has returned,
/// the middleware writes the session's delta once (in a task of its own, so a client that goes
/// away cannot cancel a logout), sets or clears the cookie only when needed, and marks responses
/// that used the session `Cache-Control: no-store` (unless the handler said `private` or
/// `no-store`) and `Vary: Cookie`. A failure becomes the [`Error`]'s response: a status and a
/// generic body, never the error's text.
///
/// # Examples
///
/// ```no_run
/// use actix_web::{App, HttpServer, web};
/// use cloakroom_core::actix::SessionMiddleware;
/// use cloakroom_core::{MemoryStore, Session};
///
/// async fn index(session: Session) -> Result<String, cloakroom_core::Error> {
///     let visits = session.incr("visits", 1).await?;
///     Ok(format!("{visits:?}"))
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let sessions = SessionMiddleware::builder(MemoryStore::new(), std::env::var("SECRET_KEY")?)
///     .build()?;
/// HttpServer::new(move || {
///     App::new()
///         .wrap(sessions.clone())
///         .route("/", web::get().to(index))
/// })
/// .bind("127.0.0.1:3000")?
/// .run()
/// .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SessionMiddleware {
    manager: SessionManager,
}

/// Builds a [`SessionMiddleware`]: see [`SessionMiddleware::builder`].
pub type SessionMiddlewareBuilder = SessionBuilder<SessionMiddleware>;

impl SessionMiddleware {
    /// Starts a middleware over `store` (taken by value; an `Arc` of a store is a store too)
    /// whose cookies are signed with `secret` (at least
    /// [`CookieSigner::MIN_SECRET_LEN`](crate::CookieSigner::MIN_SECRET_LEN) bytes). Options are
    /// chained; the first mistake is reported once, by [`SessionBuilder::build`].
    pub fn builder(store: impl Store, secret: impl AsRef<[u8]>) -> SessionMiddlewareBuilder {
        SessionBuilder::new(store, secret)
    }

    /// A middleware from an existing manager (one manager can serve an axum layer and this
    /// middleware at once).
    pub fn from_manager(manager: SessionManager) -> Self {
        Self { manager }
    }

    /// The manager behind the middleware.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }
}

impl From<SessionManager> for SessionMiddleware {
    fn from(manager: SessionManager) -> Self {
        Self { manager }
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionMiddlewareService<S>;
    type InitError = ();
    type Future = Ready<std::result::Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionMiddlewareService {
            service: Rc::new(service),
            manager: self.manager.clone(),
        }))
    }
}

/// The service [`SessionMiddleware`] wraps an app's routes in.
#[derive(Debug)]
pub struct SessionMiddlewareService<S> {
    // Shared with the request futures, which outlive the borrow `call` gets.
    service: Rc<S>,
    manager: SessionManager,
}

type Reply<B> = std::result::Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

impl<S, B> Service<ServiceRequest> for SessionMiddlewareService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Reply<B>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        // As bytes: another cookie in the same header may not be ASCII, and must not hide ours.
        let headers = request.headers();
        let session_headers = self
            .manager
            .config()
            .session_header()
            .into_iter()
            .flat_map(|name| headers.get_all(name).map(HeaderValue::as_bytes));
        let session = adapter::session_from_headers(
            &self.manager,
            headers.get_all(COOKIE).map(HeaderValue::as_bytes),
            session_headers,
        );
        request.extensions_mut().insert(session.clone());
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            // An error the routes did not turn into a response (one from a middleware inside
            // this one) goes on unchanged, and nothing the request changed is written: without a
            // response, a new cookie could not reach the client, as with the axum layer.
            let response = service.call(request).await?;
            // Writing runs in its own task: if the client goes away now and actix-web drops this
            // request's future, the logout's delete or the rotation's second step still happens.
            let finished = adapter::finish_detached(session).await;
            Ok(finish(finished, response))
        })
    }
}

fn finish<B>(
    finished: Result<Finished>,
    mut response: ServiceResponse<B>,
) -> ServiceResponse<EitherBody<B>> {
    let failed = |response: ServiceResponse<B>, e: Error| {
        response
            .into_response(e.error_response())
            .map_into_right_body()
    };
    let finished = match finished {
        Ok(finished) => finished,
        Err(e) => return failed(response, e),
    };
    let headers = response.headers_mut();
    if let Some(cookie) = &finished.set_cookie {
        match HeaderValue::from_str(cookie.header_value()) {
            Ok(value) => headers.append(SET_COOKIE, value),
            Err(e) => {
                let e = Error::with_source(
                    ErrorKind::Encode,
                    "the session cookie is not a valid header value",
                    e,
                );
                return failed(response, e);
            }
        }
    }
    let marks = finished.cache_marks(
        headers.contains_key(SET_COOKIE),
        headers.get(CACHE_CONTROL).map(HeaderValue::as_bytes),
    );
    if let Some(value) = marks.cache_control {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(value));
    }
    if let Some(vary) = marks.vary.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.append(VARY, vary);
    }
    response.map_into_left_body()
}
