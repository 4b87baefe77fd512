//! Driving the demo in-process, with cookies handled by hand: the axum router with `oneshot`,
//! and the actix-web app through actix-web's test service on a thread of its own. The suite's
//! tests are written once and run against both apps: [`over_each_app!`] makes one module per
//! framework, and [`app_over`] builds the app of the framework the test runs under.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use cloakroom::actix::SessionMiddleware;
use cloakroom::{SessionConfig, SessionLayer, SessionManager, Store};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt;

pub(crate) const SECRET: &[u8] = b"demo-test-secret-0123456789abcdef0123456789";

/// The web framework a test drives the demo on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framework {
    Axum,
    Actix,
}

tokio::task_local! {
    static FRAMEWORK: Framework;
}

impl Framework {
    /// Runs `test` with the apps it builds on this framework.
    pub(crate) async fn run<T>(self, test: impl Future<Output = T>) -> T {
        FRAMEWORK.scope(self, test).await
    }

    /// The framework the current test runs under.
    fn current() -> anyhow::Result<Self> {
        FRAMEWORK.try_with(|f| *f).map_err(|_| {
            anyhow::anyhow!("the test does not run under over_each_app!, so it has no framework")
        })
    }
}

/// Runs each named test on both frameworks: `over_each_app!(plain; a, b)` for tests without a
/// fixture, `over_each_app!(test_over_each_store; a, b)` (or another fixture macro of
/// `cloakroom-test`) for tests over stores.
macro_rules! over_each_app {
    (plain; $($name:ident),* $(,)?) => {
        $crate::support::over_each_app!(@plain on_axum, Axum; $($name),*);
        $crate::support::over_each_app!(@plain on_actix, Actix; $($name),*);
    };
    (@plain $module:ident, $framework:ident; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    $crate::support::Framework::$framework.run(super::$name()).await
                }
            )*
        }
    };
    ($suite:ident; $($name:ident),* $(,)?) => {
        $crate::support::over_each_app!(@stores on_axum, Axum, $suite; $($name),*);
        $crate::support::over_each_app!(@stores on_actix, Actix, $suite; $($name),*);
    };
    (@stores $module:ident, $framework:ident, $suite:ident; $($name:ident),*) => {
        mod $module {
            $(
                async fn $name(f: cloakroom_test::StoreFixture) -> anyhow::Result<()> {
                    $crate::support::Framework::$framework.run(super::$name(f)).await
                }
            )*
            cloakroom_test::$suite!($($name),*);
        }
    };
}
pub(crate) use over_each_app;

/// The demo app on one framework, cheap to clone.
#[derive(Clone)]
pub(crate) enum Demo {
    Axum(Router),
    Actix(Arc<ActixApp>),
}

/// The demo over `store` with the test secret, on the current test's framework.
pub(crate) fn app_over(store: Arc<dyn Store>) -> anyhow::Result<Demo> {
    app_with(store, SessionConfig::new(SECRET)?)
}

/// The demo over `store` with `config`, on the current test's framework.
pub(crate) fn app_with(store: Arc<dyn Store>, config: SessionConfig) -> anyhow::Result<Demo> {
    let manager = SessionManager::new(store, cloakroom_demo::pages::session_config(config))?;
    Ok(match Framework::current()? {
        Framework::Axum => Demo::Axum(cloakroom_demo::axum_app::app(SessionLayer::from_manager(
            manager,
        ))),
        Framework::Actix => Demo::Actix(Arc::new(ActixApp::start(
            SessionMiddleware::from_manager(manager),
        )?)),
    })
}

/// The actix-web app, served by actix-web's test service on a thread of its own: actix-web's
/// services are not `Send`, and the suite sends requests from many tasks at once. Each request
/// is a task on that thread, so they run concurrently. The thread ends when the app is dropped.
pub(crate) struct ActixApp {
    requests: mpsc::UnboundedSender<Job>,
}

struct Job {
    request: Request<Bytes>,
    reply: oneshot::Sender<anyhow::Result<Reply>>,
}

impl ActixApp {
    fn start(sessions: SessionMiddleware) -> anyhow::Result<Self> {
        let (requests, mut jobs) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("actix-demo".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let app = cloakroom_demo::actix_app::app(sessions);
                    let service = Rc::new(actix_web::test::init_service(app).await);
                    while let Some(job) = jobs.recv().await {
                        let service = Rc::clone(&service);
                        actix_web::rt::spawn(async move {
                            let reply = call_actix(&*service, job.request).await;
                            let _ = job.reply.send(reply);
                        });
                    }
                });
            })?;
        Ok(Self { requests })
    }

    async fn send(&self, request: Request<Bytes>) -> anyhow::Result<Reply> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Job { request, reply })
            .map_err(|_| anyhow::anyhow!("the actix-web app's thread has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the actix-web app dropped the request"))?
    }
}

async fn call_actix<S, B>(service: &S, request: Request<Bytes>) -> anyhow::Result<Reply>
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let (parts, body) = request.into_parts();
    let method = actix_web::http::Method::from_bytes(parts.method.as_str().as_bytes())?;
    let mut test = actix_web::test::TestRequest::default()
        .method(method)
        .uri(&parts.uri.to_string());
    for (name, value) in &parts.headers {
        test = test.append_header((
            actix_web::http::header::HeaderName::from_bytes(name.as_str().as_bytes())?,
            actix_web::http::header::HeaderValue::from_bytes(value.as_bytes())?,
        ));
    }
    if !body.is_empty() {
        test = test.set_payload(body);
    }
    let (status, headers, bytes) = match service.call(test.to_request()).await {
        Ok(response) => {
            let (status, headers) = http_parts(response.status(), response.headers())?;
            let bytes = actix_web::body::to_bytes(response.into_body())
                .await
                .map_err(|e| {
                    let e: Box<dyn std::error::Error> = e.into();
                    anyhow::anyhow!("reading the body: {e}")
                })?;
            (status, headers, bytes)
        }
        Err(error) => {
            let response = error.error_response();
            let (status, headers) = http_parts(response.status(), response.headers())?;
            let bytes = actix_web::body::to_bytes(response.into_body())
                .await
                .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?;
            (status, headers, bytes)
        }
    };
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

// actix-web speaks `http` 0.2; the suite speaks `http` 1. Both are bytes on the wire.
fn http_parts(
    status: actix_web::http::StatusCode,
    headers: &actix_web::http::header::HeaderMap,
) -> anyhow::Result<(StatusCode, HeaderMap)> {
    let mut converted = HeaderMap::new();
    for (name, value) in headers {
        converted.append(
            HeaderName::from_bytes(name.as_str().as_bytes())?,
            HeaderValue::from_bytes(value.as_bytes())?,
        );
    }
    Ok((StatusCode::from_u16(status.as_u16())?, converted))
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    /// The cookie pair a browser would keep from this response: `Some("")` when it was cleared.
    pub(crate) fn cookie(&self) -> Option<String> {
        let header = self.headers.get(header::SET_COOKIE)?.to_str().ok()?;
        let pair = header.split(';').next()?.trim().to_owned();
        Some(if pair.ends_with('=') {
            String::new()
        } else {
            pair
        })
    }

    pub(crate) fn set_cookie_header(&self) -> Option<&str> {
        self.headers.get(header::SET_COOKIE)?.to_str().ok()
    }

    pub(crate) fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

pub(crate) async fn send(app: &Demo, request: Request<Body>) -> anyhow::Result<Reply> {
    match app {
        Demo::Axum(router) => {
            let response = router.clone().oneshot(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response.into_body().collect().await?.to_bytes();
            Ok(Reply {
                status,
                headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        }
        Demo::Actix(actix) => {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await?.to_bytes();
            actix.send(Request::from_parts(parts, bytes)).await
        }
    }
}

pub(crate) async fn get(app: &Demo, path: &str, cookie: Option<&str>) -> anyhow::Result<Reply> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(app, request.body(Body::empty())?).await
}

pub(crate) async fn post_form(
    app: &Demo,
    path: &str,
    cookie: Option<&str>,
    body: impl Into<Body>,
) -> anyhow::Result<Reply> {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(app, request.body(body.into())?).await
}

/// What a browser gets with the login form: the CSRF cookie pair and the token in the page.
pub(crate) async fn csrf_for_login(app: &Demo) -> anyhow::Result<(String, String)> {
    let form = get(app, "/login", None).await?;
    let cookie = form
        .cookie()
        .filter(|c| c.starts_with("__Host-cloakroom-csrf="))
        .ok_or_else(|| anyhow::anyhow!("the login form set no CSRF cookie: {form:?}"))?;
    let token = form
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("the login form has no CSRF field: {}", form.body))?
        .to_owned();
    Ok((cookie, token))
}

/// Posts the login form as a browser would after showing it: with the form's CSRF token in the
/// body and its cookie beside `cookie` (the browser's session cookie, if any).
pub(crate) async fn post_login(
    app: &Demo,
    cookie: Option<&str>,
    body: impl AsRef<[u8]>,
) -> anyhow::Result<Reply> {
    let (csrf_cookie, token) = csrf_for_login(app).await?;
    let cookies = match cookie {
        Some(cookie) => format!("{cookie}; {csrf_cookie}"),
        None => csrf_cookie,
    };
    let mut full = format!("csrf={token}&").into_bytes();
    full.extend_from_slice(body.as_ref());
    post_form(app, "/login", Some(&cookies), full).await
}

/// Whether a response logged someone in (set the session cookie, not just the CSRF one).
pub(crate) fn sets_session_cookie(reply: &Reply) -> bool {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("__Host-cloakroom="))
}

/// Logs in as `name` (form-encoded by the caller's choice of text) and returns the cookie.
pub(crate) async fn login(app: &Demo, encoded_name: &str) -> anyhow::Result<String> {
    let reply = post_login(app, None, format!("username={encoded_name}")).await?;
    anyhow::ensure!(
        reply.status == StatusCode::SEE_OTHER,
        "login answered {}",
        reply.status
    );
    reply
        .cookie()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| anyhow::anyhow!("login set no cookie"))
}

/// The visit count on a logged-in index page.
pub(crate) fn visits(body: &str) -> Option<i64> {
    let rest = body.split("Visits: ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
