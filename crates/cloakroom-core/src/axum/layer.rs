//! The tower layer and service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::{Duration, SystemTime};

use axum_core::body::Body;
use axum_core::response::IntoResponse;
use http::header::{CACHE_CONTROL, COOKIE, HeaderValue, SET_COOKIE, VARY};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::adapter::{self, Finished};
use crate::clock::Clock;
use crate::config::{SameSite, SessionConfig, SessionLimits};
use crate::error::{Error, ErrorKind, Result};
use crate::session::SessionManager;
use crate::store::Store;

/// Adds a [`Session`](crate::Session) to every request and saves it when the handler
/// has returned.
///
/// The session is looked up lazily, on the handler's first use. When the handler has returned,
/// the layer writes the session's delta once (in a task of its own, so a client that goes away
/// cannot cancel a logout), sets or clears the cookie only when needed, and marks responses that
/// used the session `Cache-Control: no-store` (unless the handler said `private` or `no-store`)
/// and `Vary: Cookie`. A failure becomes the [`Error`]'s response: a status and a generic body,
/// never the error's text.
#[derive(Debug, Clone)]
pub struct SessionLayer {
    manager: SessionManager,
}

impl SessionLayer {
    /// Starts a layer over `store` (taken by value; an `Arc` of a store is a store too) whose
    /// cookies are signed with `secret` (a `&str`, a `String` or bytes, at least
    /// [`CookieSigner::MIN_SECRET_LEN`](crate::CookieSigner::MIN_SECRET_LEN) bytes). Options are chained; the first mistake is
    /// reported once, by [`SessionLayerBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use cloakroom_core::{MemoryStore, SessionLayer};
    ///
    /// # fn main() -> Result<(), cloakroom_core::Error> {
    /// let secret = "a secret of at least 32 bytes, from the environment";
    /// let layer = SessionLayer::builder(MemoryStore::new(), secret)
    ///     .with_idle_timeout(Duration::from_secs(30 * 60))
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(store: impl Store, secret: impl AsRef<[u8]>) -> SessionLayerBuilder {
        SessionLayerBuilder {
            store: Arc::new(store),
            config: SessionConfig::new(secret),
        }
    }

    /// A layer over `store` with `config`; fails on contradictory configuration (for example
    /// `SameSite=None` without `Secure`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when `config` contradicts itself.
    pub fn new(store: Arc<dyn Store>, config: SessionConfig) -> Result<Self> {
        Ok(Self {
            manager: SessionManager::new(store, config)?,
        })
    }

    /// A layer from an existing manager.
    pub fn from_manager(manager: SessionManager) -> Self {
        Self { manager }
    }

    /// The manager behind the layer.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }
}

/// Builds a [`SessionLayer`]: see [`SessionLayer::builder`]. Each option is a
/// [`SessionConfig`] setting of the same name.
#[derive(Debug)]
#[must_use = "a builder does nothing until `.build()`"]
pub struct SessionLayerBuilder {
    store: Arc<dyn Store>,
    // The first mistake (a short secret, a bad key) is kept for `build` to report.
    config: Result<SessionConfig>,
}

impl SessionLayerBuilder {
    fn map(mut self, change: impl FnOnce(SessionConfig) -> Result<SessionConfig>) -> Self {
        self.config = self.config.and_then(change);
        self
    }

    /// See [`SessionConfig::with_idle_timeout`].
    pub fn with_idle_timeout(self, timeout: Duration) -> Self {
        self.map(|c| Ok(c.with_idle_timeout(timeout)))
    }

    /// See [`SessionConfig::with_touch_interval`].
    pub fn with_touch_interval(self, interval: Duration) -> Self {
        self.map(|c| Ok(c.with_touch_interval(interval)))
    }

    /// See [`SessionConfig::with_absolute_timeout`].
    pub fn with_absolute_timeout(self, timeout: Duration) -> Self {
        self.map(|c| Ok(c.with_absolute_timeout(timeout)))
    }

    /// See [`SessionConfig::with_secure`].
    pub fn with_secure(self, secure: bool) -> Self {
        self.map(|c| Ok(c.with_secure(secure)))
    }

    /// See [`SessionConfig::with_same_site`].
    pub fn with_same_site(self, same_site: SameSite) -> Self {
        self.map(|c| Ok(c.with_same_site(same_site)))
    }

    /// See [`SessionConfig::with_cookie_name`].
    pub fn with_cookie_name(self, name: impl Into<String>) -> Self {
        self.map(|c| Ok(c.with_cookie_name(name)))
    }

    /// See [`SessionConfig::with_path`].
    pub fn with_path(self, path: impl Into<String>) -> Self {
        self.map(|c| Ok(c.with_path(path)))
    }

    /// See [`SessionConfig::with_domain`].
    pub fn with_domain(self, domain: impl Into<String>) -> Self {
        self.map(|c| Ok(c.with_domain(domain)))
    }

    /// See [`SessionConfig::with_limits`].
    pub fn with_limits(self, limits: SessionLimits) -> Self {
        self.map(|c| Ok(c.with_limits(limits)))
    }

    /// See [`SessionConfig::with_previous_secret`].
    pub fn with_previous_secret(self, secret: impl AsRef<[u8]>, retire_at: SystemTime) -> Self {
        self.map(|c| c.with_previous_secret(secret, retire_at))
    }

    /// See [`SessionConfig::with_next_secret`].
    pub fn with_next_secret(self, secret: impl AsRef<[u8]>) -> Self {
        self.map(|c| c.with_next_secret(secret))
    }

    /// See [`SessionConfig::with_clock`].
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.map(|c| Ok(c.with_clock(clock)))
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a secret shorter than
    /// [`CookieSigner::MIN_SECRET_LEN`](crate::CookieSigner::MIN_SECRET_LEN), too many previous or next keys, or a
    /// contradictory cookie setting (for example `SameSite=None` without `Secure`).
    pub fn build(self) -> Result<SessionLayer> {
        SessionLayer::new(self.store, self.config?)
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: self.manager.clone(),
        }
    }
}

/// The service [`SessionLayer`] builds.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
}

impl<S, B> Service<Request<B>> for SessionService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // As bytes: another cookie in the same header may not be ASCII, and must not hide ours.
        let session = adapter::session_from_cookie_headers(
            &self.manager,
            request
                .headers()
                .get_all(COOKIE)
                .iter()
                .map(HeaderValue::as_bytes),
        );
        request.extensions_mut().insert(session.clone());
        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            let finished = if adapter::has_unsaved_changes(&session) {
                // Writing runs in its own task: if the client goes away now, the logout's delete
                // or the rotation's second step still happens.
                let saving = tokio::spawn(async move { adapter::finish(&session).await });
                match saving.await {
                    Ok(finished) => finished,
                    // It may have written part of what it had to.
                    Err(e) => Err(Error::new(
                        ErrorKind::Backend,
                        format!("saving the session did not complete: {e}"),
                    )
                    .with_unknown_outcome()),
                }
            } else {
                // Nothing to write: no store access, no task.
                adapter::finish(&session).await
            };
            Ok(finish(finished, response))
        })
    }
}

fn finish(finished: Result<Finished>, mut response: Response<Body>) -> Response<Body> {
    let finished = match finished {
        Ok(finished) => finished,
        Err(e) => return e.into_response(),
    };
    let headers = response.headers_mut();
    if let Some(cookie) = &finished.set_cookie {
        match cookie.to_header_value() {
            Ok(value) => {
                headers.append(SET_COOKIE, value);
            }
            Err(e) => return e.into_response(),
        }
    }
    if headers.contains_key(SET_COOKIE) {
        // A cache that kept this response would hand the cookie, and the session, to the next
        // visitor: whatever the handler said, nobody stores it.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    } else if finished.accessed {
        // The response depends on who asked: no shared cache may keep it, and no cache may hand
        // it to another cookie. A handler's own `private` or `no-store` policy is kept.
        let keep = headers
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let v = v.to_ascii_lowercase();
                (v.contains("private") || v.contains("no-store")) && !v.contains("public")
            });
        if !keep {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    const SECRET: &str = "layer-builder-secret-0123456789abcdef012345";

    #[test]
    fn the_builder_takes_options_and_reports_mistakes_once() -> Result<()> {
        // A shared store, and the secret as a `String`.
        let shared = Arc::new(MemoryStore::new());
        let secret = String::from(SECRET);
        let layer = SessionLayer::builder(shared.clone(), secret)
            .with_idle_timeout(Duration::from_secs(60))
            .with_cookie_name("id")
            .build()?;
        assert_eq!(
            layer.manager().config().idle_timeout(),
            Duration::from_secs(60)
        );
        assert_eq!(layer.manager().config().cookie_name(), "id");
        let kind = |built: Result<SessionLayer>| built.map(|_| ()).map_err(|e| e.kind());
        // A short secret, reported by `build` even after more options.
        let short = SessionLayer::builder(MemoryStore::new(), b"short".as_slice())
            .with_secure(false)
            .build();
        assert_eq!(kind(short), Err(ErrorKind::Config));
        // A contradiction between options.
        let contradiction = SessionLayer::builder(MemoryStore::new(), SECRET)
            .with_secure(false)
            .with_same_site(SameSite::None)
            .build();
        assert_eq!(kind(contradiction), Err(ErrorKind::Config));
        // A bad next key.
        let bad_next = SessionLayer::builder(MemoryStore::new(), SECRET)
            .with_next_secret("short")
            .build();
        assert_eq!(kind(bad_next), Err(ErrorKind::Config));
        Ok(())
    }
}
