//! What a delta accepts of a single write or increment, whatever else it holds.

use crate::config::SessionLimits;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{MAX_COUNTER, RESERVED_PREFIX};

// A field a handler may write: a name that is not empty and not reserved, within the per-field
// limits with its value (if the write sets one).
pub(super) fn check_field(limits: &SessionLimits, name: &str, value: Option<&str>) -> Result<()> {
    if name.is_empty() {
        return Err(Error::new(ErrorKind::InvalidFieldName, "empty field name"));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(Error::new(
            ErrorKind::InvalidFieldName,
            format!("field names starting with {RESERVED_PREFIX:?} are reserved: {name:?}"),
        ));
    }
    limits.check_field(name, value)
}

// An amount every store adds exactly.
pub(super) fn check_amount(name: &str, by: i64) -> Result<()> {
    if by.unsigned_abs() > MAX_COUNTER.unsigned_abs() {
        return Err(Error::new(
            ErrorKind::OutOfRange,
            format!("increment of field {name:?} is beyond ±(2^53 − 1)"),
        ));
    }
    Ok(())
}
