//! `cloakroom-demo` (axum) and `cloakroom-demo-actix` are the same app: started the same way,
//! they print the same banner, refuse the same bad settings with the same words, and answer the
//! tutorial's flow over real HTTP with the same statuses, headers and pages.

use anyhow::{Context, ensure};

use crate::process::{Binary, Exchange, exchange, exchange_with, run_to_exit, start};

/// What must be the same in both apps' answers: the status, the headers a browser or a cache
/// acts on (the cookies without their random values), and the page with its random tokens
/// blanked.
fn comparable(reply: &Exchange) -> String {
    let mut text = format!("{}\n", reply.status);
    for name in [
        "location",
        "content-type",
        "cache-control",
        "vary",
        "retry-after",
        "www-authenticate",
    ] {
        text.push_str(&format!("{name}: {:?}\n", reply.all(name)));
    }
    // The methods a path serves; each framework spells the list its own way.
    let mut allow: Vec<String> = reply
        .all("allow")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|m| m.trim().to_owned())
        .collect();
    allow.sort_unstable();
    text.push_str(&format!("allow: {allow:?}\n"));
    for cookie in reply.all("set-cookie") {
        let (pair, attributes) = cookie.split_once(';').unwrap_or((cookie, ""));
        let name = pair.split('=').next().unwrap_or_default();
        // The order of attributes is the cookie library's; the set is the contract.
        let mut attributes: Vec<&str> = attributes.split(';').map(str::trim).collect();
        attributes.sort_unstable();
        text.push_str(&format!("set-cookie: {name} {attributes:?}\n"));
    }
    let mut body = reply.body.clone();
    for before in ["name=\"csrf\" value=\"", "\"token\":\""] {
        if let Some(start) = body.find(before) {
            let from = start + before.len();
            if let Some(len) = body[from..].find('"') {
                body.replace_range(from..from + len, "TOKEN");
            }
        }
    }
    text.push_str(&body);
    text
}

fn cookie_pair(reply: &Exchange, prefix: &str) -> Option<String> {
    reply
        .all("set-cookie")
        .into_iter()
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(prefix))
        .map(str::to_owned)
}

/// The tutorial's flow as a browser walks it, each answer made comparable.
async fn walk(address: &str) -> anyhow::Result<Vec<String>> {
    let mut seen = Vec::new();
    let anonymous = exchange(address, "GET /", None, "").await?;
    seen.push(comparable(&anonymous));
    let form = exchange(address, "GET /login", None, "").await?;
    seen.push(comparable(&form));
    let csrf = cookie_pair(&form, "__Host-cloakroom-csrf=").context("no CSRF cookie")?;
    let token = form
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("no CSRF field")?;
    let refused = exchange(address, "POST /login", Some(&csrf), "csrf=x&username=ann").await?;
    seen.push(comparable(&refused));
    let blank = exchange(
        address,
        "POST /login",
        Some(&csrf),
        &format!("csrf={token}&username=+"),
    )
    .await?;
    seen.push(comparable(&blank));
    let login = exchange(
        address,
        "POST /login",
        Some(&csrf),
        &format!("csrf={token}&username=%3Cb%3EAnn"),
    )
    .await?;
    seen.push(comparable(&login));
    let session = cookie_pair(&login, "__Host-cloakroom=").context("login set no cookie")?;
    for request in ["GET /", "GET /", "GET /whoami"] {
        seen.push(comparable(
            &exchange(address, request, Some(&session), "").await?,
        ));
    }
    seen.push(comparable(
        &exchange(address, "POST /logout", Some(&session), "").await?,
    ));
    seen.push(comparable(
        &exchange(address, "GET /", Some(&session), "").await?,
    ));
    // What is not a page: a method a path does not serve, a path that does not exist, HEAD.
    for request in [
        "PUT /login",
        "DELETE /",
        "GET /api/login",
        "GET /nowhere",
        "HEAD /whoami",
    ] {
        seen.push(comparable(&exchange(address, request, None, "").await?));
    }
    // The API, with a form body, then the token it gave.
    let api = exchange(address, "POST /api/login", None, "username=ann").await?;
    seen.push(comparable(&api));
    let token: serde_json::Value = serde_json::from_str(&api.body)?;
    let bearer = format!("Bearer {}", token["token"].as_str().context("no token")?);
    for request in ["GET /api/me", "POST /api/logout", "GET /api/me"] {
        let reply = exchange_with(address, request, &[("Authorization", &bearer)], "").await?;
        seen.push(comparable(&reply));
    }
    // "Remember me".
    let form = exchange(address, "GET /login", None, "").await?;
    let csrf = cookie_pair(&form, "__Host-cloakroom-csrf=").context("no CSRF cookie")?;
    let field = form
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("no CSRF field")?;
    let remembered = exchange(
        address,
        "POST /login",
        Some(&csrf),
        &format!("csrf={field}&username=bob&remember=1"),
    )
    .await?;
    seen.push(comparable(&remembered));
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_binaries_answer_the_flow_alike() -> anyhow::Result<()> {
    let mut banners = Vec::new();
    let mut walks = Vec::new();
    for binary in Binary::BOTH {
        let (_demo, address, banner) = start(binary, &[])?;
        // The banner without the program's name and the port, which differ by design.
        let banner = banner
            .replace(binary.name(), "PROGRAM")
            .replace(&address, "ADDRESS");
        banners.push(banner);
        walks.push(walk(&address).await?);
    }
    ensure!(
        banners[0] == banners[1],
        "banners differ:\n{}\n---\n{}",
        banners[0],
        banners[1]
    );
    ensure!(
        banners[0].contains("PROGRAM: listening on http://ADDRESS/"),
        "{}",
        banners[0]
    );
    ensure!(walks[0].len() == walks[1].len());
    for (axum, actix) in walks[0].iter().zip(&walks[1]) {
        ensure!(
            axum == actix,
            "the apps answered differently:\n{axum}\n---\n{actix}"
        );
    }
    // The walk itself is what the tutorial promises (both apps agreeing on a wrong page would
    // pass the comparison).
    ensure!(walks[0][0].contains("You are not logged in"));
    ensure!(walks[0][3].starts_with("400") && walks[0][3].contains("Please enter a username."));
    ensure!(walks[0][4].starts_with("303"));
    ensure!(
        walks[0][6].contains("Logged in as &lt;b&gt;Ann.") && walks[0][6].contains("Visits: 2")
    );
    ensure!(walks[0][9].contains("You are not logged in"));
    ensure!(walks[0][10].starts_with("405"), "{}", walks[0][10]);
    ensure!(walks[0][13].starts_with("404"), "{}", walks[0][13]);
    ensure!(
        walks[0][15].starts_with("200") && walks[0][15].contains("\"token\":\"TOKEN\""),
        "{}",
        walks[0][15]
    );
    ensure!(walks[0][16].contains("\"visits\":1"), "{}", walks[0][16]);
    ensure!(walks[0][17].starts_with("204"), "{}", walks[0][17]);
    ensure!(walks[0][18].starts_with("401"), "{}", walks[0][18]);
    ensure!(walks[0][19].contains("Max-Age=2592000"), "{}", walks[0][19]);
    Ok(())
}

#[test]
fn both_binaries_refuse_the_same_bad_settings() -> anyhow::Result<()> {
    let cases: [&[(&str, &str)]; 5] = [
        &[("SESSION_TTL", "0")],
        &[("SESSION_TTL", "ten")],
        &[("NEAR_CACHE", "maybe")],
        &[("COOKIE_SECURE", "perhaps")],
        &[("SECRET_KEY", "short")],
    ];
    for environment in cases {
        let mut said = Vec::new();
        for binary in Binary::BOTH {
            let (status, stderr) = run_to_exit(binary, environment)?;
            ensure!(
                !status.success(),
                "{} accepted {environment:?}",
                binary.name()
            );
            said.push(stderr.replace(binary.name(), "PROGRAM"));
        }
        ensure!(
            said[0] == said[1] && said[0].starts_with("PROGRAM: "),
            "{environment:?}:\n{}\n---\n{}",
            said[0],
            said[1]
        );
    }
    Ok(())
}
