//! Peer C: axum + tower-sessions + tower-sessions-redis-store (a fred pool).
//!
//! The session layer loads the whole record (`GET`), the handler changes it in memory, and the
//! layer writes the whole record back (`SET ... EXAT ... XX`): a read-modify-write, so two
//! concurrent requests of one user can overwrite each other's change.
use axum::{
    Router,
    extract::Form,
    http::StatusCode,
    response::{Html, Redirect},
    routing::get,
};
use serde::Deserialize;
use time::Duration;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::{RedisStore, fred::prelude::*};
use tutorial::{LOGIN_FORM, NOT_LOGGED_IN, Settings, visits_page, whoami_page};

const USERNAME: &str = "username";
const VISITS: &str = "visits";

type Res<T> = Result<T, StatusCode>;

// The error goes to the log, not to the response body.
fn failed(e: impl std::fmt::Display) -> StatusCode {
    eprintln!("session store error: {e}");
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn index(session: Session) -> Res<Html<String>> {
    let Some(name) = session.get::<String>(USERNAME).await.map_err(failed)? else {
        return Ok(Html(NOT_LOGGED_IN.to_owned()));
    };
    let visits = session
        .get::<i64>(VISITS)
        .await
        .map_err(failed)?
        .unwrap_or(0)
        + 1;
    session.insert(VISITS, visits).await.map_err(failed)?;
    Ok(Html(visits_page(&name, visits)))
}

/// The read-only check: reads the username and counts no visit. Whatever the layer writes back
/// afterwards (to slide the expiry) is the library's choice, and the harness measures it.
async fn whoami(session: Session) -> Res<Html<String>> {
    Ok(Html(
        match session.get::<String>(USERNAME).await.map_err(failed)? {
            Some(name) => whoami_page(&name),
            None => NOT_LOGGED_IN.to_owned(),
        },
    ))
}

async fn login_form() -> Html<&'static str> {
    Html(LOGIN_FORM)
}

#[derive(Deserialize)]
struct Login {
    username: String,
}

async fn login(session: Session, Form(form): Form<Login>) -> Res<Redirect> {
    session
        .insert(USERNAME, form.username)
        .await
        .map_err(failed)?;
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Res<Redirect> {
    session.flush().await.map_err(failed)?;
    Ok(Redirect::to("/"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_env()?;
    // A pool of 6 connections, as in tower-sessions-redis-store's example.
    let pool = Pool::new(Config::from_url(&settings.redis_url)?, None, None, None, 6)?;
    pool.init().await?;

    let layer = SessionManagerLayer::new(RedisStore::new(pool))
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(Duration::seconds(settings.ttl_secs)));

    let app = Router::new()
        .route("/", get(index))
        .route("/whoami", get(whoami))
        .route("/login", get(login_form).post(login))
        .route("/logout", get(logout))
        .layer(layer);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
