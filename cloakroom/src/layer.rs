//! The tower layer: loads sessions lazily, persists them after the handler.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CACHE_CONTROL, HeaderMap, HeaderValue, SET_COOKIE, VARY};
use http::{Request, Response, StatusCode};
use tokio::sync::OnceCell;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use crate::config::SessionLayerBuilder;
use crate::cookie::{CookieConfig, Incoming};
use crate::error::{Error, StoreError};
use crate::key::KeyRing;
use crate::observe::{self, Event, timed};
use crate::record::{Patch, Record};
use crate::session::{Id, Session, State, Stored};
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
    /// The store keeps sessions in the cookie (sealed) rather than on the server.
    pub(crate) sealed: bool,
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
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // Nothing else happens here: the cookie is read, verified and looked up only if the
        // handler asks for the session.
        let lazy = LazySession(Arc::new(Lazy {
            shared: Arc::clone(&self.shared),
            cell: OnceCell::new(),
        }));
        request.extensions_mut().insert(lazy.clone());
        ResponseFuture {
            phase: Phase::Handler {
                future: self.inner.call(request),
                lazy: Some(lazy),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`SessionService`]: the handler's future, then, only if the
    /// handler used the session, the store operations that persist it.
    pub struct ResponseFuture<F, B> {
        #[pin]
        phase: Phase<F, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = PhaseProjection]
    enum Phase<F, B> {
        Handler {
            #[pin]
            future: F,
            lazy: Option<LazySession>,
        },
        Saving {
            future: Pin<Box<dyn Future<Output = Response<B>> + Send>>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default + Send + 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().phase.project() {
                PhaseProjection::Handler { future, lazy } => {
                    let response = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => response,
                        other => return other,
                    };
                    let Some(lazy) = lazy.take().filter(LazySession::is_loaded) else {
                        return Poll::Ready(Ok(response));
                    };
                    let saving = Box::pin(async move { lazy.finish(response).await });
                    self.as_mut()
                        .project()
                        .phase
                        .set(Phase::Saving { future: saving });
                }
                PhaseProjection::Saving { future } => return future.as_mut().poll(cx).map(Ok),
            }
        }
    }
}

/// Marks a response whose request must not save any session change.
///
/// A handler that fails half-way may already have changed the session: rotated the ticket,
/// bound a user, stored the first step of a form. Saving that would leave the visitor in a state
/// the handler never finished (logged in, but without the CSRF token the login renews). So when
/// a response carries this marker in its extensions, the layer saves nothing of the request's
/// session changes and sets no cookie, as for a 5xx. [`Error`]'s own responses carry it; apps
/// add it to their error responses where the same holds.
///
/// ```
/// use axum::http::StatusCode;
/// use axum::response::IntoResponse;
/// use cloakroom::{DiscardChanges, Session};
///
/// async fn checkout(session: Session) -> axum::response::Response {
///     session.remove("cart");
///     let paid = false; // the payment provider said no
///     if !paid {
///         // The cart stays as it was.
///         return (StatusCode::PAYMENT_REQUIRED, DiscardChanges, "payment refused").into_response();
///     }
///     "thank you".into_response()
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiscardChanges;

/// The session of the current request, loaded on first use.
///
/// The layer puts one in the request extensions. axum handlers take [`Session`] directly; other
/// tower services call [`LazySession::load`].
#[derive(Clone)]
pub struct LazySession(Arc<Lazy>);

struct Lazy {
    shared: Arc<Shared>,
    cell: OnceCell<Result<Loaded, LoadError>>,
}

#[derive(Clone)]
struct Loaded {
    session: Session,
    /// The request carried a session cookie (usable or not): a session that ends up empty
    /// removes it.
    had_cookie: bool,
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

    fn is_loaded(&self) -> bool {
        matches!(self.0.cell.get(), Some(Ok(_)))
    }

    /// Persists what the handler did and sets the cookie on `response`.
    async fn finish<B: Default>(&self, mut response: Response<B>) -> Response<B> {
        let Some(Ok(Loaded {
            session,
            had_cookie,
        })) = self.0.cell.get()
        else {
            return response;
        };
        let had_cookie = *had_cookie;
        // What the response shows may depend on the session, so caches must key on the cookie.
        add_vary_cookie(&mut response);
        let shared = &self.0.shared;
        if response.extensions().get::<DiscardChanges>().is_some()
            || (response.status().is_server_error() && !shared.save_on_server_error)
        {
            return response;
        }
        let now = shared.clock.now();
        let outcome = if shared.sealed {
            seal(shared, &mut session.lock(), now, had_cookie)
        } else {
            let (work, destroyed) = {
                let mut state = session.lock();
                (
                    plan(shared, &mut state, now, had_cookie),
                    state.destroyed.take(),
                )
            };
            persist(shared, work, destroyed.as_ref(), now).await
        };
        match outcome {
            Ok(Some(cookie)) => set_cookie(&mut response, cookie),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, store = shared.store.name(), "cloakroom: saving the session failed");
                let status = match error {
                    Error::Store(_) => shared.error_status,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                return error_response(status);
            }
        }
        response
    }
}

impl Lazy {
    async fn load(&self, headers: &HeaderMap) -> Result<Loaded, LoadError> {
        let cookies = self.shared.cookie.incoming(headers);
        let had_cookie = cookies.present();
        let session = self.load_from(cookies).await?;
        Ok(Loaded {
            session,
            had_cookie,
        })
    }

    async fn load_from(&self, cookies: Incoming<'_>) -> Result<Session, LoadError> {
        let shared = &self.shared;
        let max = shared.max_data_bytes;
        let now = shared.clock.now();
        if shared.sealed {
            return Ok(open(shared, cookies, now).unwrap_or_else(|| Session::new(max)));
        }
        let Some(verified) = cookies
            .values()
            .find_map(|value| shared.keys.verify(&shared.cookie.name, value))
        else {
            return Ok(Session::new(max));
        };
        let hash = verified.ticket.hash();
        let span = tracing::debug_span!("cloakroom.load", session = %hash.prefix());
        match timed("load", shared.store().load(&hash, now))
            .instrument(span)
            .await
        {
            Ok(Some(record)) if shared.is_live(&record, now) => {
                observe::count(Event::Loaded);
                let stored = Stored {
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
                tracing::warn!(%error, session = %hash.prefix(), store = shared.store.name(),
                    "cloakroom: stored session cannot be decoded; starting a new one");
                Ok(Session::new(max))
            }
            Err(error) => {
                tracing::error!(%error, session = %hash.prefix(), store = shared.store.name(),
                    "cloakroom: loading the session failed");
                Err(LoadError {
                    status: shared.error_status,
                    message: error.to_string().into(),
                })
            }
        }
    }
}

impl Shared {
    /// The store as a trait object. Calling through `Arc<dyn Store>` directly would pick the
    /// forwarding impl for `Arc<S>` and box every store future twice.
    fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Both deadlines, checked by the server whatever the store or the browser kept.
    fn is_live(&self, record: &Record, now: Timestamp) -> bool {
        record.is_live(now) && now < record.created_at.saturating_add(self.absolute_timeout)
    }

    /// The expiry of a session created now.
    fn first_deadline(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.idle_timeout.min(self.absolute_timeout))
    }

    /// The extended idle deadline, when extending is due: it would move by at least the touch
    /// interval, and never past the absolute deadline.
    fn extended_deadline(&self, stored: &Stored, now: Timestamp) -> Option<Timestamp> {
        let deadline = now
            .saturating_add(self.idle_timeout)
            .min(stored.created_at.saturating_add(self.absolute_timeout));
        (deadline > stored.expires_at && stored.expires_at.until(deadline) >= self.touch_interval)
            .then_some(deadline)
    }

    fn cookie_for(
        &self,
        value: &str,
        persistent: bool,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> HeaderValue {
        self.cookie
            .set_cookie(value, persistent.then(|| now.until(expires_at)))
    }
}

/// What the store has to do for this request.
enum Work {
    Nothing,
    /// Tell the browser to drop a cookie that leads nowhere (logged out, expired, forged).
    Remove,
    Create {
        record: Record,
        persistent: bool,
    },
    Update {
        id: Id,
        patch: Patch,
        expires_at: Timestamp,
        persistent: bool,
        /// The cookie must be sent again (new expiry, persistence changed, re-signed).
        resend: bool,
    },
    Rotate {
        id: Id,
        patch: Patch,
        expires_at: Timestamp,
        persistent: bool,
    },
}

fn plan(shared: &Shared, state: &mut State, now: Timestamp, had_cookie: bool) -> Work {
    let persistent = state.persistent();
    let Some(stored) = state.stored.clone() else {
        return if state.has_content() {
            Work::Create {
                record: state.take_record(now, now, shared.first_deadline(now)),
                persistent,
            }
        } else if state.destroyed.is_some() || had_cookie {
            Work::Remove
        } else {
            Work::Nothing
        };
    };
    let Some(id) = stored.id.clone() else {
        return Work::Nothing;
    };
    let extended = shared.extended_deadline(&stored, now);
    let persistent_changed = state.persistent_changed();
    let mut patch = state.take_patch(now);
    patch.expires_at = extended;
    let expires_at = extended.unwrap_or(stored.expires_at);
    if state.cycle {
        return Work::Rotate {
            id,
            patch,
            expires_at,
            persistent,
        };
    }
    let resend = stored.stale_key || persistent_changed || (extended.is_some() && persistent);
    if patch.is_empty() && !resend {
        return Work::Nothing;
    }
    Work::Update {
        id,
        patch,
        expires_at,
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
    let store = shared.store();
    if let Some(hash) = destroyed {
        let span = tracing::debug_span!("cloakroom.destroy", session = %hash.prefix());
        timed("delete", store.delete(hash)).instrument(span).await?;
        observe::count(Event::Destroyed);
    }
    let signed = |ticket: &Ticket, persistent, expires_at| {
        let value = shared.keys.sign(&shared.cookie.name, ticket);
        shared.cookie_for(&value, persistent, expires_at, now)
    };
    match work {
        Work::Nothing => Ok(None),
        Work::Remove => Ok(Some(shared.cookie.removal())),
        Work::Create { record, persistent } => {
            let ticket = create(store, &record).await?;
            observe::count(Event::Created);
            Ok(Some(signed(&ticket, persistent, record.expires_at)))
        }
        Work::Update {
            id,
            patch,
            expires_at,
            persistent,
            resend,
        } => {
            if !patch.is_empty() {
                let span = tracing::debug_span!("cloakroom.save", session = %id.hash.prefix());
                if !timed("save", store.save(&id.hash, &patch))
                    .instrument(span)
                    .await?
                {
                    // Ended elsewhere meanwhile (logout, revocation, expiry): never resurrect.
                    return Ok(Some(shared.cookie.removal()));
                }
                observe::count(Event::Saved);
            }
            Ok(resend.then(|| signed(&id.ticket, persistent, expires_at)))
        }
        Work::Rotate {
            id,
            patch,
            expires_at,
            persistent,
        } => {
            let ticket = Ticket::generate()?;
            let span = tracing::debug_span!("cloakroom.rotate", session = %id.hash.prefix(),
                new = %ticket.hash().prefix());
            if !timed("rotate", store.rotate(&id.hash, &ticket.hash(), &patch))
                .instrument(span)
                .await?
            {
                // The old ticket is dead either way. Most often a concurrent login of the same
                // browser (a double click) moved it first and sent its own new cookie: removing
                // the cookie here could log that browser out, so the cookie is left alone.
                return Ok(None);
            }
            observe::count(Event::Saved);
            Ok(Some(signed(&ticket, persistent, expires_at)))
        }
    }
}

/// Browsers ignore cookies whose name, value and attributes exceed this many bytes.
#[cfg_attr(not(feature = "cookie"), allow(dead_code))]
const MAX_SET_COOKIE_BYTES: usize = 4096;

/// A sealed-cookie session from the request's cookie, if one opens and is live.
#[cfg(feature = "cookie")]
fn open(shared: &Shared, cookies: Incoming<'_>, now: Timestamp) -> Option<Session> {
    cookies.values().find_map(|value| {
        let (record, stale_key) =
            crate::stores::cookie::open(&shared.keys, &shared.cookie.name, value)?;
        shared.is_live(&record, now).then(|| {
            let stored = Stored {
                id: None,
                created_at: record.created_at,
                expires_at: record.expires_at,
                stale_key,
            };
            Session::loaded(stored, record, shared.max_data_bytes)
        })
    })
}

/// Seals the whole session into the cookie when anything changed; `Ok(None)` when the browser's
/// cookie is still right.
#[cfg(feature = "cookie")]
fn seal(
    shared: &Shared,
    state: &mut State,
    now: Timestamp,
    had_cookie: bool,
) -> Result<Option<HeaderValue>, Error> {
    let (created_at, expires_at) = match &state.stored {
        None if !state.has_content() => return Ok(had_cookie.then(|| shared.cookie.removal())),
        None => (now, shared.first_deadline(now)),
        Some(stored) => {
            let extended = shared.extended_deadline(stored, now);
            if extended.is_none() && !state.is_modified() && !stored.stale_key {
                return Ok(None);
            }
            (stored.created_at, extended.unwrap_or(stored.expires_at))
        }
    };
    let persistent = state.persistent();
    let record = state.take_record(created_at, now, expires_at);
    let value = crate::stores::cookie::seal(&shared.keys, &shared.cookie.name, &record)?;
    let header = shared.cookie_for(&value, persistent, expires_at, now);
    if header.len() > MAX_SET_COOKIE_BYTES {
        return Err(Error::CookieTooLarge {
            size: header.len(),
            limit: MAX_SET_COOKIE_BYTES,
        });
    }
    Ok(Some(header))
}

#[cfg(not(feature = "cookie"))]
fn open(_: &Shared, _: Incoming<'_>, _: Timestamp) -> Option<Session> {
    None
}

#[cfg(not(feature = "cookie"))]
fn seal(_: &Shared, _: &mut State, _: Timestamp, _: bool) -> Result<Option<HeaderValue>, Error> {
    Ok(None)
}

/// Stores a new record under a fresh ticket. A collision of 256-bit random tickets means the
/// RNG is broken, but retrying costs nothing.
async fn create(store: &dyn Store, record: &Record) -> Result<Ticket, Error> {
    let mut attempts = 0;
    loop {
        let ticket = Ticket::generate()?;
        let hash = ticket.hash();
        let span = tracing::debug_span!("cloakroom.create", session = %hash.prefix());
        match timed("create", store.create(&hash, record))
            .instrument(span)
            .await
        {
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
