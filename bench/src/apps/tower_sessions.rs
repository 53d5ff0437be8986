//! The app on tower-sessions 0.14: `SessionManagerLayer` with a sliding idle expiry
//! (`Expiry::OnInactivity`), over its memory, sqlx (0.8) and fred Redis stores.
//!
//! tower-sessions writes only modified sessions unless `with_always_save(true)`: W2's app sets
//! it so that reads keep the session alive, as the issue asks.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use parking_lot::Mutex;
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer, SessionStore};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous,
};
use tower_sessions_sqlx_store::sqlx::{MySqlPool, PgPool, SqlitePool};
use tower_sessions_sqlx_store::{MySqlStore, PostgresStore, SqliteStore};

use super::{IDLE, SLOW, Subject, probe_answer, probe_keys, untouched};
use crate::counting::Counter;
use crate::counting::tower_store::Counted;
use crate::env::{Env, Leftover, SERVICE_TIMEOUT};
use crate::model::{Backend, Library};

type Error = (axum::http::StatusCode, String);

fn fail(e: impl std::fmt::Display) -> Error {
    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub async fn build(env: &Env, backend: Backend) -> Result<Subject, String> {
    let table = env.name(Library::TowerSessions, "");
    let e = |e: &dyn std::fmt::Display| e.to_string();
    match backend {
        Backend::Memory => Ok(subject(MemoryStore::default(), backend, Vec::new(), false)),
        Backend::Sqlite => {
            std::fs::create_dir_all(&env.dir).map_err(|x| e(&x))?;
            let path = env.sqlite_path(Library::TowerSessions, "");
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            let pool = SqlitePool::connect_with(options).await.map_err(|x| e(&x))?;
            let store = SqliteStore::new(pool).with_table_name(&table)?;
            store.migrate().await.map_err(|x| e(&x))?;
            Ok(subject(store, backend, Vec::new(), false))
        }
        Backend::Postgres => {
            let pool = PgPool::connect(&env.postgres_url)
                .await
                .map_err(|x| e(&x))?;
            let store = PostgresStore::new(pool)
                .with_schema_name("public")?
                .with_table_name(&table)?;
            let leftovers = vec![Leftover::PostgresTable(table)];
            store.migrate().await.map_err(|x| e(&x))?;
            Ok(subject(store, backend, leftovers, false))
        }
        Backend::MySql => {
            let pool = MySqlPool::connect(&env.mysql_url)
                .await
                .map_err(|x| e(&x))?;
            let store = MySqlStore::new(pool)
                .with_schema_name(env.mysql_database())?
                .with_table_name(&table)?;
            let leftovers = vec![Leftover::MySqlTable(table)];
            store.migrate().await.map_err(|x| e(&x))?;
            Ok(subject(store, backend, leftovers, false))
        }
        Backend::Redis => {
            let config = Config::from_url(&env.redis_url).map_err(|x| e(&x))?;
            let pool = Pool::new(config, None, None, None, 6).map_err(|x| e(&x))?;
            let _task = pool.connect();
            tokio::time::timeout(SERVICE_TIMEOUT, pool.wait_for_connect())
                .await
                .map_err(|_| format!("no answer from Redis within {SERVICE_TIMEOUT:?}"))?
                .map_err(|x| e(&x))?;
            Ok(subject(RedisStore::new(pool), backend, Vec::new(), true))
        }
    }
}

/// The app over `store`, counted; `track` remembers created ids for cleaning up.
fn subject<S: SessionStore + Clone>(
    store: S,
    backend: Backend,
    leftovers: Vec<Leftover>,
    track: bool,
) -> Subject {
    let ops = Counter::default();
    let created = track.then(|| Arc::new(Mutex::new(Vec::new())));
    let counted = Counted {
        inner: store,
        ops: ops.clone(),
        created: created.clone(),
    };
    let layer = SessionManagerLayer::new(counted)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(idle()));
    let late_leftovers = created.map(|created| {
        Box::new(move || {
            let keys = created.lock().iter().map(|id| id.to_string()).collect();
            vec![Leftover::RedisKeys(keys)]
        }) as Box<dyn Fn() -> Vec<Leftover> + Send + Sync>
    });
    Subject {
        library: Library::TowerSessions,
        backend,
        keepalive: app(layer.clone().with_always_save(true)),
        router: app(layer),
        ops: Some(ops),
        leftovers,
        late_leftovers,
    }
}

fn idle() -> time::Duration {
    time::Duration::seconds(IDLE.as_secs() as i64)
}

fn app<S: SessionStore + Clone>(layer: SessionManagerLayer<S>) -> Router {
    Router::new()
        .route("/login", get(login))
        .route("/w1", get(untouched))
        .route("/w2", get(read))
        .route("/w3", get(counter))
        .route("/w4", get(create))
        .route("/slow/{key}", get(slow))
        .route("/logout", get(logout))
        .route("/probe", get(probe))
        .layer(layer)
}

async fn login(session: Session) -> Result<&'static str, Error> {
    session.insert("n", 0u64).await.map_err(fail)?;
    Ok("ok")
}

async fn read(session: Session) -> Result<String, Error> {
    let n: Option<u64> = session.get("n").await.map_err(fail)?;
    Ok(n.unwrap_or(0).to_string())
}

async fn counter(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n").await.map_err(fail)?.unwrap_or(0) + 1;
    session.insert("n", n).await.map_err(fail)?;
    Ok(n.to_string())
}

async fn create(session: Session) -> Result<&'static str, Error> {
    session.insert("n", 1u64).await.map_err(fail)?;
    Ok("ok")
}

async fn slow(session: Session, Path(key): Path<String>) -> Result<&'static str, Error> {
    // Load now, as a handler that reads before its slow work would.
    let _: Option<u64> = session.get("n").await.map_err(fail)?;
    tokio::time::sleep(SLOW).await;
    session.insert(&key, true).await.map_err(fail)?;
    Ok("ok")
}

async fn logout(session: Session) -> Result<&'static str, Error> {
    session.flush().await.map_err(fail)?;
    Ok("ok")
}

async fn probe(session: Session) -> Result<String, Error> {
    let mut kept = 0;
    for key in probe_keys() {
        if session.get_value(&key).await.map_err(fail)?.is_some() {
            kept += 1;
        }
    }
    let empty = session.is_empty().await;
    Ok(probe_answer(kept, !empty))
}
