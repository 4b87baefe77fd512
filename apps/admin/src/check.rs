//! `check`: is this deployment fit for cloakroom? A line per point; the exit status is
//! non-zero only for what breaks cloakroom, and advice is a warning, so that a default
//! `redis-server` on a developer's machine passes.

use std::process::ExitCode;

use cloakroom::{SessionManager, adapter};
use cloakroom_demo::settings::{redacted, redis_builder_from_env};

use crate::connect::{manager_over, required_url};

// What one point came to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, verdict: Verdict, point: &str, text: &str) {
        let mark = match verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        self.failed |= verdict == Verdict::Fail;
        println!("{mark}  {point:<12} {text}");
    }
}

pub(crate) async fn check(url: &Option<String>) -> anyhow::Result<ExitCode> {
    let url = required_url(url)?;
    let mut report = Report { failed: false };
    let tls = url.starts_with("rediss://") || url.starts_with("rediss+sentinel://");
    let sentinel = url.contains("+sentinel://");
    // Connecting proves reachability, TLS, authentication and the right to run scripts (the
    // store loads its scripts on every primary when it connects).
    let store = match redis_builder_from_env(url).await?.connect().await {
        Ok(store) => store,
        Err(e) => {
            report.line(
                Verdict::Fail,
                "connect",
                &format!("{}: {}", redacted(url), chain(&e)),
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let shape = if store.is_cluster() {
        "cluster"
    } else if sentinel {
        "primary found through Sentinel"
    } else {
        "standalone"
    };
    let transport = if tls { "TLS" } else { "plain TCP, no TLS" };
    report.line(
        Verdict::Ok,
        "connect",
        &format!("{} ({shape}, {transport}; scripts loaded)", redacted(url)),
    );
    if !tls {
        let local = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|host| url.contains(&format!("@{host}")) || url.contains(&format!("//{host}")));
        if !local {
            report.line(
                Verdict::Warn,
                "tls",
                "the connection is not encrypted: use rediss:// across a network",
            );
        }
    }

    match store.server_info().await {
        Ok(info) => {
            report.line(
                Verdict::Ok,
                "server",
                &format!(
                    "{} {} ({} primar{})",
                    info.server,
                    info.version,
                    info.primaries,
                    if info.primaries == 1 { "y" } else { "ies" }
                ),
            );
            let major = info
                .version
                .split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok());
            if info.server == "redis" && major.is_some_and(|m| m < 6) {
                report.line(
                    Verdict::Warn,
                    "version",
                    "Redis before 6 lacks ACLs and client tracking (the near-cache)",
                );
            }
            match info.cluster_state.as_deref() {
                None => {}
                Some("ok") => report.line(Verdict::Ok, "cluster", "cluster_state:ok"),
                Some(state) => report.line(
                    Verdict::Fail,
                    "cluster",
                    &format!("cluster_state:{state}: some slots are not served"),
                ),
            }
        }
        Err(e) => report.line(
            Verdict::Warn,
            "server",
            &format!("cannot read INFO server or CLUSTER INFO: {}", chain(&e)),
        ),
    }

    let manager = manager_over(&store)?;
    match permissions(&manager).await {
        Ok(()) => report.line(
            Verdict::Ok,
            "permissions",
            "a session was created, bound to a user, counted, listed, read and ended",
        ),
        Err((step, e)) => report.line(
            Verdict::Fail,
            "permissions",
            &format!(
                "{step} failed: {}; grant the Redis user the commands listed in OPERATIONS.md",
                chain(&e)
            ),
        ),
    }

    match store.eviction_policy().await {
        Ok(Some(policy)) => {
            let name = &policy.name;
            if policy.maxmemory == 0 {
                report.line(
                    Verdict::Warn,
                    "maxmemory",
                    &format!(
                        "no maxmemory set: Redis grows until the machine runs out (policy \
                         {name}, applies once one is set)"
                    ),
                );
            } else {
                report.line(
                    Verdict::Ok,
                    "maxmemory",
                    &format!("{} bytes", policy.maxmemory),
                );
            }
            if policy.keeps_user_indexes() {
                report.line(
                    Verdict::Ok,
                    "eviction",
                    &format!("{name}: user indexes are never evicted before their sessions"),
                );
            } else if policy.maxmemory == 0 {
                report.line(
                    Verdict::Warn,
                    "eviction",
                    &format!(
                        "{name} would evict user indexes once maxmemory is set: use \
                         volatile-lru (or another volatile-*) or noeviction"
                    ),
                );
            } else {
                report.line(
                    Verdict::Fail,
                    "eviction",
                    &format!(
                        "{name} can evict a user's index while the sessions live on, and \"log \
                         out everywhere\" would miss them: use volatile-lru (or another \
                         volatile-*) or noeviction"
                    ),
                );
            }
        }
        Ok(None) => report.line(
            Verdict::Warn,
            "eviction",
            "the server does not report its eviction policy",
        ),
        Err(e) => report.line(
            Verdict::Warn,
            "eviction",
            &format!(
                "cannot read INFO memory ({}); grant +info to check it",
                chain(&e)
            ),
        ),
    }
    Ok(if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

// What a request path does, on a session and a user of its own: proves the Redis user may run
// every command cloakroom's scripts run, and needs nothing else. A failure names the step.
async fn permissions(manager: &SessionManager) -> Result<(), (&'static str, cloakroom::Error)> {
    let at = |step: &'static str| move |e: cloakroom::Error| (step, e);
    let user = format!(
        "cloakroom-admin-check-{}",
        cloakroom::SessionToken::generate()
            .map_err(at("a random id"))?
            .key()
            .short()
    );
    let outcome = life(manager, &user).await;
    if outcome.is_err() {
        // Leave nothing behind, as far as the permissions allow.
        let _ = manager.end_sessions_of(&user).await;
    }
    outcome
}

// A session's life, as a request path lives it, for `user`.
async fn life(
    manager: &SessionManager,
    user: &str,
) -> Result<(), (&'static str, cloakroom::Error)> {
    let at = |step: &'static str| move |e: cloakroom::Error| (step, e);
    let login = adapter::session_from_cookie_headers(manager, []);
    let step = "a login (an entry in the user's index, then the session)";
    login.start().map_err(at(step))?;
    login.set_user(user).map_err(at(step))?;
    login.insert("check", true).map_err(at(step))?;
    login.save().await.map_err(at(step))?;
    let step = "a counted visit (an increment that slides the TTL)";
    login.incr("visits", 1).await.map_err(at(step))?;
    adapter::finish(&login).await.map_err(at(step))?;
    let step = "reading the user's sessions";
    manager.sessions_of(user).await.map_err(at(step))?;
    let step = "ending the user's sessions";
    manager.end_sessions_of(user).await.map_err(at(step))?;
    Ok(())
}

// An error and its causes on one line: the cause names the command a Redis user lacks.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their cause's text.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
