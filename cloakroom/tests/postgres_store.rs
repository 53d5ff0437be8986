//! The PostgreSQL store against the conformance suite and the cases shared by the SQL stores, plus
//! what is specific to it.
//!
//! Needs a PostgreSQL server: `CLOAKROOM_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Without one the cases print "skipped", unless
//! `CLOAKROOM_REQUIRE_SERVICES=1`.
#![cfg(feature = "postgres")]

mod conformance;
mod sql_common;

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
