//! Test plumbing: the demo app over an in-process memory store, and a cookie-keeping client
//! that drives it through `tower::ServiceExt::oneshot`, as a browser would through the network.
#![allow(dead_code)]

pub mod process;
// Shared with the library's tests: skipped tests are counted and reported on exit.
#[path = "../../../cloakroom/tests/support/skip.rs"]
pub mod skip;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cloakroom::stores::memory::MemoryStore;
use cloakroom::{Backend, Clock as _, Key, Record, SessionHash, Store, SystemClock};
use cloakroom_demo::{Config, LoginLimits, PasswordCost};
use serde_json::Value;
use tower::ServiceExt as _;

pub const BOB: (&str, &str) = ("bob@example.com", "builder");
pub const ALICE: (&str, &str) = ("alice@example.com", "wonderland");
pub const BOB_ID: &str = "2";

/// The app and the store behind it, to check what was (not) stored.
pub struct TestApp {
    pub router: Router,
    pub store: Arc<MemoryStore>,
}

/// The demo over `store`, with cheap password hashing.
pub fn demo_router(store: Arc<dyn Store>) -> Router {
    demo_router_for(Backend::Store(store))
}

/// The demo over `backend` (a store, or sealed cookies), with cheap password hashing.
pub fn demo_router_for(backend: Backend) -> Router {
    cloakroom_demo::router(Config {
        backend,
        key: Key::from_secret(&[7; 32]).unwrap(),
        secure_cookies: true,
        password_cost: PasswordCost::Fast,
        login_limits: LoginLimits::default(),
    })
    .unwrap()
}

impl TestApp {
    pub fn new() -> Self {
        let store = Arc::new(MemoryStore::default());
        let router = demo_router(store.clone());
        Self { router, store }
    }

    /// A new browser.
    pub fn client(&self) -> Client {
        Client::new(self.router.clone())
    }

    /// A browser with its own user agent, to tell devices apart.
    pub fn client_named(&self, user_agent: &str) -> Client {
        Client {
            user_agent: user_agent.into(),
            ..self.client()
        }
    }

    pub async fn live_sessions(&self) -> u64 {
        self.store.count(SystemClock.now()).await.unwrap()
    }

    pub async fn sessions_of(&self, user: &str) -> Vec<(SessionHash, Record)> {
        self.store.list_user(user, SystemClock.now()).await.unwrap()
    }
}

/// One response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The session cookie's Set-Cookie, if any.
    pub fn set_cookie(&self) -> Option<&str> {
        let all: Vec<_> = self.set_cookies().filter(|c| !is_csrf_cookie(c)).collect();
        assert!(all.len() <= 1, "more than one session Set-Cookie: {all:?}");
        all.first().copied()
    }

    /// The visitors' CSRF cookie's Set-Cookie, if any.
    pub fn set_csrf_cookie(&self) -> Option<&str> {
        self.set_cookies().find(|c| is_csrf_cookie(c))
    }

    fn set_cookies(&self) -> impl Iterator<Item = &str> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
    }

    pub fn location(&self) -> Option<&str> {
        self.header(header::LOCATION)
    }

    /// A 303 to `to`.
    #[track_caller]
    pub fn assert_redirect(&self, to: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        assert_eq!(self.location(), Some(to));
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The CSRF token of the page's forms.
    pub fn csrf_token(&self) -> Option<String> {
        let at = self.body.find(r#"name="csrf_token" value=""#)?;
        let rest = &self.body[at + r#"name="csrf_token" value=""#.len()..];
        Some(rest[..rest.find('"')?].to_owned())
    }

    #[track_caller]
    pub fn assert_contains(&self, text: &str) {
        assert!(
            self.body.contains(text),
            "{text:?} not in the {} page:\n{}",
            self.status,
            self.body
        );
    }

    #[track_caller]
    pub fn assert_lacks(&self, text: &str) {
        assert!(
            !self.body.contains(text),
            "{text:?} unexpectedly in the page:\n{}",
            self.body
        );
    }
}

fn is_csrf_cookie(set_cookie: &str) -> bool {
    set_cookie.starts_with("__Host-csrf=") || set_cookie.starts_with("csrf=")
}

/// A browser stand-in that keeps the session cookie and the visitors' CSRF cookie.
#[derive(Clone)]
pub struct Client {
    router: Router,
    /// `name=value` of the session cookie, as the browser would send it.
    pub cookie: Option<String>,
    /// `name=value` of the CSRF cookie that anonymous forms are checked against.
    pub csrf_cookie: Option<String>,
    pub user_agent: String,
    /// The TCP peer the server sees, as `axum::serve` with connect info records it.
    pub peer: Option<SocketAddr>,
}

impl Client {
    /// A new browser for `router`.
    pub fn new(router: Router) -> Self {
        Self {
            router,
            cookie: None,
            csrf_cookie: None,
            user_agent: "TestBrowser/1.0".into(),
            peer: None,
        }
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<String>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::USER_AGENT, &self.user_agent);
        let cookies: Vec<&str> = [&self.cookie, &self.csrf_cookie]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if !cookies.is_empty() {
            request = request.header(header::COOKIE, cookies.join("; "));
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let mut request = request.body(Body::from(body.into())).unwrap();
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let reply = Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        };
        if let Some(set) = reply.set_csrf_cookie() {
            self.csrf_cookie = Some(set.split(';').next().unwrap().trim().to_owned());
        }
        if let Some(set) = reply.set_cookie() {
            let pair = set.split(';').next().unwrap().trim();
            self.cookie = if pair.ends_with('=') || set.contains("Max-Age=0") {
                None
            } else {
                Some(pair.to_owned())
            };
        }
        reply
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, None, "").await
    }

    /// Posts a urlencoded form as given (no token added).
    pub async fn post_form_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send(
            Method::POST,
            path,
            Some("application/x-www-form-urlencoded"),
            body,
        )
        .await
    }

    /// Opens `page`, then submits a form to `action` with the page's CSRF token.
    pub async fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Reply {
        let shown = self.get(page).await;
        assert_eq!(shown.status, StatusCode::OK, "{page}: {}", shown.body);
        let token = shown
            .csrf_token()
            .unwrap_or_else(|| panic!("no form on {page}"));
        let mut all = vec![("csrf_token", token.as_str())];
        all.extend_from_slice(fields);
        self.post_form_raw(action, &all).await
    }

    pub async fn login(&mut self, (email, password): (&str, &str)) -> Reply {
        self.submit(
            "/login",
            "/login",
            &[("email", email), ("password", password)],
        )
        .await
    }

    pub async fn logout(&mut self) -> Reply {
        self.submit("/", "/logout", &[]).await
    }

    pub async fn api(&mut self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.send(method, path, Some("application/json"), body)
            .await
    }

    pub async fn api_get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, None, "").await
    }

    /// Whether `/api/session` says this browser is logged in.
    pub async fn is_logged_in(&mut self) -> bool {
        self.api_get("/api/session").await.json()["logged_in"] == true
    }

    pub async fn api_login(&mut self, (email, password): (&str, &str)) -> Reply {
        let body = serde_json::json!({ "email": email, "password": password });
        self.api(Method::POST, "/api/login", Some(body)).await
    }
}
