//! The demo on actix-web: the routes of [`pages`], wrapped in cloakroom's
//! `SessionMiddleware`.

use actix_web::body::MessageBody;
use actix_web::dev::{Service as _, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, web};
use cloakroom::actix::SessionMiddleware;
use cloakroom::{Error, Session};
use tracing::Instrument as _;

use crate::MAX_BODY_BYTES;
use crate::account::{self, SessionsForm};
use crate::api;
use crate::csrf::Csrf;
use crate::pages::{self, LoginForm, Reply};

/// The app's routes, wrapped in `sessions`. Tests drive this app directly.
pub fn app(
    sessions: SessionMiddleware,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let csrf = Csrf::new(sessions.manager().config().is_secure());
    App::new()
        .app_data(web::Data::new(csrf))
        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .wrap(sessions)
        // Wrapped last, so outermost: the session is named on the request's span. The span is
        // entered while the inner services are called, as the session is read from the
        // headers then, and while their future runs.
        .wrap_fn(|request, service| {
            let span = crate::logging::request_span(request.method().as_str(), request.path());
            let response = span.in_scope(|| service.call(request));
            response.instrument(span)
        })
        // Resources, as axum's routes: a method a path does not serve is a 405 with `Allow`,
        // and a GET route answers HEAD.
        .service(get_resource("/", index))
        .service(get_resource("/whoami", whoami))
        .service(get_resource("/login", login_form).route(web::post().to(login)))
        .service(get_resource("/logout", logout).route(web::post().to(logout)))
        .service(get_resource("/sessions", sessions_page))
        .service(web::resource("/sessions/end").route(web::post().to(end_session)))
        .service(web::resource("/sessions/end-others").route(web::post().to(end_other_sessions)))
        .service(web::resource("/api/login").route(web::post().to(api_login)))
        .service(get_resource("/api/me", api_me))
        .service(web::resource("/api/logout").route(web::post().to(api_logout)))
}

// A resource whose GET (and HEAD) is `handler`.
fn get_resource<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
}

fn respond(reply: Reply) -> HttpResponse {
    match reply {
        Reply::Redirect(to) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, to))
            .finish(),
        Reply::NoContent => HttpResponse::NoContent().finish(),
        Reply::Json { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = HttpResponse::build(status);
            response.content_type("application/json");
            if status == StatusCode::UNAUTHORIZED {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            response.body(body)
        }
        Reply::Page(page) => {
            let status =
                StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = HttpResponse::build(status);
            response.content_type("text/html; charset=utf-8");
            if let Some(cookie) = page.set_cookie.and_then(|c| HeaderValue::try_from(c).ok()) {
                response.append_header((header::SET_COOKIE, cookie));
            }
            if page.no_store {
                response.insert_header((header::CACHE_CONTROL, "no-store"));
            }
            response.body(page.html)
        }
    }
}

async fn index(session: Session) -> Result<HttpResponse, Error> {
    pages::index(&session).await.map(respond)
}

async fn whoami(session: Session) -> Result<HttpResponse, Error> {
    pages::whoami(&session).await.map(respond)
}

async fn login_form(csrf: web::Data<Csrf>) -> Result<HttpResponse, Error> {
    pages::login_form(**csrf).map(respond)
}

async fn login(
    session: Session,
    csrf: web::Data<Csrf>,
    request: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Error> {
    let form = body
        .map_err(|e| e.as_response_error().status_code().as_u16())
        .and_then(|body| {
            let content_type = request
                .headers()
                .get(header::CONTENT_TYPE)
                .map(HeaderValue::as_bytes);
            LoginForm::parse(content_type, &body)
        });
    pages::login(&session, **csrf, cookies(&request), form).map(respond)
}

async fn sessions_page(session: Session, csrf: web::Data<Csrf>) -> Result<HttpResponse, Error> {
    account::sessions(&session, **csrf).await.map(respond)
}

// A posted form of the sessions page.
fn sessions_form(
    request: &HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<SessionsForm, u16> {
    body.map_err(|e| e.as_response_error().status_code().as_u16())
        .and_then(|body| {
            let content_type = request
                .headers()
                .get(header::CONTENT_TYPE)
                .map(HeaderValue::as_bytes);
            SessionsForm::parse(content_type, &body)
        })
}

fn cookies(request: &HttpRequest) -> impl Iterator<Item = &[u8]> {
    request
        .headers()
        .get_all(header::COOKIE)
        .map(HeaderValue::as_bytes)
}

async fn end_session(
    session: Session,
    csrf: web::Data<Csrf>,
    request: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Error> {
    let form = sessions_form(&request, body);
    account::end(&session, **csrf, cookies(&request), form)
        .await
        .map(respond)
}

async fn end_other_sessions(
    session: Session,
    csrf: web::Data<Csrf>,
    request: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Error> {
    let form = sessions_form(&request, body);
    account::end_others(&session, **csrf, cookies(&request), form)
        .await
        .map(respond)
}

async fn logout(session: Session) -> HttpResponse {
    respond(pages::logout(&session))
}

async fn api_login(
    session: Session,
    request: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Error> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes);
    let body = body.map_err(|e| e.as_response_error().status_code().as_u16());
    api::login(
        &session,
        content_type,
        body.as_deref().map_err(|&status| status),
    )
    .map(respond)
}

async fn api_me(session: Session) -> Result<HttpResponse, Error> {
    api::me(&session).await.map(respond)
}

async fn api_logout(session: Session) -> HttpResponse {
    respond(api::logout(&session))
}
