//! The size of the futures every request makes: allocated and moved on every request, so kept
//! small (measured on a real Redis store, whose calls are the largest).

use std::sync::Arc;

use anyhow::ensure;
use cloakroom_core::store::{Access, Apply, Delta, Store};
use cloakroom_core::{Session, SessionConfig, SessionManager, SessionToken, adapter};
use cloakroom_redis::RedisStore;
use cloakroom_test::RedisServer;

/// A store call's future is boxed on every request (the `Store` trait's methods return boxed
/// futures), and so is a handler's, which holds the session's own. An `async fn` that awaits a
/// future it was handed keeps that future twice, and nested wrappers once made a Redis call's
/// future some 6.5 KiB, copied and allocated on every request. Measured with Rust 1.95, and
/// what they were before: the store call 1,256 bytes (6,680), a read 432 (712), the end of a
/// request 168 (1,648). The bounds leave room for the compiler, and are below what that was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_call_and_a_session_read_keep_small_futures() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let store = Arc::new(RedisStore::connect(server.url()).await?);
    let key = SessionToken::generate()?.key();
    let mut delta = Delta::default();
    delta.incr("visits", 1)?;
    let apply = Apply {
        access: Access {
            now_ms: 1,
            idle_ms: 60_000,
            touch_ms: 0,
        },
        delta,
        load: true,
    };
    // The store's own future, not that of the `Arc` forwarding to it.
    let call = Store::apply(&*store, &key, &apply);
    let size = std::mem::size_of_val(&*call);
    drop(call);
    ensure!(
        size <= 2_560,
        "a Redis store call's future takes {size} bytes"
    );

    let manager = SessionManager::new(
        store,
        SessionConfig::new("a test secret of at least thirty-two bytes")?,
    )?;
    let session: Session = adapter::session_from_cookie_headers(&manager, []);
    let read = session.get::<String>("username");
    let size = std::mem::size_of_val(&read);
    drop(read);
    ensure!(size <= 576, "a session read's future takes {size} bytes");
    let end = adapter::finish(&session);
    let size = std::mem::size_of_val(&end);
    drop(end);
    ensure!(
        size <= 512,
        "the end of a request's future takes {size} bytes"
    );
    Ok(())
}
