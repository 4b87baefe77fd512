//! `sessions list` and `sessions end`: a user's sessions through the per-user index, as the
//! application's "your sessions" page sees them.

use std::process::ExitCode;

use anyhow::bail;
use cloakroom::UserSession;

use crate::connect::Admin;
use crate::time::date;

/// Prints the live sessions of `user`, oldest first.
pub(crate) async fn list(admin: &Admin, user: &str, json: bool) -> anyhow::Result<()> {
    let sessions = admin.manager.sessions_of(user).await?;
    if json {
        let listed: Vec<serde_json::Value> = sessions
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.key.short(),
                    "created_ms": s.created_ms,
                    "last_seen_ms": s.last_seen_ms,
                    "idle_deadline_ms": s.idle_deadline_ms,
                    "deadline_ms": s.deadline_ms,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    if sessions.is_empty() {
        println!("no live session of {user}");
        return Ok(());
    }
    println!(
        "{:<10} {:<30} {:<30} {:<30} ENDS AT THE LATEST",
        "ID", "CREATED", "LAST SEEN", "ENDS IF UNUSED"
    );
    for s in &sessions {
        println!(
            "{:<10} {:<30} {:<30} {:<30} {}",
            s.key.short(),
            date(s.created_ms),
            date(s.last_seen_ms),
            date(s.idle_deadline_ms),
            date(s.deadline_ms)
        );
    }
    Ok(())
}

/// Ends sessions of `user`: the one named `id`, every one but `except`, or all.
pub(crate) async fn end(
    admin: &Admin,
    user: &str,
    id: Option<&str>,
    except: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let manager = &admin.manager;
    if id.is_none() && except.is_none() {
        let ended = manager.end_sessions_of(user).await?;
        println!("ended {ended} session(s) of {user}");
        return Ok(ExitCode::SUCCESS);
    }
    let sessions = manager.sessions_of(user).await?;
    if let Some(id) = id {
        let session = named(&sessions, id)?;
        let Some(session) = session else {
            eprintln!("{user} has no live session {id}");
            return Ok(ExitCode::FAILURE);
        };
        if !manager.end_session_of(user, &session.key).await? {
            eprintln!("session {id} of {user} had already ended");
            return Ok(ExitCode::FAILURE);
        }
        println!("ended session {id} of {user}");
        return Ok(ExitCode::SUCCESS);
    }
    let kept = except.unwrap_or_default();
    let Some(kept) = named(&sessions, kept)? else {
        // Ending "all but a session that does not exist" would end all: refuse instead.
        eprintln!("{user} has no live session {kept}: nothing was ended");
        return Ok(ExitCode::FAILURE);
    };
    let mut ended = 0;
    for session in sessions.iter().filter(|s| s.key != kept.key) {
        if manager.end_session_of(user, &session.key).await? {
            ended += 1;
        }
    }
    println!(
        "ended {ended} session(s) of {user}, kept {}",
        kept.key.short()
    );
    Ok(ExitCode::SUCCESS)
}

// The session `id` names: its safe id (or its whole key).
fn named<'a>(sessions: &'a [UserSession], id: &str) -> anyhow::Result<Option<&'a UserSession>> {
    let id = id.trim();
    let mut found = sessions
        .iter()
        .filter(|s| s.key.short() == id || s.key.as_str() == id);
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some(session), None) => Ok(Some(session)),
        // 48 bits make this all but impossible; if it happens, say so rather than guess.
        (Some(_), Some(_)) => bail!("{id} names several sessions: give the whole key"),
    }
}
