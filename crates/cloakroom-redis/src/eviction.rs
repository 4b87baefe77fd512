//! The server's eviction policy, and whether it keeps the per-user guarantees.
//!
//! A user's index (the sorted set that "log out everywhere" reads) is touched at login and
//! listing only, while the user's sessions are touched on every request. An eviction policy that
//! may pick any key therefore drops the index long before the sessions it lists, which then
//! survive "log out everywhere". The index has no TTL, so the `volatile-*` policies, which only
//! evict keys that have one, never pick it; `noeviction` evicts nothing. The `allkeys-*` policies
//! can, so they are reported at start-up. `INFO memory` is read rather than `CONFIG GET`, which
//! managed services (ElastiCache) refuse.

use std::fmt;

use redis::Value;

/// The eviction settings of a Redis server (or the weakest of a cluster's primaries), as
/// `INFO memory` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EvictionPolicy {
    /// `maxmemory-policy`, for example `volatile-lru`.
    pub name: String,
    /// `maxmemory` in bytes; 0 means no limit, so nothing is ever evicted.
    pub maxmemory: u64,
}

impl EvictionPolicy {
    /// Whether a user's sessions can never outlive their index under this policy: nothing is
    /// evicted (`noeviction`, or no `maxmemory`), or only keys with a TTL are (`volatile-*`),
    /// and an index has none.
    pub fn keeps_user_indexes(&self) -> bool {
        self.maxmemory == 0 || self.name == "noeviction" || self.name.starts_with("volatile-")
    }

    // Reads `maxmemory_policy` and `maxmemory` from the text of `INFO memory`.
    fn from_info(info: &str) -> Option<Self> {
        let mut name = None;
        let mut maxmemory = None;
        for line in info.lines() {
            match line.trim_end().split_once(':') {
                Some(("maxmemory_policy", value)) => name = Some(value.to_owned()),
                Some(("maxmemory", value)) => maxmemory = value.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            name: name?,
            maxmemory: maxmemory?,
        })
    }

    /// The policy in an `INFO memory` reply: one text, or (from a cluster) one per primary, of
    /// which the first that breaks the guarantees is kept, else the first.
    pub(crate) fn from_reply(reply: &Value) -> Option<Self> {
        let mut found = Vec::new();
        collect(reply, &mut found);
        let first = found.first().cloned();
        found
            .into_iter()
            .find(|policy| !policy.keeps_user_indexes())
            .or(first)
    }
}

fn collect(reply: &Value, found: &mut Vec<EvictionPolicy>) {
    match reply {
        Value::BulkString(bytes) => {
            if let Some(policy) = std::str::from_utf8(bytes)
                .ok()
                .and_then(EvictionPolicy::from_info)
            {
                found.push(policy);
            }
        }
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => {
            found.extend(EvictionPolicy::from_info(text));
        }
        Value::Array(items) | Value::Set(items) => {
            for item in items {
                collect(item, found);
            }
        }
        Value::Map(pairs) => {
            for (_, value) in pairs {
                collect(value, found);
            }
        }
        _ => {}
    }
}

impl fmt::Display for EvictionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "maxmemory-policy {}, maxmemory {}",
            self.name, self.maxmemory
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, maxmemory: u64) -> EvictionPolicy {
        EvictionPolicy {
            name: name.to_owned(),
            maxmemory,
        }
    }

    #[test]
    fn policies_that_may_evict_an_index_are_told_apart() {
        for keeps in ["noeviction", "volatile-lru", "volatile-lfu", "volatile-ttl"] {
            assert!(policy(keeps, 1 << 30).keeps_user_indexes(), "{keeps}");
        }
        for breaks in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
            assert!(!policy(breaks, 1 << 30).keeps_user_indexes(), "{breaks}");
            // Without a memory limit nothing is ever evicted.
            assert!(policy(breaks, 0).keeps_user_indexes(), "{breaks}");
        }
    }

    #[test]
    fn info_text_is_read_and_the_weakest_node_wins() {
        let info = |p: &str, m: u64| {
            Value::BulkString(
                format!("# Memory\r\nused_memory:1\r\nmaxmemory:{m}\r\nmaxmemory_policy:{p}\r\n")
                    .into_bytes(),
            )
        };
        assert_eq!(
            EvictionPolicy::from_reply(&info("volatile-lru", 100)),
            Some(policy("volatile-lru", 100))
        );
        let cluster = Value::Map(vec![
            (Value::SimpleString("a".into()), info("volatile-lru", 100)),
            (Value::SimpleString("b".into()), info("allkeys-lru", 100)),
        ]);
        assert_eq!(
            EvictionPolicy::from_reply(&cluster),
            Some(policy("allkeys-lru", 100))
        );
        assert_eq!(EvictionPolicy::from_reply(&Value::Nil), None);
        assert_eq!(
            EvictionPolicy::from_reply(&Value::BulkString(b"garbage".to_vec())),
            None
        );
    }
}
