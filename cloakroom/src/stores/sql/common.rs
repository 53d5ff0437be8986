//! The Store calls that PostgreSQL and MySQL run alike: one fixed statement, the same parameters
//! in the same order, the same reading of the result. Each store passes its own statement (the
//! dialects differ in placeholders and quoting), its pool, how it maps errors and how its
//! `user_id` column is bound and read; the rest is here, written once.
//!
//! Invariants the statements must keep for these calls to be right:
//! - `load`: parameters `id, now`; columns `user_id, data, created_at, updated_at, expires_at`
//!   of the live row.
//! - `list_user`: parameters `user_id, now`; column `id`, then `load`'s columns, oldest first.
//! - `delete`: `id`. `revoke_user`: `user_id, id to keep (or NULL)`. `count`: `now`.
//! - `purge`: `now, limit`, deleting only rows expired at `now`.
//! - `top_users`: `now, limit`; columns user id, live sessions.

use sqlx::types::Json;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, SqlStr, Type};

use super::driver::{self, Engine};
use super::{row_count, sql_limit};
use crate::error::StoreError;
use crate::record::{Data, Record};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

/// How many rows a statement changed (each driver's result type has its own method).
pub(crate) trait RowsAffected {
    fn rows(&self) -> u64;
}

/// Where the shared calls run: the store's engine, pool and table, and how it maps driver
/// errors (given the table, for the hint that names it).
pub(crate) struct Calls<'a, DB: Database> {
    pub(crate) engine: &'a Engine,
    pub(crate) pool: &'a Pool<DB>,
    pub(crate) table: &'a str,
    pub(crate) error: fn(&str, sqlx::Error) -> StoreError,
}

impl<DB> Calls<'_, DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    DB::QueryResult: RowsAffected,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'r> Json<Data>: Decode<'r, DB> + Type<DB>,
    &'static str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    /// [`Store::load`](crate::Store::load).
    pub(crate) async fn load<U>(
        &self,
        statement: &SqlStr,
        hash: &SessionHash,
        now: Timestamp,
        decode_user_id: fn(U) -> Result<String, StoreError>,
    ) -> Result<Option<Record>, StoreError>
    where
        for<'r> U: Decode<'r, DB> + Type<DB>,
    {
        let row = sqlx::query(statement.clone())
            .bind(hash.to_string())
            .bind(now.as_unix_millis())
            .fetch_optional(self.pool)
            .await
            .map_err(|e| (self.error)(self.table, e))?;
        row.map(|row| driver::decode_record(self.engine, &row, decode_user_id))
            .transpose()
    }

    /// [`Store::delete`](crate::Store::delete).
    pub(crate) async fn delete(
        &self,
        statement: &SqlStr,
        hash: &SessionHash,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(statement.clone())
            .bind(hash.to_string())
            .execute(self.pool)
            .await
            .map_err(|e| (self.error)(self.table, e))?;
        Ok(done.rows() > 0)
    }

    /// [`Store::list_user`](crate::Store::list_user); `user_id` as the column binds it.
    pub(crate) async fn list_user<B, U>(
        &self,
        statement: &SqlStr,
        user_id: B,
        now: Timestamp,
        decode_user_id: fn(U) -> Result<String, StoreError>,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError>
    where
        for<'q> B: Encode<'q, DB> + Type<DB> + Send,
        for<'r> U: Decode<'r, DB> + Type<DB>,
    {
        let rows = sqlx::query(statement.clone())
            .bind(user_id)
            .bind(now.as_unix_millis())
            .fetch_all(self.pool)
            .await
            .map_err(|e| (self.error)(self.table, e))?;
        rows.iter()
            .map(|row| driver::decode_listed(self.engine, row, decode_user_id))
            .collect()
    }

    /// [`Store::revoke_user`](crate::Store::revoke_user); `user_id` as the column binds it.
    pub(crate) async fn revoke_user<B>(
        &self,
        statement: &SqlStr,
        user_id: B,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError>
    where
        for<'q> B: Encode<'q, DB> + Type<DB> + Send,
    {
        let done = sqlx::query(statement.clone())
            .bind(user_id)
            .bind(except.map(SessionHash::to_string))
            .execute(self.pool)
            .await
            .map_err(|e| (self.error)(self.table, e))?;
        Ok(done.rows())
    }

    /// [`Store::count`](crate::Store::count).
    pub(crate) async fn count(
        &self,
        statement: &SqlStr,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(statement.clone())
            .bind(now.as_unix_millis())
            .fetch_one(self.pool)
            .await
            .map_err(|e| (self.error)(self.table, e))?;
        Ok(row_count(count))
    }

    /// [`Store::purge_expired`](crate::Store::purge_expired).
    pub(crate) async fn purge(
        &self,
        statement: &SqlStr,
        now: Timestamp,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(statement.clone())
            .bind(now.as_unix_millis())
            .bind(sql_limit(limit))
            .execute(self.pool)
            .await
            .map_err(|e| (self.error)(self.table, e))?;
        Ok(done.rows())
    }

    /// The users with the most live sessions, for [`Store::stats`](crate::Store::stats).
    pub(crate) async fn top_users<U>(
        &self,
        statement: &SqlStr,
        now: Timestamp,
        limit: usize,
        decode_user_id: fn(U) -> Result<String, StoreError>,
    ) -> Result<Vec<(String, u64)>, StoreError>
    where
        for<'r> U: Decode<'r, DB> + Type<DB>,
    {
        let rows = sqlx::query(statement.clone())
            .bind(now.as_unix_millis())
            .bind(sql_limit(limit))
            .fetch_all(self.pool)
            .await
            .map_err(|e| (self.error)(self.table, e))?;
        rows.iter()
            .map(|row| driver::decode_top_user(self.engine, row, decode_user_id))
            .collect()
    }
}
