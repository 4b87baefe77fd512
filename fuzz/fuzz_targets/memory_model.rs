//! The memory store under arbitrary operation sequences, checked against a reference model:
//! counters count exactly, and an expired or deleted session never answers again.
#![no_main]

use arbitrary::Arbitrary;
use cloakroom_core::store::{
    Access, Applied, Apply, Created, Fields, META_CREATED, META_DEADLINE, NewSession, Op, Store,
};
use cloakroom_core::{MemoryStore, SessionToken};
use libfuzzer_sys::fuzz_target;

// Times move in 7 ms steps; expiry (100 ms) and deadlines (1,000 ms) never fall on a step.
const IDLE_MS: u64 = 100;
const LIFETIME_MS: u64 = 1_000;

#[derive(Arbitrary, Debug)]
enum Step {
    Create(u8),
    Incr(u8),
    Load(u8),
    Delete(u8),
    Wait(u8),
}

#[derive(Clone, Copy)]
struct Entry {
    visits: i64,
    expires: u64,
    deadline: u64,
}

fuzz_target!(|steps: Vec<Step>| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|_| unreachable!());
    runtime.block_on(async {
        let store = MemoryStore::builder().with_sweep_interval(None).build();
        let keys: Vec<_> = (0..3)
            .map(|_| {
                SessionToken::generate()
                    .unwrap_or_else(|_| unreachable!())
                    .key()
            })
            .collect();
        let mut model: [Option<Entry>; 3] = [None; 3];
        let mut now: u64 = 1_700_000_000_000;
        let access = |now| Access {
            now_ms: now,
            idle_ms: IDLE_MS,
        };
        for step in steps {
            let live =
                |e: Option<Entry>, now: u64| e.filter(|e| now < e.expires && now < e.deadline);
            match step {
                Step::Wait(n) => now += u64::from(n % 30 + 1) * 7,
                Step::Create(i) => {
                    let i = usize::from(i % 3);
                    let deadline = now + LIFETIME_MS;
                    let mut fields = Fields::new();
                    fields.insert(META_CREATED.to_owned(), now.to_string());
                    fields.insert(META_DEADLINE.to_owned(), deadline.to_string());
                    let new = NewSession {
                        fields,
                        access: access(now),
                        deadline_ms: deadline,
                    };
                    let created = store.create(&keys[i], &new).await;
                    if live(model[i], now).is_some() {
                        assert!(matches!(created, Ok(Created::Exists)));
                    } else {
                        assert!(matches!(created, Ok(Created::Created)));
                        model[i] = Some(Entry {
                            visits: 0,
                            expires: now + IDLE_MS,
                            deadline,
                        });
                    }
                }
                Step::Incr(i) | Step::Load(i) => {
                    let incr = matches!(step, Step::Incr(_));
                    let i = usize::from(i % 3);
                    let ops = if incr {
                        vec![Op::Incr {
                            name: "visits".to_owned(),
                            by: 1,
                        }]
                    } else {
                        Vec::new()
                    };
                    let applied = store
                        .apply(
                            &keys[i],
                            &Apply {
                                access: access(now),
                                ops,
                                load: !incr,
                            },
                        )
                        .await;
                    match live(model[i], now) {
                        None => {
                            assert!(
                                matches!(applied, Ok(Applied::Missing)),
                                "resurrected: {applied:?}"
                            );
                            model[i] = None;
                        }
                        Some(mut entry) => {
                            let Ok(Applied::Done { counters, fields }) = applied else {
                                panic!("a live session answered {applied:?}");
                            };
                            if incr {
                                entry.visits += 1;
                                assert_eq!(counters, vec![entry.visits]);
                            } else {
                                let stored = fields.and_then(|f| f.get("visits").cloned());
                                assert_eq!(
                                    stored.map_or(0, |v| v.parse::<i64>().unwrap_or(-1)),
                                    entry.visits
                                );
                            }
                            entry.expires = (now + IDLE_MS).min(entry.deadline);
                            model[i] = Some(entry);
                        }
                    }
                }
                Step::Delete(i) => {
                    let i = usize::from(i % 3);
                    assert!(store.delete(&keys[i]).await.is_ok());
                    model[i] = None;
                }
            }
        }
    });
});
