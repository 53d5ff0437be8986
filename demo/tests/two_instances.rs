//! Two demo processes behind one shared store, as behind a load balancer: a login on the first
//! is seen by the second (user and cart), and a revocation on the second logs the first out.
//!
//! Runs against Redis (CLOAKROOM_REDIS_URL, default redis://127.0.0.1:6379) under a fresh key
//! prefix, and PostgreSQL (CLOAKROOM_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test)
//! in a fresh table; both are removed afterwards. An unreachable service is skipped, and counted
//! at the end of the run, unless CLOAKROOM_REQUIRE_SERVICES=1.

mod support;

use axum::http::Method;
use cloakroom::{Clock as _, SystemClock};
use serde_json::json;
use support::BOB;
use support::process::{Browser, Demo, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_through_redis() {
    let base = env_or("CLOAKROOM_REDIS_URL", "redis://127.0.0.1:6379");
    let prefix = format!("cloakroom_demo_test_{}", unique());
    let url = with_option(&base, "prefix", &prefix);
    if !reachable("Redis", &url).await {
        return;
    }
    let outcome = tokio::spawn(two_instances(url)).await;
    remove_redis_keys(&base, &prefix).await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_through_postgres() {
    let base = env_or(
        "CLOAKROOM_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let table = format!("cloakroom_demo_test_{}", unique());
    let url = with_option(&base, "table", &table);
    if !reachable("PostgreSQL", &url).await {
        return;
    }
    let outcome = tokio::spawn(two_instances(url)).await;
    drop_postgres_table(&base, &table).await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

async fn two_instances(store: String) {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("a secret both instances share: {}", unique());
    let args = ["--store", store.as_str(), "--secret", secret.as_str()];
    let (first, second) = (
        Demo::spawn(dir.path(), &args),
        Demo::spawn(dir.path(), &args),
    );
    let (first, second) = (first.ready(), second.ready());
    assert_ne!(first.base, second.base);
    assert!(
        first.banner[2].contains("from --secret"),
        "{:?}",
        first.banner
    );

    // One browser logs in on the first instance and fills its cart there.
    let mut laptop = Browser::new();
    let login = laptop
        .post(
            &first.url("/api/login"),
            json!({"email": BOB.0, "password": BOB.1}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let cart = laptop
        .post(&first.url("/api/cart"), json!({"product_id": 2}))
        .await;
    assert_eq!(cart.json()["count"], 1);

    // The second instance sees the same user and the same cart.
    let session = laptop.get(&second.url("/api/session")).await.json();
    assert_eq!(session["logged_in"], true, "{session}");
    assert_eq!(session["user"]["email"], BOB.0);
    let cart = laptop.get(&second.url("/api/cart")).await.json();
    assert_eq!(cart["count"], 1);
    assert_eq!(cart["cart"][0]["name"], "Umbrella");
    let home = laptop.get(&second.url("/")).await;
    assert!(home.body.contains(r#"<span id="who">Bob</span>"#));

    // A second device logs in on the second instance and logs the laptop out from there.
    let mut phone = Browser::new();
    let login = phone
        .post(
            &second.url("/api/login"),
            json!({"email": BOB.0, "password": BOB.1}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let devices = phone.get(&second.url("/api/devices")).await.json();
    let devices = devices["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 2, "{devices:?}");
    let laptop_id = devices
        .iter()
        .find(|d| d["current"] == false)
        .and_then(|d| d["id"].as_str())
        .unwrap();
    let revoked = phone
        .send(
            Method::DELETE,
            &second.url(&format!("/api/devices/{laptop_id}")),
            Some(json!({"password": BOB.1})),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);

    // The first instance no longer knows the laptop; the phone is logged in on both.
    let session = laptop.get(&first.url("/api/session")).await.json();
    assert_eq!(session["logged_in"], false, "{session}");
    assert_eq!(laptop.get(&first.url("/api/cart")).await.json()["count"], 0);
    let session = phone.get(&first.url("/api/session")).await.json();
    assert_eq!(session["logged_in"], true);

    assert!(!first.stderr().contains("ERROR"), "{}", first.stderr());
    assert!(!second.stderr().contains("ERROR"), "{}", second.stderr());
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn with_option(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{key}={value}")
}

/// Whether the store answers; otherwise says "skipped" (or fails when services are required).
async fn reachable(service: &str, url: &str) -> bool {
    let probe = async {
        let store = cloakroom::stores::connect(url).await?;
        store.count(SystemClock.now()).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), probe).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            support::skip::skip_unreachable(service, url, &error);
            false
        }
        Err(_) => {
            support::skip::skip_for(service, "gave no answer within 10 s");
            false
        }
    }
}

async fn remove_redis_keys(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis for cleanup");
    let pattern = format!("{{{prefix}}}:*");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .expect("DEL");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

async fn drop_postgres_table(url: &str, table: &str) {
    let pool = sqlx::PgPool::connect(url)
        .await
        .expect("PostgreSQL for cleanup");
    // The name is ours (letters, digits, underscores), not user input.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS \"{table}\""
    )))
    .execute(&pool)
    .await
    .expect("DROP TABLE");
    pool.close().await;
}
