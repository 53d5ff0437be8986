//! The tower layer: loads sessions lazily, persists them after the handler.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CACHE_CONTROL, HeaderValue, SET_COOKIE, VARY};
use http::{Request, Response, StatusCode};
use tokio::sync::OnceCell;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use crate::config::SessionLayerBuilder;
use crate::cookie::{CookieConfig, Incoming};
use crate::error::{Error, StoreError};
use crate::key::KeyRing;
use crate::record::{Patch, Record};
use crate::session::{Session, Stored};
use crate::store::Store;
use crate::ticket::{SessionHash, Ticket};
use crate::time::{Clock, Timestamp};

/// Everything the layer's services share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: KeyRing,
    pub(crate) cookie: CookieConfig,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Duration,
    pub(crate) touch_interval: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) error_status: StatusCode,
    pub(crate) save_on_server_error: bool,
    pub(crate) max_data_bytes: usize,
}

/// Adds sessions to a tower service.
///
/// Requests whose handler never asks for the session cost no store access and get no cookie.
/// After the handler, the layer creates, patches, extends, rotates or deletes the stored session
/// as the handler asked, and sets or removes the cookie.
///
/// ```
/// use axum::{Router, routing::get};
/// use cloakroom::{Key, MemoryStore, Session, SessionLayer};
///
/// async fn counter(session: Session) -> Result<String, cloakroom::Error> {
///     let n: u64 = session.get_or("n", 0)?;
///     session.insert("n", n + 1)?;
///     Ok(n.to_string())
/// }
///
/// let layer = SessionLayer::builder(MemoryStore::default())
///     .key(Key::from_secret(&[42; 32]).unwrap())
///     .build()
///     .unwrap();
/// let app: Router = Router::new().route("/", get(counter)).layer(layer);
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("store", &self.shared.store.name())
            .field("cookie", &self.shared.cookie)
            .field("idle_timeout", &self.shared.idle_timeout)
            .field("absolute_timeout", &self.shared.absolute_timeout)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// A layer with default settings and a random per-process key (logged as a warning). Use
    /// [`SessionLayer::builder`] to configure a key and everything else.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn new(store: impl Store) -> Self {
        Self::builder(store)
            .build()
            .expect("the default configuration is valid and the OS RNG works")
    }

    /// Starts configuring a layer over `store`.
    pub fn builder(store: impl Store) -> SessionLayerBuilder {
        SessionLayerBuilder::new(Arc::new(store))
    }

    pub(crate) fn from_shared(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The store, e.g. to list a user's sessions on a "your devices" page.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let lazy = LazySession::new(
            Arc::clone(&self.shared),
            self.shared.cookie.values(request.headers()),
        );
        request.extensions_mut().insert(lazy.clone());
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(lazy.finish(response).await)
        })
    }
}

/// The session of the current request, loaded on first use.
///
/// The layer puts one in the request extensions. axum handlers take [`Session`] directly; other
/// tower services call [`LazySession::load`].
#[derive(Clone)]
pub struct LazySession(Arc<Lazy>);

struct Lazy {
    shared: Arc<Shared>,
    /// The session cookie as sent; verified only when the session is loaded, so requests that
    /// never use the session pay nothing for the MAC.
    cookies: Incoming,
    cell: OnceCell<Result<Session, LoadError>>,
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
    fn new(shared: Arc<Shared>, cookies: Incoming) -> Self {
        Self(Arc::new(Lazy {
            shared,
            cookies,
            cell: OnceCell::new(),
        }))
    }

    /// Loads the session (once; later calls return the same session or the same error).
    pub async fn load(&self) -> Result<Session, LoadError> {
        self.0.cell.get_or_init(|| self.0.load()).await.clone()
    }

    /// Persists what the handler did and sets the cookie on `response`.
    async fn finish<B: Default>(&self, mut response: Response<B>) -> Response<B> {
        let Some(Ok(session)) = self.0.cell.get() else {
            return response;
        };
        // What the response shows may depend on the session, so caches must key on the cookie.
        add_vary_cookie(&mut response);
        let shared = &self.0.shared;
        if response.status().is_server_error() && !shared.save_on_server_error {
            return response;
        }
        let now = shared.clock.now();
        let (work, destroyed, is_new) = {
            let mut state = session.lock();
            let work = plan(shared, &mut state, now);
            (work, state.destroyed.take(), state.stored.is_none())
        };
        let had_cookie = self.0.cookies.present;
        match persist(shared, work, destroyed.as_ref(), now).await {
            Ok(Some(cookie)) => set_cookie(&mut response, cookie),
            Ok(None) if is_new && (destroyed.is_some() || had_cookie) => {
                set_cookie(&mut response, shared.cookie.removal());
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, store = shared.store.name(), "cloakroom: saving the session failed");
                return error_response(shared.error_status);
            }
        }
        response
    }
}

impl Lazy {
    async fn load(&self) -> Result<Session, LoadError> {
        let shared = &self.shared;
        let max = shared.max_data_bytes;
        let Some(verified) = self
            .cookies
            .values
            .iter()
            .find_map(|value| shared.keys.verify(&shared.cookie.name, value))
        else {
            return Ok(Session::new(max));
        };
        let hash = verified.ticket.hash();
        let now = shared.clock.now();
        let span = tracing::debug_span!("cloakroom.load", session = %hash.short());
        match shared.store.load(&hash, now).instrument(span).await {
            Ok(Some(record))
                if record.is_live(now)
                    && now < record.created_at.saturating_add(shared.absolute_timeout) =>
            {
                let stored = Stored {
                    ticket: verified.ticket,
                    hash,
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
                tracing::warn!(%error, session = %hash.short(), store = shared.store.name(),
                    "cloakroom: stored session cannot be decoded; starting a new one");
                Ok(Session::new(max))
            }
            Err(error) => {
                tracing::error!(%error, session = %hash.short(), store = shared.store.name(),
                    "cloakroom: loading the session failed");
                Err(LoadError {
                    status: shared.error_status,
                    message: error.to_string().into(),
                })
            }
        }
    }
}

/// What the store has to do for this request.
enum Work {
    Nothing,
    Create {
        record: Record,
        persistent: bool,
    },
    Update {
        stored: Stored,
        patch: Patch,
        persistent: bool,
        /// The cookie must be sent again (new expiry, persistence changed, re-signed).
        resend: bool,
    },
    Rotate {
        stored: Stored,
        patch: Patch,
        persistent: bool,
    },
}

fn plan(shared: &Shared, state: &mut crate::session::State, now: Timestamp) -> Work {
    let persistent = state.persistent();
    let Some(stored) = state.stored.clone() else {
        if !state.has_content() {
            return Work::Nothing;
        }
        let expires_at = now.saturating_add(shared.idle_timeout.min(shared.absolute_timeout));
        return Work::Create {
            record: state.take_record(now, expires_at),
            persistent,
        };
    };
    let deadline = now
        .saturating_add(shared.idle_timeout)
        .min(stored.created_at.saturating_add(shared.absolute_timeout));
    let touch =
        deadline > stored.expires_at && stored.expires_at.until(deadline) >= shared.touch_interval;
    let persistent_changed = state.persistent_changed();
    let mut patch = state.take_patch(now);
    if touch {
        patch.expires_at = Some(deadline);
    }
    if state.cycle {
        return Work::Rotate {
            stored,
            patch,
            persistent,
        };
    }
    let resend = stored.stale_key || persistent_changed || (touch && persistent);
    if patch.is_empty() && !resend {
        return Work::Nothing;
    }
    Work::Update {
        stored,
        patch,
        persistent,
        resend,
    }
}

/// Runs the store operations; returns the `Set-Cookie` value to send, if any.
async fn persist(
    shared: &Shared,
    work: Work,
    destroyed: Option<&SessionHash>,
    now: Timestamp,
) -> Result<Option<HeaderValue>, Error> {
    let store = &shared.store;
    if let Some(hash) = destroyed {
        let span = tracing::debug_span!("cloakroom.destroy", session = %hash.short());
        store.delete(hash).instrument(span).await?;
    }
    let max_age =
        |persistent: bool, expires_at: Timestamp| persistent.then(|| now.until(expires_at));
    let cookie = |ticket: &Ticket, persistent, expires_at| {
        shared.cookie.set_cookie(
            &shared.keys.sign(&shared.cookie.name, ticket),
            max_age(persistent, expires_at),
        )
    };
    match work {
        Work::Nothing => Ok(None),
        Work::Create { record, persistent } => {
            let ticket = create(store.as_ref(), &record).await?;
            Ok(Some(cookie(&ticket, persistent, record.expires_at)))
        }
        Work::Update {
            stored,
            patch,
            persistent,
            resend,
        } => {
            let expires_at = patch.expires_at.unwrap_or(stored.expires_at);
            if !patch.is_empty() {
                let span = tracing::debug_span!("cloakroom.save", session = %stored.hash.short());
                if !store.save(&stored.hash, &patch).instrument(span).await? {
                    // Ended elsewhere meanwhile (logout, revocation, expiry): never resurrect.
                    return Ok(Some(shared.cookie.removal()));
                }
            }
            Ok(resend.then(|| cookie(&stored.ticket, persistent, expires_at)))
        }
        Work::Rotate {
            stored,
            patch,
            persistent,
        } => {
            let expires_at = patch.expires_at.unwrap_or(stored.expires_at);
            let ticket = Ticket::generate()?;
            let span = tracing::debug_span!("cloakroom.rotate", session = %stored.hash.short(),
                new = %ticket.hash().short());
            if !store
                .rotate(&stored.hash, &ticket.hash(), &patch)
                .instrument(span)
                .await?
            {
                return Ok(Some(shared.cookie.removal()));
            }
            Ok(Some(cookie(&ticket, persistent, expires_at)))
        }
    }
}

/// Stores a new record under a fresh ticket. A collision of 256-bit random tickets means the
/// RNG is broken, but retrying costs nothing.
async fn create(store: &dyn Store, record: &Record) -> Result<Ticket, Error> {
    let mut attempts = 0;
    loop {
        let ticket = Ticket::generate()?;
        let hash = ticket.hash();
        let span = tracing::debug_span!("cloakroom.create", session = %hash.short());
        match store.create(&hash, record).instrument(span).await {
            Ok(()) => return Ok(ticket),
            Err(StoreError::Collision) if attempts < 2 => attempts += 1,
            Err(error) => return Err(error.into()),
        }
    }
}

fn set_cookie<B>(response: &mut Response<B>, cookie: HeaderValue) {
    let headers = response.headers_mut();
    headers.append(SET_COOKIE, cookie);
    let private = headers.get_all(CACHE_CONTROL).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.contains("no-store") || v.contains("private"))
    });
    if !private {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn add_vary_cookie<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    let varies = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|h| h == "*" || h.eq_ignore_ascii_case("cookie"))
        })
    });
    if !varies {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

fn error_response<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
