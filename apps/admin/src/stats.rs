//! `stats`: what the store holds, by a scan of every primary.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};

use crate::connect::Admin;
use crate::time::span;

/// Scans the store and prints what it holds; a progress line on a terminal.
pub(crate) async fn stats(admin: &Admin, json: bool) -> anyhow::Result<()> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} scanned {pos} keys ({per_sec})")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let inventory = admin.store.inventory(|seen| bar.set_position(seen)).await?;
    bar.finish_and_clear();
    let per_session =
        |total: u64| (inventory.sessions > 0).then(|| total as f64 / inventory.sessions as f64);
    let bytes_per_session = inventory.session_bytes.and_then(per_session);
    let fields_per_session = per_session(inventory.session_fields);
    let ttl = |q: f64| inventory.ttl_quantile(q).map(|d| d.as_millis() as u64);
    if json {
        let report = serde_json::json!({
            "primaries": inventory.primaries,
            "sessions": inventory.sessions,
            "sessions_without_ttl": inventory.sessions_without_ttl,
            "bytes_per_session": bytes_per_session,
            "fields_per_session": fields_per_session,
            "ttl_ms": {
                "min": ttl(0.0), "p50": ttl(0.5), "p90": ttl(0.9), "max": ttl(1.0),
            },
            "indexes": inventory.indexes,
            "index_entries": inventory.index_entries,
            "largest_index": inventory.largest_index,
            "other_keys": inventory.other_keys,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("primaries scanned      {}", inventory.primaries);
    println!("live sessions          {}", inventory.sessions);
    let verdict = if inventory.sessions_without_ttl == 0 {
        "(must be 0)"
    } else {
        "(must be 0: something other than cloakroom wrote these keys)"
    };
    println!(
        "sessions without a TTL {} {verdict}",
        inventory.sessions_without_ttl
    );
    match bytes_per_session {
        Some(bytes) => println!("bytes per session      {bytes:.0} (MEMORY USAGE)"),
        None if inventory.session_bytes.is_none() => {
            println!("bytes per session      unknown (the Redis user may not run MEMORY USAGE)");
        }
        None => println!("bytes per session      -"),
    }
    if let Some(fields) = fields_per_session {
        println!("fields per session     {fields:.1} (reserved ones included)");
    }
    let spread = [0.0, 0.5, 0.9, 1.0].map(|q| {
        inventory
            .ttl_quantile(q)
            .map_or_else(|| "-".to_owned(), span)
    });
    println!(
        "TTL left               min {}, p50 {}, p90 {}, max {}",
        spread[0], spread[1], spread[2], spread[3]
    );
    println!(
        "user indexes           {} ({} entries, largest {})",
        inventory.indexes, inventory.index_entries, inventory.largest_index
    );
    if inventory.other_keys > 0 {
        println!(
            "other keys             {} under the prefix, not written by cloakroom",
            inventory.other_keys
        );
    }
    Ok(())
}
