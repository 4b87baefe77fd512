//! The `Store` contract on Redis: each step one script (or one command) on one key.

use async_trait::async_trait;
use cloakroom_core::store::parse_millis;
use cloakroom_core::store::{
    Applied, Apply, Created, Fields, META_DEADLINE, NewSession, Op, Store, check_ops,
};
use cloakroom_core::{Error, ErrorKind, IndexEntry, Result, SessionKey, UserKey};
use redis::Value;

use crate::RedisStore;
use crate::errors::corrupt;
use crate::reply::{after_ops, parse_field_pairs, parse_fields, parse_member};
use crate::scripts::bounded;

// Arguments go straight into the command buffer: no intermediate strings.
fn add_op_args(invocation: &mut redis::Cmd, apply: &Apply) {
    invocation
        .arg(apply.access.now_ms)
        .arg(apply.access.idle_ms)
        .arg(if apply.load { "1" } else { "0" });
    match apply.bounds {
        Some(bounds) => invocation.arg(bounds.max_fields).arg(bounds.max_bytes),
        None => invocation.arg("").arg(""),
    };
    for op in &apply.ops {
        match op {
            Op::Set { name, value } => {
                invocation.arg("S").arg(name).arg(value);
            }
            Op::Remove { name } => {
                invocation.arg("D").arg(name);
            }
            Op::Incr { name, by } => {
                invocation.arg("I").arg(name).arg(*by);
            }
            _ => {}
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created> {
        let ttl = session.access.ttl_ms(session.deadline_ms);
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
        match self.run(&self.create, key, acks, false, add_args).await? {
            Value::Int(1) => Ok(Created::Created),
            Value::Int(0) => Ok(Created::Exists),
            _ => Err(corrupt("create answered neither 0 nor 1")),
        }
    }

    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        // Reserved names and increments beyond ±(2^53 − 1) (which the script, adding in double
        // precision, would round) are refused before anything is sent.
        check_ops(&apply.ops)?;
        for op in &apply.ops {
            if !matches!(op, Op::Set { .. } | Op::Remove { .. } | Op::Incr { .. }) {
                // A kind of change this store does not know must fail, not vanish.
                return Err(Error::new(
                    ErrorKind::Backend,
                    "the Redis store does not support this session operation",
                ));
            }
        }
        // Reads (no ops) never wait for replicas.
        let acks = self
            .waits_on_every_write()
            .filter(|_| !apply.ops.is_empty());
        let reply = self
            .run(&self.apply, key, acks, apply.ops.is_empty(), |inv| {
                add_op_args(inv, apply)
            })
            .await?;
        let parts = match reply {
            Value::Nil | Value::Boolean(false) => return Ok(Applied::Missing),
            // A lone increment: the new value, or every field after it.
            Value::Int(counter) => {
                return Ok(Applied::Done {
                    counters: vec![counter],
                    fields: None,
                });
            }
            Value::BulkString(_) => {
                let fields = parse_fields(reply)?;
                let Some(Op::Incr { name, .. }) = apply.ops.first() else {
                    return Err(corrupt(
                        "apply answered fields to a step that is not an increment",
                    ));
                };
                let counter = fields
                    .get(name)
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| corrupt("the incremented field is missing from the reply"))?;
                return Ok(Applied::Done {
                    counters: vec![counter],
                    fields: Some(fields),
                });
            }
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
            // The script returns the fields as they were before the ops (one HGETALL serves to
            // read the deadline too); the ops' effect is known here, so apply it.
            before => Some(after_ops(parse_fields(before)?, &apply.ops, &counters)?),
        };
        Ok(Applied::Done { counters, fields })
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool> {
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

    async fn peek(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Fields>> {
        // A plain read: it neither slides the TTL nor needs the script.
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.redis_key(key));
        let reply = bounded(
            self.operation_timeout,
            "answer HGETALL",
            self.connection.query::<Value>(&cmd),
        )
        .await?;
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
        self.run_index(
            user,
            now_ms,
            "A",
            Some(key),
            Some(deadline_ms),
            self.replica_acks,
        )
        .await?;
        Ok(())
    }

    async fn index_remove(&self, user: &UserKey, entry: &IndexEntry, now_ms: u64) -> Result<()> {
        let acks = self.waits_on_every_write();
        let written = Some(entry.written_ms);
        self.run_index(user, now_ms, "R", Some(&entry.key), written, acks)
            .await?;
        Ok(())
    }

    async fn index_members(&self, user: &UserKey, now_ms: u64) -> Result<Vec<IndexEntry>> {
        let reply = self.run_index(user, now_ms, "L", None, None, None).await?;
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
