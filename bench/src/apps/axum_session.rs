//! The app on axum_session 0.22: `SessionLayer` over `SessionStore`, with its sqlx (0.9) and
//! redis_pool databases, or none for the memory store.
//!
//! axum_session keeps every active session in an in-memory map in front of the database. Each
//! request slides the expiry in memory; the database is written when the session changed, or
//! when the database update interval has passed: that interval is set to the touch interval
//! cloakroom uses, so W2's "reads keep the session alive" costs both libraries the same.

use std::fmt::Debug;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use axum_session::{
    DatabasePool, Session, SessionConfig, SessionLayer, SessionNullPool, SessionStore,
};
use axum_session_redispool::SessionRedisPool;
use axum_session_sqlx::{SessionMySqlPool, SessionPgPool, SessionSqlitePool};

use super::{IDLE, SLOW, Subject, TOUCH, probe_answer, probe_keys, untouched};
use crate::counting::Counter;
use crate::counting::axum_pool::Counted;
use crate::env::{Env, Leftover};
use crate::model::{Backend, Library};

/// axum_session on `backend`; `cache: false` turns its in-process session cache off.
pub async fn build(env: &Env, backend: Backend, cache: bool) -> Result<Subject, String> {
    let library = if cache {
        Library::AxumSession
    } else {
        Library::AxumSessionNoCache
    };
    let table = env.name(library, "");
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut config = config(&table);
    if !cache {
        config = config.with_memory_lifetime(time::Duration::ZERO);
    }
    match backend {
        Backend::Memory => {
            let store = SessionStore::<SessionNullPool>::new(None, config)
                .await
                .map_err(|x| e(&x))?;
            Ok(subject(store, library, backend, None, Vec::new()))
        }
        Backend::Sqlite => {
            std::fs::create_dir_all(&env.dir).map_err(|x| e(&x))?;
            let path = env.sqlite_path(library, "");
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
            let pool = sqlx::SqlitePool::connect_with(options)
                .await
                .map_err(|x| e(&x))?;
            counted(
                SessionSqlitePool::from(pool),
                config,
                library,
                backend,
                Vec::new(),
            )
            .await
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&env.postgres_url)
                .await
                .map_err(|x| e(&x))?;
            let leftovers = vec![Leftover::PostgresTable(table)];
            counted(
                SessionPgPool::from(pool),
                config,
                library,
                backend,
                leftovers,
            )
            .await
        }
        Backend::MySql => {
            let pool = sqlx::MySqlPool::connect(&env.mysql_url)
                .await
                .map_err(|x| e(&x))?;
            let leftovers = vec![Leftover::MySqlTable(table)];
            counted(
                SessionMySqlPool::from(pool),
                config,
                library,
                backend,
                leftovers,
            )
            .await
        }
        Backend::Redis => {
            let client = redis::Client::open(env.redis_url.as_str()).map_err(|x| e(&x))?;
            // Fail early when Redis is down, rather than on the first request.
            crate::serverstats::redis_connection(&env.redis_url).await?;
            let pool = redis_pool::RedisPool::from(client);
            let leftovers = vec![Leftover::RedisPrefix(format!("{table}:"))];
            counted(
                SessionRedisPool::from(pool),
                config,
                library,
                backend,
                leftovers,
            )
            .await
        }
    }
}

/// The idle timeout as the session lifetime, the touch interval as the database update
/// interval, plain-HTTP cookies; everything else as axum_session ships it.
fn config(table: &str) -> SessionConfig {
    SessionConfig::default()
        .with_table_name(table.to_owned())
        .with_secure(false)
        .with_lifetime(time::Duration::seconds(IDLE.as_secs() as i64))
        .with_db_update_interval(time::Duration::seconds(TOUCH.as_secs() as i64))
}

async fn counted<P>(
    pool: P,
    config: SessionConfig,
    library: Library,
    backend: Backend,
    leftovers: Vec<Leftover>,
) -> Result<Subject, String>
where
    P: DatabasePool + Clone + Debug + Sync + Send + 'static,
{
    let ops = Counter::default();
    let pool = Counted {
        inner: pool,
        ops: ops.clone(),
    };
    let store = SessionStore::new(Some(pool), config)
        .await
        .map_err(|e| e.to_string())?;
    Ok(subject(store, library, backend, Some(ops), leftovers))
}

fn subject<P>(
    store: SessionStore<P>,
    library: Library,
    backend: Backend,
    ops: Option<Counter>,
    leftovers: Vec<Leftover>,
) -> Subject
where
    P: DatabasePool + Clone + Debug + Sync + Send + 'static,
{
    let router = app(store);
    Subject {
        library,
        backend,
        keepalive: router.clone(),
        router,
        ops,
        leftovers,
        late_leftovers: None,
    }
}

fn app<P>(store: SessionStore<P>) -> Router
where
    P: DatabasePool + Clone + Debug + Sync + Send + 'static,
{
    Router::new()
        .route("/login", get(login::<P>))
        .route("/w1", get(untouched))
        .route("/w2", get(read::<P>))
        .route("/w3", get(counter::<P>))
        .route("/w4", get(create::<P>))
        .route("/slow/{key}", get(slow::<P>))
        .route("/logout", get(logout::<P>))
        .route("/probe", get(probe::<P>))
        .layer(SessionLayer::new(store))
}

async fn login<P>(session: Session<P>) -> &'static str
where
    P: DatabasePool + Clone + Debug + Sync + Send + 'static,
{
    session.set("n", 0u64);
    "ok"
}

async fn read<P>(session: Session<P>) -> String
where
    P: DatabasePool + Clone + Debug + Sync + Send + 'static,
{
    session.get::<u64>("n").unwrap_or(0).to_string()
}

async fn counter<P>(session: Session<P>) -> String
where
    P: DatabasePool + Clone + Debug + Sync + Send + 'static,
{
    let n = session.get::<u64>("n").unwrap_or(0) + 1;
    session.set("n", n);
    n.to_string()
}

async fn create<P>(session: Session<P>) -> &'static str
where
    P: DatabasePool + Clone + Debug + Sync + Send + 'static,
{
    session.set("n", 1u64);
    "ok"
}

async fn slow<P>(session: Session<P>, Path(key): Path<String>) -> &'static str
where
    P: DatabasePool + Clone + Debug + Sync + Send + 'static,
{
    // The layer loaded the session before the handler ran.
    tokio::time::sleep(SLOW).await;
    session.set(&key, true);
    "ok"
}

async fn logout<P>(session: Session<P>) -> &'static str
where
    P: DatabasePool + Clone + Debug + Sync + Send + 'static,
{
    session.destroy();
    "ok"
}

async fn probe<P>(session: Session<P>) -> String
where
    P: DatabasePool + Clone + Debug + Sync + Send + 'static,
{
    let kept = probe_keys()
        .filter(|k| session.get::<serde_json::Value>(k).is_some())
        .count();
    let any = kept > 0 || session.get::<serde_json::Value>("n").is_some();
    probe_answer(kept, any)
}
