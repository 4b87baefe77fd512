//! `cloakroom-demo`: the tutorial app on axum. Its configuration comes from the environment:
//! see [`cloakroom_demo::settings`] (and the README's table).

use anyhow::Context;
use cloakroom::SessionLayer;
use cloakroom_demo::settings::Settings;

const PROGRAM: &str = "cloakroom-demo";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain of causes on one line, without a backtrace.
            eprintln!("{PROGRAM}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    cloakroom_demo::settings::init_logging();
    let Settings { bind, manager } = Settings::from_env(PROGRAM).await?;
    let app = cloakroom_demo::axum_app::app(SessionLayer::from_manager(manager));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    println!("{PROGRAM}: listening on http://{bind}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
