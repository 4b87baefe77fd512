//! Peer E: the floor. No session library: one Redis HASH per random token (cookie `sid`) and
//! one multiplexed redis-rs `ConnectionManager` shared by every request, so that each route
//! costs exactly one round trip to Redis:
//!
//! * `GET /`: one pipeline `HINCRBY visits 1` + `EXPIRE` + `HGET username`;
//! * `GET /whoami`: one pipeline `HGET username` + `EXPIRE`.
//!
//! What any session store has to do for these routes costs at least this much; the other peers
//! are read as a fraction of it.
use axum::{
    Router,
    extract::{Form, State},
    http::StatusCode,
    response::{Html, Redirect},
    routing::get,
};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use redis::{AsyncCommands, aio::ConnectionManager};
use serde::Deserialize;
use tutorial::{LOGIN_FORM, NOT_LOGGED_IN, Settings, visits_page, whoami_page};

const COOKIE: &str = "sid";

#[derive(Clone)]
struct AppState {
    redis: ConnectionManager,
    ttl_secs: i64,
}

type Res<T> = Result<T, StatusCode>;

// The error goes to the log, not to the response body.
fn failed(e: impl std::fmt::Display) -> StatusCode {
    eprintln!("redis error: {e}");
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn index(State(st): State<AppState>, jar: CookieJar) -> Res<Html<String>> {
    let Some(token) = jar.get(COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(Html(NOT_LOGGED_IN.to_owned()));
    };
    let mut conn = st.redis.clone();
    let (visits, name): (i64, Option<String>) = redis::pipe()
        .hincr(&token, "visits", 1)
        .expire(&token, st.ttl_secs)
        .ignore()
        .hget(&token, "username")
        .query_async(&mut conn)
        .await
        .map_err(failed)?;
    Ok(Html(match name {
        Some(name) => visits_page(&name, visits),
        None => {
            // An unknown or expired token: the HINCRBY just created a key, so delete it again.
            // A second round trip, but only on this cold path.
            let _: () = conn.del(&token).await.map_err(failed)?;
            NOT_LOGGED_IN.to_owned()
        }
    }))
}

/// The read-only check, the floor of a read: `EXPIRE` never creates a key, so an unknown token
/// leaves nothing behind.
async fn whoami(State(st): State<AppState>, jar: CookieJar) -> Res<Html<String>> {
    let Some(token) = jar.get(COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(Html(NOT_LOGGED_IN.to_owned()));
    };
    let mut conn = st.redis.clone();
    let (name,): (Option<String>,) = redis::pipe()
        .hget(&token, "username")
        .expire(&token, st.ttl_secs)
        .ignore()
        .query_async(&mut conn)
        .await
        .map_err(failed)?;
    Ok(Html(match name {
        Some(name) => whoami_page(&name),
        None => NOT_LOGGED_IN.to_owned(),
    }))
}

async fn login_form() -> Html<&'static str> {
    Html(LOGIN_FORM)
}

#[derive(Deserialize)]
struct Login {
    username: String,
}

async fn login(
    State(st): State<AppState>,
    jar: CookieJar,
    Form(form): Form<Login>,
) -> Res<(CookieJar, Redirect)> {
    let token = format!("{:032x}", rand::random::<u128>());
    let mut conn = st.redis.clone();
    let _: () = redis::pipe()
        .hset(&token, "username", &form.username)
        .ignore()
        .expire(&token, st.ttl_secs)
        .ignore()
        .query_async(&mut conn)
        .await
        .map_err(failed)?;
    let cookie = Cookie::build((COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax);
    Ok((jar.add(cookie), Redirect::to("/")))
}

async fn logout(State(st): State<AppState>, jar: CookieJar) -> Res<(CookieJar, Redirect)> {
    if let Some(c) = jar.get(COOKIE) {
        let mut conn = st.redis.clone();
        let _: () = conn.del(c.value()).await.map_err(failed)?;
    }
    Ok((
        jar.remove(Cookie::build(COOKIE).path("/")),
        Redirect::to("/"),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_env()?;
    let redis = redis::Client::open(settings.redis_url)?
        .get_connection_manager()
        .await?;
    let state = AppState {
        redis,
        ttl_secs: settings.ttl_secs,
    };

    let app = Router::new()
        .route("/", get(index))
        .route("/whoami", get(whoami))
        .route("/login", get(login_form).post(login))
        .route("/logout", get(logout))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
