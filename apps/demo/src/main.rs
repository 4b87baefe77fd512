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
    cloakroom_demo::logging::init_logging()?;
    let Settings {
        bind,
        manager,
        metrics_bind,
    } = Settings::from_env(PROGRAM).await?;
    if let Some(metrics_bind) = metrics_bind {
        let shown = cloakroom_demo::metrics_endpoint::serve(metrics_bind).await?;
        println!("{PROGRAM}: metrics on http://{shown}/metrics");
    }
    let app = cloakroom_demo::axum_app::app(SessionLayer::from_manager(manager));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    // The address actually bound: the same as `BIND` unless it asked for port 0.
    let shown = listener.local_addr().unwrap_or(bind);
    println!("{PROGRAM}: listening on http://{shown}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

// Ctrl-C or SIGTERM (what a service manager or a container runtime sends), as actix-web stops.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
