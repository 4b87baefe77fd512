//! What a `redis+sentinel://[user:password@]host[:port][,host[:port]...]/SERVICE` URL says.

use cloakroom_core::{Error, ErrorKind, Result};

/// The sentinels' default port.
const SENTINEL_PORT: u16 = 26379;

/// What a `redis+sentinel://` URL says. No `Debug`: it holds passwords.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct SentinelUrl {
    pub(super) tls: bool,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) sentinels: Vec<(String, u16)>,
    pub(super) service: String,
    // `?sentinel_username=…&sentinel_password=…`: for sentinels that require auth.
    pub(super) sentinel_username: Option<String>,
    pub(super) sentinel_password: Option<String>,
}

pub(super) fn parse(url: &str) -> Result<SentinelUrl> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::Config,
            format!(
                "invalid Sentinel URL ({why}): use redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE"
            ),
        )
    };
    let (tls, rest) = match url.split_once("://") {
        Some(("redis+sentinel", rest)) => (false, rest),
        Some(("rediss+sentinel", rest)) => (true, rest),
        _ => return Err(bad("the scheme")),
    };
    let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no service name"))?;
    let (service, query) = path.split_once('?').unwrap_or((path, ""));
    let service = service.trim_end_matches('/');
    if service.is_empty() || service.contains(['/', '?', '#']) {
        return Err(bad("the service name"));
    }
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, authority),
    };
    let decode = |text: &str| -> Result<String> {
        percent_decoded(text).ok_or_else(|| bad("the credentials' percent-encoding"))
    };
    let (username, password) = match credentials {
        None => (None, None),
        Some(credentials) => match credentials.split_once(':') {
            Some((user, password)) => (
                Some(decode(user)?).filter(|u| !u.is_empty()),
                Some(decode(password)?),
            ),
            None => (Some(decode(credentials)?), None),
        },
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        let (name, port) = match host.rsplit_once(':') {
            // An IPv6 address without a port: `[::1]`.
            Some((name, port)) if !port.ends_with(']') => (
                name,
                port.parse::<u16>().map_err(|_| bad("a sentinel's port"))?,
            ),
            _ => (host, SENTINEL_PORT),
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        if name.is_empty() {
            return Err(bad("an empty sentinel address"));
        }
        sentinels.push((name.to_owned(), port));
    }
    let (mut sentinel_username, mut sentinel_password) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sentinel_username", value)) => sentinel_username = Some(decode(value)?),
            Some(("sentinel_password", value)) => sentinel_password = Some(decode(value)?),
            _ => {
                return Err(bad(
                    "an unknown parameter: use sentinel_username, sentinel_password",
                ));
            }
        }
    }
    Ok(SentinelUrl {
        tls,
        username,
        password,
        sentinels,
        service: service.to_owned(),
        sentinel_username,
        sentinel_password,
    })
}

// `%XX` escapes, as URLs carry passwords with reserved characters.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_their_sentinels_service_and_credentials() -> Result<()> {
        let url = parse("redis+sentinel://a:26380,b,[::1]:26381/sessions")?;
        assert!(!url.tls);
        assert_eq!(
            url.sentinels,
            [
                ("a".to_owned(), 26380),
                ("b".to_owned(), SENTINEL_PORT),
                ("::1".to_owned(), 26381)
            ]
        );
        assert_eq!(url.service, "sessions");
        assert_eq!((url.username, url.password), (None, None));
        let url = parse("rediss+sentinel://app:p%40ss@h:1/svc")?;
        assert!(url.tls);
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("p@ss"));
        let url = parse("redis+sentinel://h/svc?sentinel_username=s&sentinel_password=p%26q")?;
        assert_eq!(url.sentinel_username.as_deref(), Some("s"));
        assert_eq!(url.sentinel_password.as_deref(), Some("p&q"));
        assert!(parse("redis+sentinel://h/svc?db=2").is_err());
        let url = parse("redis+sentinel://:secret@h/svc/")?;
        assert_eq!(
            (url.username, url.password.as_deref()),
            (None, Some("secret"))
        );
        for bad in [
            "redis://h/svc",
            "redis+sentinel://h",
            "redis+sentinel://h/",
            "redis+sentinel://h:port/svc",
            "redis+sentinel://,h/svc",
            "redis+sentinel://h/a/b",
            "redis+sentinel://u:%zz@h/svc",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
