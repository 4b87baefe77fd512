//! `cloakroom-demo-actix`: the tutorial app on actix-web, with exactly `cloakroom-demo`'s
//! routes, texts, forms, environment variables and start-up banner. Its configuration comes from
//! the environment: see [`cloakroom_demo::settings`] (and the README's table).

use anyhow::Context;
use cloakroom::actix::SessionMiddleware;
use cloakroom_demo::settings::Settings;

const PROGRAM: &str = "cloakroom-demo-actix";

fn main() -> std::process::ExitCode {
    // actix-web's own runtime: the store connects on it, and each worker thread runs its own.
    match actix_web::rt::System::new().block_on(run()) {
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
    let sessions = SessionMiddleware::from_manager(manager);
    let server =
        actix_web::HttpServer::new(move || cloakroom_demo::actix_app::app(sessions.clone()))
            .bind(bind)
            .with_context(|| format!("cannot listen on {bind}"))?;
    // The address actually bound: the same as `BIND` unless it asked for port 0.
    let shown = server.addrs().first().copied().unwrap_or(bind);
    println!("{PROGRAM}: listening on http://{shown}/");
    server.run().await?;
    Ok(())
}
