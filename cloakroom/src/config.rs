//! Configuring a [`SessionLayer`](crate::SessionLayer): keys, cookie attributes, timeouts, and
//! the expiry rules the layer applies with them.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};

use crate::cookie::{CookieConfig, SameSite};
use crate::error::Error;
use crate::key::{Key, KeyRing};
use crate::record::Record;
use crate::session::Origin;
use crate::store::Store;
use crate::stores::Backend;
use crate::time::{Clock, SystemClock, Timestamp};

/// Idle timeout unless configured: 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Absolute lifetime unless configured.
pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Default cap on a session's serialized data.
pub const DEFAULT_MAX_DATA_BYTES: usize = 64 * 1024;

/// Configures a [`SessionLayer`](crate::SessionLayer); made by
/// [`SessionLayer::builder`](crate::SessionLayer::builder), finished by
/// [`build`](SessionLayerBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use cloakroom::{Key, MemoryStore, SameSite, SessionLayer};
///
/// let layer = SessionLayer::builder(MemoryStore::default())
///     .key(Key::from_secret(b"a secret of at least thirty-two bytes!").unwrap())
///     .cookie_name("__Host-session")
///     .same_site(SameSite::Strict)
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .absolute_timeout(Duration::from_secs(8 * 60 * 60))
///     .build()
///     .unwrap();
/// ```
#[must_use]
pub struct SessionLayerBuilder {
    backend: Backend,
    keys: Option<KeyRing>,
    cookie: CookieConfig,
    idle_timeout: Duration,
    absolute_timeout: Duration,
    touch_interval: Option<Duration>,
    clock: Arc<dyn Clock>,
    error_status: StatusCode,
    save_on_server_error: bool,
    max_data_bytes: usize,
}

impl SessionLayerBuilder {
    pub(crate) fn new(backend: Backend) -> Self {
        Self {
            backend,
            keys: None,
            cookie: CookieConfig::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            absolute_timeout: DEFAULT_ABSOLUTE_TIMEOUT,
            touch_interval: None,
            clock: Arc::new(SystemClock),
            error_status: StatusCode::SERVICE_UNAVAILABLE,
            save_on_server_error: false,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
        }
    }

    /// The key that signs cookies. Without one, a random key is made at start-up (with a
    /// warning), and every restart logs everyone out.
    pub fn key(self, key: Key) -> Self {
        self.keys(KeyRing::new(key))
    }

    /// A key ring: the first key signs, every key verifies (key rotation).
    pub fn keys(mut self, keys: KeyRing) -> Self {
        self.keys = Some(keys);
        self
    }

    /// All cookie attributes at once.
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = cookie;
        self
    }

    /// The cookie name (default `id`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into();
        self
    }

    /// The cookie `Domain` (default: none, host-only).
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie.domain = Some(domain.into());
        self
    }

    /// The cookie `Path` (default `/`).
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        self.cookie.path = path.into();
        self
    }

    /// The cookie `SameSite` (default `Lax`).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.cookie.same_site = same_site;
        self
    }

    /// The cookie `Secure` flag (default `true`). Browsers accept secure cookies on
    /// `http://localhost`; turn it off only for plain-HTTP use elsewhere.
    pub fn secure(mut self, secure: bool) -> Self {
        self.cookie.secure = secure;
        self
    }

    /// The cookie `HttpOnly` flag (default `true`).
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.cookie.http_only = http_only;
        self
    }

    /// How long a session may sit unused (default 30 minutes). Activity extends it.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a session may live at all, counted from its creation (default 24 hours).
    /// Neither activity nor [`Session::cycle_id`](crate::Session::cycle_id) extends it.
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// The least an idle deadline moves when a request extends it (default: a tenth of the idle
    /// timeout, at most one minute). Read-only requests write to the store only when the deadline
    /// would move by at least this much, so a busy session is not written on every request. The
    /// price: a session may expire up to this long before a full idle timeout has passed.
    pub fn touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = Some(interval);
        self
    }

    /// The clock deadlines are computed with (default: the system clock). Tests pass a
    /// [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The status of the response when the store fails (default 503).
    pub fn error_status(mut self, status: StatusCode) -> Self {
        self.error_status = status;
        self
    }

    /// Whether to save the session when the handler answers with a 5xx (default `false`: a
    /// failed request leaves the session as it was).
    pub fn save_on_server_error(mut self, save: bool) -> Self {
        self.save_on_server_error = save;
        self
    }

    /// The largest serialized session data accepted (default 64 KiB); larger writes fail with
    /// [`Error::TooLarge`].
    pub fn max_data_bytes(mut self, bytes: usize) -> Self {
        self.max_data_bytes = bytes;
        self
    }

    /// Checks the configuration and resolves its defaults.
    pub(crate) fn finish(self) -> Result<Settings, Error> {
        self.cookie.validate()?;
        if self.idle_timeout.is_zero() || self.absolute_timeout.is_zero() {
            return Err(Error::Config("timeouts must be longer than zero".into()));
        }
        if !self.error_status.is_client_error() && !self.error_status.is_server_error() {
            return Err(Error::Config(format!(
                "error status {} is not an error status (4xx or 5xx)",
                self.error_status
            )));
        }
        let keys = match self.keys {
            Some(keys) => keys,
            None => {
                tracing::warn!(
                    "cloakroom: no secret key configured; using a random key for this process. \
                     Every restart will log everyone out, and several instances will not \
                     understand each other's cookies. Configure one with \
                     SessionLayer::builder(..).key(Key::from_secret(..))"
                );
                KeyRing::new(Key::generate()?)
            }
        };
        if matches!(self.backend, Backend::SealedCookie) && !cfg!(feature = "cookie") {
            return Err(Error::Config(
                "sealed-cookie sessions need cloakroom's \"cookie\" feature".into(),
            ));
        }
        let touch_interval = self
            .touch_interval
            .unwrap_or_else(|| (self.idle_timeout / 10).min(Duration::from_secs(60)));
        Ok(Settings {
            backend: self.backend,
            keys,
            cookie: self.cookie,
            idle_timeout: self.idle_timeout,
            absolute_timeout: self.absolute_timeout,
            touch_interval,
            clock: self.clock,
            error_status: self.error_status,
            save_on_server_error: self.save_on_server_error,
            max_data_bytes: self.max_data_bytes,
        })
    }
}

/// A checked configuration: what every request of one layer is handled with.
pub(crate) struct Settings {
    pub(crate) backend: Backend,
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

impl Settings {
    /// The server-side store, `None` for sealed cookies. A trait object, because calling
    /// through `Arc<dyn Store>` directly would pick the forwarding impl for `Arc<S>` and box
    /// every store future twice.
    pub(crate) fn store(&self) -> Option<&dyn Store> {
        self.backend.store().map(|store| &**store)
    }

    /// The backend's name for logs: the store's, or `"sealed cookie"`.
    pub(crate) fn backend_name(&self) -> &'static str {
        self.store().map_or("sealed cookie", Store::name)
    }

    /// Both deadlines, checked by the server whatever the store or the browser kept.
    pub(crate) fn is_live(&self, record: &Record, now: Timestamp) -> bool {
        record.is_live(now) && now < record.created_at.saturating_add(self.absolute_timeout)
    }

    /// The expiry of a session created now.
    pub(crate) fn first_deadline(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.idle_timeout.min(self.absolute_timeout))
    }

    /// The extended idle deadline, when extending is due: it would move by at least the touch
    /// interval, and never past the absolute deadline.
    pub(crate) fn extended_deadline(&self, stored: &Origin, now: Timestamp) -> Option<Timestamp> {
        let deadline = now
            .saturating_add(self.idle_timeout)
            .min(stored.created_at.saturating_add(self.absolute_timeout));
        (deadline > stored.expires_at && stored.expires_at.until(deadline) >= self.touch_interval)
            .then_some(deadline)
    }

    /// The `Set-Cookie` value for a cookie holding `value`: a browser-session cookie, or a
    /// persistent one that lasts until `expires_at`.
    pub(crate) fn cookie_for(
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
