//! Test plumbing: stores to run against (a SQLite file, a PostgreSQL table), an app behind a
//! `SessionLayer` over the same store URL, a cookie-keeping client, and the real binary.
#![allow(dead_code)]

// Shared with the library's tests: skipped tests are counted and reported on exit.
#[path = "../../../cloakroom/tests/support/skip.rs"]
mod skip;

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, header};
use axum::routing::{get, post};
use cloakroom::{Clock, Key, Session, SessionLayer};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// Where the sessions of one test live. Dropping it removes them (file or table).
pub struct Backend {
    pub name: &'static str,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    PostgresTable(String),
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Backend {
    /// A new SQLite database in a temporary directory.
    pub fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(unique("cloakroom_cli_test"));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self {
            name: "sqlite",
            url: format!("sqlite://{}", dir.join("sessions.db").display()),
            cleanup: Cleanup::Dir(dir),
        }
    }

    /// A new table in the PostgreSQL database at CLOAKROOM_POSTGRES_URL, or `None` (after
    /// printing why) when it is unreachable and CLOAKROOM_REQUIRE_SERVICES is not 1.
    pub async fn postgres() -> Option<Self> {
        let base = postgres_base_url();
        let table = unique("cloakroom_cli_test");
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}table={table}");
        // Connecting creates the table; the drop guard below removes it.
        match cloakroom::stores::connect(&url).await {
            Ok(_) => Some(Self {
                name: "postgres",
                url,
                cleanup: Cleanup::PostgresTable(table),
            }),
            Err(error) => {
                skip::skip_unreachable("PostgreSQL", &base, &error);
                None
            }
        }
    }

    /// A layer over this backend's store, opened from the URL like an app would.
    pub async fn layer(&self, clock: impl Clock) -> SessionLayer {
        let store = cloakroom::stores::connect(&self.url)
            .await
            .expect("open the store in-process");
        SessionLayer::builder(store)
            .key(Key::from_secret(&[7; 32]).expect("key"))
            .clock(clock)
            .build()
            .expect("layer")
    }

    /// Runs the binary with `--store URL` and `args`.
    pub async fn cli(&self, args: &[&str]) -> Run {
        run(&[&["--store", &self.url], args].concat(), &[]).await
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::PostgresTable(table) => drop_postgres_table(&self.url, table),
        }
    }
}

pub fn postgres_base_url() -> String {
    std::env::var("CLOAKROOM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Drops the table on a thread of its own, so it also runs when a test panics inside its
/// runtime.
fn drop_postgres_table(url: &str, table: &str) {
    let url = url.to_owned();
    let statement = format!("DROP TABLE IF EXISTS \"{table}\"");
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let store = cloakroom::PostgresStore::connect(&url)
                .await
                .map_err(std::io::Error::other)?;
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(store.pool())
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(())
        })
    })
    .join();
    if !matches!(dropped, Ok(Ok(()))) {
        eprintln!("warning: could not drop the test table {table}");
    }
}

/// What the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit code 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        &self.stdout
    }

    /// Asserts exit code 0 and parses stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// Asserts the exit code and that stderr says `needle`.
    pub fn fails(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "wrong exit code: {self:#?}");
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {self:#?}"
        );
    }
}

/// Runs the binary with `args` and extra environment variables, without CLOAKROOM_STORE from
/// the test's own environment.
pub async fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output: Output = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(args)
        .env_remove("CLOAKROOM_STORE")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run the cloakroom binary");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The app: log in (cycles the ticket, binds the user, fills a cart), and say who we are.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/login/{user}", post(login))
        .route("/anonymous-cart", post(anonymous_cart))
        .route("/whoami", get(whoami))
        .layer(layer)
}

async fn login(session: Session, Path(user): Path<String>) -> Result<(), cloakroom::Error> {
    session.cycle_id();
    session.set_user(user.clone());
    session.insert("cart", json!({"items": ["coat", "hat"], "owner": user}))?;
    Ok(())
}

async fn anonymous_cart(session: Session) -> Result<(), cloakroom::Error> {
    session.insert("cart", json!({"items": ["scarf"]}))
}

async fn whoami(session: Session) -> axum::Json<Value> {
    axum::Json(json!({
        "user": session.user(),
        "hash": session.hash().map(|h| h.to_string()),
    }))
}

/// A browser: keeps the cookie the app sets.
pub struct Browser {
    app: Router,
    cookie: Option<String>,
}

impl Browser {
    pub fn new(app: &Router) -> Self {
        Self {
            app: app.clone(),
            cookie: None,
        }
    }

    pub async fn send(&mut self, method: &str, uri: &str) -> Value {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert!(
            response.status().is_success(),
            "{method} {uri}: {}",
            response.status()
        );
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            let pair = set.to_str().expect("ascii cookie").split(';').next();
            let pair = pair.unwrap_or_default();
            self.cookie = (!pair.ends_with('=')).then(|| pair.to_owned());
        }
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }

    /// Logs in as `user`; returns the new session's hash.
    pub async fn login(&mut self, user: &str) -> String {
        self.send("POST", &format!("/login/{user}")).await;
        let me = self.whoami().await;
        assert_eq!(me["user"], user);
        me["hash"].as_str().expect("a stored session").to_owned()
    }

    /// `{"user": …, "hash": …}` as the app sees this browser now.
    pub async fn whoami(&mut self) -> Value {
        self.send("GET", "/whoami").await
    }
}
