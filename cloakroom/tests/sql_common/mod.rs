//! The cases the SQL stores on sqlx (PostgreSQL, MySQL / MariaDB) share beyond the conformance
//! suite: awkward keys and values, URLs and table names, migrations, corrupt rows, purge limits
//! and stats. Each store's test file implements [`SqlStore`] for its store (the engine's URLs and
//! raw SQL) and runs every case through `sql_common_suite!(StoreType)`; it keeps only the cases
//! specific to its engine.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cloakroom::{Clock, Patch, Record, Store, StoreError, SystemClock, Timestamp};
use serde_json::{Value, json};

use crate::conformance::{self, Harness, Reports, hash};

/// One engine's store, as the shared cases drive it. The methods forward to the store's own
/// methods of the same name, except the two that write SQL.
pub trait SqlStore: Store + Clone + std::fmt::Debug + 'static {
    /// The server, as skip messages name it: `PostgreSQL`, `MySQL`.
    const SERVICE: &'static str;
    /// The variable naming the test server, and the URL used when it is not set.
    const URL_VARIABLE: &'static str;
    const DEFAULT_URL: &'static str;
    /// The URL scheme, which is also [`Store::name`]; another scheme `stores::connect` takes for
    /// this store; and a user name for URLs to a closed port.
    const SCHEME: &'static str;
    const ALIAS: &'static str;
    const USER: &'static str;
    /// A URL for another engine, which this store must refuse.
    const FOREIGN_URL: &'static str;
    /// Whether `stats` reports the sizes of live data.
    const REPORTS_DATA_SIZES: bool;

    type Pool: Clone;

    fn connect(url: &str) -> impl Future<Output = Result<Self, StoreError>> + Send;
    fn new(pool: Self::Pool) -> Self;
    fn with_table(self, name: &str) -> Result<Self, StoreError>;
    fn pool(&self) -> &Self::Pool;

    /// Drops the store's table.
    fn drop_table(&self) -> impl Future<Output = ()> + Send;

    /// Writes a live row behind the store's back: `id` and `data` as given, whatever they are,
    /// with user id `corrupt-user`.
    fn insert_raw(&self, id: String, data: &str) -> impl Future<Output = ()> + Send;
    /// Every column of every row of the table, as bytes, as an admin would read them.
    fn dump(&self) -> impl Future<Output = Vec<u8>> + Send;
}

/// Runs every shared case against the store type `$store`, as `#[tokio::test]`s of the same
/// names.
#[macro_export]
macro_rules! sql_common_suite {
    ($store:ty) => {
        $crate::sql_common_suite!(@cases $store;
            random_patches_match_the_in_memory_model,
            awkward_keys_are_patched_as_plain_names,
            values_stay_typed,
            connects_through_the_url_dispatcher,
            a_closed_port_is_unavailable_within_seconds,
            bad_table_names_and_urls_are_config_errors,
            migrate_is_idempotent_under_concurrency,
            a_missing_table_says_to_migrate,
            undecodable_rows_are_corrupt,
            user_ids_match_exactly,
            purge_respects_its_limit_and_rotate_never_overwrites,
            stats_count_what_is_stored,
            concurrent_saves_all_apply_and_a_refused_one_fails_alone,
            concurrent_saves_of_every_kind_apply_as_if_alone
        );
    };
    (@cases $store:ty; $($case:ident),*) => {$(
        #[tokio::test]
        async fn $case() {
            $crate::sql_common::$case::<$store>().await;
        }
    )*};
}

fn base_url<S: SqlStore>() -> String {
    std::env::var(S::URL_VARIABLE).unwrap_or_else(|_| S::DEFAULT_URL.to_owned())
}

/// A table name no other case, concurrent test process or earlier run uses.
pub fn unique_table() -> String {
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

pub fn url_with_table<S: SqlStore>(table: &str) -> String {
    let base = base_url::<S>();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}table={table}")
}

/// A store on its own fresh table, or `None` (after printing why) when the server is unreachable.
pub async fn fresh_store<S: SqlStore>() -> Option<S> {
    match S::connect(&url_with_table::<S>(&unique_table())).await {
        Ok(store) => Some(store),
        Err(err) => {
            conformance::skip(S::SERVICE, &base_url::<S>(), &err);
            None
        }
    }
}

/// The conformance suite's factory: a fresh store whose table is dropped after the case.
pub async fn harness<S: SqlStore>() -> Option<Harness> {
    let store = fresh_store::<S>().await?;
    let cleanup = store.clone();
    let reports = Reports {
        data_bytes: S::REPORTS_DATA_SIZES,
        ..Reports::ALL
    };
    let held = store.clone();
    Some(
        Harness::new(store)
            .reports(reports)
            .at_rest(move || {
                let held = held.clone();
                async move { held.dump().await }
            })
            .on_cleanup(move || async move { cleanup.drop_table().await }),
    )
}

pub fn now() -> Timestamp {
    SystemClock.now()
}

pub fn record(data: Value, user: Option<&str>) -> Record {
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

pub async fn random_patches_match_the_in_memory_model<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
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
    store.drop_table().await;
}

pub async fn awkward_keys_are_patched_as_plain_names<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
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
    store.drop_table().await;
}

pub async fn values_stay_typed<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
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
    store.drop_table().await;
}

pub async fn connects_through_the_url_dispatcher<S: SqlStore>() {
    let table = unique_table();
    let url = url_with_table::<S>(&table).replacen(
        &format!("{}://", S::SCHEME),
        &format!("{}://", S::ALIAS),
        1,
    );
    let store = match cloakroom::stores::connect(&url).await {
        Ok(store) => store,
        Err(err) => {
            conformance::skip(S::SERVICE, &base_url::<S>(), &err);
            return;
        }
    };
    assert_eq!(store.name(), S::SCHEME);
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
    let direct = S::connect(&url_with_table::<S>(&table)).await.unwrap();
    assert!(direct.load(&h, now()).await.unwrap().is_some());
    direct.drop_table().await;
}

pub async fn a_closed_port_is_unavailable_within_seconds<S: SqlStore>() {
    let started = Instant::now();
    let result = S::connect(&format!(
        "{}://{}:hunter2@127.0.0.1:1/test",
        S::SCHEME,
        S::USER
    ))
    .await;
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

pub async fn bad_table_names_and_urls_are_config_errors<S: SqlStore>() {
    let closed = format!("{}://{}@127.0.0.1:1/test", S::SCHEME, S::USER);
    for url in [
        format!("{closed}?table=a-b"),
        format!("{closed}?table=x;drop"),
        S::FOREIGN_URL.to_owned(),
    ] {
        let err = S::connect(&url).await.unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{url}: {err:?}");
    }
    let Some(store) = fresh_store::<S>().await else {
        return;
    };
    assert!(store.clone().with_table("1st").is_err());
    store.drop_table().await;
}

pub async fn migrate_is_idempotent_under_concurrency<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
        return;
    };
    let table = unique_table();
    let fresh = S::new(store.pool().clone()).with_table(&table).unwrap();
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
    fresh.drop_table().await;
    store.drop_table().await;
}

pub async fn a_missing_table_says_to_migrate<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
        return;
    };
    let unmigrated = S::new(store.pool().clone())
        .with_table(&unique_table())
        .unwrap();
    let err = unmigrated.load(&hash(43), now()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("migrate()"), "{err}");
    store.drop_table().await;
}

pub async fn undecodable_rows_are_corrupt<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
        return;
    };
    let (array, bad_id) = (hash(44), "not-a-hash");
    for (id, data) in [(array.to_string(), "[1, 2]"), (bad_id.to_owned(), "{}")] {
        store.insert_raw(id, data).await;
    }
    let err = store.load(&array, now()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let err = store.list_user("corrupt-user", now()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    store.drop_table().await;
}

pub async fn user_ids_match_exactly<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
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
    store.drop_table().await;
}

pub async fn purge_respects_its_limit_and_rotate_never_overwrites<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
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
    store.drop_table().await;
}

pub async fn stats_count_what_is_stored<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
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
    if S::REPORTS_DATA_SIZES {
        let sizes = stats.data_bytes.expect("sizes of live data");
        assert!(sizes.max >= 5000 && sizes.p50 < 100, "{sizes:?}");
    } else {
        assert_eq!(
            stats.data_bytes, None,
            "not reported: the stored text is escaped"
        );
    }
    assert_eq!(store.stats(at(1000), 1).await.unwrap().top_users.len(), 1);
    assert!(store.stats(at(1000), 0).await.unwrap().top_users.is_empty());
    store.drop_table().await;
}

/// Concurrent saves (which PostgreSQL batches into one statement): a save the database refuses
/// must fail alone, and every save that can apply must apply, including two to one session.
pub async fn concurrent_saves_all_apply_and_a_refused_one_fails_alone<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
        return;
    };
    let sessions: Vec<_> = (0..30).map(|n| hash(150 + n)).collect();
    for h in &sessions {
        store.create(h, &record(json!({}), None)).await.unwrap();
    }
    let patch = |key: &str, value: Value| Patch {
        set: vec![(key.to_owned(), value)],
        updated_at: now(),
        ..Patch::default()
    };
    let mut tasks = Vec::new();
    for (i, h) in sessions.iter().enumerate() {
        for key in ["a", "b"] {
            let (store, h, p) = (store.clone(), *h, patch(key, json!(i)));
            tasks.push(tokio::spawn(async move { (i, store.save(&h, &p).await) }));
        }
    }
    // Too long for either engine's user index, and random so that PostgreSQL cannot compress
    // it to fit: refused with a Config error.
    let mut seed = 0x2545_f491_u32;
    let long_user: String = (0..10_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            char::from(b'a' + (seed % 26) as u8)
        })
        .collect();
    let refused = Patch {
        user_id: Some(Some(long_user)),
        ..patch("c", json!(1))
    };
    // On a session of its own, so that it queues with the others instead of after them.
    let alone = hash(180);
    let (s, h) = (store.clone(), alone);
    store.create(&h, &record(json!({}), None)).await.unwrap();
    let too_long = tokio::spawn(async move { s.save(&h, &refused).await });
    let (s, missing) = (store.clone(), hash(149)); // never created
    let absent = tokio::spawn(async move { s.save(&missing, &patch("a", json!(1))).await });
    for task in tasks {
        let (i, result) = task.await.unwrap();
        assert!(result.unwrap(), "save {i} found its session");
    }
    let err = too_long.await.unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    assert!(!absent.await.unwrap().unwrap(), "no session, no save");
    for (i, h) in sessions.iter().enumerate() {
        let loaded = store.load(h, now()).await.unwrap().unwrap();
        assert_eq!(loaded.data.get("a"), Some(&json!(i)), "session {i}");
        assert_eq!(loaded.data.get("b"), Some(&json!(i)), "session {i}");
        assert_eq!(loaded.data.get("c"), None, "session {i}");
        assert_eq!(loaded.user_id, None, "session {i}");
    }
    let untouched = store.load(&alone, now()).await.unwrap().unwrap();
    assert!(untouched.data.is_empty() && untouched.user_id.is_none());
    assert!(store.load(&hash(149), now()).await.unwrap().is_none());
    store.drop_table().await;
}

/// Saves that queue up go to the database together; every kind of patch in such a batch, and
/// sessions that ended or never existed, must come out exactly as a save on its own would.
pub async fn concurrent_saves_of_every_kind_apply_as_if_alone<S: SqlStore>() {
    let Some(store) = fresh_store::<S>().await else {
        return;
    };
    let start = now();
    let later = start.saturating_add(Duration::from_secs(7200));
    let sessions: Vec<_> = (0..25).map(|n| hash(200 + n)).collect();
    for (i, h) in sessions.iter().enumerate() {
        let user = (i % 5 == 4).then_some("old");
        let data = json!({"keep": 1, "drop": 2});
        store.create(h, &record(data, user)).await.unwrap();
    }
    let (ended_hash, absent) = (hash(230), hash(231));
    let mut ended = record(json!({"keep": 1}), None);
    ended.expires_at = start.saturating_add(Duration::from_millis(50));
    store.create(&ended_hash, &ended).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let patch_for = |i: usize| {
        let mut patch = Patch {
            set: vec![("a".to_owned(), json!(i))],
            updated_at: now(),
            ..Patch::default()
        };
        match i % 5 {
            1 => patch.remove = vec!["drop".to_owned()],
            2 => patch.clear = true,
            3 => {
                patch.set.clear();
                patch.user_id = Some(Some(format!("u{i}")));
                patch.expires_at = Some(later);
            }
            4 => patch.user_id = Some(None),
            _ => {}
        }
        patch
    };
    let mut tasks = Vec::new();
    for (i, h) in sessions.iter().enumerate() {
        let (store, h, patch) = (store.clone(), *h, patch_for(i));
        tasks.push(tokio::spawn(async move { store.save(&h, &patch).await }));
    }
    let mut gone = Vec::new();
    for h in [ended_hash, absent] {
        let (store, patch) = (store.clone(), patch_for(0));
        gone.push(tokio::spawn(async move { store.save(&h, &patch).await }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert!(task.await.unwrap().unwrap(), "save {i} found its session");
    }
    for task in gone {
        assert!(!task.await.unwrap().unwrap(), "ended or absent: not saved");
    }

    for (i, h) in sessions.iter().enumerate() {
        let loaded = store.load(h, now()).await.unwrap().unwrap();
        let (data, user, expires) = match i % 5 {
            0 => (json!({"keep": 1, "drop": 2, "a": i}), None, None),
            1 => (json!({"keep": 1, "a": i}), None, None),
            2 => (json!({"a": i}), None, None),
            3 => (
                json!({"keep": 1, "drop": 2}),
                Some(format!("u{i}")),
                Some(later),
            ),
            _ => (json!({"keep": 1, "drop": 2, "a": i}), None, None),
        };
        assert_eq!(Value::Object(loaded.data), data, "session {i}");
        assert_eq!(loaded.user_id, user, "session {i}");
        if let Some(expires) = expires {
            assert_eq!(loaded.expires_at, expires, "session {i}");
        } else {
            assert!(loaded.expires_at < later, "session {i} kept its expiry");
        }
    }
    let bound: Vec<_> = store.list_user("u3", now()).await.unwrap();
    assert_eq!(bound.len(), 1, "the index follows a batched bind");
    assert!(store.list_user("old", now()).await.unwrap().is_empty());
    assert!(
        store.load(&absent, now()).await.unwrap().is_none(),
        "not created"
    );
    store.drop_table().await;
}
