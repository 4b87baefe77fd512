use super::limits::nesting_exceeds;
use super::*;

#[test]
fn the_touch_interval_defaults_to_a_thirtieth_of_idle_at_most_a_minute() -> Result<()> {
    let c = SessionConfig::new([7u8; 32])?;
    assert_eq!(c.touch_interval(), Duration::from_secs(60));
    let short = c.clone().with_idle_timeout(Duration::from_secs(300));
    assert_eq!(short.touch_interval(), Duration::from_secs(10));
    let set = short.clone().with_touch_interval(Duration::ZERO);
    assert_eq!(set.touch_interval(), Duration::ZERO);
    assert!(set.validate().is_ok());
    let half = short.clone().with_touch_interval(Duration::from_secs(150));
    assert!(half.validate().is_ok());
    let more = short.with_touch_interval(Duration::from_secs(151));
    assert_eq!(
        more.validate().map_err(|e| e.kind()),
        Err(ErrorKind::Config)
    );
    Ok(())
}

#[test]
fn defaults_are_secure() -> Result<()> {
    let c = SessionConfig::new([7u8; 32])?;
    assert_eq!(c.cookie_name(), "__Host-cloakroom");
    assert!(c.validate().is_ok());
    // The timeouts SECURITY.md and the README document.
    assert_eq!(c.idle_timeout(), Duration::from_secs(30 * 60));
    assert_eq!(c.absolute_timeout(), Duration::from_secs(24 * 3600));
    assert_eq!(c.limits(), SessionLimits::default());
    assert_eq!(SessionLimits::default().max_fields, 256);
    assert_eq!(SessionLimits::default().max_session_bytes, 1024 * 1024);
    let c = c.with_secure(false);
    assert_eq!(c.cookie_name(), "cloakroom");
    assert!(c.validate().is_ok());
    Ok(())
}

#[test]
fn nesting_is_measured_as_serde_json_reads_it() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // The deepest accepted value is exactly the deepest serde_json reads back.
    for depth in [MAX_VALUE_DEPTH - 1, MAX_VALUE_DEPTH, MAX_VALUE_DEPTH + 1] {
        let text = nested(depth);
        let readable = serde_json::from_str::<serde_json::Value>(&text).is_ok();
        assert_eq!(
            !nesting_exceeds(&text, MAX_VALUE_DEPTH),
            readable,
            "depth {depth}"
        );
    }
    // Brackets inside strings, escaped quotes included, are text, not nesting.
    let in_string = format!("[\"{}\\\"{}\"]", "[".repeat(500), "{".repeat(500));
    assert!(!nesting_exceeds(&in_string, 2));
    assert!(serde_json::from_str::<serde_json::Value>(&in_string).is_ok());
    assert!(nesting_exceeds(r#"{"a":[{"b":[1]}]}"#, 3));
    assert!(!nesting_exceeds(r#"{"a":[{"b":[1]}]}"#, 4));
    let limits = SessionLimits::default();
    assert!(
        limits
            .check_field("x", Some(&nested(MAX_VALUE_DEPTH)))
            .is_ok()
    );
    let refused = limits.check_field("x", Some(&nested(MAX_VALUE_DEPTH + 1)));
    assert_eq!(refused.map_err(|e| e.kind()), Err(ErrorKind::TooLarge));
}

#[test]
fn contradictions_are_refused() -> Result<()> {
    let base = SessionConfig::new([7u8; 32])?;
    let bad = [
        base.clone()
            .with_secure(false)
            .with_same_site(SameSite::None),
        base.clone()
            .with_cookie_name("__Host-x")
            .with_domain("example.com"),
        base.clone()
            .with_cookie_name("__Secure-x")
            .with_secure(false),
        base.clone().with_cookie_name("bad name"),
        base.clone().with_path("nope"),
        // Not ASCII: no header value can carry it.
        base.clone().with_path("/café"),
    ];
    for c in bad {
        assert_eq!(
            c.validate().map_err(|e| e.kind()),
            Err(ErrorKind::Config),
            "{c:?}"
        );
    }
    Ok(())
}
