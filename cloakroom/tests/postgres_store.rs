//! The PostgreSQL store against the conformance suite and the cases shared by the SQL stores, plus
//! what is specific to it.
//!
//! Needs a PostgreSQL server: `CLOAKROOM_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Without one the cases are skipped and counted at the end of the run (support::skip), unless
//! `CLOAKROOM_REQUIRE_SERVICES=1`.
#![cfg(feature = "postgres")]

mod conformance;
mod sql_common;
mod support;

use std::time::{Duration, Instant};

use cloakroom::Patch;
use cloakroom::{PostgresStore, Store, StoreError};
use conformance::hash;
use serde_json::json;
use sql_common::{SqlStore, fresh_store, now, record};
use sqlx::PgPool;

impl SqlStore for PostgresStore {
    const SERVICE: &'static str = "PostgreSQL";
    const URL_VARIABLE: &'static str = "CLOAKROOM_POSTGRES_URL";
    const DEFAULT_URL: &'static str = "postgres://postgres@127.0.0.1:5432/test";
    const SCHEME: &'static str = "postgres";
    const ALIAS: &'static str = "postgresql";
    const USER: &'static str = "postgres";
    const FOREIGN_URL: &'static str = "mysql://root@127.0.0.1:1/test";
    const REPORTS_DATA_SIZES: bool = true;

    type Pool = PgPool;

    async fn connect(url: &str) -> Result<Self, StoreError> {
        PostgresStore::connect(url).await
    }

    fn new(pool: PgPool) -> Self {
        PostgresStore::new(pool)
    }

    fn with_table(self, name: &str) -> Result<Self, StoreError> {
        PostgresStore::with_table(self, name)
    }

    fn pool(&self) -> &PgPool {
        PostgresStore::pool(self)
    }

    async fn drop_table(&self) {
        let statement = format!("DROP TABLE IF EXISTS \"{}\"", self.table());
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(self.pool())
            .await
            .expect("drop the test table");
    }

    async fn dump(&self) -> Vec<u8> {
        let select = format!(
            "SELECT convert_to(row_to_json(t)::text, 'UTF8') FROM \"{}\" t",
            self.table()
        );
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(select))
            .fetch_all(self.pool())
            .await
            .unwrap();
        rows.concat()
    }

    async fn insert_raw(&self, id: String, data: &str) {
        let insert = format!(
            "INSERT INTO \"{}\" (id, user_id, data, created_at, updated_at, expires_at) \
             VALUES ($1, 'corrupt-user', $2::jsonb, 0, 0, $3)",
            self.table()
        );
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(id)
            .bind(data)
            .bind(i64::MAX)
            .execute(self.pool())
            .await
            .unwrap();
    }
}

conformance_suite!(sql_common::harness::<PostgresStore>());
sql_common_suite!(PostgresStore);

#[tokio::test]
async fn nul_characters_are_refused_not_panicked_on() {
    let Some(store) = fresh_store::<PostgresStore>().await else {
        return;
    };
    let h = hash(45);
    let err = store
        .create(&h, &record(json!({"k": "a\u{0}b"}), None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    let err = store
        .create(&h, &record(json!({}), Some("nul\u{0}user")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    assert!(store.load(&h, now()).await.unwrap().is_none());
    store.drop_table().await;
}

/// PostgreSQL caches a generic plan for a statement prepared on a connection after five runs, made
/// for the table as it was then. The batched save must not run on one: a plan made while the
/// table was small (a hash join over a full scan) reads every row of the grown table on each
/// batch until statistics are refreshed, which with autovacuum off is never.
#[tokio::test]
async fn batched_saves_find_their_rows_by_id_after_the_table_grows() {
    let Some(store) = fresh_store::<PostgresStore>().await else {
        return;
    };
    let sessions: Vec<_> = (0..20).map(|n| hash(200 + n)).collect();
    for h in &sessions {
        store.create(h, &record(json!({}), None)).await.unwrap();
    }
    let save_all = |n: u64| {
        let tasks: Vec<_> = sessions
            .iter()
            .map(|h| {
                let (store, h) = (store.clone(), *h);
                let patch = Patch {
                    set: vec![("n".to_owned(), json!(n))],
                    updated_at: now(),
                    ..Patch::default()
                };
                tokio::spawn(async move { store.save(&h, &patch).await })
            })
            .collect();
        async move {
            for task in tasks {
                assert!(task.await.unwrap().unwrap(), "every session is live");
            }
        }
    };
    for n in 0..10 {
        save_all(n).await;
    }
    let grow = format!(
        "INSERT INTO \"{}\" (id, data, created_at, updated_at, expires_at) \
         SELECT md5(i::text), '{{}}', 0, 0, 0 FROM generate_series(1, 200000) AS i",
        store.table()
    );
    sqlx::query(sqlx::AssertSqlSafe(grow))
        .execute(store.pool())
        .await
        .unwrap();
    let before = rows_scanned_after(&store, 200).await;
    save_all(10).await;
    let scanned = rows_scanned_after(&store, 220).await - before;
    assert!(
        scanned < 1000,
        "one batch of 20 saves scanned {scanned} rows of a 200,020-row table"
    );
    let stored = store.load(&sessions[0], now()).await.unwrap().unwrap();
    assert_eq!(stored.data.get("n"), Some(&json!(10)));
    store.drop_table().await;
}

/// The rows read by full scans of the store's table, once PostgreSQL reports `updates` updates
/// of it. Each connection reports its statistics on its own schedule (within seconds of going
/// idle); once the update count has every save, the scans made alongside are in too.
async fn rows_scanned_after(store: &PostgresStore, updates: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (updated, scanned): (i64, i64) = sqlx::query_as(
            "SELECT n_tup_upd, seq_tup_read FROM pg_stat_user_tables WHERE relname = $1",
        )
        .bind(store.table())
        .fetch_one(store.pool())
        .await
        .unwrap();
        if updated >= updates {
            return scanned;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL reported {updated} of {updates} updates within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
