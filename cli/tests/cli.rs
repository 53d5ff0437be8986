//! The `cloakroom` binary end to end: sessions are made by an app behind a `SessionLayer` over
//! the same store URL, then inspected and changed by the real binary, and the app sees the
//! result. Every case runs against SQLite and PostgreSQL (CLOAKROOM_POSTGRES_URL, default
//! `postgres://postgres@127.0.0.1:5432/test`; skipped when unreachable unless
//! CLOAKROOM_REQUIRE_SERVICES=1).

mod support;

use std::time::Duration;

use cloakroom::{Clock as _, ManualClock, SystemClock, Timestamp};
use serde_json::{Value, json};
use support::{Backend, Browser, app, run};

/// Declares each case once per backend.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&super::Backend::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(backend) = super::Backend::postgres().await {
                        super::$case(&backend).await;
                    }
                }
            )*
        }
    };
}

on_every_backend!(
    stats_list_and_show,
    revoke_by_user_and_by_session,
    purge_takes_only_expired_sessions,
    migrate_is_idempotent,
);

async fn stats_list_and_show(backend: &Backend) {
    let app = app(backend.layer(SystemClock).await);
    let mut alice = Vec::new();
    for _ in 0..3 {
        let mut browser = Browser::new(&app);
        let hash = browser.login("alice").await;
        alice.push(hash);
    }
    let bob = Browser::new(&app).login("bob").await;
    let mut guest = Browser::new(&app);
    guest.send("POST", "/anonymous-cart").await;

    // stats: five live sessions, alice first among users where the store can tell.
    let stats = backend.cli(&["stats", "--json"]).await.json();
    assert_eq!(stats["store"], backend.name);
    assert_eq!(stats["live"], 5, "{stats:#}");
    if let Some(top) = stats["top_users"].as_array().filter(|t| !t.is_empty()) {
        assert_eq!(top[0], json!(["alice", 3]), "{stats:#}");
        assert_eq!(top[1], json!(["bob", 1]), "{stats:#}");
    }
    let text = backend.cli(&["stats", "--top", "1"]).await;
    assert!(
        text.ok().contains("live sessions               5"),
        "{text:#?}"
    );
    assert!(
        !text.stdout.contains("bob"),
        "--top 1 showed bob: {text:#?}"
    );

    // list: alice's three, oldest first, with full hashes in JSON.
    let listed = backend
        .cli(&["list", "--user", "alice", "--json"])
        .await
        .json();
    let hashes: Vec<&str> = listed
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|s| s["hash"].as_str().expect("hash"))
        .collect();
    let mut expected: Vec<&str> = alice.iter().map(String::as_str).collect();
    let mut sorted = hashes.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected);
    for session in listed.as_array().into_iter().flatten() {
        assert_eq!(session["user_id"], "alice");
        let created = session["created_at"].as_i64().expect("millis");
        assert!(session["expires_at"].as_i64().expect("millis") > created);
    }
    let table = backend.cli(&["list", "--user", "alice"]).await;
    let table = table.ok();
    for hash in &alice {
        assert!(table.contains(&hash[..8]), "{table}");
        assert!(
            !table.contains(hash.as_str()),
            "full hash without --full: {table}"
        );
    }
    assert!(
        table.contains("3 live sessions of user \"alice\""),
        "{table}"
    );
    let full = backend.cli(&["list", "--user", "alice", "--full"]).await;
    assert!(
        alice.iter().all(|h| full.ok().contains(h.as_str())),
        "{full:#?}"
    );
    let nobody = backend.cli(&["list", "--user", "nobody"]).await;
    assert!(nobody.ok().contains("has no live sessions"), "{nobody:#?}");

    // show: metadata and the data as pretty JSON.
    let shown = backend.cli(&["show", &bob, "--json"]).await.json();
    assert_eq!(shown["hash"], bob.as_str());
    assert_eq!(shown["user_id"], "bob");
    assert_eq!(
        shown["data"]["cart"],
        json!({"items": ["coat", "hat"], "owner": "bob"})
    );
    let text = backend.cli(&["show", &bob]).await;
    let text = text.ok();
    assert!(text.contains(&format!("session     {bob}")), "{text}");
    assert!(text.contains("user        bob"), "{text}");
    assert!(
        text.contains("\"owner\": \"bob\""),
        "not pretty JSON: {text}"
    );

    let missing = "0".repeat(64);
    backend
        .cli(&["show", &missing])
        .await
        .fails(1, "no live session with hash");
    backend
        .cli(&["show", "not-a-hash"])
        .await
        .fails(2, "64 hex digits");
}

async fn revoke_by_user_and_by_session(backend: &Backend) {
    let app = app(backend.layer(SystemClock).await);
    let mut phones = Vec::new();
    let mut hashes = Vec::new();
    for _ in 0..3 {
        let mut browser = Browser::new(&app);
        hashes.push(browser.login("carol").await);
        phones.push(browser);
    }
    let mut dave = Browser::new(&app);
    let dave_hash = dave.login("dave").await;

    // Log carol out everywhere but her first device.
    let revoked = backend
        .cli(&["revoke", "--user", "carol", "--except", &hashes[0]])
        .await;
    assert!(
        revoked
            .ok()
            .contains("revoked 2 sessions of user \"carol\""),
        "{revoked:#?}"
    );
    assert_eq!(phones[0].whoami().await["user"], "carol");
    for phone in &mut phones[1..] {
        assert_eq!(
            phone.whoami().await["user"],
            Value::Null,
            "a revoked ticket still works"
        );
    }
    let listed = backend
        .cli(&["list", "--user", "carol", "--json"])
        .await
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // One session by its hash.
    let one = backend.cli(&["revoke", "--session", &hashes[0]]).await;
    assert!(one.ok().contains("revoked session"), "{one:#?}");
    assert_eq!(phones[0].whoami().await["user"], Value::Null);
    let again = backend.cli(&["revoke", "--session", &hashes[0]]).await;
    assert!(again.ok().contains("nothing to revoke"), "{again:#?}");

    // Nobody else was touched.
    assert_eq!(dave.whoami().await["user"], "dave");
    assert_eq!(dave.whoami().await["hash"], dave_hash.as_str());

    // Bad usage: no target, both targets, --except without --user.
    backend.cli(&["revoke"]).await.fails(2, "--user");
    backend
        .cli(&["revoke", "--user", "x", "--session", &dave_hash])
        .await
        .fails(2, "cannot be used with");
    backend
        .cli(&["revoke", "--session", &dave_hash, "--except", &dave_hash])
        .await
        .fails(2, "--user");
}

async fn purge_takes_only_expired_sessions(backend: &Backend) {
    // Seven sessions made two days ago by an app whose clock says so: long expired by now.
    let past = ManualClock::at(Timestamp::from_unix_millis(
        SystemClock.now().as_unix_millis() - 2 * 24 * 3_600_000,
    ));
    let old_app = app(backend.layer(past.clone()).await);
    for n in 0..7 {
        let mut browser = Browser::new(&old_app);
        if n % 2 == 0 {
            browser.login(&format!("old{n}")).await;
        } else {
            browser.send("POST", "/anonymous-cart").await;
        }
        past.advance(Duration::from_secs(60));
    }
    // Three live ones.
    let app = app(backend.layer(SystemClock).await);
    let mut live = Vec::new();
    for user in ["erin", "frank", "grace"] {
        let mut browser = Browser::new(&app);
        browser.login(user).await;
        live.push(browser);
    }
    let before = backend.cli(&["stats", "--json"]).await.json();
    assert_eq!(before["live"], 3);
    if !before["expired"].is_null() {
        assert_eq!(before["expired"], 7, "{before:#}");
    }

    // Small batches: 2 + 2 + 2 + 1.
    let purged = backend.cli(&["purge", "--batch", "2"]).await;
    assert!(
        purged.ok().contains(&format!(
            "purged 7 expired sessions from the {} store",
            backend.name
        )),
        "{purged:#?}"
    );
    let after = backend.cli(&["stats", "--json"]).await.json();
    assert_eq!(after["live"], 3);
    if !after["expired"].is_null() {
        assert_eq!(after["expired"], 0, "{after:#}");
    }
    for (browser, user) in live.iter_mut().zip(["erin", "frank", "grace"]) {
        assert_eq!(
            browser.whoami().await["user"],
            user,
            "purge took a live session"
        );
    }

    // Re-running is harmless.
    let again = backend.cli(&["purge"]).await;
    assert!(
        again.ok().contains("purged 0 expired sessions"),
        "{again:#?}"
    );
    backend
        .cli(&["purge", "--batch", "0"])
        .await
        .fails(2, "--batch");
}

async fn migrate_is_idempotent(backend: &Backend) {
    for _ in 0..2 {
        let migrated = backend.cli(&["migrate"]).await;
        assert!(migrated.ok().contains("is ready"), "{migrated:#?}");
    }
    assert_eq!(backend.cli(&["stats", "--json"]).await.json()["live"], 0);
}

#[tokio::test]
async fn the_store_comes_from_the_environment_too() {
    let backend = Backend::sqlite();
    backend.cli(&["migrate"]).await.ok();
    let stats = run(&["stats", "--json"], &[("CLOAKROOM_STORE", &backend.url)]).await;
    assert_eq!(stats.json()["store"], "sqlite");
    run(&["stats"], &[])
        .await
        .fails(2, "pass --store URL or set CLOAKROOM_STORE");
}

#[tokio::test]
async fn bad_urls_say_what_exists() {
    let unknown = run(&["--store", "mongodb://db/app", "stats"], &[]).await;
    unknown.fails(2, "unknown store URL scheme \"mongodb\"");
    for scheme in [
        "sqlite://",
        "postgres://",
        "mysql://",
        "redis://",
        "file://",
    ] {
        assert!(unknown.stderr.contains(scheme), "{unknown:#?}");
    }
    run(&["--store", "no scheme", "stats"], &[])
        .await
        .fails(2, "has no scheme");

    let dir = std::env::temp_dir().join(format!("cloakroom-cli-nofile-{}", std::process::id()));
    let path = dir.join("typo.db");
    let url = format!("sqlite://{}", path.display());
    run(&["--store", &url, "stats"], &[])
        .await
        .fails(2, "cloakroom migrate");
    assert!(!path.exists(), "stats created a database");

    let backend = Backend::sqlite();
    backend.cli(&["migrate"]).await.ok();
    run(
        &["--store", &format!("{}?colour=red", backend.url), "stats"],
        &[],
    )
    .await
    .fails(2, "colour");

    run(&["--store", "cookie://", "list", "--user", "a"], &[])
        .await
        .fails(2, "cookie:// names no store");
}

#[tokio::test]
async fn an_unreachable_store_is_named_without_its_password() {
    // Nothing listens on port 1.
    let url = "postgres://admin:hunter2@127.0.0.1:1/app?table=sessions";
    let failed = run(&["--store", url, "stats"], &[]).await;
    failed.fails(
        1,
        "cannot reach the store at postgres://admin:***@127.0.0.1:1/app",
    );
    assert!(!failed.stderr.contains("hunter2"), "{failed:#?}");
    assert!(!failed.stdout.contains("hunter2"), "{failed:#?}");

    let failed = run(&["--store", "redis://:hunter2@127.0.0.1:1", "purge"], &[]).await;
    assert_eq!(failed.code, 1, "{failed:#?}");
    assert!(failed.stderr.contains("127.0.0.1:1"), "{failed:#?}");
    assert!(!failed.stderr.contains("hunter2"), "{failed:#?}");
}
