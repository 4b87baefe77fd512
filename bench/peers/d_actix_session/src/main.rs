//! Peer D: actix-web + actix-session (`RedisSessionStore` on a redis-rs `ConnectionManager`).
//!
//! The middleware loads the whole session state (`GET`) before the handler and writes it back
//! (`SET ... XX EX`) after it when it changed: a read-modify-write, so two concurrent requests
//! of one user can overwrite each other's change.
use actix_session::{
    Session, SessionMiddleware, config::PersistentSession, storage::RedisSessionStore,
};
use actix_web::{
    App, HttpResponse, HttpServer,
    cookie::{Key, time::Duration},
    http::header,
    web,
};
use serde::Deserialize;
use tutorial::{LOGIN_FORM, NOT_LOGGED_IN, Settings, visits_page, whoami_page};

const USERNAME: &str = "username";
const VISITS: &str = "visits";

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

fn redirect_home() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/"))
        .finish()
}

async fn index(session: Session) -> actix_web::Result<HttpResponse> {
    let Some(name) = session.get::<String>(USERNAME)? else {
        return Ok(html(NOT_LOGGED_IN.to_owned()));
    };
    let visits = session.get::<i64>(VISITS)?.unwrap_or(0) + 1;
    session.insert(VISITS, visits)?;
    Ok(html(visits_page(&name, visits)))
}

/// The read-only check: reads the username and counts no visit, so the state is unchanged.
async fn whoami(session: Session) -> actix_web::Result<HttpResponse> {
    Ok(html(match session.get::<String>(USERNAME)? {
        Some(name) => whoami_page(&name),
        None => NOT_LOGGED_IN.to_owned(),
    }))
}

async fn login_form() -> HttpResponse {
    html(LOGIN_FORM.to_owned())
}

#[derive(Deserialize)]
struct Login {
    username: String,
}

async fn login(session: Session, form: web::Form<Login>) -> actix_web::Result<HttpResponse> {
    session.insert(USERNAME, form.into_inner().username)?;
    Ok(redirect_home())
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    redirect_home()
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let settings = Settings::from_env().map_err(std::io::Error::other)?;
    // A fixed key, so that every worker (and every run) reads the cookies alike.
    let key = Key::from(&[7u8; 64]);
    let store = RedisSessionStore::new(settings.redis_url.as_str())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let ttl = Duration::seconds(settings.ttl_secs);

    HttpServer::new(move || {
        App::new()
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    .cookie_secure(false)
                    // The TTL is set again whenever the state changes: on every `GET /` here.
                    .session_lifecycle(PersistentSession::default().session_ttl(ttl))
                    .build(),
            )
            .route("/", web::get().to(index))
            .route("/whoami", web::get().to(whoami))
            .route("/login", web::get().to(login_form))
            .route("/login", web::post().to(login))
            .route("/logout", web::get().to(logout))
    })
    .bind(("127.0.0.1", settings.port))?
    .run()
    .await
}
