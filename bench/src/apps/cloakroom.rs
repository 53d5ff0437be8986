//! The app on cloakroom: `SessionLayer` over a counted store opened by URL.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use cloakroom::{Key, Session, SessionLayer, Store};

use super::{IDLE, SLOW, Subject, TOUCH, probe_answer, probe_keys, untouched};
use crate::counting::Counter;
use crate::counting::cloakroom_store::Counted;
use crate::env::{Env, Leftover};
use crate::model::{Backend, Library};

/// The store URL for `backend`, with this run's table or prefix.
pub fn store_url(env: &Env, backend: Backend, purpose: &str) -> String {
    let name = env.name(Library::Cloakroom, purpose);
    let with = |url: &str, option: &str| {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{option}={name}")
    };
    match backend {
        Backend::Memory => "memory://?capacity=4000000".to_owned(),
        Backend::Sqlite => format!(
            "sqlite://{}?table={name}",
            env.sqlite_path(Library::Cloakroom, purpose).display()
        ),
        Backend::Postgres => with(&env.postgres_url, "table"),
        Backend::MySql => with(&env.mysql_url, "table"),
        Backend::Redis => with(&env.redis_url, "prefix"),
    }
}

/// What the store at `store_url(env, backend, purpose)` leaves behind.
pub fn leftovers(env: &Env, backend: Backend, purpose: &str) -> Vec<Leftover> {
    let name = env.name(Library::Cloakroom, purpose);
    match backend {
        Backend::Postgres => vec![Leftover::PostgresTable(name)],
        Backend::MySql => vec![Leftover::MySqlTable(name)],
        Backend::Redis => vec![Leftover::RedisPrefix(format!("{{{name}}}"))],
        Backend::Memory | Backend::Sqlite => Vec::new(),
    }
}

/// Opens the store (creating its table) and returns it uncounted.
pub async fn open_store(
    env: &Env,
    backend: Backend,
    purpose: &str,
) -> Result<Arc<dyn Store>, String> {
    if backend == Backend::Sqlite {
        std::fs::create_dir_all(&env.dir).map_err(|e| e.to_string())?;
    }
    cloakroom::stores::connect(&store_url(env, backend, purpose))
        .await
        .map_err(|e| e.to_string())
}

pub async fn build(env: &Env, backend: Backend) -> Result<Subject, String> {
    let store = open_store(env, backend, "").await?;
    Ok(subject(store, backend, leftovers(env, backend, "")))
}

/// The app over `store`, counted.
pub fn subject(store: Arc<dyn Store>, backend: Backend, leftovers: Vec<Leftover>) -> Subject {
    let ops = Counter::default();
    let counted = Counted {
        inner: store,
        ops: ops.clone(),
    };
    let router = app(layer(counted));
    Subject {
        library: Library::Cloakroom,
        backend,
        keepalive: router.clone(),
        router,
        ops: Some(ops),
        leftovers,
        late_leftovers: None,
    }
}

/// cloakroom's defaults, a fixed key, and the idle timeout and touch interval every library
/// gets.
pub fn layer(store: impl Store) -> SessionLayer {
    SessionLayer::builder(store)
        .key(Key::from_secret(&[7; 32]).expect("32 bytes is a valid key length"))
        .idle_timeout(IDLE)
        .touch_interval(TOUCH)
        .build()
        .expect("the configuration is valid")
}

pub fn app(layer: SessionLayer) -> Router {
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

async fn login(session: Session) -> Result<&'static str, cloakroom::Error> {
    session.insert("n", 0u64)?;
    Ok("ok")
}

async fn read(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.get::<u64>("n")?.unwrap_or(0).to_string())
}

async fn counter(session: Session) -> Result<String, cloakroom::Error> {
    let n: u64 = session.get_or("n", 0)? + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

async fn create(session: Session) -> Result<&'static str, cloakroom::Error> {
    session.insert("n", 1u64)?;
    Ok("ok")
}

async fn slow(session: Session, Path(key): Path<String>) -> Result<&'static str, cloakroom::Error> {
    // The extractor has loaded the session already.
    tokio::time::sleep(SLOW).await;
    session.insert(&key, true)?;
    Ok("ok")
}

async fn logout(session: Session) -> &'static str {
    session.destroy();
    "ok"
}

async fn probe(session: Session) -> String {
    let kept = probe_keys().filter(|k| session.contains(k)).count();
    probe_answer(kept, !session.is_empty())
}
