//! The Redis store against the conformance suite, plus what only Redis has: TTLs on keys, the
//! documented key layout, URLs.
//!
//! Needs Redis at `CLOAKROOM_REDIS_URL` (default `redis://127.0.0.1:6379`); skipped (and counted)
//! when it is unreachable, or fails under `CLOAKROOM_REQUIRE_SERVICES=1`. Every case works under
//! its own key prefix and deletes it afterwards.
#![cfg(feature = "redis")]

mod conformance;
mod support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cloakroom::{Clock, Patch, Record, RedisStore, Store, StoreError, SystemClock, Timestamp};
use conformance::{Harness, hash};
use serde_json::{Value, json};

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

fn url() -> String {
    std::env::var("CLOAKROOM_REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A key prefix no other case (or earlier run) uses.
fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!(
        "cloakroom-test-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain connection for looking at keys behind the store's back.
async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is reachable")
}

/// Deletes every key of `prefix`, walking with SCAN.
async fn delete_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(url()) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let pattern = format!("{{{prefix}}}:*");
    let mut cursor = 0u64;
    loop {
        let step: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await;
        let Ok((next, keys)) = step else { return };
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

async fn store() -> Result<(RedisStore, String), StoreError> {
    let prefix = unique_prefix();
    let store = RedisStore::connect(&url()).await?.with_prefix(&prefix)?;
    Ok((store, prefix))
}

async fn redis_harness() -> Option<Harness> {
    match store().await {
        Ok((store, prefix)) => {
            let held = prefix.clone();
            let session_keys = format!("{{{prefix}}}:s:");
            Some(
                Harness::new(store)
                    .native_ttl()
                    .native_expiry(move |hash| {
                        let key = format!("{session_keys}{hash}");
                        async move {
                            let at: i64 = redis::cmd("PEXPIRETIME")
                                .arg(&key)
                                .query_async(&mut raw().await)
                                .await
                                .unwrap();
                            Timestamp::from_unix_millis(at)
                        }
                    })
                    .at_rest(move || {
                        let prefix = held.clone();
                        async move { everything_under(&prefix).await }
                    })
                    .on_cleanup(move || async move { delete_prefix(&prefix).await }),
            )
        }
        Err(error) => conformance::skip("Redis", &url(), &error),
    }
}

conformance_suite!(redis_harness());

/// The store for a store-specific case, or `None` (skipped) when Redis is unreachable. The
/// guard deletes the prefix when the case ends, even when it fails.
async fn case() -> Option<(RedisStore, Cleanup)> {
    match store().await {
        Ok((store, prefix)) => Some((store, Cleanup(Some(prefix)))),
        Err(error) => {
            conformance::skip("Redis", &url(), &error);
            None
        }
    }
}

struct Cleanup(Option<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(prefix) = self.0.take() {
            // Runs on a thread of its own: the test's runtime may be shutting down.
            let _ = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(delete_prefix(&prefix));
                }
            })
            .join();
        }
    }
}

fn record(data: Value, user: Option<&str>, ttl: Duration) -> Record {
    let now = SystemClock.now();
    Record {
        data: conformance::data(data),
        user_id: user.map(str::to_owned),
        created_at: now,
        updated_at: now,
        expires_at: now.saturating_add(ttl),
    }
}

async fn keys_of(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{{{prefix}}}:*"))
            .query_async(conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Every key under `prefix` with its type-appropriate contents, as bytes.
async fn everything_under(prefix: &str) -> Vec<u8> {
    let mut conn = raw().await;
    let mut dump = Vec::new();
    for key in keys_of(&mut conn, prefix).await {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let read = match kind.as_str() {
            "hash" => redis::cmd("HGETALL"),
            "zset" => {
                let mut read = redis::cmd("ZRANGE");
                read.arg(&key).arg(0).arg(-1).arg("WITHSCORES");
                read
            }
            "string" => redis::cmd("GET"),
            other => panic!("{key}: a {other} the dump does not know how to read"),
        };
        let mut read = read;
        if kind != "zset" {
            read.arg(&key);
        }
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![read.query_async(&mut conn).await.unwrap()],
            _ => read.query_async(&mut conn).await.unwrap(),
        };
        dump.extend(key.as_bytes());
        for value in values {
            dump.push(b' ');
            dump.extend(value);
        }
        dump.push(b'\n');
    }
    dump
}

/// The members of a user index, lowest score first.
async fn index_members(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .unwrap()
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test]
async fn keys_follow_the_documented_layout() {
    let Some((store, cleanup)) = case().await else {
        return;
    };
    let prefix = cleanup.0.clone().unwrap();
    let h1 = hash(40);
    let created = record(
        json!({"cart": [1, 2], "big": 9_007_199_254_740_993u64}),
        Some("ann"),
        Duration::from_secs(60),
    );
    store.create(&h1, &created).await.unwrap();

    let session_key = format!("{{{prefix}}}:s:{h1}");
    let index_key = format!("{{{prefix}}}:u:ann");
    assert_eq!(store.session_key(&h1), session_key);
    assert_eq!(store.user_index_key("ann"), index_key);

    let mut conn = raw().await;
    let kind: String = redis::cmd("TYPE")
        .arg(&session_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "hash");
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&session_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let expires = created.expires_at.as_unix_millis().to_string();
    let created_at = created.created_at.as_unix_millis().to_string();
    let expected: std::collections::HashMap<String, String> = [
        ("d:cart", "[1,2]"),
        ("d:big", "9007199254740993"),
        ("m:created", created_at.as_str()),
        ("m:updated", created_at.as_str()),
        ("m:expires", expires.as_str()),
        ("m:user", "ann"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(fields, expected);

    let kind: String = redis::cmd("TYPE")
        .arg(&index_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "zset");
    let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&index_key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        members,
        vec![(h1.to_string(), created.expires_at.as_unix_millis() as f64)]
    );

    // Nothing else is stored.
    let mut keys = keys_of(&mut conn, &prefix).await;
    keys.sort();
    let mut expected_keys = vec![session_key, index_key];
    expected_keys.sort();
    assert_eq!(keys, expected_keys);
}

#[tokio::test]
async fn ttls_are_set_and_follow_touch_rotate_and_unbinding() {
    let Some((store, _cleanup)) = case().await else {
        return;
    };
    let mut conn = raw().await;
    let h1 = hash(41);
    store
        .create(
            &h1,
            &record(json!({"a": 1}), Some("bob"), Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let (session_key, index_key) = (store.session_key(&h1), store.user_index_key("bob"));
    for key in [&session_key, &index_key] {
        let ttl = pttl(&mut conn, key).await;
        assert!((55_000..=60_000).contains(&ttl), "{key}: PTTL {ttl}");
    }

    // A touch moves both deadlines.
    let now = SystemClock.now();
    assert!(
        store
            .touch(&h1, now.saturating_add(Duration::from_secs(600)), now)
            .await
            .unwrap()
    );
    for key in [&session_key, &index_key] {
        let ttl = pttl(&mut conn, key).await;
        assert!((595_000..=600_000).contains(&ttl), "{key}: PTTL {ttl}");
    }

    // A data-only save leaves the deadline alone.
    let patch = Patch {
        set: vec![("b".into(), json!(2))],
        updated_at: SystemClock.now(),
        ..Patch::default()
    };
    assert!(store.save(&h1, &patch).await.unwrap());
    assert!(pttl(&mut conn, &session_key).await > 590_000);

    // Rotation carries the TTL to the new key and re-files the index member.
    let h2 = hash(42);
    assert!(
        store
            .rotate(
                &h1,
                &h2,
                &Patch {
                    updated_at: SystemClock.now(),
                    ..Patch::default()
                }
            )
            .await
            .unwrap()
    );
    assert_eq!(pttl(&mut conn, &session_key).await, -2, "old key is gone");
    assert!(pttl(&mut conn, &store.session_key(&h2)).await > 590_000);
    let members = index_members(&mut conn, &index_key).await;
    assert_eq!(members, vec![h2.to_string()]);

    // Unbinding the user removes the index, which held only this session.
    let unbind = Patch {
        user_id: Some(None),
        updated_at: SystemClock.now(),
        ..Patch::default()
    };
    assert!(store.save(&h2, &unbind).await.unwrap());
    assert_eq!(pttl(&mut conn, &index_key).await, -2, "empty index is gone");
    assert!(pttl(&mut conn, &store.session_key(&h2)).await > 590_000);
}

/// Writes that only set keys take a lean script up to 1,000 keys and the full one beyond; both
/// must leave the same record behind, and neither may bring back a deleted session.
#[tokio::test]
async fn key_only_writes_of_any_size_store_the_same_record() {
    let Some((store, _cleanup)) = case().await else {
        return;
    };
    let mut conn = raw().await;
    for (seed, keys) in [(61u8, 1), (62, 1000), (63, 1001)] {
        let h = hash(seed);
        let created = record(json!({"a": 1}), Some("kim"), Duration::from_secs(60));
        store.create(&h, &created).await.unwrap();
        let later = created.created_at.saturating_add(Duration::from_millis(5));
        let patch = Patch {
            set: (0..keys).map(|i| (format!("k{i}"), json!(i))).collect(),
            updated_at: later,
            ..Patch::default()
        };
        assert!(store.save(&h, &patch).await.unwrap(), "{keys} keys");

        let loaded = store.load(&h, later).await.unwrap().expect("still live");
        assert_eq!(loaded.data.len(), keys + 1, "{keys} keys and the old one");
        assert_eq!(loaded.data["a"], json!(1));
        assert_eq!(loaded.data[&format!("k{}", keys - 1)], json!(keys - 1));
        assert_eq!(loaded.updated_at, later);
        assert_eq!(
            (
                loaded.created_at,
                loaded.expires_at,
                loaded.user_id.as_deref()
            ),
            (created.created_at, created.expires_at, Some("kim"))
        );
        let ttl = pttl(&mut conn, &store.session_key(&h)).await;
        assert!((50_000..=60_000).contains(&ttl), "{keys} keys: PTTL {ttl}");

        assert!(store.delete(&h).await.unwrap());
        assert!(!store.save(&h, &patch).await.unwrap(), "{keys} keys");
        assert_eq!(
            pttl(&mut conn, &store.session_key(&h)).await,
            -2,
            "not recreated"
        );
    }
    let members = index_members(&mut conn, &store.user_index_key("kim")).await;
    assert!(
        members.is_empty(),
        "deleted sessions left the index: {members:?}"
    );
}

#[tokio::test]
async fn the_index_lives_as_long_as_its_longest_session() {
    let Some((store, _cleanup)) = case().await else {
        return;
    };
    let mut conn = raw().await;
    let index_key = store.user_index_key("cy");
    store
        .create(
            &hash(43),
            &record(json!({}), Some("cy"), Duration::from_secs(600)),
        )
        .await
        .unwrap();
    // A shorter session filed later does not shorten the index.
    store
        .create(
            &hash(44),
            &record(json!({}), Some("cy"), Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert!(pttl(&mut conn, &index_key).await > 590_000);
    assert_eq!(
        store
            .list_user("cy", SystemClock.now())
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn far_future_expiry_is_stored_exactly() {
    let Some((store, _cleanup)) = case().await else {
        return;
    };
    let h1 = hash(45);
    let mut far = record(json!({"a": 1}), Some("dee"), Duration::ZERO);
    far.expires_at = Timestamp::from_unix_millis(i64::MAX);
    store.create(&h1, &far).await.unwrap();
    let loaded = store.load(&h1, SystemClock.now()).await.unwrap().unwrap();
    assert_eq!(loaded.expires_at, far.expires_at);
    assert_eq!(
        store
            .list_user("dee", SystemClock.now())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn list_and_purge_prune_stale_index_members() {
    let Some((store, _cleanup)) = case().await else {
        return;
    };
    let mut conn = raw().await;
    let index_key = store.user_index_key("eve");
    let live = hash(46);
    store
        .create(
            &live,
            &record(json!({}), Some("eve"), Duration::from_secs(600)),
        )
        .await
        .unwrap();
    let now = SystemClock.now().as_unix_millis();
    // Members whose sessions are gone: one not yet due by its score, one overdue.
    let (ghost, overdue) = (hash(47), hash(48));
    let _: i64 = redis::cmd("ZADD")
        .arg(&index_key)
        .arg(now + 60_000)
        .arg(ghost.to_string())
        .arg(now - 1_000)
        .arg(overdue.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();

    assert_eq!(
        store.purge_expired(SystemClock.now(), 1000).await.unwrap(),
        1,
        "the overdue one"
    );
    let listed = store.list_user("eve", SystemClock.now()).await.unwrap();
    assert_eq!(
        listed.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        vec![live]
    );
    let members = index_members(&mut conn, &index_key).await;
    assert_eq!(members, vec![live.to_string()], "listing pruned the ghost");
    assert_eq!(
        store.purge_expired(SystemClock.now(), 1000).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn the_callers_clock_decides_expiry_too() {
    let Some((store, _cleanup)) = case().await else {
        return;
    };
    let mut conn = raw().await;
    let (h1, h2) = (hash(49), hash(56));
    for h in [&h1, &h2] {
        store
            .create(
                h,
                &record(json!({"a": 1}), Some("fay"), Duration::from_secs(60)),
            )
            .await
            .unwrap();
    }
    // The caller's clock is two minutes ahead of Redis's: for it, both sessions have expired
    // although Redis still holds them.
    let later = SystemClock.now().saturating_add(Duration::from_secs(120));
    assert_eq!(store.count(later).await.unwrap(), 0);
    assert!(store.load(&h1, later).await.unwrap().is_none());
    let patch = Patch {
        set: vec![("b".into(), json!(2))],
        updated_at: later,
        ..Patch::default()
    };
    assert!(!store.save(&h1, &patch).await.unwrap());
    let far = later.saturating_add(Duration::from_secs(3600));
    assert!(!store.touch(&h1, far, later).await.unwrap());
    assert!(!store.rotate(&h1, &hash(57), &patch).await.unwrap());
    let untouched = store.load(&h1, SystemClock.now()).await.unwrap().unwrap();
    assert_eq!(Value::Object(untouched.data), json!({"a": 1}));
    assert!(pttl(&mut conn, &store.session_key(&h1)).await <= 60_000);

    // create may take over a name whose record has expired, cleaning up its index entry.
    let mut replacement = record(json!({"new": true}), Some("gil"), Duration::from_secs(60));
    replacement.created_at = later;
    replacement.expires_at = far;
    store.create(&h2, &replacement).await.unwrap();
    assert_eq!(store.load(&h2, later).await.unwrap(), Some(replacement));
    let fay = index_members(&mut conn, &store.user_index_key("fay")).await;
    assert_eq!(fay, vec![h1.to_string()]);

    assert_eq!(
        store.purge_expired(later, 1000).await.unwrap(),
        1,
        "h1 only"
    );
    assert_eq!(pttl(&mut conn, &store.session_key(&h1)).await, -2);
    assert_eq!(pttl(&mut conn, &store.user_index_key("fay")).await, -2);
    assert_eq!(store.count(later).await.unwrap(), 1);
}

#[tokio::test]
async fn rotate_never_overwrites_an_existing_key() {
    let Some((store, _cleanup)) = case().await else {
        return;
    };
    let (a, b) = (hash(50), hash(51));
    store
        .create(
            &a,
            &record(json!({"v": "a"}), None, Duration::from_secs(60)),
        )
        .await
        .unwrap();
    store
        .create(
            &b,
            &record(json!({"v": "b"}), None, Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let result = store
        .rotate(
            &a,
            &b,
            &Patch {
                updated_at: SystemClock.now(),
                ..Patch::default()
            },
        )
        .await;
    assert!(matches!(result, Err(StoreError::Collision)), "{result:?}");
    for (h1, v) in [(a, "a"), (b, "b")] {
        let loaded = store.load(&h1, SystemClock.now()).await.unwrap().unwrap();
        assert_eq!(loaded.data["v"], json!(v));
    }
}

#[tokio::test]
async fn a_session_without_user_is_created_over_an_expired_name_but_not_a_live_one() {
    // New sessions without a user take a shorter script; a taken name sends them down the full
    // one, which must still tell an expired record from a live one.
    let Some((store, _cleanup)) = case().await else {
        return;
    };
    let mut conn = raw().await;
    let (live, stale) = (hash(70), hash(71));
    for h in [&live, &stale] {
        let first = record(json!({"old": 1}), None, Duration::from_secs(60));
        store.create(h, &first).await.unwrap();
    }
    let result = store
        .create(
            &live,
            &record(json!({"new": 1}), None, Duration::from_secs(60)),
        )
        .await;
    assert!(matches!(result, Err(StoreError::Collision)), "{result:?}");
    let kept = store.load(&live, SystemClock.now()).await.unwrap().unwrap();
    assert_eq!(Value::Object(kept.data), json!({"old": 1}));

    // Two minutes ahead, the caller sees `stale` as expired although Redis still holds it.
    let later = SystemClock.now().saturating_add(Duration::from_secs(120));
    let mut replacement = record(json!({"new": true}), None, Duration::from_secs(60));
    replacement.created_at = later;
    replacement.updated_at = later;
    replacement.expires_at = later.saturating_add(Duration::from_secs(60));
    store.create(&stale, &replacement).await.unwrap();
    assert_eq!(store.load(&stale, later).await.unwrap(), Some(replacement));
    let ttl = pttl(&mut conn, &store.session_key(&stale)).await;
    assert!(
        ttl > 120_000 && ttl <= 180_000,
        "TTL follows the new expiry: {ttl}"
    );
}

#[tokio::test]
async fn foreign_or_damaged_keys_are_corrupt_not_a_panic() {
    let Some((store, _cleanup)) = case().await else {
        return;
    };
    let mut conn = raw().await;
    let (wrong_type, bad_json, no_expiry) = (hash(52), hash(53), hash(54));
    let _: () = redis::cmd("SET")
        .arg(store.session_key(&wrong_type))
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(store.session_key(&bad_json))
        .arg("m:created")
        .arg(1)
        .arg("m:expires")
        .arg(i64::MAX)
        .arg("d:k")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(store.session_key(&no_expiry))
        .arg("d:k")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();

    let now = SystemClock.now();
    for h1 in [wrong_type, bad_json, no_expiry] {
        let result = store.load(&h1, now).await;
        assert!(
            matches!(result, Err(StoreError::Corrupt { .. })),
            "{result:?}"
        );
    }
    // A save to a foreign key is refused as corrupt; one without expiry is not live.
    let patch = Patch {
        set: vec![("k".into(), json!(2))],
        updated_at: now,
        ..Patch::default()
    };
    assert!(matches!(
        store.save(&wrong_type, &patch).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(!store.save(&no_expiry, &patch).await.unwrap());
    // Creating over them collides instead of overwriting; deleting them works.
    for h1 in [wrong_type, no_expiry] {
        let result = store
            .create(&h1, &record(json!({}), None, Duration::from_secs(60)))
            .await;
        assert!(matches!(result, Err(StoreError::Collision)), "{result:?}");
        assert!(store.delete(&h1).await.unwrap());
    }
    // Maintenance walks past them.
    assert_eq!(store.count(now).await.unwrap(), 1);
    store.purge_expired(now, 1000).await.unwrap();
}

#[tokio::test]
async fn connect_by_url_takes_the_prefix_option() {
    let Some((_, cleanup)) = case().await else {
        return;
    };
    let prefix = cleanup.0.clone().unwrap();
    let store = cloakroom::stores::connect(&format!(
        "{}{}prefix={prefix}",
        url(),
        if url().contains('?') { '&' } else { '?' }
    ))
    .await
    .unwrap();
    assert_eq!(store.name(), "redis");
    let h1 = hash(55);
    store
        .create(
            &h1,
            &record(json!({"via": "url"}), None, Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let mut conn = raw().await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!("{{{prefix}}}:s:{h1}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 1);
}

#[tokio::test]
async fn bad_urls_and_prefixes_say_what_to_do() {
    for (url, needle) in [
        ("redis://127.0.0.1:6379?prefix=has{brace}", "prefix"),
        ("redis://127.0.0.1:6379?prefix=", "prefix"),
        ("redis://127.0.0.1:6379?prefix=a*b", "prefix"),
        ("rediss://127.0.0.1:6380", "TLS"),
        ("redis://", "invalid Redis URL"),
    ] {
        match RedisStore::connect(url).await {
            Err(StoreError::Config(message)) => {
                assert!(message.contains(needle), "{url}: {message}");
            }
            other => panic!("{url}: expected a configuration error, got {other:?}"),
        }
    }
    let wrong = RedisStore::connect("memory://").await.unwrap_err();
    assert!(wrong.to_string().contains("redis://"), "{wrong}");
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_and_clearly() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let error = RedisStore::connect(&format!("redis://:hunter2@127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&port.to_string()), "{message}");
    assert!(
        !message.contains("hunter2"),
        "the password leaked: {message}"
    );
}
