//! The `Store` contract on Redis: each step one script (or one command) on one key.

use std::sync::Arc;

use async_trait::async_trait;
use cloakroom_core::store::parse_millis;
use cloakroom_core::store::{
    Applied, Apply, Created, Fields, META_DEADLINE, META_TOUCHED, NewSession, Store,
};
use cloakroom_core::{Error, ErrorKind, IndexEntry, Result, SessionKey, UserKey};
use redis::Value;

use crate::RedisStore;
use crate::errors::corrupt;
use crate::reply::{parse_applied, parse_field_pairs, parse_member};
use crate::scripts::{IndexStep, Resend, bounded, bounded_until};

// Arguments go straight into the command buffer: no intermediate strings. The delta's writes
// (one per name) come before its increments, as the script applies them.
fn add_delta_args(invocation: &mut redis::Cmd, apply: &Apply) {
    let limits = apply.delta.limits();
    invocation
        .arg(apply.access.now_ms)
        .arg(apply.access.idle_ms)
        .arg(apply.access.touch_ms)
        .arg(if apply.load { "1" } else { "0" })
        .arg(limits.max_fields)
        .arg(limits.max_session_bytes);
    // A take is a removal to the script; what it found comes from the fields the script read
    // before it wrote (`parse_applied`).
    for name in apply.delta.takes() {
        invocation.arg("D").arg(name);
    }
    for (name, value) in apply.delta.writes() {
        match value {
            Some(value) => invocation.arg("S").arg(name).arg(value),
            None => invocation.arg("D").arg(name),
        };
    }
    for (name, by) in apply.delta.increments() {
        invocation.arg("I").arg(name).arg(by);
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created> {
        // Timed by the session's own idle timeout, if it was given one.
        let access = session.access.for_session(&session.fields);
        let ttl = access.ttl_ms(session.deadline_ms);
        if ttl <= 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "a new session must have a deadline in the future",
            ));
        }
        let add_args = |inv: &mut redis::Cmd| {
            inv.arg(ttl);
            for (name, value) in &session.fields {
                inv.arg(name).arg(value);
            }
        };
        let acks = self.waits_on_every_write();
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let redis_key = self.redis_key(key);
        match self
            .run(
                &self.create,
                &redis_key,
                acks,
                Resend::Never,
                deadline,
                add_args,
            )
            .await?
        {
            Value::Int(1) => Ok(Created::Created),
            Value::Int(0) => Ok(Created::Exists),
            _ => Err(corrupt("create answered neither 0 nor 1")),
        }
    }

    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        let Some(cache) = &self.near_cache else {
            return self.apply_in_redis(key, apply).await;
        };
        let redis_key = self.redis_key(key);
        if !(apply.load && apply.delta.is_empty()) {
            // A write: the copy goes before it is sent and again once it has run, so that
            // neither a copy nor a load in flight can hide it from this process.
            cache.invalidate(&redis_key);
            let outcome = self.apply_in_redis(key, apply).await;
            cache.invalidate(&redis_key);
            return outcome;
        }
        if let Some(fields) = cache.serve(&redis_key, &apply.access) {
            return Ok(Applied::Done {
                counters: Vec::new(),
                fields: Some(fields),
                taken: Fields::new(),
            });
        }
        let fill = cache.begin_fill(&redis_key);
        let outcome = self.apply_in_redis(key, apply).await;
        let fields = match &outcome {
            Ok(Applied::Done { fields, .. }) => fields.as_ref(),
            _ => None,
        };
        fill.finish(fields);
        outcome
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool> {
        let Some(cache) = &self.near_cache else {
            return self.delete_in_redis(key).await;
        };
        let redis_key = self.redis_key(key);
        cache.invalidate(&redis_key);
        let outcome = self.delete_in_redis(key).await;
        cache.invalidate(&redis_key);
        outcome
    }

    async fn peek(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Fields>> {
        // A plain read: it neither slides the TTL nor needs the script.
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let reply = self.read_hash(key, deadline, Resend::Never).await?;
        let fields = parse_field_pairs(reply)?;
        if fields.is_empty() {
            return Ok(None);
        }
        // The same reading of the deadline as the script's, with the same outcome.
        let deadline = fields
            .get(META_DEADLINE)
            .and_then(|d| parse_millis(d))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    "a session key holds data cloakroom did not write",
                )
            })?;
        Ok((deadline > now_ms).then_some(fields))
    }

    async fn index_add(
        &self,
        user: &UserKey,
        key: &SessionKey,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        // Like a delete, an index entry protects a logout: it waits for replicas whenever
        // deletes do.
        let add = IndexStep::Add { key, deadline_ms };
        self.run_index(user, now_ms, add, self.replica_acks).await?;
        Ok(())
    }

    async fn index_remove(&self, user: &UserKey, entry: &IndexEntry, now_ms: u64) -> Result<()> {
        let acks = self.waits_on_every_write();
        let remove = IndexStep::Remove {
            key: &entry.key,
            written_ms: entry.written_ms,
        };
        self.run_index(user, now_ms, remove, acks).await?;
        Ok(())
    }

    async fn index_members(&self, user: &UserKey, now_ms: u64) -> Result<Vec<IndexEntry>> {
        let reply = self.run_index(user, now_ms, IndexStep::List, None).await?;
        let items = match reply {
            Value::Array(items) => items,
            Value::Nil => Vec::new(),
            _ => return Err(corrupt("the user index is not a list")),
        };
        let text = |value: &Value| match value {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
            _ => None,
        };
        let mut members = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            let member = pair.first().and_then(text);
            // Scores are written as integers; Redis prints them back as such below 2^53.
            let deadline = pair.get(1).and_then(text).and_then(|t| parse_millis(&t));
            match (member.as_deref().and_then(parse_member), deadline) {
                (Some((key, written)), Some(deadline)) => {
                    members.push(IndexEntry::new(key, deadline, written));
                }
                // Not written by cloakroom: skipped, so one bad entry cannot keep the others
                // from being listed or ended.
                _ => tracing::warn!("a user index holds an entry that is not a session key"),
            }
        }
        // One entry per session, the latest written, should a key ever be listed twice.
        members.sort_by(|a, b| (&a.key, b.written_ms).cmp(&(&b.key, a.written_ms)));
        members.dedup_by(|later, kept| later.key == kept.key);
        members.sort_by_key(|entry| entry.deadline_ms);
        Ok(members)
    }
}

// The steps as Redis runs them, below the near-cache.
impl RedisStore {
    async fn apply_in_redis(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        // What a take found comes from the fields the script read: a step that takes loads.
        // Boxed: kept across the call, and rarely needed.
        let loading;
        let apply = if apply.delta.takes().len() > 0 && !apply.load {
            loading = Box::new(Apply {
                load: true,
                ..apply.clone()
            });
            &*loading
        } else {
            apply
        };
        // One bound for the whole operation, a plain load's two calls included.
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        // With a touch on every access (interval 0), every read would go on to the script.
        if apply.load
            && apply.delta.is_empty()
            && apply.access.touch_ms > 0
            && let Some(applied) = self.read_in_redis(key, apply, deadline).await?
        {
            return Ok(applied);
        }
        // Reads (an empty delta) never wait for replicas, and may be sent again.
        let (acks, resend) = if apply.delta.is_empty() {
            (None, Resend::IfDropped)
        } else {
            (self.waits_on_every_write(), Resend::Never)
        };
        let redis_key = self.redis_key(key);
        let reply = self
            .run(&self.apply, &redis_key, acks, resend, deadline, |inv| {
                add_delta_args(inv, apply)
            })
            .await?;
        parse_applied(reply, apply)
    }

    // A plain load as one HGETALL, which costs Redis a fraction of a script call: the session's
    // deadlines are checked here, by the rules the script follows (`Access`). It answers only
    // what needs no write: a missing session, or a live one with no touch due. Anything else
    // is left to the script (`None`), which touches, deletes an ended session or reports and
    // bounds a bad record exactly as before, in a second round trip: for a live session, at
    // most once per touch interval. A read cannot bring a session back, so the two steps need
    // no atomicity.
    async fn read_in_redis(
        &self,
        key: &SessionKey,
        apply: &Apply,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Applied>> {
        // A connection that broke while idle (a restart, a failover) is found out by the first
        // request on it; a read may be sent again, as the script's reads are.
        let reply = self.read_hash(key, deadline, Resend::IfDropped).await;
        let fields = match reply {
            Ok(Value::Nil) => return Ok(Some(Applied::Missing)),
            Ok(Value::Array(items)) if items.is_empty() => return Ok(Some(Applied::Missing)),
            Ok(Value::Map(pairs)) if pairs.is_empty() => return Ok(Some(Applied::Missing)),
            Ok(reply) => match parse_field_pairs(reply) {
                Ok(fields) => fields,
                Err(_) => return Ok(None),
            },
            // A key of another type: the script reports it, and gives it an expiry.
            Err(e) if e.kind() == ErrorKind::Corrupt => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(deadline_ms) = fields.get(META_DEADLINE).and_then(|d| parse_millis(d)) else {
            return Ok(None);
        };
        let touched_ms = fields.get(META_TOUCHED).and_then(|t| parse_millis(t));
        let access = apply.access.for_session(&fields);
        if !access.finds_alive(deadline_ms, touched_ms) || access.touch_due(touched_ms) {
            tracing::debug!(
                "a plain load goes on to the script: a touch is due or the session is over"
            );
            return Ok(None);
        }
        Ok(Some(Applied::Done {
            counters: Vec::new(),
            fields: Some(Arc::new(fields)),
            taken: Fields::new(),
        }))
    }

    // The session's hash, by one HGETALL that ends by `deadline`.
    async fn read_hash(
        &self,
        key: &SessionKey,
        deadline: tokio::time::Instant,
        resend: Resend,
    ) -> Result<Value> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.redis_key(key));
        let read = async {
            match self.connection.query::<Value>(&cmd).await {
                Err(e) if resend == Resend::IfDropped && e.is_connection_dropped() => {
                    self.connection.query::<Value>(&cmd).await
                }
                other => other,
            }
        };
        bounded_until(deadline, self.operation_timeout, "answer HGETALL", read).await
    }

    async fn delete_in_redis(&self, key: &SessionKey) -> Result<bool> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.redis_key(key));
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let (deleted, confirmed) = bounded(
            self.operation_timeout,
            "answer DEL",
            self.send(cmd, self.replica_acks, deadline),
        )
        .await?;
        self.settle(confirmed, self.replica_acks)?;
        Ok(matches!(deleted, Value::Int(n) if n > 0))
    }
}
