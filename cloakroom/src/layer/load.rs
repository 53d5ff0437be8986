//! Reading the ticket from the request and loading the session, once, on first use.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use tokio::sync::OnceCell;
use tracing::Instrument as _;

use super::sealed;
use crate::config::Settings;
use crate::cookie::Incoming;
use crate::error::StoreError;
use crate::observe::{self, Event, timed};
use crate::session::{Id, Origin, Session};

/// The session of the current request, loaded on first use.
///
/// The layer puts one in the request extensions. axum handlers take [`Session`] directly; other
/// tower services call [`LazySession::load`].
#[derive(Clone)]
pub struct LazySession(pub(super) Arc<Lazy>);

pub(super) struct Lazy {
    pub(super) settings: Arc<Settings>,
    pub(super) cell: OnceCell<Result<Loaded, LoadError>>,
}

#[derive(Clone)]
pub(super) struct Loaded {
    pub(super) session: Session,
    /// The request carried a session cookie (usable or not): a session that ends up empty
    /// removes it.
    pub(super) had_cookie: bool,
}

impl fmt::Debug for LazySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazySession")
            .field("loaded", &self.0.cell.initialized())
            .finish_non_exhaustive()
    }
}

/// The session could not be loaded because the store failed.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the session could not be loaded: {message}")]
pub struct LoadError {
    /// The status the response should have (the layer's `error_status`, 503 by default).
    pub status: StatusCode,
    /// What the store said.
    pub message: Arc<str>,
}

impl LazySession {
    /// Loads the session from the request's `headers` (once; later calls return the same session
    /// or the same error).
    ///
    /// ```
    /// # async fn handle(request: http::Request<()>) -> Result<(), cloakroom::LoadError> {
    /// if let Some(lazy) = request.extensions().get::<cloakroom::LazySession>() {
    ///     let session = lazy.load(request.headers()).await?;
    ///     session.insert("seen", true).ok();
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn load(&self, headers: &HeaderMap) -> Result<Session, LoadError> {
        let loaded = self.0.cell.get_or_init(|| self.0.load(headers)).await;
        loaded.clone().map(|loaded| loaded.session)
    }

    pub(super) fn is_loaded(&self) -> bool {
        matches!(self.0.cell.get(), Some(Ok(_)))
    }
}

impl Lazy {
    async fn load(&self, headers: &HeaderMap) -> Result<Loaded, LoadError> {
        let cookies = self.settings.cookie.incoming(headers);
        let had_cookie = cookies.present();
        let session = self.load_from(cookies).await?;
        Ok(Loaded {
            session,
            had_cookie,
        })
    }

    async fn load_from(&self, cookies: Incoming<'_>) -> Result<Session, LoadError> {
        let settings = &self.settings;
        let max = settings.max_data_bytes;
        let now = settings.clock.now();
        let Some(store) = settings.store() else {
            return Ok(sealed::open(settings, cookies, now).unwrap_or_else(|| Session::new(max)));
        };
        let Some(verified) = cookies
            .values()
            .find_map(|value| settings.keys.verify(&settings.cookie.name, value))
        else {
            return Ok(Session::new(max));
        };
        let hash = verified.ticket.hash();
        let span = tracing::debug_span!("cloakroom.load", session = %hash.prefix());
        match timed("load", store.load(&hash, now)).instrument(span).await {
            Ok(Some(record)) if settings.is_live(&record, now) => {
                observe::count(Event::Loaded);
                let stored = Origin {
                    id: Some(Id {
                        ticket: verified.ticket,
                        hash,
                    }),
                    created_at: record.created_at,
                    expires_at: record.expires_at,
                    stale_key: verified.stale_key,
                };
                Ok(Session::loaded(stored, record, max))
            }
            Ok(_) => Ok(Session::new(max)),
            // An unreadable record is worth nothing to anyone: the visitor starts afresh under a
            // new ticket (so the bad record is never overwritten), instead of getting an error on
            // every request until someone deletes it.
            Err(error @ StoreError::Corrupt { .. }) => {
                tracing::warn!(%error, session = %hash.prefix(), store = store.name(),
                    "cloakroom: stored session cannot be decoded; starting a new one");
                Ok(Session::new(max))
            }
            Err(error) => {
                tracing::error!(%error, session = %hash.prefix(), store = store.name(),
                    "cloakroom: loading the session failed");
                Err(LoadError {
                    status: settings.error_status,
                    message: error.to_string().into(),
                })
            }
        }
    }
}
