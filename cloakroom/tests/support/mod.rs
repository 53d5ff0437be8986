//! Shared test plumbing: a cookie-keeping client over a router, and a store wrapper that counts
//! operations, holds one of them until released, and injects faults (it forwards every call to a
//! real store).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
mod skip;

#[allow(unused_imports)]
pub use skip::{skip_for, skip_unreachable};

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use cloakroom::{Patch, Record, SessionHash, Store, StoreError, Timestamp};
use http::{HeaderMap, Request, StatusCode, header};
use tokio::sync::Notify;
use tower::ServiceExt;

/// Counts the operations a real store receives, and can be told to fail them all.
pub struct Probe<S> {
    pub inner: Arc<S>,
    ops: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    corrupt: Arc<AtomicBool>,
    held: Arc<HeldSlot>,
}

/// The operation to hold next, by name, and its gate.
type HeldSlot = Mutex<Option<(&'static str, Arc<Held>)>>;

/// One held store operation: `reached` fires when it is called, and it waits for `release`.
#[derive(Default)]
pub struct Held {
    pub reached: Notify,
    pub release: Notify,
}

impl<S> Clone for Probe<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            ops: Arc::clone(&self.ops),
            writes: Arc::clone(&self.writes),
            failing: Arc::clone(&self.failing),
            corrupt: Arc::clone(&self.corrupt),
            held: Arc::clone(&self.held),
        }
    }
}

impl<S: Store> Probe<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner: Arc::new(inner),
            ops: Arc::default(),
            writes: Arc::default(),
            failing: Arc::default(),
            corrupt: Arc::default(),
            held: Arc::default(),
        }
    }
    /// Makes the next call of `op` (`"rotate"`, `"save"`, …) wait until the returned
    /// [`Held::release`] is notified, so a test orders concurrent requests without sleeping.
    pub fn hold(&self, op: &'static str) -> Arc<Held> {
        let held = Arc::new(Held::default());
        *self.held.lock().unwrap() = Some((op, Arc::clone(&held)));
        held
    }
    async fn gate(&self, op: &'static str) {
        let held = {
            let mut slot = self.held.lock().unwrap();
            match slot.take() {
                Some((name, held)) if name == op => Some(held),
                other => {
                    *slot = other;
                    None
                }
            }
        };
        if let Some(held) = held {
            held.reached.notify_one();
            held.release.notified().await;
        }
    }
    /// Operations of any kind so far.
    pub fn ops(&self) -> usize {
        self.ops.load(Ordering::SeqCst)
    }
    /// Operations that change the store so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    /// Makes every `load` report a record that cannot be decoded.
    pub fn set_corrupt(&self, corrupt: bool) {
        self.corrupt.store(corrupt, Ordering::SeqCst);
    }
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
    fn enter(&self, write: bool) -> Result<(), StoreError> {
        self.ops.fetch_add(1, Ordering::SeqCst);
        if write {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "probe",
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "store is down"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> Store for Probe<S> {
    fn name(&self) -> &'static str {
        "probe"
    }
    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        self.gate("create").await;
        self.enter(true)?;
        self.inner.create(hash, record).await
    }
    async fn load(&self, hash: &SessionHash, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.gate("load").await;
        self.enter(false)?;
        if self.corrupt.load(Ordering::SeqCst) {
            return Err(StoreError::corrupt("probe", "data is not a JSON object"));
        }
        self.inner.load(hash, now).await
    }
    async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        self.gate("save").await;
        self.enter(true)?;
        self.inner.save(hash, patch).await
    }
    async fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        self.gate("rotate").await;
        self.enter(true)?;
        self.inner.rotate(old, new, patch).await
    }
    async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
        self.gate("delete").await;
        self.enter(true)?;
        self.inner.delete(hash).await
    }
    async fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        self.enter(false)?;
        self.inner.list_user(user_id, now).await
    }
    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError> {
        self.gate("revoke_user").await;
        self.enter(true)?;
        self.inner.revoke_user(user_id, except).await
    }
    async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.enter(false)?;
        self.inner.count(now).await
    }
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.enter(true)?;
        self.inner.purge_expired(now, limit).await
    }
}

/// One response, with what the tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The full `Set-Cookie` header, if any (the layer sends at most one).
    pub fn set_cookie(&self) -> Option<&str> {
        let mut all = self.headers.get_all(header::SET_COOKIE).iter();
        let first = all.next().map(|v| v.to_str().unwrap());
        assert!(all.next().is_none(), "more than one Set-Cookie");
        first
    }
    /// `name=value` of the `Set-Cookie` header.
    pub fn cookie_pair(&self) -> Option<&str> {
        self.set_cookie().map(|c| c.split(';').next().unwrap())
    }
    pub fn is_removal(&self) -> bool {
        self.set_cookie()
            .is_some_and(|c| c.contains("Max-Age=0") && c.split(';').next().unwrap().ends_with('='))
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }
}

/// A browser stand-in: keeps the session cookie the server sets.
pub struct Client {
    pub app: Router,
    pub cookie: Option<String>,
}

impl Client {
    pub fn new(app: Router) -> Self {
        Self { app, cookie: None }
    }

    pub async fn send(&mut self, method: &str, uri: &str, body: &str) -> Reply {
        let cookie = self.cookie.clone();
        let reply = request(&self.app, method, uri, cookie.as_deref(), body).await;
        if let Some(pair) = reply.cookie_pair() {
            self.cookie = if reply.is_removal() {
                None
            } else {
                Some(pair.to_owned())
            };
        }
        reply
    }

    pub async fn get(&mut self, uri: &str) -> Reply {
        self.send("GET", uri, "").await
    }

    pub async fn post(&mut self, uri: &str, body: &str) -> Reply {
        self.send("POST", uri, body).await
    }
}

/// One request with an explicit `Cookie` header (or none).
pub async fn request(
    app: &Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    body: &str,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    if !body.is_empty() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let response = app
        .clone()
        .oneshot(builder.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}
