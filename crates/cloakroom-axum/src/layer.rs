//! The tower layer and service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use axum_core::response::IntoResponse;
use cloakroom_core::{Error, ErrorKind, Finished, Result, SessionConfig, SessionManager, Store};
use http::header::{CACHE_CONTROL, COOKIE, HeaderValue, SET_COOKIE, VARY};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::SessionRejection;

/// Adds a [`Session`](cloakroom_core::Session) to every request and saves it when the handler
/// has returned.
#[derive(Debug, Clone)]
pub struct SessionLayer {
    manager: SessionManager,
}

impl SessionLayer {
    /// A layer over `store` with `config`; fails on contradictory configuration (for example
    /// `SameSite=None` without `Secure`).
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
        let session = self.manager.session_from_cookie_headers(
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
            let finished = if session.has_unsaved_changes().await {
                // Writing runs in its own task: if the client goes away now, the logout's delete
                // or the rotation's second step still happens.
                let saving = tokio::spawn(async move { session.finish().await });
                match saving.await {
                    Ok(finished) => finished,
                    Err(e) => Err(Error::new(
                        ErrorKind::Backend,
                        format!("saving the session did not complete: {e}"),
                    )),
                }
            } else {
                // Nothing to write: no store access, no task.
                session.finish().await
            };
            Ok(finish(finished, response))
        })
    }
}

fn finish(finished: Result<Finished>, mut response: Response<Body>) -> Response<Body> {
    let finished = match finished {
        Ok(finished) => finished,
        Err(e) => return SessionRejection(e).into_response(),
    };
    let headers = response.headers_mut();
    if let Some(cookie) = finished.set_cookie {
        match HeaderValue::from_str(&cookie) {
            Ok(value) => {
                headers.append(SET_COOKIE, value);
            }
            Err(_) => {
                tracing::error!("a session cookie could not be written as a header");
            }
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
