//! The session store goes away and comes back: pages answer with a 503 page, the API with a
//! 503 JSON error, nothing panics, and once the store is back the visitor is still logged in.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::http::{Method, StatusCode, header};
use cloakroom::stores::memory::MemoryStore;
use cloakroom::{Patch, Record, SessionHash, Store, StoreError, Timestamp};
use serde_json::json;
use support::{BOB, Client, demo_router};

/// A memory store that can be switched off.
#[derive(Default)]
struct Flaky {
    inner: MemoryStore,
    down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "flaky",
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "store is down"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        self.check()?;
        self.inner.create(hash, record).await
    }
    async fn load(&self, hash: &SessionHash, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.check()?;
        self.inner.load(hash, now).await
    }
    async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.save(hash, patch).await
    }
    async fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.rotate(old, new, patch).await
    }
    async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(hash).await
    }
    async fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        self.check()?;
        self.inner.list_user(user_id, now).await
    }
    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.revoke_user(user_id, except).await
    }
    async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.count(now).await
    }
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.purge_expired(now, limit).await
    }
}

#[tokio::test]
async fn a_store_outage_is_a_503_and_the_session_survives_it() {
    let store = Arc::new(Flaky::default());
    let mut browser = Client::new(demo_router(store.clone()));
    browser.login(BOB).await.assert_redirect("/dashboard");
    let ticket = browser.cookie.clone();

    store.down.store(true, Ordering::SeqCst);
    for path in ["/", "/dashboard", "/cart", "/devices"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(
            page.header(header::CONTENT_TYPE)
                .unwrap()
                .starts_with("text/html")
        );
        page.assert_contains("the session store is unavailable");
    }
    for (method, path, body) in [
        (Method::GET, "/api/session", None),
        (Method::GET, "/api/devices", None),
        (Method::POST, "/api/cart", Some(json!({"product_id": 1}))),
        (
            Method::POST,
            "/api/login",
            Some(json!({"email": BOB.0, "password": BOB.1})),
        ),
    ] {
        let reply = browser.api(method, path, body).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("unavailable"), "{path}: {error}");
        assert!(
            !error.contains("refused"),
            "driver details stay in the log: {error}"
        );
    }
    assert_eq!(browser.cookie, ticket, "an outage must not cost the cookie");

    store.down.store(false, Ordering::SeqCst);
    let session = browser.api_get("/api/session").await.json();
    assert_eq!(session["user"]["email"], BOB.0, "still logged in");
}
