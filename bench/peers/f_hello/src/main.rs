//! Peer F: axum hello world, no session and no Redis: the most requests per second this machine
//! serves over HTTP with the same load, the ceiling every session store is read against.
use axum::{Router, response::Html, routing::get};
use tutorial::Settings;

async fn hello() -> Html<&'static str> {
    Html("Hello, World!")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_env()?;
    let app = Router::new()
        .route("/", get(hello))
        .route("/whoami", get(hello));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
