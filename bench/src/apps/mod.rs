//! The same axum app on each library: one module per library, one `Subject` each.
//!
//! Every app has these routes:
//!
//! | route | what the handler does |
//! |---|---|
//! | `/login` | sets `n = 0` (gives a virtual user its cookie) |
//! | `/w1` | nothing with the session (W1) |
//! | `/w2` | reads `n` (W2) |
//! | `/w3` | reads `n`, writes `n + 1` (W3) |
//! | `/w4` | sets `n = 1` on a visitor without a cookie (W4) |
//! | `/slow/{key}` | loads the session, waits [`SLOW`], sets `key = true` (correctness) |
//! | `/logout` | ends the session |
//! | `/probe` | `"{k};{any}"`: how many of `k0`..`k19` exist; whether any key exists |

use std::time::Duration;

use axum::Router;
use axum::routing::get;

use crate::counting::Counter;
use crate::env::Leftover;
use crate::model::{Backend, Library, Workload};

pub mod axum_session;
pub mod cloakroom;
pub mod tower_sessions;

/// The idle timeout every library is configured with.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// How often a read-only request may write the extended deadline (cloakroom's touch interval,
/// axum_session's database update interval).
pub const TOUCH: Duration = Duration::from_secs(60);
/// How long `/slow/{key}` holds a loaded session before writing: long enough that concurrent
/// requests overlap whatever the store.
pub const SLOW: Duration = Duration::from_millis(100);

/// The keys the correctness checks use.
pub fn probe_keys() -> impl Iterator<Item = String> {
    (0..20).map(|i| format!("k{i}"))
}

/// One library on one store, ready to serve.
pub struct Subject {
    pub library: Library,
    pub backend: Backend,
    /// The app for W1, W3, W4 and the correctness checks.
    pub router: Router,
    /// The app for W2, where reads must keep the session alive.
    pub keepalive: Router,
    /// Store operations so far; `None` where the library has no store boundary to count at.
    pub ops: Option<Counter>,
    /// What to remove at the end.
    pub leftovers: Vec<Leftover>,
    /// Leftovers known only after the run (e.g. Redis keys without a prefix).
    pub late_leftovers: Option<Box<dyn Fn() -> Vec<Leftover> + Send + Sync>>,
}

impl Subject {
    pub fn router_for(&self, workload: Workload) -> Router {
        match workload {
            Workload::W2 => self.keepalive.clone(),
            _ => self.router.clone(),
        }
    }

    pub fn all_leftovers(&self) -> Vec<Leftover> {
        let mut all = self.leftovers.clone();
        if let Some(late) = &self.late_leftovers {
            all.extend(late());
        }
        all
    }
}

/// The ceiling: the same routes with no session layer.
pub fn plain() -> Subject {
    let router = Router::new()
        .route("/login", get(plain_login))
        .route("/w1", get(untouched))
        .route("/w2", get(untouched))
        .route("/w3", get(untouched))
        .route("/w4", get(untouched));
    Subject {
        library: Library::Plain,
        backend: Backend::Memory,
        keepalive: router.clone(),
        router,
        ops: None,
        leftovers: Vec::new(),
        late_leftovers: None,
    }
}

/// The ceiling's routes behind a tower layer that does nothing, applied as the session layers
/// are (`Router::layer`): what any layer costs in axum before it does any work, for W1.
pub fn noop_layer() -> Subject {
    let mut subject = plain();
    subject.router = subject.router.layer(tower::layer::layer_fn(|inner| inner));
    subject.keepalive = subject.router.clone();
    subject
}

/// Gives the virtual user a cookie to send, so requests look like the other apps' requests.
async fn plain_login() -> ([(http::HeaderName, &'static str); 1], &'static str) {
    ([(http::header::SET_COOKIE, "id=plain; Path=/")], "ok")
}

/// W1's handler, the same in every app.
pub async fn untouched() -> &'static str {
    "ok"
}

/// Builds `library` on `backend`.
pub async fn build(
    env: &crate::env::Env,
    library: Library,
    backend: Backend,
) -> Result<Subject, String> {
    let built = tokio::time::timeout(crate::env::SERVICE_TIMEOUT * 4, async {
        match library {
            Library::Cloakroom => cloakroom::build(env, backend).await,
            Library::TowerSessions => tower_sessions::build(env, backend).await,
            Library::AxumSession => axum_session::build(env, backend, true).await,
            Library::AxumSessionNoCache => axum_session::build(env, backend, false).await,
            Library::Plain => Ok(plain()),
        }
    })
    .await;
    built.unwrap_or_else(|_| {
        Err(format!(
            "{backend} did not answer within {:?}",
            crate::env::SERVICE_TIMEOUT * 4
        ))
    })
}

/// `"{k};{any}"` for `/probe`.
pub fn probe_answer(kept: usize, any: bool) -> String {
    format!("{kept};{any}")
}
