//! `session show --cookie VALUE`: what a user's cookie names, for support staff.

use std::process::ExitCode;

use anyhow::bail;
use cloakroom::Inspection;
use cloakroom::store::{META_CREATED, META_DEADLINE, META_TOUCHED, META_USER, RESERVED_PREFIX};

use crate::connect::Admin;
use crate::time::date;

/// Verifies the cookie with the configured keys and prints its session, without extending it.
pub(crate) async fn show(admin: &Admin, cookie: &str) -> anyhow::Result<ExitCode> {
    if std::env::var("SECRET_KEY").map_or(true, |key| key.is_empty()) {
        bail!("SECRET_KEY is not set: a cookie can only be verified with the application's key");
    }
    // `-`: read from standard input, so that a live cookie stays out of the shell's history and
    // of the process list.
    let read;
    let cookie = if cookie == "-" {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        read = line;
        read.as_str()
    } else {
        cookie
    };
    // The value alone, whether given as `name=value` or bare.
    let value = cookie
        .trim()
        .split_once('=')
        .map_or(cookie.trim(), |(_, value)| value);
    match admin.manager.inspect_cookie(value).await? {
        Inspection::Live { key, fields } => {
            println!("session {}: live", key.short());
            let at = |name: &str| {
                fields
                    .get(name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or_else(|| "-".to_owned(), date)
            };
            println!("  created      {}", at(META_CREATED));
            println!("  last seen    {}", at(META_TOUCHED));
            println!("  ends at      {} at the latest", at(META_DEADLINE));
            if let Some(user) = fields.get(META_USER) {
                println!("  user key     {}", printable(user));
            }
            let mut names: Vec<&String> = fields
                .keys()
                .filter(|name| !name.starts_with(RESERVED_PREFIX))
                .collect();
            names.sort();
            println!("  fields");
            for name in names {
                // Escaped: a field's text must not drive the terminal (escape sequences).
                let value = fields.get(name).map_or(String::new(), |v| printable(v));
                println!("    {} = {value}", printable(name));
            }
            Ok(ExitCode::SUCCESS)
        }
        Inspection::Ended { key } => {
            println!(
                "session {}: the cookie is valid, but its session has ended",
                key.short()
            );
            Ok(ExitCode::FAILURE)
        }
        _ => {
            println!("the cookie is not signed by SECRET_KEY (or a key still accepted)");
            Ok(ExitCode::FAILURE)
        }
    }
}

// `text` with its control characters (escape sequences among them) written as escapes.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
