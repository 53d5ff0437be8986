//! PostgreSQL goes away mid-run and comes back: requests that need the session get 503, nothing
//! panics, the stored session is not overwritten by an empty one, and the same app recovers by
//! itself once the database is back.
//!
//! The test runs a private PostgreSQL cluster (initdb into a temporary directory, its own port),
//! so the shared server is never touched. Without PostgreSQL's server binaries it is
//! skipped and counted (or fails under `CLOAKROOM_REQUIRE_SERVICES=1`).
#![cfg(feature = "postgres")]

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use cloakroom::{Key, PostgresStore, Session, SessionLayer};
use http::StatusCode;
use support::{Client, request};

/// A throwaway cluster, stopped and deleted when dropped (also when the test panics).
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    /// `Ok(None)` when PostgreSQL's server binaries are not installed.
    fn create() -> Result<Option<Self>, String> {
        let Some(bin) = server_binaries() else {
            return Ok(None);
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir =
            std::env::temp_dir().join(format!("cloakroom-pg-outage-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let cluster = Self { bin, dir, port };
        // PostgreSQL refuses to run as root: hand the directory to the postgres user.
        if is_root() {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(&cluster.dir))?;
        }
        let data = cluster.dir.join("data");
        run(cluster
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data))?;
        cluster.start()?;
        Ok(Some(cluster))
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .args(["-w", "start"]))
    }

    /// Stops at once, as a crash or a network cut would look to the app.
    fn kill(&self) -> Result<(), String> {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]))
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server_binaries() -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

async fn whoami(session: Session) -> String {
    session
        .get::<String>("user")
        .ok()
        .flatten()
        .unwrap_or_default()
}

async fn login(session: Session) -> StatusCode {
    session.cycle_id();
    session.insert("user", "alice").unwrap();
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_answers_503_while_postgres_is_down_and_recovers_by_itself() {
    let cluster = match Cluster::create() {
        Ok(Some(cluster)) => cluster,
        outcome => {
            let why = match outcome {
                Err(e) => format!("could not start ({e})"),
                _ => "server binaries are not installed".to_owned(),
            };
            support::skip_for("a private PostgreSQL cluster", &why);
            return;
        }
    };
    let store = PostgresStore::connect(&cluster.url()).await.unwrap();
    let layer = SessionLayer::builder(store)
        .key(Key::from_secret(&[4; 32]).unwrap())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/login", post(login))
        .route("/health", get(|| async { "ok" }))
        .layer(layer);
    let mut client = Client::new(app);
    assert_eq!(client.post("/login", "").await.status, StatusCode::OK);
    assert_eq!(client.get("/whoami").await.body, "alice");
    let cookie = client.cookie.clone().unwrap();

    cluster.kill().unwrap();
    for (method, uri) in [("GET", "/whoami"), ("POST", "/login")] {
        let started = Instant::now();
        let reply = request(&client.app, method, uri, Some(&cookie), "").await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}"
        );
        assert_eq!(reply.set_cookie(), None, "the cookie is left alone");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
    }
    let fresh = request(&client.app, "POST", "/login", None, "").await;
    assert_eq!(
        fresh.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a new session cannot be stored"
    );
    assert_eq!(
        request(&client.app, "GET", "/health", None, "")
            .await
            .status,
        StatusCode::OK
    );

    cluster.start().unwrap();
    // The same app, not rebuilt: the pool reconnects, and the session is as it was.
    let reply = request(&client.app, "GET", "/whoami", Some(&cookie), "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body, "alice",
        "nothing overwrote the session during the outage"
    );
    let fresh = request(&client.app, "POST", "/login", None, "").await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert!(fresh.cookie_pair().is_some());
}
