//! `cloakroom-admin`: list and end a user's sessions, inspect a cookie, count what the store
//! holds and check a deployment, against the Redis the application uses. It reads the same
//! environment as the demo (`REDIS_URL`, `REDIS_CA_FILE`, `REDIS_CLUSTER`, `REDIS_TIMEOUT_MS`,
//! `REDIS_TLS_INSECURE`, `SECRET_KEY`, ...). Run `cloakroom-admin --help`.

mod check;
mod cli;
mod connect;
mod sessions;
mod show;
mod stats;
mod time;

use clap::Parser as _;

use crate::cli::{Cli, Command, SessionCommand, SessionsCommand};

const PROGRAM: &str = "cloakroom-admin";

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Warnings of the library (an eviction policy, a missing permission) go to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{PROGRAM}: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // The whole chain of causes on one line.
            eprintln!("{PROGRAM}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match cli.command {
        Command::Sessions(SessionsCommand::List { user, json }) => {
            let admin = connect::Admin::connect(&cli.redis_url).await?;
            sessions::list(&admin, &user, json).await?;
            Ok(ok)
        }
        Command::Sessions(SessionsCommand::End { user, id, except }) => {
            let admin = connect::Admin::connect(&cli.redis_url).await?;
            sessions::end(&admin, &user, id.as_deref(), except.as_deref()).await
        }
        Command::Session(SessionCommand::Show { cookie }) => {
            let admin = connect::Admin::connect(&cli.redis_url).await?;
            show::show(&admin, &cookie).await
        }
        Command::Stats { json } => {
            let admin = connect::Admin::connect(&cli.redis_url).await?;
            stats::stats(&admin, json).await?;
            Ok(ok)
        }
        Command::Check => check::check(&cli.redis_url).await,
    }
}
