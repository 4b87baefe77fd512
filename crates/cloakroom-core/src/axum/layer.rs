//! The tower layer and service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use axum_core::response::IntoResponse;
use http::header::{CACHE_CONTROL, COOKIE, HeaderValue, SET_COOKIE, VARY};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::adapter::{self, Finished};
use crate::builder::SessionBuilder;
use crate::config::SessionConfig;
use crate::error::Result;
use crate::session::SessionManager;
use crate::store::Store;

/// Adds a [`Session`](crate::Session) to every request and saves it when the handler
/// has returned.
///
/// The session is looked up lazily, on the handler's first use. When the handler has returned,
/// the layer writes the session's delta once (in a task of its own, so a client that goes away
/// cannot cancel a logout), sets or clears the cookie only when needed, and marks responses that
/// used the session `Cache-Control: no-store` (unless the handler said `private` or `no-store`)
/// and `Vary: Cookie`. A failure becomes the [`Error`](crate::Error)'s response: a status and a generic body,
/// never the error's text.
#[derive(Debug, Clone)]
pub struct SessionLayer {
    manager: SessionManager,
}

impl SessionLayer {
    /// Starts a layer over `store` (taken by value; an `Arc` of a store is a store too) whose
    /// cookies are signed with `secret` (a `&str`, a `String` or bytes, at least
    /// [`CookieSigner::MIN_SECRET_LEN`](crate::CookieSigner::MIN_SECRET_LEN) bytes). Options are
    /// chained; the first mistake is reported once, by [`SessionBuilder::build`].
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
        SessionBuilder::new(store, secret)
    }

    /// A layer over `store` with `config`; fails on contradictory configuration (for example
    /// `SameSite=None` without `Secure`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when `config` contradicts itself.
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

/// Builds a [`SessionLayer`]: see [`SessionLayer::builder`].
pub type SessionLayerBuilder = SessionBuilder<SessionLayer>;

impl From<SessionManager> for SessionLayer {
    fn from(manager: SessionManager) -> Self {
        Self { manager }
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
        let headers = request.headers();
        let session_headers = self
            .manager
            .config()
            .session_header()
            .into_iter()
            .flat_map(|name| headers.get_all(name).iter().map(HeaderValue::as_bytes));
        let session = adapter::session_from_headers(
            &self.manager,
            headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes),
            session_headers,
        );
        request.extensions_mut().insert(session.clone());
        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            // Writing runs in its own task: if the client goes away now, the logout's delete
            // or the rotation's second step still happens.
            let finished = adapter::finish_detached(session).await;
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
    let marks = finished.cache_marks(
        headers.contains_key(SET_COOKIE),
        headers.get(CACHE_CONTROL).map(HeaderValue::as_bytes),
    );
    if let Some(value) = marks.cache_control {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(value));
    }
    if let Some(vary) = marks.vary.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.append(VARY, vary);
    }
    response
}
