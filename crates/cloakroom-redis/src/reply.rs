//! Reading the scripts' and commands' replies into fields and index entries.

use cloakroom_core::store::{Applied, Delta, Fields, parse_millis};
use cloakroom_core::{Result, SessionKey};
use redis::Value;

use crate::errors::corrupt;

// The script returns the HGETALL list as one JSON array of strings (built by Redis's cjson): one
// reply item instead of two per field, which is cheaper to produce and to parse.
pub(crate) fn parse_fields(value: Value) -> Result<Fields> {
    let Value::BulkString(bytes) = value else {
        return Err(corrupt("the fields are not a JSON text"));
    };
    // An empty Lua table encodes as `{}`.
    if bytes.as_slice() == b"{}" {
        return Ok(Fields::new());
    }
    match serde_json::from_slice::<FlatFields>(&bytes) {
        Ok(flat) => Ok(flat.0),
        // cjson passes bytes that are not UTF-8 through as they are: a field written into the
        // hash by something other than cloakroom. Read the strings as bytes, and leave out
        // exactly the fields whose name or value is not text.
        Err(_) if std::str::from_utf8(&bytes).is_err() => {
            let pairs = serde_json::from_slice::<Vec<JsonBytes>>(&bytes)
                .map_err(|_| corrupt("the fields are not a JSON array of name, value strings"))?;
            if pairs.len() % 2 != 0 {
                return Err(corrupt("a session field has no value"));
            }
            let mut fields = Fields::with_capacity(pairs.len() / 2);
            let mut unreadable = 0usize;
            let mut pairs = pairs.into_iter();
            while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
                match (String::from_utf8(name.0), String::from_utf8(value.0)) {
                    (Ok(name), Ok(value)) => {
                        fields.insert(name, value);
                    }
                    _ => unreadable += 1,
                }
            }
            warn_unreadable(unreadable);
            Ok(fields)
        }
        Err(_) => Err(corrupt(
            "the fields are not a JSON array of name, value strings",
        )),
    }
}

// Fields that are not UTF-8 text were not written by cloakroom: they are left out of what is
// read, and that is said.
fn warn_unreadable(dropped: usize) {
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "a session holds fields that are not UTF-8 text; they are left out of what is read"
        );
    }
}

/// A JSON string read as its bytes (escapes decoded, UTF-8 not required): serde_json's
/// `deserialize_bytes` reads strings this way.
struct JsonBytes(Vec<u8>);

impl<'de> serde::Deserialize<'de> for JsonBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = JsonBytes;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<JsonBytes, E> {
                Ok(JsonBytes(bytes.to_vec()))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<JsonBytes, E> {
                Ok(JsonBytes(text.as_bytes().to_vec()))
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

/// `["name", "value", ...]` read straight into a map, without an intermediate list.
struct FlatFields(Fields);

impl<'de> serde::Deserialize<'de> for FlatFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = FlatFields;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of name, value strings")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FlatFields, A::Error> {
                let mut fields = Fields::with_capacity(seq.size_hint().unwrap_or(8) / 2);
                while let Some(name) = seq.next_element::<String>()? {
                    let value = seq
                        .next_element::<String>()?
                        .ok_or_else(|| serde::de::Error::custom("a name without a value"))?;
                    fields.insert(name, value);
                }
                Ok(FlatFields(fields))
            }
        }
        deserializer.deserialize_seq(Pairs)
    }
}

// The script's one answer: false when the session is missing, otherwise the new value of each
// increment and the fields as they were before the delta (one HGETALL serves to read the
// deadline too), or 0 when they were not asked. The delta's meaning is applied here, with the
// script's counters.
pub(crate) fn parse_applied(reply: Value, delta: &Delta) -> Result<Applied> {
    let parts = match reply {
        Value::Nil | Value::Boolean(false) => return Ok(Applied::Missing),
        Value::Array(parts) if parts.len() == 2 => parts,
        _ => return Err(corrupt("apply answered an unexpected shape")),
    };
    let mut parts = parts.into_iter();
    let (Some(counters), Some(fields)) = (parts.next(), parts.next()) else {
        return Err(corrupt("apply answered an unexpected shape"));
    };
    let counters = match counters {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Int(n) => Ok(n),
                _ => Err(corrupt("a counter is not an integer")),
            })
            .collect::<Result<Vec<i64>>>()?,
        // An empty Lua table may come back as an empty array or a nil.
        Value::Nil => Vec::new(),
        _ => return Err(corrupt("counters are not a list")),
    };
    let fields = match fields {
        Value::Int(0) => None,
        before => {
            let mut fields = parse_fields(before)?;
            delta.replay(&mut fields, &counters)?;
            Some(fields)
        }
    };
    Ok(Applied::Done { counters, fields })
}

// An index member, `SESSIONKEY:WRITTEN`. A member without a time (written before entries
// carried one) counts as written long ago.
pub(crate) fn parse_member(member: &str) -> Option<(SessionKey, u64)> {
    let (key, written) = match member.split_once(':') {
        Some((key, written)) => (key, parse_millis(written)?),
        None => (member, 0),
    };
    Some((SessionKey::from_stored(key)?, written))
}

// An HGETALL reply read into fields; names and values must be UTF-8 text.
pub(crate) fn parse_field_pairs(reply: Value) -> Result<Fields> {
    let items = match reply {
        Value::Array(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Nil => Vec::new(),
        _ => return Err(corrupt("the session is not a list of fields")),
    };
    // `None` for bytes that are not UTF-8: such a field is left out, as the script's reply
    // reader does.
    let text = |value: Value| match value {
        Value::BulkString(bytes) => Ok(String::from_utf8(bytes).ok()),
        _ => Err(corrupt("a session field is not a string")),
    };
    let mut fields = Fields::with_capacity(items.len() / 2);
    let mut unreadable = 0usize;
    let mut items = items.into_iter();
    while let Some(name) = items.next() {
        let value = items
            .next()
            .ok_or_else(|| corrupt("a session field has no value"))?;
        match (text(name)?, text(value)?) {
            (Some(name), Some(value)) => {
                fields.insert(name, value);
            }
            _ => unreadable += 1,
        }
    }
    warn_unreadable(unreadable);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use cloakroom_core::ErrorKind;

    use super::*;

    fn fields(json: &str) -> Result<Fields> {
        parse_fields(Value::BulkString(json.as_bytes().to_vec()))
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
    fn fields_that_are_not_utf8_are_left_out_and_no_other() -> Result<()> {
        // As cjson writes them: `a` holds a genuine U+FFFD, `b`'s value and the name of the
        // third field are not UTF-8, `c` is plain.
        let mut raw = Vec::new();
        raw.extend_from_slice("[\"a\",\"\\\"\u{fffd}\\\"\",\"b\",\"\\\"".as_bytes());
        raw.push(0xff);
        raw.extend_from_slice(b"\\\"\",\"");
        raw.push(0xc0);
        raw.extend_from_slice(b"\",\"1\",\"c\",\"2\"]");
        let parsed = parse_fields(Value::BulkString(raw))?;
        assert_eq!(parsed.len(), 2, "{parsed:?}");
        assert_eq!(parsed.get("a").map(String::as_str), Some("\"\u{fffd}\""));
        assert_eq!(parsed.get("c").map(String::as_str), Some("2"));
        Ok(())
    }

    #[test]
    fn malformed_field_lists_are_corruption_not_panics() {
        for bad in [
            r#"["a"]"#,
            r#"["a",1]"#,
            r#"{"a":"b"}"#,
            "not json",
            "",
            "[\"\u{0}",
        ] {
            let kind = fields(bad).map_err(|e| e.kind());
            assert_eq!(kind, Err(ErrorKind::Corrupt), "{bad:?}");
        }
        let kind = parse_fields(Value::Int(3)).map_err(|e| e.kind());
        assert_eq!(kind, Err(ErrorKind::Corrupt));
    }
}
