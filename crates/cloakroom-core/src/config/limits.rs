//! Bounds on what a session may hold: field names, values, fields, the session's size.

use crate::delta::Bounds;
use crate::error::{Error, ErrorKind, Result};

use super::MAX_VALUE_DEPTH;

/// Bounds on what a session may hold, checked before anything is written: a request that would
/// pass one gets [`ErrorKind::TooLarge`] and writes nothing.
///
/// Per-field bounds apply to every write, and so does [`SessionLimits::MAX_VALUE_DEPTH`](crate::SessionLimits::MAX_VALUE_DEPTH). The session-wide
/// bounds are checked by the handle when a write is made, against what it knows of the session
/// (all of it for a session started in the request), and by the store when the write is
/// applied to an existing session, against the session as it is (see
/// [`Delta::apply`](crate::store::Delta::apply)), so they hold for a write to a session the
/// request never loaded and for requests racing each other. Increments of existing counters are
/// not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionLimits {
    /// Longest field name, in bytes (default 128).
    pub max_field_name_bytes: usize,
    /// Largest field value, in bytes of JSON (default 64 KiB).
    pub max_value_bytes: usize,
    /// Most fields in a session, metadata not counted (default 256).
    pub max_fields: usize,
    /// Largest session: the bytes of every field name and value together (default 1 MiB).
    pub max_session_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_field_name_bytes: 128,
            max_value_bytes: 64 * 1024,
            max_fields: 256,
            max_session_bytes: 1024 * 1024,
        }
    }
}

impl SessionLimits {
    /// Sets [`SessionLimits::max_field_name_bytes`].
    pub fn with_max_field_name_bytes(mut self, bytes: usize) -> Self {
        self.max_field_name_bytes = bytes;
        self
    }

    /// Sets [`SessionLimits::max_value_bytes`].
    pub fn with_max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Sets [`SessionLimits::max_fields`].
    pub fn with_max_fields(mut self, fields: usize) -> Self {
        self.max_fields = fields;
        self
    }

    /// Sets [`SessionLimits::max_session_bytes`].
    pub fn with_max_session_bytes(mut self, bytes: usize) -> Self {
        self.max_session_bytes = bytes;
        self
    }

    pub(crate) fn check_field(&self, name: &str, value: Option<&str>) -> Result<()> {
        if name.len() > self.max_field_name_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "a session field name of {} bytes; at most {} are allowed",
                    name.len(),
                    self.max_field_name_bytes
                ),
            ));
        }
        if let Some(value) = value
            && value.len() > self.max_value_bytes
        {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "session field {name:?} would hold {} bytes; at most {} are allowed",
                    value.len(),
                    self.max_value_bytes
                ),
            ));
        }
        if let Some(value) = value
            && nesting_exceeds(value, MAX_VALUE_DEPTH)
        {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "session field {name:?} nests deeper than {MAX_VALUE_DEPTH} levels, more than \
                     can be read back"
                ),
            ));
        }
        Ok(())
    }

    // The session-wide bounds, as stores enforce them.
    pub(crate) fn bounds(&self) -> Bounds {
        Bounds {
            max_fields: self.max_fields,
            max_bytes: self.max_session_bytes,
        }
    }
}

// Whether the JSON text nests arrays and objects deeper than `max`; brackets inside strings
// do not count.
pub(super) fn nesting_exceeds(json: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in json.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}
