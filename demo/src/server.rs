//! Running the demo from the command line: open the store, find the key, listen, say where.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use cloakroom::{Purger, StoreError};
use tokio::net::TcpListener;

use crate::app::{Config, router};
use crate::error::Error;
use crate::options::{self, KeyError, KeySource, Options};
use crate::throttle::LoginLimits;
use crate::users::PasswordCost;

/// Why the demo could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the session store {url}: {source}")]
    Store { url: String, source: StoreError },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot listen on {bind}: {source}")]
    Bind { bind: String, source: io::Error },
    #[error("cannot build the app: {0}")]
    App(#[from] Error),
    #[error("the server failed: {0}")]
    Serve(io::Error),
}

/// How often expired sessions are purged from stores that do not expire them natively.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(options: Options) -> Result<(), ServerError> {
    // First what can fail without leaving anything behind.
    let listener = TcpListener::bind(&options.bind)
        .await
        .map_err(|source| ServerError::Bind {
            bind: options.bind.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        bind: options.bind.clone(),
        source,
    })?;
    let redacted = cloakroom::stores::redact(&options.store);
    let store_error = |source| ServerError::Store {
        url: redacted.clone(),
        source,
    };
    let backend = cloakroom::stores::open(&options.store)
        .await
        .map_err(store_error)?;
    let store = backend.store().cloned();
    if let Some(store) = &store {
        store.migrate().await.map_err(store_error)?;
    }
    let kind = store.as_ref().map_or_else(
        || "sealed in each browser's cookie".to_owned(),
        |store| format!("{} store", store.name()),
    );
    let (key, key_source) = options::key(options.secret.as_deref(), &options.store)?;
    let app = router(Config {
        backend,
        key,
        secure_cookies: !options.insecure_cookies,
        password_cost: PasswordCost::Standard,
        login_limits: LoginLimits::default(),
    })?;

    println!("cloakroom demo running at {}", url(addr));
    println!("  sessions:   {redacted} ({kind})");
    println!("  cookie key: {}", describe(&key_source));
    println!("  log in as:  alice@example.com / wonderland (admin), bob@example.com / builder");
    if !options.insecure_cookies && !addr.ip().is_loopback() {
        tracing::warn!(
            "session cookies are Secure: browsers send them over plain HTTP only to localhost; \
             serve this through HTTPS or start with --insecure-cookies"
        );
    }

    // Stores with native expiry (Redis) need no purging; the purger notices and stops by
    // itself. Sealed cookies keep nothing to purge.
    let purger = store.map(|store| Purger::new(store).interval(PURGE_EVERY).spawn());
    // The peer address is what login throttling counts per client.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    if let Some(purger) = purger {
        purger.shutdown().await;
    }
    served.map_err(ServerError::Serve)
}

fn url(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{} (listening on {addr})", addr.port())
    } else {
        format!("http://{addr}")
    }
}

fn describe(source: &KeySource) -> String {
    match source {
        KeySource::Secret => "from --secret / CLOAKROOM_SECRET".into(),
        KeySource::File { path, created } => {
            let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let how = if *created {
                "generated now"
            } else {
                "kept from an earlier start"
            };
            format!("{} ({how})", shown.display())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
