//! What a delta means, checked without a store.

use super::*;

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn kind<T>(result: Result<T>) -> Option<ErrorKind> {
    result.err().map(|e| e.kind())
}

#[test]
fn what_a_handler_may_not_write_cannot_be_built() {
    let mut delta = Delta::default();
    assert_eq!(kind(delta.set("", "1")), Some(ErrorKind::InvalidFieldName));
    assert_eq!(
        kind(delta.remove("__deadline")),
        Some(ErrorKind::InvalidFieldName)
    );
    assert_eq!(
        kind(delta.incr("__x", 1)),
        Some(ErrorKind::InvalidFieldName)
    );
    assert_eq!(
        kind(delta.incr("v", MAX_COUNTER + 1)),
        Some(ErrorKind::OutOfRange)
    );
    assert_eq!(kind(delta.incr("v", i64::MIN)), Some(ErrorKind::OutOfRange));
    let long_name = "n".repeat(SessionLimits::default().max_field_name_bytes + 1);
    assert_eq!(kind(delta.set(&long_name, "1")), Some(ErrorKind::TooLarge));
    assert!(delta.is_empty(), "a refused change was kept");
    assert!(delta.incr("v", MAX_COUNTER).is_ok());
}

#[test]
fn writes_apply_before_increments_and_each_increment_is_reported() -> Result<()> {
    let mut delta = Delta::default();
    delta
        .set("n", "5")?
        .incr("n", 2)?
        .incr("n", 1)?
        .remove("gone")?
        .incr("fresh", -3)?;
    // A write after an increment of the same field would apply before it: refused.
    assert_eq!(kind(delta.set("n", "0")), Some(ErrorKind::InvalidFieldName));
    assert_eq!(
        kind(delta.remove("fresh")),
        Some(ErrorKind::InvalidFieldName)
    );
    let mut f = fields(&[("n", "1"), ("gone", "x"), ("__deadline", "9")]);
    assert_eq!(delta.apply(&mut f)?, vec![7, 8, -3]);
    assert_eq!(
        f,
        fields(&[("n", "8"), ("fresh", "-3"), ("__deadline", "9")])
    );
    Ok(())
}

#[test]
fn a_failing_delta_changes_nothing() -> Result<()> {
    let before = fields(&[("n", "\"x\""), ("m", "9007199254740991")]);
    for (delta, expected) in [
        (
            Delta::default().set("a", "1")?.incr("n", 1)?.clone(),
            ErrorKind::NotAnInteger,
        ),
        (
            Delta::default().remove("a")?.incr("m", 1)?.clone(),
            ErrorKind::OutOfRange,
        ),
    ] {
        let mut f = before.clone();
        assert_eq!(kind(delta.apply(&mut f)), Some(expected));
        assert_eq!(f, before);
    }
    Ok(())
}

#[test]
fn only_a_delta_that_grows_is_held_to_the_bounds() -> Result<()> {
    let limits = SessionLimits::default()
        .with_max_fields(2)
        .with_max_session_bytes(8);
    // Two user fields, 8 bytes: at both bounds. Metadata does not count.
    let full = fields(&[("a", "123"), ("b", "456"), ("__deadline", "99999")]);
    let refused = |delta: &Delta| {
        let mut f = full.clone();
        let kind = kind(delta.apply(&mut f));
        (kind, f == full)
    };
    let mut grow = Delta::new(limits);
    grow.set("c", "1")?;
    assert_eq!(refused(&grow), (Some(ErrorKind::TooLarge), true));
    let mut create = Delta::new(limits);
    create.incr("c", 1)?;
    assert_eq!(refused(&create), (Some(ErrorKind::TooLarge), true));
    // An existing counter grows by a digit without a check.
    let counters = fields(&[("a", "9"), ("b", "9")]);
    let mut bump = Delta::new(SessionLimits::default().with_max_session_bytes(4));
    bump.incr("a", 1)?;
    assert_eq!(bump.apply(&mut counters.clone())?, vec![10]);
    // A session past a lowered bound may shrink while it writes.
    let mut shrink = Delta::new(limits.with_max_fields(1));
    shrink.remove("a")?.set("b", "1")?;
    let mut f = full.clone();
    shrink.apply(&mut f)?;
    assert_eq!(f, fields(&[("b", "1"), ("__deadline", "99999")]));
    Ok(())
}

#[test]
fn a_buffered_write_is_judged_against_the_writes_before_it() -> Result<()> {
    let limits = SessionLimits::default().with_max_fields(2);
    // The handle's copy is past the bound already (another request added a field).
    let known = fields(&[("a", "1"), ("b", "1"), ("c", "1")]);
    let mut buffer = Delta::new(limits);
    // A removal is never refused; a set that replaces a value adds no field.
    buffer.write_within_bounds("nope", None, &known)?;
    buffer.write_within_bounds("a", Some("2".to_owned()), &known)?;
    // A new field grows the session past the bound: refused, and the buffer kept.
    let refused = buffer.write_within_bounds("d", Some("1".to_owned()), &known);
    assert_eq!(kind(refused), Some(ErrorKind::TooLarge));
    assert_eq!(buffer.writes().count(), 2);
    // Back within the bound, a new field fits.
    buffer.write_within_bounds("b", None, &known)?;
    buffer.write_within_bounds("c", None, &known)?;
    buffer.write_within_bounds("d", Some("1".to_owned()), &known)?;
    assert_eq!(
        kind(buffer.write_within_bounds("e", Some("1".to_owned()), &known)),
        Some(ErrorKind::TooLarge)
    );
    Ok(())
}

#[test]
fn a_replay_takes_the_stores_counters() -> Result<()> {
    let mut delta = Delta::default();
    delta.set("a", "1")?.incr("n", 1)?;
    let mut f = fields(&[("n", "1")]);
    // Another request counted meanwhile: the store's answer is the truth.
    delta.replay(&mut f, &[5])?;
    assert_eq!(f, fields(&[("a", "1"), ("n", "5")]));
    assert_eq!(kind(delta.replay(&mut f, &[])), Some(ErrorKind::Corrupt));
    Ok(())
}
