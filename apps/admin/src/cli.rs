//! The command line, as clap reads it.

use clap::{Parser, Subcommand};

/// Sessions of a cloakroom application in Redis, for operators and support staff.
///
/// Reads the application's environment: REDIS_URL (or --redis-url: redis://, rediss://, any
/// node of a cluster, or redis+sentinel://host:port,host:port/SERVICE), REDIS_CA_FILE,
/// REDIS_CLUSTER, REDIS_TIMEOUT_MS, REDIS_TLS_INSECURE; REDIS_IAM_USER and AWS_REGION (and
/// REDIS_IAM_CACHE_NAME) for ElastiCache IAM authentication; SECRET_KEY (with
/// SECRET_KEY_PREVIOUS, SECRET_KEY_PREVIOUS_UNTIL and SECRET_KEY_NEXT) to read a cookie;
/// SESSION_TTL for idle deadlines. Exit status: 0 done, 1 failed or not found, 2 bad usage. A session is named by its safe id: the first characters of the hash that names
/// it in Redis, never its cookie. Safe ids may begin with `-`: they are read as values.
#[derive(Debug, Parser)]
#[command(name = "cloakroom-admin", version)]
pub(crate) struct Cli {
    /// The Redis the application uses: redis://, rediss:// (TLS), with user:password@ for ACL
    /// auth; any node of a cluster.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub(crate) redis_url: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List or end a user's sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Look at one session.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Count what the store holds: live sessions, bytes per session, TTL spread, sessions
    /// without a TTL, index sizes. Scans every primary (SCAN, never KEYS); not for request paths.
    Stats {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check the deployment: connectivity, TLS, the Redis user's permissions, the eviction
    /// policy and maxmemory, the server's version, the cluster's health. Exits non-zero only
    /// for what breaks cloakroom; advice is a warning. It writes: a session of a user of its own
    /// (`cloakroom-admin-check-…`) is created, counted, listed and ended.
    Check,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// The user's live sessions: safe id, created, last seen, idle and absolute deadlines.
    List {
        /// The user's id, as the application bound it at login (`Session::set_user`).
        #[arg(long, allow_hyphen_values = true)]
        user: String,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End the user's sessions: all of them, all but one (--except), or one (--id).
    End {
        /// The user's id, as the application bound it at login.
        #[arg(long, allow_hyphen_values = true)]
        user: String,
        /// End only this session (its safe id, as `sessions list` shows it).
        #[arg(
            long,
            value_name = "SAFE_ID",
            conflicts_with = "except",
            allow_hyphen_values = true
        )]
        id: Option<String>,
        /// End every session but this one (its safe id).
        #[arg(long, value_name = "SAFE_ID", allow_hyphen_values = true)]
        except: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// Verify a session cookie with SECRET_KEY and show its session's fields, without
    /// extending it.
    Show {
        /// The cookie's value, or the whole `name=value` pair as a browser shows it; `-` reads
        /// it from standard input (it then stays out of the shell's history and `ps`).
        #[arg(long, value_name = "VALUE", allow_hyphen_values = true)]
        cookie: String,
    },
}
