//! The tower layer: loads sessions lazily, persists them after the handler.
//!
//! - this module: the layer, its service and response future (tower plumbing only);
//! - [`load`]: reading and verifying the cookie, loading the session on first use;
//! - [`save`]: deciding what the store must do after the handler, and doing it;
//! - [`sealed`]: the sealed-cookie mode, where the session travels in the cookie;
//! - [`headers`]: the cookie and cache headers the layer adds.

mod headers;
mod load;
mod save;
mod sealed;

use std::any::Any;
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
use crate::store::Store;

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
            .field("store", &self.settings.store.name())
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
        SessionLayerBuilder::new(into_shared_store(store))
    }

    /// The store, e.g. to list a user's sessions on a "your devices" page.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.settings.store
    }
}

/// `store` behind one `Arc<dyn Store>`. Wrapping an `Arc<dyn Store>` in another `Arc` would send
/// every call through the forwarding impl, which boxes each future a second time.
fn into_shared_store<S: Store>(store: S) -> Arc<dyn Store> {
    let mut store = Some(store);
    let erased: &mut dyn Any = &mut store;
    match erased.downcast_mut::<Option<Arc<dyn Store>>>() {
        Some(shared) => shared.take().expect("taken only here"),
        None => Arc::new(store.take().expect("taken only here")),
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
        assert!(Arc::ptr_eq(layer.store(), &store));
        let layer = SessionLayer::builder(MemoryStore::default())
            .build()
            .unwrap();
        assert_eq!(layer.store().name(), "memory");
    }
}
