//! The SQLite store against the conformance suite (on a file and in memory), plus what is
//! specific to SQLite: JSON paths for awkward keys, WAL, the table option, restarts, URLs and
//! corrupt rows.
#![cfg(feature = "sqlite")]

mod conformance;
mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cloakroom::{Patch, Record, SessionHash, SqliteStore, Store, StoreError, Timestamp};
use conformance::{Harness, Reports, data, hash};
use serde_json::{Value, json};

/// One database file for the whole run, in Cargo's scratch directory for integration tests;
/// every case gets its own table in it, dropped afterwards.
fn shared_db() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("sqlite_conformance.db")
}

/// A table name no other case (or concurrent run) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory for tests that need their own database file.
fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A side connection to a database file, as another process (or an admin) would have.
fn side_connection(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

async fn file_db() -> Option<Harness> {
    let table = unique("conformance");
    let path = shared_db();
    let url = format!("sqlite://{}?table={table}", path.display());
    let store = SqliteStore::connect(&url)
        .await
        .expect("open the test database");
    let (dump_path, dump_table) = (path.clone(), table.clone());
    Some(
        Harness::new(store)
            .reports(Reports::ALL)
            .at_rest(move || {
                let (path, table) = (dump_path.clone(), dump_table.clone());
                async move {
                    tokio::task::spawn_blocking(move || rows_as_bytes(&path, &table))
                        .await
                        .unwrap()
                }
            })
            .on_cleanup(move || async move {
                tokio::task::spawn_blocking(move || {
                    side_connection(&path)
                        .execute_batch(&format!("DROP TABLE IF EXISTS \"{table}\""))
                        .unwrap();
                })
                .await
                .unwrap();
            }),
    )
}

conformance_suite!(file_db());

/// Every value of every row of `table`, as an admin with the database file would read them.
fn rows_as_bytes(path: &Path, table: &str) -> Vec<u8> {
    use rusqlite::types::ValueRef;
    let conn = side_connection(path);
    let mut statement = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
    let columns = statement.column_count();
    let mut rows = statement.query([]).unwrap();
    let mut dump = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        for i in 0..columns {
            match row.get_ref(i).unwrap() {
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => dump.extend(bytes),
                ValueRef::Integer(n) => dump.extend(n.to_string().as_bytes()),
                ValueRef::Real(x) => dump.extend(x.to_string().as_bytes()),
                ValueRef::Null => {}
            }
            dump.push(b' ');
        }
    }
    dump
}

mod in_memory {
    async fn memory_db() -> Option<super::Harness> {
        // Each case its own database, gone with the store.
        let store = cloakroom::SqliteStore::connect("sqlite::memory:")
            .await
            .expect("open an in-memory database");
        Some(super::Harness::new(store).reports(super::Reports::ALL))
    }

    crate::conformance_suite!(memory_db());
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn record(value: Value, user: Option<&str>) -> Record {
    Record {
        data: data(value),
        user_id: user.map(str::to_owned),
        created_at: at(1_000),
        updated_at: at(1_000),
        expires_at: at(1_000_000),
    }
}

const KEYS: &[&str] = &[
    "plain",
    r#"say "hi""#,
    "\"",
    r"back\slash",
    r#"\""#,
    "\\u0022",
    "a.b",
    "[0]",
    "a[",
    "$",
    "$.x",
    "ключ",
    "日本.語",
    "🧥",
    "",
    " ",
    "'; DROP TABLE x; --",
    "tab\tnewline\n",
    "nul\0byte",
];

#[tokio::test]
async fn awkward_keys_are_set_and_removed_exactly() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let h1 = hash(1);
    // Every key present, each holding its index.
    let mut stored = record(
        Value::Object(
            KEYS.iter()
                .enumerate()
                .map(|(i, k)| ((*k).to_owned(), json!(i)))
                .collect(),
        ),
        None,
    );
    store.create(&h1, &stored).await.unwrap();

    // Overwrite the even ones with values of every shape, remove the odd ones.
    let values = [
        json!("{\"looks\": \"like json\"}"),
        json!({"nested": {"a": [1, null, "x"]}, "n": null}),
        json!(null),
        json!([]),
        json!(-1.5),
        json!(true),
        json!(18_446_744_073_709_551_615u64),
    ];
    let patch = Patch {
        set: KEYS
            .iter()
            .step_by(2)
            .zip(values.iter().cycle())
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        remove: KEYS
            .iter()
            .skip(1)
            .step_by(2)
            .map(|k| (*k).to_owned())
            .collect(),
        updated_at: at(2_000),
        ..Patch::default()
    };
    assert!(store.save(&h1, &patch).await.unwrap());
    patch.apply_to(&mut stored);
    let loaded = store.load(&h1, at(2_000)).await.unwrap().unwrap();
    assert_eq!(loaded, stored);
    assert_eq!(loaded.data.len(), KEYS.len().div_ceil(2));
    // The string that looks like JSON stayed a string.
    assert_eq!(loaded.data["plain"], json!("{\"looks\": \"like json\"}"));

    // New keys (not yet in the object) are created under their exact names, also when rotating.
    let h2 = hash(2);
    let patch = Patch {
        set: KEYS
            .iter()
            .map(|k| (format!("new {k}"), json!(k)))
            .collect(),
        remove: KEYS.iter().map(|k| (*k).to_owned()).collect(),
        updated_at: at(3_000),
        ..Patch::default()
    };
    assert!(store.rotate(&h1, &h2, &patch).await.unwrap());
    patch.apply_to(&mut stored);
    assert_eq!(store.load(&h2, at(3_000)).await.unwrap().unwrap(), stored);
    assert_eq!(stored.data.len(), KEYS.len());
}

#[tokio::test]
async fn a_patch_too_big_for_one_statement_still_applies_atomically() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let (h1, h2) = (hash(3), hash(4));
    let mut stored = record(json!({"keep": 1, "drop": 2}), Some("u"));
    store.create(&h1, &stored).await.unwrap();
    // 40 000 removals bind more parameters than SQLite takes in one statement. (Removals of
    // absent keys keep the test fast: SQLite inserts into a JSON object in linear time.)
    let patch = Patch {
        set: vec![("a".into(), json!(1)), ("b".into(), json!({"c": [null]}))],
        remove: (0..40_000)
            .map(|i| format!("absent{i}"))
            .chain(["drop".to_owned()])
            .collect(),
        user_id: Some(Some("v".into())),
        expires_at: Some(at(2_000_000)),
        updated_at: at(2_000),
        ..Patch::default()
    };
    assert!(store.rotate(&h1, &h2, &patch).await.unwrap());
    patch.apply_to(&mut stored);
    assert_eq!(store.load(&h2, at(2_000)).await.unwrap().unwrap(), stored);
    assert!(store.load(&h1, at(2_000)).await.unwrap().is_none());
    assert_eq!(store.list_user("v", at(2_000)).await.unwrap().len(), 1);

    // Gone meanwhile: nothing of the multi-statement patch lands.
    assert!(store.delete(&h2).await.unwrap());
    assert!(!store.save(&h2, &patch).await.unwrap());
    assert!(store.load(&h2, at(2_000)).await.unwrap().is_none());
    assert_eq!(store.count(at(0)).await.unwrap(), 0);
}

#[tokio::test]
async fn file_databases_use_wal() {
    let dir = scratch_dir();
    let path = dir.join("wal.db");
    let _store = SqliteStore::open(&path).await.unwrap();
    let mode: String = side_connection(&path)
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn stores_starting_together_on_a_new_file_all_open() {
    // Several app instances starting at once race to create the file and switch it to WAL.
    let dir = scratch_dir();
    let url = format!("sqlite://{}", dir.join("race.db").display());
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { SqliteStore::connect(&url).await })
        })
        .collect();
    for open in opens {
        open.await
            .unwrap()
            .expect("every instance opens the database");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_table_is_configurable_and_checked() {
    let dir = scratch_dir();
    let path = dir.join("tables.db");
    let web = SqliteStore::connect(&format!("sqlite://{}?table=web", path.display()))
        .await
        .unwrap();
    assert_eq!(web.table(), "web");
    // A keyword is a valid table name too: identifiers are quoted.
    let admin = web.with_table("order").await.unwrap();
    let h1 = hash(5);
    web.create(&h1, &record(json!({"app": "web"}), None))
        .await
        .unwrap();
    assert!(web.load(&h1, at(2_000)).await.unwrap().is_some());
    assert!(admin.load(&h1, at(2_000)).await.unwrap().is_none());
    assert_eq!(admin.count(at(2_000)).await.unwrap(), 0);

    let tables: Vec<String> = side_connection(&path)
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, ["order", "web"], "no default table was created");

    for bad in ["web;drop", "1st", ""] {
        let url = format!("sqlite://{}?table={bad}", path.display());
        let err = SqliteStore::connect(&url).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Config(m) if m.contains("table name")),
            "{bad}: {err}"
        );
    }
    assert!(matches!(
        web.with_table("no spaces").await,
        Err(StoreError::Config(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let dir = scratch_dir();
    let path = dir.join("restart.db");
    let stored = record(json!({"cart": [1, 2], "user": "alice"}), Some("alice"));
    let h1 = hash(6);
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create(&h1, &stored).await.unwrap();
        store
            .migrate()
            .await
            .expect("migrating again changes nothing");
    }
    let store = SqliteStore::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.load(&h1, at(2_000)).await.unwrap(), Some(stored));
    assert_eq!(store.list_user("alice", at(2_000)).await.unwrap().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn connect_picks_sqlite_by_url() {
    let dir = scratch_dir();
    for url in [
        format!("sqlite://{}", dir.join("a.db").display()),
        format!("sqlite:{}?mode=rwc", dir.join("b.db").display()),
        format!("SQLite://{}?table=t", dir.join("c.db").display()),
        "sqlite::memory:".to_owned(),
        "sqlite://:memory:".to_owned(),
    ] {
        let store = cloakroom::stores::connect(&url).await.expect(&url);
        assert_eq!(store.name(), "sqlite");
        store
            .create(&hash(7), &record(json!({"url": url}), None))
            .await
            .unwrap();
        assert_eq!(store.count(at(2_000)).await.unwrap(), 1, "{url}");
    }
    assert!(dir.join("a.db").exists() && dir.join("b.db").exists());

    let err = cloakroom::stores::connect("sqlite://x.db?cache=shared")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown option"), "{err}");
    let err = cloakroom::stores::connect("sqlite://").await.unwrap_err();
    assert!(err.to_string().contains("names no database file"), "{err}");
    // Two in-memory stores are two databases.
    let one = cloakroom::stores::connect("sqlite::memory:").await.unwrap();
    let two = cloakroom::stores::connect("sqlite::memory:").await.unwrap();
    one.create(&hash(8), &record(json!({}), None))
        .await
        .unwrap();
    assert_eq!(two.count(at(2_000)).await.unwrap(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_unopenable_file_is_unavailable_and_says_why() {
    let dir = scratch_dir();
    let err = SqliteStore::open(dir.join("missing-dir").join("s.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("missing-dir"), "{message}");
    assert!(message.contains("directory must exist"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let dir = scratch_dir();
    let path = dir.join("corrupt.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let side = side_connection(&path);
    let insert = |id: &str, user: &str, data: &str, created: &dyn rusqlite::ToSql| {
        side.execute(
            "INSERT INTO cloakroom_sessions VALUES (?1, ?2, ?3, ?4, 1, 9000000000000)",
            rusqlite::params![id, user, data, created],
        )
        .unwrap();
    };
    let (not_json, array, bad_time) = (hash(10), hash(11), hash(12));
    insert(&not_json.to_string(), "c", "{not json", &1);
    insert(&array.to_string(), "c", "[1, 2]", &1);
    insert(&bad_time.to_string(), "c", "{}", &"yesterday");
    insert("not-a-hash", "d", "{}", &1);

    let now = at(2_000);
    for hash in [not_json, array, bad_time] {
        let err = store.load(&hash, now).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }
    let patch = Patch {
        set: vec![("k".into(), json!(1))],
        updated_at: now,
        ..Patch::default()
    };
    let err = store.save(&not_json, &patch).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let err = store.list_user("d", now).await.unwrap_err();
    assert!(err.to_string().contains("not a 64-digit hex"), "{err}");
    // Corrupt rows can still be removed.
    assert_eq!(store.revoke_user("c", None).await.unwrap(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn rotating_onto_a_taken_hash_is_a_collision_and_changes_nothing() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let (a, b) = (hash(13), hash(14));
    store
        .create(&a, &record(json!({"a": 1}), None))
        .await
        .unwrap();
    store
        .create(&b, &record(json!({"b": 1}), None))
        .await
        .unwrap();
    let patch = Patch {
        updated_at: at(2_000),
        ..Patch::default()
    };
    let err = store.rotate(&a, &b, &patch).await.unwrap_err();
    assert!(matches!(err, StoreError::Collision), "{err:?}");
    let loaded = |h: SessionHash| {
        let store = store.clone();
        async move { store.load(&h, at(2_000)).await.unwrap().unwrap().data }
    };
    assert_eq!(Value::Object(loaded(a).await), json!({"a": 1}));
    assert_eq!(Value::Object(loaded(b).await), json!({"b": 1}));
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("cloakroom-sqlite-mode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("private.db");
    let _ = std::fs::remove_file(&path);
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    for file in [path.clone(), dir.join("private.db-wal")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes are batched into shared transactions (one writer thread per store); a write that
/// fails must be undone alone, while the writes queued with it commit.
#[tokio::test]
async fn a_failing_write_among_concurrent_writes_fails_alone() {
    let dir = scratch_dir();
    let path = dir.join("batch.db");
    let store = std::sync::Arc::new(SqliteStore::open(&path).await.unwrap());
    let now = at(2_000);
    let good: Vec<SessionHash> = (0..40).map(|n| hash(100 + n)).collect();
    for h in &good {
        store
            .create(h, &record(json!({"n": 0}), None))
            .await
            .unwrap();
    }
    let broken = hash(99);
    side_connection(&path)
        .execute(
            "INSERT INTO cloakroom_sessions VALUES (?1, NULL, '{not json', 1, 1, 9000000000000)",
            [broken.to_string()],
        )
        .unwrap();

    let patch = |n: i64| Patch {
        set: vec![("n".into(), json!(n)), (format!("k{n}"), json!(true))],
        updated_at: now,
        ..Patch::default()
    };
    let mut tasks = Vec::new();
    for (i, h) in good.iter().enumerate() {
        let (task_store, h, p) = (store.clone(), *h, patch(i as i64 + 1));
        tasks.push(tokio::spawn(async move { task_store.save(&h, &p).await }));
        if i % 10 == 0 {
            let (task_store, p) = (store.clone(), patch(0));
            tasks.push(tokio::spawn(
                async move { task_store.save(&broken, &p).await },
            ));
        }
    }
    let (mut saved, mut corrupt) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(true) => saved += 1,
            Err(StoreError::Corrupt { .. }) => corrupt += 1,
            other => panic!("unexpected result {other:?}"),
        }
    }
    assert_eq!((saved, corrupt), (40, 4));
    for (i, h) in good.iter().enumerate() {
        let loaded = store.load(h, now).await.unwrap().unwrap();
        let n = i as i64 + 1;
        assert_eq!(loaded.data["n"], json!(n), "session {i}");
        assert_eq!(loaded.data[&format!("k{n}")], json!(true), "session {i}");
    }
    // The broken row is as it was: its failed writes left nothing behind.
    let data: String = side_connection(&path)
        .query_row(
            "SELECT data FROM cloakroom_sessions WHERE id = ?1",
            [broken.to_string()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(data, "{not json");
    std::fs::remove_dir_all(&dir).unwrap();
}
