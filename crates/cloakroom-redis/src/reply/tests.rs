use cloakroom_core::ErrorKind;
use cloakroom_core::store::{Access, Delta};

use super::*;

fn step(delta: Delta, load: bool) -> Apply {
    Apply {
        access: Access {
            now_ms: 1,
            idle_ms: 1,
            touch_ms: 0,
        },
        delta,
        load,
    }
}

// The answer to a plain load, read into its fields.
fn answer(raw: &[u8]) -> Result<Applied> {
    parse_applied(
        Value::BulkString(raw.to_vec()),
        &step(Delta::default(), true),
    )
}

fn fields(json: &str) -> Result<Fields> {
    match answer(json.as_bytes())? {
        Applied::Done {
            fields: Some(fields),
            ..
        } => Ok(Fields::clone(&fields)),
        other => Err(corrupt(&format!("not fields: {other:?}"))),
    }
}

#[test]
fn field_lists_parse_into_maps() -> Result<()> {
    let parsed = fields(r#"["username","\"ann\"","visits","3"]"#)?;
    assert_eq!(parsed.get("username").map(String::as_str), Some("\"ann\""));
    assert_eq!(parsed.get("visits").map(String::as_str), Some("3"));
    assert!(fields("{}")?.is_empty());
    Ok(())
}

#[test]
fn counters_are_read_and_replayed_on_the_fields() -> Result<()> {
    let mut delta = Delta::default();
    delta.set("a", "1")?.incr("visits", 1)?;
    let raw = br#"[["9007199254740991"],["visits","9007199254740990"]]"#;
    let applied = parse_applied(Value::BulkString(raw.to_vec()), &step(delta, true))?;
    let Applied::Done {
        counters,
        fields: Some(fields),
        ..
    } = applied
    else {
        return Err(corrupt("no fields"));
    };
    assert_eq!(counters, vec![9_007_199_254_740_991]);
    assert_eq!(
        fields.get("visits").map(String::as_str),
        Some("9007199254740991")
    );
    assert_eq!(fields.get("a").map(String::as_str), Some("1"));
    Ok(())
}

#[test]
fn without_fields_the_answer_is_the_counters_alone() -> Result<()> {
    let mut one = Delta::default();
    one.incr("visits", 1)?;
    let applied = parse_applied(Value::Int(-3), &step(one, false))?;
    assert_eq!(
        applied,
        Applied::Done {
            counters: vec![-3],
            fields: None,
            taken: Fields::new(),
        }
    );
    let mut writes = Delta::default();
    writes.set("a", "1")?;
    let applied = parse_applied(Value::Int(1), &step(writes, false))?;
    assert_eq!(
        applied,
        Applied::Done {
            counters: Vec::new(),
            fields: None,
            taken: Fields::new(),
        }
    );
    let mut two = Delta::default();
    two.incr("a", 1)?.incr("b", 2)?;
    let raw = br#"[["1","2"],0]"#.to_vec();
    let applied = parse_applied(Value::BulkString(raw), &step(two.clone(), false))?;
    assert_eq!(
        applied,
        Applied::Done {
            counters: vec![1, 2],
            fields: None,
            taken: Fields::new(),
        }
    );
    // An integer cannot stand for two counters, nor for fields.
    for (reply, apply) in [
        (Value::Int(1), step(two, false)),
        (Value::Int(1), step(Delta::default(), true)),
        (Value::Int(2), step(Delta::default(), false)),
    ] {
        let kind = parse_applied(reply, &apply).map_err(|e| e.kind());
        assert_eq!(kind, Err(ErrorKind::Corrupt));
    }
    Ok(())
}

#[test]
fn fields_that_are_not_utf8_are_left_out_and_no_other() -> Result<()> {
    // As cjson writes them: `a` holds a genuine U+FFFD, `b`'s value and the name of the
    // third field are not UTF-8, `c` is plain.
    let mut raw = Vec::new();
    raw.extend_from_slice("[[\"1\"],[\"a\",\"\\\"\u{fffd}\\\"\",\"b\",\"\\\"".as_bytes());
    raw.push(0xff);
    raw.extend_from_slice(b"\\\"\",\"");
    raw.push(0xc0);
    raw.extend_from_slice(b"\",\"1\",\"c\",\"2\"]]");
    let mut delta = Delta::default();
    delta.incr("c", 1)?;
    let Applied::Done {
        counters,
        fields: Some(parsed),
        ..
    } = parse_applied(Value::BulkString(raw.clone()), &step(delta, true))?
    else {
        return Err(corrupt("no fields"));
    };
    assert_eq!(counters, vec![1]);
    assert_eq!(parsed.len(), 2, "{parsed:?}");
    assert_eq!(parsed.get("a").map(String::as_str), Some("\"\u{fffd}\""));
    assert_eq!(parsed.get("c").map(String::as_str), Some("1"));
    // The same fields, as a plain load's answer.
    let plain = raw[7..raw.len() - 1].to_vec();
    let Applied::Done {
        fields: Some(parsed),
        ..
    } = parse_applied(Value::BulkString(plain), &step(Delta::default(), true))?
    else {
        return Err(corrupt("no fields"));
    };
    assert_eq!(parsed.len(), 2, "{parsed:?}");
    Ok(())
}

#[test]
fn malformed_answers_are_corruption_not_panics() {
    for bad in [
        r#"["a"]"#,
        r#"["a",1]"#,
        r#"{"a":"b"}"#,
        r#"1"#,
        r#"0"#,
        r#"[{},["a","b"]]"#,
        "not json",
        "[\"\u{0}",
    ] {
        let kind = answer(bad.as_bytes()).map_err(|e| e.kind());
        assert_eq!(kind, Err(ErrorKind::Corrupt), "{bad:?}");
    }
    let counted = || -> Result<Apply> {
        let mut delta = Delta::default();
        delta.incr("a", 1)?;
        Ok(step(delta, true))
    };
    for bad in [
        r#"[[1],["a","1"]]"#,
        r#"[["x"],["a","1"]]"#,
        r#"[{"a":1},["a","1"]]"#,
        r#"[["1"],["a","1"],0]"#,
        r#"[["1"]]"#,
        r#"[["1"],0]"#,
        r#"[{},["a","1"]]"#,
        r#"[["1","2"],["a","1"]]"#,
    ] {
        let kind = counted()
            .and_then(|apply| parse_applied(Value::BulkString(bad.as_bytes().to_vec()), &apply))
            .map_err(|e| e.kind());
        assert_eq!(kind, Err(ErrorKind::Corrupt), "{bad:?}");
    }
    for reply in [Value::Int(3), Value::Array(Vec::new()), Value::Okay] {
        let kind = parse_applied(reply, &step(Delta::default(), true)).map_err(|e| e.kind());
        assert_eq!(kind, Err(ErrorKind::Corrupt));
    }
}
