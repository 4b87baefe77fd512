//! A change to one session, as a value.
//!
//! A [`Delta`] holds the fields a step sets or removes and the counters it adds to. It is built
//! only through constructors that check what a handler may write (names, the configured
//! [`SessionLimits`], increment ranges) and it carries the session-wide bounds the store must
//! keep, so a delta that exists is valid (a value is taken as the JSON text it is said to be)
//! and no store checks it again. What a delta does to a
//! session is written once, in [`Delta::apply`]: the request's handle applies it to its copy,
//! the memory store to its sessions, the Redis store to the fields its script read, and the test
//! model to its own. The Redis script is the one other statement of the same rules, in Lua.

use std::collections::{BTreeMap, BTreeSet};

use self::checks::{check_amount, check_field};
use crate::config::SessionLimits;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{Fields, MAX_COUNTER, RESERVED_PREFIX, parse_counter};

/// A change to one session: takes, field writes, then increments.
///
/// Takes ([`Delta::take`]) come first: each removes a field and the step reports its value.
/// The writes come next, one per name (a later write of a name replaces the earlier one); then
/// the increments, in order, each seeing the writes and the increments before it. A write of a
/// field the delta already increments is refused, so the order of the calls never contradicts
/// the order of application. Applying a
/// delta is all or nothing: a bad increment or a crossed bound leaves the session as it was.
///
/// ```
/// use cloakroom_core::SessionLimits;
/// use cloakroom_core::store::{Delta, Fields};
///
/// let mut delta = Delta::new(SessionLimits::default());
/// delta.set("username", "\"ann\"")?.incr("visits", 1)?;
/// let mut fields = Fields::new();
/// assert_eq!(delta.apply(&mut fields)?, vec![1]);
/// assert_eq!(fields["username"], "\"ann\"");
///
/// // What a handler may not write cannot be put in a delta.
/// assert!(delta.set("__deadline", "0").is_err());
/// # Ok::<(), cloakroom_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    // Some(json) sets, None removes; applied before the increments.
    writes: BTreeMap<String, Option<String>>,
    // Applied after the writes, in order.
    increments: Vec<(String, i64)>,
    // Removed with the writes; the step reports the value each had before it.
    takes: BTreeSet<String>,
    limits: SessionLimits,
}

impl Default for Delta {
    fn default() -> Self {
        Self::new(SessionLimits::default())
    }
}

impl Delta {
    /// An empty delta whose writes must keep `limits`, per field and session-wide.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            writes: BTreeMap::new(),
            increments: Vec::new(),
            takes: BTreeSet::new(),
            limits,
        }
    }

    /// Sets field `name` to `json`, a JSON text. The text is stored as given, not parsed:
    /// [`Session::insert`](crate::Session::insert) makes it with `serde_json`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidFieldName`] for an empty or reserved (`__`) name, or a name this
    /// delta already increments (writes apply first: write a field before incrementing it),
    /// [`ErrorKind::TooLarge`] for a name or value past the per-field limits or a value nested
    /// deeper than [`SessionLimits::MAX_VALUE_DEPTH`](crate::SessionLimits::MAX_VALUE_DEPTH). The delta is unchanged then.
    pub fn set(&mut self, name: &str, json: impl Into<String>) -> Result<&mut Self> {
        let json = json.into();
        check_field(&self.limits, name, Some(&json))?;
        self.check_not_incremented(name)?;
        self.writes.insert(name.to_owned(), Some(json));
        Ok(self)
    }

    /// Removes field `name`.
    ///
    /// # Errors
    ///
    /// As [`Delta::set`], for the name.
    pub fn remove(&mut self, name: &str) -> Result<&mut Self> {
        check_field(&self.limits, name, None)?;
        self.check_not_incremented(name)?;
        self.writes.insert(name.to_owned(), None);
        Ok(self)
    }

    /// Adds `by` to the integer field `name` (absent counts as 0).
    ///
    /// # Errors
    ///
    /// As [`Delta::set`], for the name; [`ErrorKind::OutOfRange`] when `by` is beyond
    /// ±(2^53 − 1), which every store computes exactly.
    pub fn incr(&mut self, name: &str, by: i64) -> Result<&mut Self> {
        check_field(&self.limits, name, None)?;
        self.check_not_taken(name)?;
        check_amount(name, by)?;
        self.increments.push((name.to_owned(), by));
        Ok(self)
    }

    // What `incr` checks of the name and the amount alone, whatever else the delta holds (on an
    // empty delta, exactly what `incr` checks): a caller can refuse a bad increment without
    // building a delta for it.
    pub(crate) fn check_increment(limits: &SessionLimits, name: &str, by: i64) -> Result<()> {
        check_field(limits, name, None)?;
        check_amount(name, by)
    }

    /// Removes field `name`, and has the step report the value it had before
    /// ([`Applied::Done`](crate::store::Applied::Done)'s `taken`): a read and a removal in
    /// one step, for one-shot values such as flash messages.
    ///
    /// # Errors
    ///
    /// As [`Delta::set`], for the name; [`ErrorKind::InvalidFieldName`] also for a name this
    /// delta already writes (the take would report the delta's own value, not the stored one).
    /// A later write of a taken name applies after the take: the step reports the stored value
    /// and leaves the new one.
    pub fn take(&mut self, name: &str) -> Result<&mut Self> {
        check_field(&self.limits, name, None)?;
        self.check_not_incremented(name)?;
        if self.writes.contains_key(name) {
            return Err(Error::new(
                ErrorKind::InvalidFieldName,
                format!("field {name:?} is written by this delta: it cannot also be taken"),
            ));
        }
        self.takes.insert(name.to_owned());
        Ok(self)
    }

    /// The names the delta takes: each is removed, as a write removing it would, and its value
    /// before the step is reported.
    pub fn takes(&self) -> impl ExactSizeIterator<Item = &str> {
        self.takes.iter().map(String::as_str)
    }

    /// What the takes find in `fields`, the session as it is before the delta: each taken name
    /// that holds a value, with it. A store calls it before it applies the delta.
    pub fn taken_from(&self, fields: &Fields) -> Fields {
        self.takes
            .iter()
            .filter_map(|name| Some((name.clone(), fields.get(name)?.clone())))
            .collect()
    }

    /// The field writes, by name: `Some(json)` sets, `None` removes.
    pub fn writes(&self) -> impl ExactSizeIterator<Item = (&str, Option<&str>)> {
        self.writes
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_deref()))
    }

    /// The increments, in the order they apply (after the writes).
    pub fn increments(&self) -> impl ExactSizeIterator<Item = (&str, i64)> {
        self.increments
            .iter()
            .map(|(name, by)| (name.as_str(), *by))
    }

    /// The limits the delta was checked against; the session-wide ones
    /// ([`SessionLimits::max_fields`], [`SessionLimits::max_session_bytes`]) are for the store
    /// to keep when it applies the delta.
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// True when the delta changes nothing: applying it is a plain load or touch.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.increments.is_empty() && self.takes.is_empty()
    }

    /// Applies the delta to a session's `fields` (reserved metadata included or not) and
    /// returns the new value of each increment, in order.
    ///
    /// # Errors
    ///
    /// Nothing is changed when it fails:
    /// * [`ErrorKind::NotAnInteger`] when an increment meets a value that is not a canonical
    ///   integer within ±(2^53 − 1), and [`ErrorKind::OutOfRange`] when its sum would leave
    ///   that range;
    /// * [`ErrorKind::TooLarge`] when the delta grows the session (it sets a field, or creates
    ///   one by incrementing it) and leaves more user fields than
    ///   [`SessionLimits::max_fields`] or more bytes than [`SessionLimits::max_session_bytes`],
    ///   and more than the session held before. A session already past a bound (the limits
    ///   were lowered) can still shrink; an increment of an existing counter adds no field and
    ///   a few digits at most, and is never refused for size.
    pub fn apply(&self, fields: &mut Fields) -> Result<Vec<i64>> {
        let (counters, _) = self.stage(fields)?;
        self.write_into(fields, &counters);
        Ok(counters)
    }

    /// Applies a delta that a store has applied and answered for: the writes, then each
    /// increment's value as the store gave it in `counters`. This is how a copy of the session
    /// held elsewhere (the request's cache, fields a script read before it wrote) follows the
    /// store, whose counters are the truth; nothing is checked against the copy.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Corrupt`] when `counters` does not hold one value per increment; `fields`
    /// is unchanged then.
    pub fn replay(&self, fields: &mut Fields, counters: &[i64]) -> Result<()> {
        if counters.len() != self.increments.len() {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the store answered {} counters for {} increments",
                    counters.len(),
                    self.increments.len()
                ),
            ));
        }
        self.write_into(fields, counters);
        Ok(())
    }

    // The writes, then each increment's value in order (the last one of a field stays).
    fn write_into(&self, fields: &mut Fields, counters: &[i64]) {
        for name in &self.takes {
            fields.remove(name);
        }
        for (name, value) in &self.writes {
            match value {
                Some(value) => put_field(fields, name, value.clone()),
                None => {
                    fields.remove(name);
                }
            }
        }
        for ((name, _), value) in self.increments.iter().zip(counters) {
            put_field(fields, name, value.to_string());
        }
    }

    // Everything `apply` checks, writing nothing: the value of each increment in order, and
    // the final value of each incremented field.
    fn stage(&self, fields: &Fields) -> Result<(Vec<i64>, BTreeMap<String, i64>)> {
        let mut counters = Vec::with_capacity(self.increments.len());
        let mut counted: BTreeMap<String, i64> = BTreeMap::new();
        for (name, by) in &self.increments {
            let base = match counted.get(name) {
                Some(&value) => value,
                None => match self.value_after_writes(fields, name) {
                    None => 0,
                    Some(text) => parse_counter(text).ok_or_else(|| {
                        Error::new(
                            ErrorKind::NotAnInteger,
                            format!("field {name:?} does not hold an integer"),
                        )
                    })?,
                },
            };
            let value = base
                .checked_add(*by)
                .filter(|v| v.unsigned_abs() <= MAX_COUNTER.unsigned_abs())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::OutOfRange,
                        format!("incrementing field {name:?} would leave ±(2^53 − 1)"),
                    )
                })?;
            counted.insert(name.clone(), value);
            counters.push(value);
        }
        if self.grows(fields) {
            let before = Totals::of(fields);
            let mut after = before;
            let texts: Vec<(&str, String)> = counted
                .iter()
                .map(|(name, value)| (name.as_str(), value.to_string()))
                .collect();
            // Takes remove (before the writes, which may set the name again).
            let mut finals: BTreeMap<&str, Option<&str>> = self
                .takes
                .iter()
                .map(|name| (name.as_str(), None))
                .collect();
            finals.extend(
                self.writes
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_deref())),
            );
            for (name, text) in &texts {
                finals.insert(name, Some(text.as_str()));
            }
            for (name, value) in finals {
                if let Some(old) = fields.get(name) {
                    after.remove(name, old);
                }
                if let Some(new) = value {
                    after.add(name, new);
                }
            }
            self.limits.bounds().check(before, after)?;
        }
        Ok((counters, counted))
    }

    // Whether the delta may grow the session: it sets a field, or an increment creates one.
    // Only such a delta is checked against the session-wide bounds.
    fn grows(&self, fields: &Fields) -> bool {
        self.writes.values().any(Option::is_some)
            || self
                .increments
                .iter()
                .any(|(name, _)| self.value_after_writes(fields, name).is_none())
    }

    // The value of `name` once the writes are applied to `fields`.
    fn value_after_writes<'a>(&'a self, fields: &'a Fields, name: &str) -> Option<&'a str> {
        match self.writes.get(name) {
            Some(write) => write.as_deref(),
            None => fields.get(name).map(String::as_str),
        }
    }

    // A take removes the field before the increments apply: an increment of it in the same step
    // would start again from 0, which is not what a caller means.
    fn check_not_taken(&self, name: &str) -> Result<()> {
        if self.takes.contains(name) {
            return Err(Error::new(
                ErrorKind::InvalidFieldName,
                format!("field {name:?} is taken by this delta: it cannot also be incremented"),
            ));
        }
        Ok(())
    }

    // Writes apply before increments: a write of a field already incremented here would apply
    // before the increment it follows in the calls, which is not what a caller means.
    fn check_not_incremented(&self, name: &str) -> Result<()> {
        if self.increments.iter().any(|(counted, _)| counted == name) {
            return Err(Error::new(
                ErrorKind::InvalidFieldName,
                format!(
                    "field {name:?} is incremented by this delta: write it before incrementing it"
                ),
            ));
        }
        Ok(())
    }
}

// Sets `name` to `value`, copying the name only when the field is new: most steps rewrite a
// field the session already has (a counter).
fn put_field(fields: &mut Fields, name: &str, value: String) {
    match fields.get_mut(name) {
        Some(slot) => *slot = value,
        None => {
            fields.insert(name.to_owned(), value);
        }
    }
}

// The request's handle keeps its buffered writes as a delta without increments.
impl Delta {
    // The buffered write of `name`, if any: `Some(None)` for a removal.
    pub(crate) fn write_of(&self, name: &str) -> Option<Option<&str>> {
        self.writes.get(name).map(Option::as_deref)
    }

    // Adds a write to a delta of writes. A set is refused (and the delta left as it was) when
    // it takes `known`, what the handle knows of the session with the delta's earlier writes
    // applied, past a session-wide bound and past what it held before; a removal never is.
    pub(crate) fn write_within_bounds(
        &mut self,
        name: &str,
        value: Option<String>,
        known: &Fields,
    ) -> Result<()> {
        check_field(&self.limits, name, value.as_deref())?;
        if let Some(new) = &value {
            let before = self.totals_after_writes(known);
            let mut after = before;
            if let Some(old) = self.value_after_writes(known, name) {
                after.remove(name, old);
            }
            after.add(name, new);
            self.limits.bounds().check(before, after)?;
        }
        self.writes.insert(name.to_owned(), value);
        Ok(())
    }

    // The totals of `fields` once the writes are applied.
    fn totals_after_writes(&self, fields: &Fields) -> Totals {
        let mut totals = Totals::of(fields);
        for (name, value) in &self.writes {
            if let Some(old) = fields.get(name) {
                totals.remove(name, old);
            }
            if let Some(new) = value {
                totals.add(name, new);
            }
        }
        totals
    }

    // After a step that carried `sent`, drops the writes still as sent: a write made while the
    // step was in flight stays for the next one.
    pub(crate) fn forget_sent(&mut self, sent: &Delta) {
        for (name, value) in &sent.writes {
            if self.writes.get(name) == Some(value) {
                self.writes.remove(name);
            }
        }
        for name in &sent.takes {
            self.takes.remove(name);
        }
    }

    pub(crate) fn drop_take(&mut self, name: &str) {
        self.takes.remove(name);
    }

    pub(crate) fn clear(&mut self) {
        self.writes.clear();
        self.increments.clear();
        self.takes.clear();
    }
}

/// Session-wide bounds on a session's user fields (reserved metadata not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) max_fields: usize,
    pub(crate) max_bytes: usize,
}

/// How many user fields a session holds and how many bytes their names and values take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    fields: usize,
    bytes: usize,
}

impl Totals {
    fn of(fields: &Fields) -> Self {
        let mut totals = Self::default();
        for (name, value) in fields {
            totals.add(name, value);
        }
        totals
    }

    fn add(&mut self, name: &str, value: &str) {
        if !name.starts_with(RESERVED_PREFIX) {
            self.fields += 1;
            self.bytes += name.len() + value.len();
        }
    }

    fn remove(&mut self, name: &str, value: &str) {
        if !name.starts_with(RESERVED_PREFIX) {
            self.fields -= 1;
            self.bytes -= name.len() + value.len();
        }
    }
}

impl Bounds {
    // Fails with `TooLarge` when going from `before` to `after` crosses a bound and grows.
    fn check(&self, before: Totals, after: Totals) -> Result<()> {
        if after.fields > self.max_fields && after.fields > before.fields {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "the session would hold {} fields; at most {} are allowed",
                    after.fields, self.max_fields
                ),
            ));
        }
        if after.bytes > self.max_bytes && after.bytes > before.bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "the session would hold {} bytes; at most {} are allowed",
                    after.bytes, self.max_bytes
                ),
            ));
        }
        Ok(())
    }
}

mod checks;
#[cfg(test)]
mod tests;
