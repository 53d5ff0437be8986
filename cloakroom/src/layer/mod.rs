//! The tower layer: loads sessions lazily, persists them after the handler.
//!
//! - this module: the layer, its service and response future (tower plumbing only);
//! - [`load`]: reading and verifying the cookie, loading the session on first use;
//! - [`save`]: deciding what the store must do after the handler, and doing it;
//! - `sealed`: the sealed-cookie mode, where the session travels in the cookie;
//! - [`headers`]: the cookie and cache headers the layer adds.

mod headers;
mod load;
mod save;
#[cfg(feature = "cookie")]
pub(crate) mod sealed;
/// Without the feature no layer is built in sealed mode (the builder refuses), so these are
/// never reached; they keep the callers free of feature checks.
#[cfg(not(feature = "cookie"))]
mod sealed {
    use http::HeaderValue;

    use crate::config::Settings;
    use crate::cookie::Incoming;
    use crate::error::Error;
    use crate::session::{Session, State};
    use crate::time::Timestamp;

    pub(super) fn open(_: &Settings, _: Incoming<'_>, _: Timestamp) -> Option<Session> {
        None
    }

    pub(super) fn seal(
        _: &Settings,
        _: &mut State,
        _: Timestamp,
        _: bool,
    ) -> Result<Option<HeaderValue>, Error> {
        Ok(None)
    }
}

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::sync::OnceCell;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{SessionLayerBuilder, Settings};
use crate::error::Error;
use crate::store::{self, Store};
use crate::stores::Backend;

use load::Lazy;
pub use load::{LazySession, LoadError};
pub use save::DiscardChanges;

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
    settings: Arc<Settings>,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("backend", &self.settings.backend)
            .field("cookie", &self.settings.cookie)
            .field("idle_timeout", &self.settings.idle_timeout)
            .field("absolute_timeout", &self.settings.absolute_timeout)
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
    ///
    /// An `Arc<dyn Store>` (what [`stores::connect`](crate::stores::connect) returns) is used as
    /// it is, not wrapped again: every store call goes through one trait object.
    pub fn builder(store: impl Store) -> SessionLayerBuilder {
        SessionLayerBuilder::new(Backend::Store(store::shared(store)))
    }

    /// Starts configuring a layer that keeps no server state: each session is sealed
    /// (encrypted) in its cookie.
    ///
    /// For apps that want no server state at all (Flask's default, Masonite's cookie driver):
    ///
    /// ```
    /// use cloakroom::{Key, SessionLayer};
    ///
    /// let layer = SessionLayer::sealed()
    ///     .key(Key::from_secret(b"a secret of at least thirty-two bytes!").unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert!(layer.store().is_none(), "nothing is kept on the server");
    /// ```
    ///
    /// # What it does
    ///
    /// The session (data, flash messages, user, creation time, expiry) is serialized and sealed with
    /// XChaCha20-Poly1305 under a sub-key of the layer's key ring: the first key seals, every key
    /// opens, and a cookie sealed with an old key is re-sealed with the new one on the next response.
    /// Each seal uses a fresh random 192-bit nonce, and the cookie name is bound in as associated
    /// data. The idle and absolute deadlines are inside the sealed payload and checked when it is
    /// opened, so a cookie replayed after expiry is refused even if the browser kept it.
    ///
    /// # What it cannot do
    ///
    /// - **Revocation.** The server keeps nothing, so it cannot end a session:
    ///   [`Session::destroy`](crate::Session::destroy) and
    ///   [`Session::cycle_id`](crate::Session::cycle_id) only replace the cookie in *this* browser.
    ///   A copy of an earlier cookie stays valid until its own idle or absolute deadline. Keep the
    ///   idle timeout short if that matters, or use a server-side store.
    /// - **Listing, revoking, counting, purging.** There is no store to ask:
    ///   [`SessionLayer::store`](crate::SessionLayer::store) is `None`.
    /// - **Concurrent writes.** Every response carries the whole session, so when two requests of
    ///   one visitor change it at the same time, the last response wins (server-side stores merge
    ///   them).
    /// - **Size.** Browsers keep cookies up to 4096 bytes (name, value and attributes). A session
    ///   that would seal larger fails with [`Error::CookieTooLarge`]: the handler's response is
    ///   replaced by a 500, no cookie is sent, and the browser keeps its previous one. Sealing adds
    ///   41 bytes, and base64 a third, so about 2.9 KB of JSON fits.
    #[cfg(feature = "cookie")]
    pub fn sealed() -> SessionLayerBuilder {
        SessionLayerBuilder::new(Backend::SealedCookie)
    }

    /// Starts configuring a layer over `backend`, e.g. what [`stores::open`](crate::stores::open) made of a URL from
    /// the app's configuration.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = std::env::var("SESSION_STORE").unwrap_or_else(|_| "memory://".into());
    /// let layer = cloakroom::SessionLayer::builder_for(cloakroom::stores::open(&url).await?)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder_for(backend: Backend) -> SessionLayerBuilder {
        SessionLayerBuilder::new(backend)
    }

    /// The store, e.g. to list a user's sessions on a "your devices" page; `None` for
    /// [sealed-cookie](SessionLayer::sealed) sessions, which keep nothing on the server.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.settings.backend.store()
    }
}

impl SessionLayerBuilder {
    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<SessionLayer, Error> {
        Ok(SessionLayer {
            settings: Arc::new(self.finish()?),
        })
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    settings: Arc<Settings>,
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
            settings: Arc::clone(&self.settings),
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

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::stores::memory::MemoryStore;

    #[test]
    fn a_shared_store_is_used_as_it_is_not_wrapped_again() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let layer = SessionLayer::builder(Arc::clone(&store)).build().unwrap();
        assert!(Arc::ptr_eq(layer.store().unwrap(), &store));
        let layer = SessionLayer::builder(MemoryStore::default())
            .build()
            .unwrap();
        assert_eq!(layer.store().unwrap().name(), "memory");
    }
}
