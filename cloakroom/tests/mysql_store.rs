//! The MySQL / MariaDB store against the conformance suite and the cases shared by the SQL
//! stores, plus what is specific to it.
//!
//! Needs a MySQL or MariaDB server: `CLOAKROOM_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`). Without one the cases are skipped and counted at the end of the run (support::skip), unless
//! `CLOAKROOM_REQUIRE_SERVICES=1`.
#![cfg(feature = "mysql")]

mod conformance;
mod sql_common;
mod support;

use cloakroom::{MySqlStore, Patch, Store, StoreError};
use conformance::hash;
use serde_json::{Value, json};
use sql_common::{SqlStore, fresh_store, now, record};
use sqlx::MySqlPool;

impl SqlStore for MySqlStore {
    const SERVICE: &'static str = "MySQL";
    const URL_VARIABLE: &'static str = "CLOAKROOM_MYSQL_URL";
    const DEFAULT_URL: &'static str = "mysql://root@127.0.0.1:3306/test";
    const SCHEME: &'static str = "mysql";
    const ALIAS: &'static str = "mariadb";
    const USER: &'static str = "root";
    const FOREIGN_URL: &'static str = "postgres://postgres@127.0.0.1:1/test";
    // The stored text is ASCII-escaped on MariaDB, so its length would mislead.
    const REPORTS_DATA_SIZES: bool = false;

    type Pool = MySqlPool;

    async fn connect(url: &str) -> Result<Self, StoreError> {
        MySqlStore::connect(url).await
    }

    fn new(pool: MySqlPool) -> Self {
        MySqlStore::new(pool)
    }

    fn with_table(self, name: &str) -> Result<Self, StoreError> {
        MySqlStore::with_table(self, name)
    }

    fn pool(&self) -> &MySqlPool {
        MySqlStore::pool(self)
    }

    async fn drop_table(&self) {
        let statement = format!("DROP TABLE IF EXISTS `{}`", self.table());
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(self.pool())
            .await
            .expect("drop the test table");
    }

    async fn dump(&self) -> Vec<u8> {
        // Each column as stored and, for binary ones, in hex as well.
        let select = format!(
            "SELECT CONCAT_WS(' ', CAST(id AS BINARY), HEX(id), \
             CAST(COALESCE(user_id, '') AS BINARY), CAST(data AS BINARY), created_at, \
             updated_at, expires_at) FROM `{}`",
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
            "INSERT INTO `{}` (id, user_id, data, created_at, updated_at, expires_at) \
             VALUES (?, 'corrupt-user', ?, 0, 0, ?)",
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

conformance_suite!(sql_common::harness::<MySqlStore>());
sql_common_suite!(MySqlStore);

#[tokio::test]
async fn nul_characters_and_long_values_round_trip() {
    let Some(store) = fresh_store::<MySqlStore>().await else {
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
    store.drop_table().await;
}

#[tokio::test]
async fn over_long_user_ids_are_refused_before_reaching_the_server() {
    let Some(store) = fresh_store::<MySqlStore>().await else {
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
    store.drop_table().await;
}
