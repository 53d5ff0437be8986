//! The MySQL / MariaDB store against the conformance suite, plus what is specific to it.
//!
//! Needs a MySQL or MariaDB server: `CLOAKROOM_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`). Without one the cases print "skipped", unless
//! `CLOAKROOM_REQUIRE_SERVICES=1`.
#![cfg(feature = "mysql")]

mod conformance;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cloakroom::{Clock, MySqlStore, Patch, Record, Store, StoreError, SystemClock, Timestamp};
use conformance::{Harness, hash};
use serde_json::{Value, json};

fn base_url() -> String {
    std::env::var("CLOAKROOM_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A table name no other case, concurrent test process or earlier run uses.
fn unique_table() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "cloakroom_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn url_with_table(table: &str) -> String {
    let base = base_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}table={table}")
}

/// A store on its own fresh table, or `None` (after printing why) when MySQL is unreachable.
async fn fresh_store() -> Option<MySqlStore> {
    match MySqlStore::connect(&url_with_table(&unique_table())).await {
        Ok(store) => Some(store),
        Err(err) => {
            conformance::skip("MySQL", err);
            None
        }
    }
}

async fn drop_table(store: &MySqlStore) {
    let statement = format!("DROP TABLE IF EXISTS `{}`", store.table());
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(store.pool())
        .await
        .expect("drop the test table");
}

async fn mysql() -> Option<Harness> {
    let store = fresh_store().await?;
    let cleanup = store.clone();
    Some(Harness::new(store).on_cleanup(move || async move { drop_table(&cleanup).await }))
}

conformance_suite!(mysql());

fn now() -> Timestamp {
    SystemClock.now()
}

fn record(data: Value, user: Option<&str>) -> Record {
    let now = now();
    Record {
        data: conformance::data(data),
        user_id: user.map(str::to_owned),
        created_at: now,
        updated_at: now,
        expires_at: now.saturating_add(Duration::from_secs(3600)),
    }
}

/// Every printable ASCII character alone, leading and inside a name (engines' path parsers trip
/// on leading characters), plus names that look like path syntax, escapes or other scripts.
fn awkward_keys() -> Vec<String> {
    let mut keys: Vec<String> = (' '..='~')
        .flat_map(|c| [c.to_string(), format!("{c}x"), format!("x{c}y")])
        .collect();
    keys.extend(
        [
            "a\"b",
            "a\\b",
            "\\\"",
            "a.b",
            "a[0]",
            "$",
            "$.a",
            "[*]",
            "**",
            "-1",
            "--",
            "last",
            "日本語",
            "é",
            "ключ",
            "🧥",
            "",
            "a b",
            "line\nbreak",
            "\t",
            "\u{1}",
            "\u{7f}",
            "\u{2028}",
            "\u{ffff}",
            "\u{10ffff}",
            "'; --",
            "{}",
        ]
        .map(str::to_owned),
    );
    keys.sort();
    keys.dedup();
    keys
}

/// A small deterministic generator (xorshift64*), so a failing sequence can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[tokio::test]
async fn random_patches_match_the_in_memory_model() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let mut keys = awkward_keys();
    keys.extend((0..20).map(|i| format!("k{i}")));
    let values = [
        json!(null),
        json!(true),
        json!(0),
        json!(-7),
        json!(9_007_199_254_740_993u64),
        json!(1.5),
        json!(""),
        json!("{\"a\":1}"),
        json!("null"),
        json!("日本 🧥 \" \\ \n"),
        json!([]),
        json!({}),
        json!({"n": null, "z": [null, {"q": null}], "ключ": "значение"}),
        json!("x".repeat(3000)),
    ];
    let mut rng = Rng(0x5eed_c10a_c400_u64);
    let h = hash(58);
    let mut model = record(json!({}), None);
    store.create(&h, &model).await.unwrap();
    for round in 0..60 {
        let mut touched = std::collections::HashSet::new();
        let mut patch = Patch {
            clear: rng.below(15) == 0,
            updated_at: now(),
            ..Patch::default()
        };
        for _ in 0..rng.below(25) {
            let key = rng.pick(&keys).clone();
            if touched.insert(key.clone()) {
                patch.remove.push(key);
            }
        }
        for _ in 0..rng.below(25) {
            let key = rng.pick(&keys).clone();
            if touched.insert(key.clone()) {
                patch.set.push((key, rng.pick(&values).clone()));
            }
        }
        assert!(store.save(&h, &patch).await.unwrap(), "round {round}");
        patch.apply_to(&mut model);
        let stored = store.load(&h, now()).await.unwrap().unwrap().data;
        let differing: Vec<_> = keys
            .iter()
            .filter(|k| stored.get(*k) != model.data.get(*k))
            .collect();
        assert!(
            differing.is_empty() && stored == model.data,
            "round {round}: keys {differing:?} differ after {patch:?}"
        );
    }
    drop_table(&store).await;
}

#[tokio::test]
async fn awkward_keys_are_patched_as_plain_names() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let keys = awkward_keys();
    let initial: serde_json::Map<String, Value> =
        keys.iter().map(|k| (k.clone(), json!(k))).collect();
    let mut expected = record(Value::Object(initial), None);
    let h = hash(40);
    store.create(&h, &expected).await.unwrap();

    // Twice, so that every key is both removed and set: remove half of the keys, overwrite the
    // other half and add variants of them.
    for parity in 0..2 {
        let patch = Patch {
            remove: keys.iter().skip(parity).step_by(2).cloned().collect(),
            set: keys
                .iter()
                .skip(1 - parity)
                .step_by(2)
                .flat_map(|k| {
                    [
                        (k.clone(), json!({"was": k, "parity": parity})),
                        (format!("{k}.new"), json!([k])),
                    ]
                })
                .collect(),
            updated_at: now(),
            ..Patch::default()
        };
        assert!(store.save(&h, &patch).await.unwrap());
        patch.apply_to(&mut expected);
    }
    let loaded = store.load(&h, now()).await.unwrap().unwrap().data;
    let differing: Vec<_> = keys
        .iter()
        .flat_map(|k| [k.clone(), format!("{k}.new")])
        .filter(|k| loaded.get(k) != expected.data.get(k))
        .map(|k| (loaded.get(&k).cloned(), expected.data.get(&k).cloned(), k))
        .collect();
    assert!(
        differing.is_empty(),
        "(stored, expected, key): {differing:?}"
    );
    assert_eq!(loaded, expected.data);
    drop_table(&store).await;
}

#[tokio::test]
async fn values_stay_typed() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let h = hash(41);
    store
        .create(&h, &record(json!({"object": "{\"a\":1}"}), None))
        .await
        .unwrap();
    let set = vec![
        ("array".to_owned(), json!("[1,2]")),
        ("number".to_owned(), json!("42")),
        ("bool".to_owned(), json!("true")),
        ("null".to_owned(), json!("null")),
        ("quoted".to_owned(), json!("\"q\"")),
        (
            "real".to_owned(),
            json!({"n": 42, "t": true, "z": null, "a": [1.5]}),
        ),
    ];
    let patch = Patch {
        set: set.clone(),
        updated_at: now(),
        ..Patch::default()
    };
    assert!(store.save(&h, &patch).await.unwrap());
    let data = store.load(&h, now()).await.unwrap().unwrap().data;
    assert_eq!(data["object"], json!("{\"a\":1}"));
    for (key, value) in set {
        assert_eq!(data[&key], value, "{key}");
    }
    drop_table(&store).await;
}

#[tokio::test]
async fn connects_through_the_url_dispatcher() {
    let table = unique_table();
    let url = url_with_table(&table).replacen("mysql://", "mariadb://", 1);
    let store = match cloakroom::stores::connect(&url).await {
        Ok(store) => store,
        Err(err) => {
            conformance::skip("MySQL", err);
            return;
        }
    };
    assert_eq!(store.name(), "mysql");
    let h = hash(42);
    store
        .create(&h, &record(json!({"via": "url"}), None))
        .await
        .unwrap();
    assert_eq!(
        store.load(&h, now()).await.unwrap().unwrap().data["via"],
        json!("url")
    );
    // The table named in the URL is the one used.
    let direct = MySqlStore::connect(&url_with_table(&table)).await.unwrap();
    assert!(direct.load(&h, now()).await.unwrap().is_some());
    drop_table(&direct).await;
}

#[tokio::test]
async fn a_closed_port_is_unavailable_within_seconds() {
    let started = Instant::now();
    let result = MySqlStore::connect("mysql://root:hunter2@127.0.0.1:1/test").await;
    let elapsed = started.elapsed();
    let Err(err) = result else {
        panic!("connected to a closed port")
    };
    assert!(
        matches!(err, StoreError::Unavailable { .. }),
        "expected Unavailable, got {err:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("hunter2"), "password in {message}");
}

#[tokio::test]
async fn bad_table_names_and_urls_are_config_errors() {
    for url in [
        "mysql://root@127.0.0.1:1/test?table=a-b",
        "mysql://root@127.0.0.1:1/test?table=x;drop",
        "postgres://postgres@127.0.0.1:1/test",
    ] {
        let err = MySqlStore::connect(url).await.unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{url}: {err:?}");
    }
    let Some(store) = fresh_store().await else {
        return;
    };
    assert!(store.clone().with_table("1st").is_err());
    drop_table(&store).await;
}

#[tokio::test]
async fn migrate_is_idempotent_under_concurrency() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let table = unique_table();
    let fresh = MySqlStore::new(store.pool().clone())
        .with_table(&table)
        .unwrap();
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let fresh = fresh.clone();
            tokio::spawn(async move { fresh.migrate().await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().expect("concurrent migrate");
    }
    fresh.migrate().await.expect("migrate again");
    assert_eq!(fresh.count(now()).await.unwrap(), 0);
    drop_table(&fresh).await;
    drop_table(&store).await;
}

#[tokio::test]
async fn a_missing_table_says_to_migrate() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let unmigrated = MySqlStore::new(store.pool().clone())
        .with_table(&unique_table())
        .unwrap();
    let err = unmigrated.load(&hash(43), now()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("migrate()"), "{err}");
    drop_table(&store).await;
}

#[tokio::test]
async fn undecodable_rows_are_corrupt() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let (array, bad_id) = (hash(44), "not-a-hash");
    let insert = format!(
        "INSERT INTO `{}` (id, user_id, data, created_at, updated_at, expires_at) \
         VALUES (?, 'corrupt-user', ?, 0, 0, ?)",
        store.table()
    );
    for (id, data) in [(array.to_string(), "[1, 2]"), (bad_id.to_owned(), "{}")] {
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(id)
            .bind(data)
            .bind(i64::MAX)
            .execute(store.pool())
            .await
            .unwrap();
    }
    let err = store.load(&array, now()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let err = store.list_user("corrupt-user", now()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    drop_table(&store).await;
}

#[tokio::test]
async fn nul_characters_and_long_values_round_trip() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let h = hash(45);
    let data = json!({"nul": "a\u{0}b", "k\u{0}ey": 1, "long": "é".repeat(100_000)});
    store.create(&h, &record(data.clone(), None)).await.unwrap();
    let patch = Patch {
        set: vec![("late\u{0}".to_owned(), json!("\u{0}"))],
        remove: vec!["k\u{0}ey".to_owned()],
        updated_at: now(),
        ..Patch::default()
    };
    assert!(store.save(&h, &patch).await.unwrap());
    let mut expected = data;
    expected.as_object_mut().unwrap().remove("k\u{0}ey");
    expected["late\u{0}"] = json!("\u{0}");
    let loaded = store.load(&h, now()).await.unwrap().unwrap();
    assert_eq!(Value::Object(loaded.data), expected);
    drop_table(&store).await;
}

#[tokio::test]
async fn over_long_user_ids_are_refused_before_reaching_the_server() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let (h, long) = (
        hash(49),
        "u".repeat(cloakroom::stores::mysql::MAX_USER_ID_BYTES + 1),
    );
    let err = store
        .create(&h, &record(json!({}), Some(&long)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    store.create(&h, &record(json!({}), None)).await.unwrap();
    let bind = Patch {
        user_id: Some(Some(long)),
        updated_at: now(),
        ..Patch::default()
    };
    let err = store.save(&h, &bind).await.unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    let exact = "ü".repeat(cloakroom::stores::mysql::MAX_USER_ID_BYTES / 2);
    let bind = Patch {
        user_id: Some(Some(exact.clone())),
        updated_at: now(),
        ..Patch::default()
    };
    assert!(store.save(&h, &bind).await.unwrap());
    assert_eq!(store.list_user(&exact, now()).await.unwrap().len(), 1);
    drop_table(&store).await;
}

#[tokio::test]
async fn user_ids_match_exactly() {
    let Some(store) = fresh_store().await else {
        return;
    };
    for (n, user) in [(46, "alice"), (47, "Alice"), (48, "alice ")] {
        store
            .create(&hash(n), &record(json!({}), Some(user)))
            .await
            .unwrap();
    }
    assert_eq!(store.list_user("alice", now()).await.unwrap().len(), 1);
    assert_eq!(store.revoke_user("alice", None).await.unwrap(), 1);
    assert_eq!(store.list_user("Alice", now()).await.unwrap().len(), 1);
    assert_eq!(store.list_user("alice ", now()).await.unwrap().len(), 1);
    drop_table(&store).await;
}

#[tokio::test]
async fn purge_respects_its_limit_and_rotate_never_overwrites() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let then = now();
    for n in 50..55 {
        let mut dying = record(json!({}), None);
        dying.expires_at = then.saturating_add(Duration::from_millis(1));
        store.create(&hash(n), &dying).await.unwrap();
    }
    let later = then.saturating_add(Duration::from_secs(1));
    assert_eq!(store.purge_expired(later, 2).await.unwrap(), 2);
    assert_eq!(store.purge_expired(later, 2).await.unwrap(), 2);
    assert_eq!(store.purge_expired(later, 2).await.unwrap(), 1);
    assert_eq!(store.purge_expired(later, 2).await.unwrap(), 0);

    let (a, b) = (hash(56), hash(57));
    store
        .create(&a, &record(json!({"who": "a"}), None))
        .await
        .unwrap();
    store
        .create(&b, &record(json!({"who": "b"}), None))
        .await
        .unwrap();
    let patch = Patch {
        updated_at: now(),
        ..Patch::default()
    };
    let err = store.rotate(&a, &b, &patch).await.unwrap_err();
    assert!(matches!(err, StoreError::Collision), "{err:?}");
    assert_eq!(
        store.load(&a, now()).await.unwrap().unwrap().data["who"],
        "a"
    );
    assert_eq!(
        store.load(&b, now()).await.unwrap().unwrap().data["who"],
        "b"
    );
    drop_table(&store).await;
}

#[tokio::test]
async fn stats_count_what_is_stored() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let start = now();
    let at = |ms: u64| start.saturating_add(Duration::from_millis(ms));
    let create = |n: u8, created: Timestamp, ttl_ms: u64, data: Value, user: Option<&str>| {
        let record = Record {
            data: conformance::data(data),
            user_id: user.map(str::to_owned),
            created_at: created,
            updated_at: created,
            expires_at: created.saturating_add(Duration::from_millis(ttl_ms)),
        };
        let store = store.clone();
        async move { store.create(&hash(n), &record).await.unwrap() }
    };
    create(60, at(0), 3_600_000, json!({"a": 1}), Some("ann")).await;
    create(61, at(10), 3_600_000, json!({"a": 2}), Some("ann")).await;
    create(
        62,
        at(20),
        3_600_000,
        json!({"b": "x".repeat(5000)}),
        Some("bob"),
    )
    .await;
    create(63, at(30), 3_600_000, json!({}), None).await;
    create(64, at(0), 5, json!({}), Some("gone")).await;
    let stats = store.stats(at(1000), 10).await.unwrap();
    assert_eq!((stats.live, stats.expired), (4, Some(1)));
    assert_eq!((stats.oldest, stats.newest), (Some(at(0)), Some(at(30))));
    assert_eq!(
        stats.top_users,
        vec![("ann".to_owned(), 2), ("bob".to_owned(), 1)]
    );
    assert_eq!(
        stats.data_bytes, None,
        "not reported: the stored text is escaped"
    );
    assert_eq!(store.stats(at(1000), 1).await.unwrap().top_users.len(), 1);
    assert!(store.stats(at(1000), 0).await.unwrap().top_users.is_empty());
    drop_table(&store).await;
}
