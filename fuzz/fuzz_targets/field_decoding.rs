//! Whatever bytes a session field holds, reading it as any type gives a value or a `Decode`
//! error: never a panic.
#![no_main]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cloakroom_core::adapter;
use cloakroom_core::store::{Access, Fields, META_CREATED, META_DEADLINE, NewSession, Store};
use cloakroom_core::{ErrorKind, MemoryStore, SessionConfig, SessionManager, SessionToken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: String| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|_| unreachable!());
    runtime.block_on(async {
        let store = Arc::new(MemoryStore::new());
        let secret = [9u8; 32];
        let signer = cloakroom_core::CookieSigner::new(&secret).unwrap_or_else(|_| unreachable!());
        let manager = SessionManager::new(
            store.clone(),
            SessionConfig::new(secret).unwrap_or_else(|_| unreachable!()),
        )
        .unwrap_or_else(|_| unreachable!());
        let token = SessionToken::generate().unwrap_or_else(|_| unreachable!());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut fields = Fields::new();
        fields.insert(META_CREATED.to_owned(), now.to_string());
        fields.insert(META_DEADLINE.to_owned(), (now + 60_000).to_string());
        fields.insert("f".to_owned(), value);
        let session = NewSession {
            fields,
            access: Access {
                now_ms: now,
                idle_ms: 60_000,
                touch_ms: 0,
            },
            deadline_ms: now + 60_000,
            origin: cloakroom_core::store::Origin::Login,
        };
        store
            .create(&token.key(), &session)
            .await
            .unwrap_or_else(|_| unreachable!());
        let cookie = format!("{}={}", manager.config().cookie_name(), signer.sign(&token));
        let handle = adapter::session_from_cookie_headers(&manager, [cookie.as_bytes()]);
        for result in [
            handle.get::<String>("f").await.map(|_| ()),
            handle.get::<i64>("f").await.map(|_| ()),
            handle.get::<serde_json::Value>("f").await.map(|_| ()),
            handle.get::<Vec<u8>>("f").await.map(|_| ()),
        ] {
            if let Err(e) = result {
                assert_eq!(e.kind(), ErrorKind::Decode, "{e:?}");
            }
        }
    });
});
