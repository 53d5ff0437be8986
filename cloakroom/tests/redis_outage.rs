//! Redis goes away mid-run and comes back: the app answers 503 meanwhile, never panics, never
//! hands out an empty session in place of the real one, and recovers by itself. And a
//! connection that goes silent fails fast and is replaced.
//!
//! The test runs its own `redis-server` (from `PATH`) on a free port, so it never disturbs the
//! shared one. Without a `redis-server` binary it is skipped and counted (or fails under
//! `CLOAKROOM_REQUIRE_SERVICES=1`).
#![cfg(feature = "redis")]

mod conformance;
mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use cloakroom::Session;
use cloakroom::{
    Clock, Key, Record, RedisStore, SessionHash, SessionLayer, Store, StoreError, SystemClock,
};
use http::{Request, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// Answers must come back within this, outage or not: far above the store's one-second timeout,
/// so a loaded machine does not fail the test, and far below forever, which is what a request
/// without the timeout would take.
const BOUND: Duration = Duration::from_secs(5);

/// A `redis-server` child process on its own port and directory, killed when dropped (also when
/// the test panics).
struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> std::io::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!(
            "cloakroom-redis-outage-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            port,
            dir,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts the server process. Nothing is persisted automatically (`--save ""`, no AOF); the
    /// test snapshots explicitly with `SAVE`, and a restart loads that snapshot from `dir`.
    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--dbfilename", "outage.rdb"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until the server answers PING (it refuses connections while starting and answers
    /// LOADING while it reads the snapshot).
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A command on a fresh connection, behind the store's back.
    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        cmd.query_async(&mut conn).await.unwrap()
    }

    /// Kills the server at once (SIGKILL: no shutdown save, connections drop).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Holds `/slow-visit` between loading its session and saving it.
#[derive(Default)]
struct Gate {
    loaded: tokio::sync::Notify,
    proceed: tokio::sync::Notify,
}

fn app(store: RedisStore, gate: Arc<Gate>) -> Router {
    async fn login(session: Session) -> Result<StatusCode, cloakroom::Error> {
        session.insert("user", "alice")?;
        session.insert("visits", 0)?;
        session.set_user("alice");
        session.cycle_id();
        Ok(StatusCode::OK)
    }
    async fn whoami(session: Session) -> Result<String, cloakroom::Error> {
        let user: String = session.get_or("user", "anonymous".to_owned())?;
        let visits: u64 = session.get_or("visits", 0)?;
        Ok(format!("{user}:{visits}"))
    }
    /// Loads the session, then waits to be let go before writing: Redis dies in between.
    async fn slow_visit(
        axum::Extension(gate): axum::Extension<Arc<Gate>>,
        session: Session,
    ) -> Result<StatusCode, cloakroom::Error> {
        let visits: u64 = session.get_or("visits", 0)?;
        gate.loaded.notify_one();
        gate.proceed.notified().await;
        session.insert("visits", visits + 1)?;
        Ok(StatusCode::OK)
    }
    async fn visit(session: Session) -> Result<StatusCode, cloakroom::Error> {
        let visits: u64 = session.get_or("visits", 0)?;
        session.insert("visits", visits + 1)?;
        Ok(StatusCode::OK)
    }
    async fn health() -> &'static str {
        "ok"
    }
    let layer = SessionLayer::builder(store)
        .key(Key::from_secret(b"redis-outage-test-key-0123456789abcdef").unwrap())
        .build()
        .unwrap();
    Router::new()
        .route("/login", post(login))
        .route("/whoami", get(whoami))
        .route("/visit", post(visit))
        .route("/slow-visit", post(slow_visit))
        .route("/health", get(health))
        .layer(layer)
        .layer(axum::Extension(gate))
}

struct Reply {
    status: StatusCode,
    set_cookie: Option<String>,
    body: String,
}

async fn send(app: &Router, method: &str, uri: &str, cookie: Option<&str>) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = tokio::time::timeout(
        BOUND,
        app.clone().oneshot(request.body(Body::empty()).unwrap()),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {uri} hung for more than {BOUND:?}"))
    .unwrap();
    let status = response.status();
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        set_cookie,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_503_keeps_the_session_and_recovers() {
    let mut server = match RedisServer::start() {
        Ok(server) => server,
        Err(error) => {
            support::skip_for("redis-server", &format!("cannot run ({error})"));
            return;
        }
    };
    server.wait_ready().await;
    let store = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(1));
    let gate = Arc::new(Gate::default());
    let app = app(store, Arc::clone(&gate));

    // Log in and use the session while Redis is up.
    let login = send(&app, "POST", "/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    let cookie = login.set_cookie.expect("a session cookie");
    assert_eq!(
        send(&app, "POST", "/visit", Some(&cookie)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, "GET", "/whoami", Some(&cookie)).await.body,
        "alice:1"
    );
    // Snapshot what Redis holds now; the restart below brings exactly this back.
    let _: () = server.command(&redis::cmd("SAVE")).await;

    // Redis dies while a request is between loading and saving its session.
    let in_flight = {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move { send(&app, "POST", "/slow-visit", Some(&cookie)).await })
    };
    gate.loaded.notified().await;
    server.kill();
    gate.proceed.notify_one();
    let cut = in_flight.await.expect("the request did not panic");
    assert_eq!(
        cut.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "saving failed: {}",
        cut.body
    );
    assert_eq!(
        cut.set_cookie, None,
        "no cookie change when the save failed"
    );

    // While Redis is down, every request that needs the session is a quick 503: no empty
    // session stands in for the real one, so no new or removal cookie replaces the ticket.
    for (method, uri, cookie) in [
        ("GET", "/whoami", Some(cookie.as_str())),
        ("POST", "/visit", Some(cookie.as_str())),
        ("POST", "/login", Some(cookie.as_str())),
        ("POST", "/login", None),
    ] {
        let reply = send(&app, method, uri, cookie).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri} during the outage: {}",
            reply.body
        );
        assert_eq!(
            reply.set_cookie, None,
            "{method} {uri} during the outage must not touch the cookie"
        );
    }
    // Requests that do not use the session do not notice.
    let health = send(&app, "GET", "/health", None).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok")
    );

    // Let the reconnection attempts that the failed requests started run out, so recovery
    // cannot lean on one of them still running when Redis returns. The driver gives no signal
    // when they end; they are bounded by the store's settings (one retry, at most 500 ms apart,
    // each refused at once), so three times that is a wait on a known bound, not a guess at
    // how two things interleave.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Redis comes back on the same port with the snapshot. The same app, not rebuilt, serves
    // the same session again, unchanged by anything attempted during the outage.
    server.spawn().expect("redis-server restarts");
    server.wait_ready().await;
    let back = send(&app, "GET", "/whoami", Some(&cookie)).await;
    assert_eq!(
        (back.status, back.body.as_str()),
        (StatusCode::OK, "alice:1"),
        "the first request after the restart succeeds"
    );
    assert_eq!(
        send(&app, "POST", "/visit", Some(&cookie)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, "GET", "/whoami", Some(&cookie)).await.body,
        "alice:2"
    );
    // New sessions work too.
    let fresh = send(&app, "POST", "/login", None).await;
    assert_eq!(fresh.status, StatusCode::OK);
    let fresh_cookie = fresh.set_cookie.expect("a new session cookie");
    assert_ne!(fresh_cookie, cookie);
    assert_eq!(
        send(&app, "GET", "/whoami", Some(&fresh_cookie)).await.body,
        "alice:0"
    );
    let sessions: Vec<String> = server
        .command(redis::cmd("KEYS").arg("{cloakroom}:s:*"))
        .await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
}

/// A TCP proxy in front of Redis that can make its open connections go silent, the way a
/// connection does when a firewall or NAT forgets it after a failover: bytes vanish, nothing is
/// closed. Connections opened after [`Proxy::freeze`] work normally.
struct Proxy {
    port: u16,
    epoch: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let epoch = Arc::new(AtomicU64::new(0));
        let shared = Arc::clone(&epoch);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let born = shared.load(Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, Arc::clone(&shared), born));
                tokio::spawn(pipe(server_read, client_write, Arc::clone(&shared), born));
            }
        });
        Self { port, epoch, task }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every connection open now stops forwarding, without closing.
    fn freeze(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    epoch: Arc<AtomicU64>,
    born: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if epoch.load(Ordering::SeqCst) != born {
            // Frozen: hold both sockets open and never pass anything on again.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_gone_silent_times_out_quickly_and_is_replaced() {
    let server = match RedisServer::start() {
        Ok(server) => server,
        Err(error) => {
            support::skip_for("redis-server", &format!("cannot run ({error})"));
            return;
        }
    };
    server.wait_ready().await;
    let proxy = Proxy::start(server.port).await;
    let timeout = Duration::from_millis(300);
    let store = RedisStore::connect(&proxy.url())
        .await
        .unwrap()
        .with_timeout(timeout);
    let hash = SessionHash::from_bytes([7; 32]);
    let now = SystemClock.now();
    let record = Record {
        data: serde_json::from_str(r#"{"a": 1}"#).unwrap(),
        user_id: None,
        created_at: now,
        updated_at: now,
        expires_at: now.saturating_add(Duration::from_secs(60)),
    };
    store.create(&hash, &record).await.unwrap();

    proxy.freeze();
    // Without the store's own timeout the load would wait forever; the bound only has to tell
    // "gave up" from "forever", not measure how quickly.
    let error = tokio::time::timeout(BOUND, store.load(&hash, now))
        .await
        .expect("the store gives up on a silent connection")
        .expect_err("a silent connection cannot answer");
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(
        error.to_string().contains("did not answer within 300ms"),
        "the store's timeout, not another failure: {error}"
    );

    // The store gave up on that connection: the next operation opens a new one and works.
    let loaded = store.load(&hash, now).await.unwrap();
    assert_eq!(loaded, Some(record));
}
