//! Reading the scripts' and commands' replies into fields and index entries.

use std::sync::Arc;

use cloakroom_core::store::{Applied, Apply, Fields, parse_millis};
use cloakroom_core::{Result, SessionKey};
use redis::Value;

use crate::errors::corrupt;

// The script's answer, in the shape the step asked for (see apply.lua): false when the session
// is missing; without fields, an integer (the one increment's value, or 1 for none) or the JSON
// text `[counters, 0]`; with fields, the JSON text of the flat field list before the delta, or
// `[counters, fields]` when the delta increments. Counters in JSON are decimal strings (Lua
// numbers lose digits past 2^53 in cjson, and an empty list comes out as `{}`). One string costs
// Redis and the client less than a reply of nested arrays (the peer benchmark's Redis CPU per
// request showed the difference). The delta's meaning is applied here, with the script's
// counters.
pub(crate) fn parse_applied(reply: Value, apply: &Apply) -> Result<Applied> {
    let delta = &apply.delta;
    let increments = delta.increments().len();
    let bytes = match reply {
        Value::Nil | Value::Boolean(false) => return Ok(Applied::Missing),
        Value::Int(value) if !apply.load && increments <= 1 => {
            let counters = match increments {
                0 if value == 1 => Vec::new(),
                1 => vec![value],
                _ => return Err(corrupt("apply answered an unexpected shape")),
            };
            return Ok(Applied::Done {
                counters,
                fields: None,
                taken: Fields::new(),
            });
        }
        Value::BulkString(bytes) => bytes,
        _ => return Err(corrupt("apply answered an unexpected shape")),
    };
    let (counters, fields) = if apply.load && increments == 0 {
        (Vec::new(), Some(parse_json_fields(&bytes)?))
    } else {
        parse_answer(&bytes)?
    };
    if counters.len() != increments {
        return Err(corrupt("apply answered the wrong number of counters"));
    }
    let mut taken = Fields::new();
    let fields = match fields {
        Some(mut fields) => {
            // The script answers the fields as they were before the delta.
            taken = delta.taken_from(&fields);
            delta.replay(&mut fields, &counters)?;
            Some(Arc::new(fields))
        }
        None if apply.load => return Err(corrupt("apply answered no fields")),
        None => None,
    };
    Ok(Applied::Done {
        counters,
        fields,
        taken,
    })
}

// `[counters, fields | 0]`.
fn parse_answer(bytes: &[u8]) -> Result<(Vec<i64>, Option<Fields>)> {
    match serde_json::from_slice::<Answer<FlatFields>>(bytes) {
        Ok(answer) => Ok((answer.counters, answer.fields.map(|flat| flat.0))),
        // cjson passes bytes that are not UTF-8 through as they are: a field written into the
        // hash by something other than cloakroom. Read the strings as bytes, and leave out
        // exactly the fields whose name or value is not text.
        Err(_) if std::str::from_utf8(bytes).is_err() => {
            let answer = serde_json::from_slice::<Answer<Vec<JsonBytes>>>(bytes)
                .map_err(|_| corrupt("apply answered an unexpected shape"))?;
            let fields = answer.fields.map(fields_of_byte_pairs).transpose()?;
            Ok((answer.counters, fields))
        }
        Err(_) => Err(corrupt("apply answered an unexpected shape")),
    }
}

// The flat field list alone, `["name", "value", ...]` (`{}` when empty: cjson's empty table).
fn parse_json_fields(bytes: &[u8]) -> Result<Fields> {
    match serde_json::from_slice::<ZeroOr<FlatFields>>(bytes) {
        Ok(ZeroOr(Some(flat))) => Ok(flat.0),
        Ok(ZeroOr(None)) => Err(corrupt("apply answered an unexpected shape")),
        Err(_) if std::str::from_utf8(bytes).is_err() => {
            match serde_json::from_slice::<ZeroOr<Vec<JsonBytes>>>(bytes) {
                Ok(ZeroOr(Some(pairs))) => fields_of_byte_pairs(pairs),
                _ => Err(corrupt("apply answered an unexpected shape")),
            }
        }
        Err(_) => Err(corrupt("apply answered an unexpected shape")),
    }
}

// Name, value pairs read as bytes: the pairs that are text, and a warning for the rest.
fn fields_of_byte_pairs(pairs: Vec<JsonBytes>) -> Result<Fields> {
    if !pairs.len().is_multiple_of(2) {
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

/// `[counters, fields | 0]`, as the script writes it.
struct Answer<F> {
    counters: Vec<i64>,
    fields: Option<F>,
}

impl<'de, F: serde::Deserialize<'de>> serde::Deserialize<'de> for Answer<F> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pair<F>(std::marker::PhantomData<F>);
        impl<'de, F: serde::Deserialize<'de>> serde::de::Visitor<'de> for Pair<F> {
            type Value = Answer<F>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[counters, fields or 0]")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Answer<F>, A::Error> {
                let missing = || serde::de::Error::custom("a part of the answer is missing");
                let counters = seq.next_element::<Counters>()?.ok_or_else(missing)?;
                let fields = seq.next_element::<ZeroOr<F>>()?.ok_or_else(missing)?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::custom(
                        "the answer has more than two parts",
                    ));
                }
                Ok(Answer {
                    counters: counters.0,
                    fields: fields.0,
                })
            }
        }
        deserializer.deserialize_seq(Pair(std::marker::PhantomData))
    }
}

/// The counters: decimal strings in a list, or `{}` for none (cjson's empty table).
struct Counters(Vec<i64>);

impl<'de> serde::Deserialize<'de> for Counters {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> serde::de::Visitor<'de> for List {
            type Value = Counters;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of decimal counters")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Counters, A::Error> {
                let mut counters = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(text) = seq.next_element::<&str>()? {
                    let value = text
                        .parse()
                        .map_err(|_| serde::de::Error::custom("a counter is not an integer"))?;
                    counters.push(value);
                }
                Ok(Counters(counters))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Counters, A::Error> {
                match map.next_key::<serde::de::IgnoredAny>()? {
                    None => Ok(Counters(Vec::new())),
                    Some(_) => Err(serde::de::Error::custom("the counters are not a list")),
                }
            }
        }
        deserializer.deserialize_any(List)
    }
}

/// A part that is 0 when absent.
struct ZeroOr<F>(Option<F>);

impl<'de, F: serde::Deserialize<'de>> serde::Deserialize<'de> for ZeroOr<F> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Part<F>(std::marker::PhantomData<F>);
        impl<'de, F: serde::Deserialize<'de>> serde::de::Visitor<'de> for Part<F> {
            type Value = ZeroOr<F>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("0 or a list")
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<ZeroOr<F>, E> {
                match value {
                    0 => Ok(ZeroOr(None)),
                    _ => Err(E::custom("a number other than 0")),
                }
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<ZeroOr<F>, A::Error> {
                let seq = serde::de::value::SeqAccessDeserializer::new(seq);
                F::deserialize(seq).map(|fields| ZeroOr(Some(fields)))
            }

            // cjson writes an empty list as `{}`: a session with no field at all.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ZeroOr<F>, A::Error> {
                match map.next_key::<serde::de::IgnoredAny>()? {
                    None => {
                        let empty = serde::de::value::SeqDeserializer::<_, A::Error>::new(
                            std::iter::empty::<()>(),
                        );
                        F::deserialize(empty).map(|fields| ZeroOr(Some(fields)))
                    }
                    Some(_) => Err(serde::de::Error::custom("the fields are not a list")),
                }
            }
        }
        deserializer.deserialize_any(Part(std::marker::PhantomData))
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
mod tests;
