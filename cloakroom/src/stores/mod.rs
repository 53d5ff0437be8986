//! The stores that ship with cloakroom, each in its own module behind its cargo feature;
//! [`connect`], which picks one by URL; and [`open`], which also accepts `cookie://`, for
//! sessions sealed in the cookie instead of stored. What the SQL stores share is in `sql/`.
//!
//! | URL | feature | store |
//! |---|---|---|
//! | `memory://` | `memory` (default) | [`MemoryStore`](crate::MemoryStore) |
//! | `file:///var/lib/app/sessions` | `file` | one file per session |
//! | `sqlite://sessions.db`, `sqlite::memory:` | `sqlite` | SQLite |
//! | `postgres://user@host/db` | `postgres` | PostgreSQL |
//! | `mysql://user@host/db` | `mysql` | MySQL / MariaDB |
//! | `redis://host:6379` | `redis` | Redis |
//! | `cookie://` (only with [`open`]) | `cookie` | no store: sessions sealed in the cookie |
//!
//! cloakroom's own options travel in the query string and are removed before the URL reaches the
//! driver: `table=` (SQL stores), `prefix=` (Redis), `capacity=` (memory).

use std::sync::Arc;

use crate::error::StoreError;
use crate::store::Store;

#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Files a store creates hold session data: readable and writable by their owner only (on
/// Unix; elsewhere the platform's defaults apply).
#[cfg(any(feature = "file", feature = "sqlite"))]
pub(crate) fn owner_only(options: &mut std::fs::OpenOptions) {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    #[cfg(not(unix))]
    let _ = options;
}

/// Where a layer keeps sessions: in a server-side store, or sealed in the cookie itself.
///
/// What [`open`] returns, for apps that pick either by configuration; give it to
/// [`SessionLayer::builder_for`](crate::SessionLayer::builder_for).
#[derive(Clone)]
pub enum Backend {
    /// A server-side store.
    Store(Arc<dyn Store>),
    /// No store: each session is sealed (encrypted) in its cookie. See
    /// [`SessionLayer::sealed`](crate::SessionLayer::sealed) for what that can and cannot do.
    SealedCookie,
}

impl Backend {
    /// The server-side store; `None` for sealed cookies.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        match self {
            Self::Store(store) => Some(store),
            Self::SealedCookie => None,
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(store) => f.debug_tuple("Store").field(&store.name()).finish(),
            Self::SealedCookie => f.write_str("SealedCookie"),
        }
    }
}

/// Opens what `url` names: a store, as [`connect`] does, or, for `cookie://`, sealed-cookie
/// sessions.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use cloakroom::stores::{self, Backend};
///
/// let backend = stores::open("cookie://").await.unwrap();
/// assert!(matches!(backend, Backend::SealedCookie));
/// let backend = stores::open("memory://").await.unwrap();
/// assert!(matches!(backend, Backend::Store(_)));
/// # }
/// ```
pub async fn open(url: &str) -> Result<Backend, StoreError> {
    let parsed = StoreUrl::parse(url)?;
    if parsed.scheme != "cookie" {
        return connect(url).await.map(Backend::Store);
    }
    if !cfg!(feature = "cookie") {
        return Err(missing_feature("cookie", "cookie"));
    }
    let rest = parsed.driver_url.trim_start_matches("cookie:");
    if !rest.trim_start_matches("//").is_empty() {
        return Err(StoreError::Config(format!(
            "sealed cookies take no address or options: use \"cookie://\", not {:?}",
            parsed.redacted()
        )));
    }
    Ok(Backend::SealedCookie)
}

/// Opens the store named by `url`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = cloakroom::stores::connect("memory://?capacity=1000").await.unwrap();
/// assert_eq!(store.name(), "memory");
///
/// let err = cloakroom::stores::connect("mongodb://localhost").await.unwrap_err();
/// assert!(err.to_string().contains("unknown store URL scheme"));
/// # }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let parsed = StoreUrl::parse(url)?;
    match parsed.scheme.as_str() {
        "memory" => {
            #[cfg(feature = "memory")]
            {
                let capacity = parsed
                    .option("capacity")
                    .map(|c| {
                        c.parse().map_err(|_| {
                            StoreError::Config(format!(
                                "capacity={c:?} in {url:?} is not a whole number"
                            ))
                        })
                    })
                    .transpose()?
                    .unwrap_or(memory::DEFAULT_CAPACITY);
                return Ok(Arc::new(memory::MemoryStore::with_capacity(capacity)));
            }
            #[allow(unreachable_code)]
            Err(missing_feature("memory", "memory"))
        }
        "cookie" => Err(StoreError::Config(
            "cookie:// names no store: sealed-cookie sessions keep nothing on the server, so \
             there is nothing to list, revoke, count or purge. For a layer, use \
             cloakroom::stores::open(url) or SessionLayer::sealed()"
                .into(),
        )),
        "file" => {
            #[cfg(feature = "file")]
            return file::open(&parsed).await;
            #[allow(unreachable_code)]
            Err(missing_feature("file", "file"))
        }
        "sqlite" => {
            #[cfg(feature = "sqlite")]
            return sqlite::open(&parsed).await;
            #[allow(unreachable_code)]
            Err(missing_feature("sqlite", "sqlite"))
        }
        "postgres" => {
            #[cfg(feature = "postgres")]
            return postgres::open(&parsed).await;
            #[allow(unreachable_code)]
            Err(missing_feature("postgres", "postgres"))
        }
        "mysql" => {
            #[cfg(feature = "mysql")]
            return mysql::open(&parsed).await;
            #[allow(unreachable_code)]
            Err(missing_feature("mysql", "mysql"))
        }
        "redis" => {
            #[cfg(feature = "redis")]
            return redis::open(&parsed).await;
            #[allow(unreachable_code)]
            Err(missing_feature("redis", "redis"))
        }
        "rediss" => {
            #[cfg(feature = "redis")]
            return redis::open(&parsed).await;
            #[allow(unreachable_code)]
            Err(missing_feature("rediss", "redis"))
        }
        other => Err(StoreError::Config(format!(
            "unknown store URL scheme {other:?} in {:?}; use memory://, file:///dir, \
             sqlite://path, postgres://…, mysql://… or redis://…",
            parsed.redacted()
        ))),
    }
}

#[allow(dead_code)]
fn missing_feature(scheme: &str, feature: &str) -> StoreError {
    StoreError::Config(format!(
        "{scheme}:// store URLs need cloakroom's cargo feature {feature:?}: \
         cloakroom = {{ version = \"0.1\", features = [\"{feature}\"] }}"
    ))
}

/// A store URL split into its scheme, cloakroom's own options, and what the driver gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreUrl {
    /// Lowercase scheme, with aliases folded (`postgresql` → `postgres`, `mariadb` → `mysql`,
    /// `rediss` stays `rediss`).
    pub scheme: String,
    /// The URL without cloakroom's options, for the driver.
    pub driver_url: String,
    options: Vec<(String, String)>,
}

/// Query-string keys that belong to cloakroom, not to the driver.
pub(crate) const OWN_OPTIONS: &[&str] = &["table", "prefix", "capacity"];

impl StoreUrl {
    /// Splits `url`. Fails when there is no scheme.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let scheme_end = url.find(':').filter(|&i| i > 0).ok_or_else(|| {
            StoreError::Config(format!(
                "{url:?} is not a store URL: it has no scheme, e.g. sqlite://sessions.db"
            ))
        })?;
        let scheme = url[..scheme_end].to_ascii_lowercase();
        let scheme = match scheme.as_str() {
            "postgresql" => "postgres".to_owned(),
            "mariadb" => "mysql".to_owned(),
            _ => scheme,
        };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut options = Vec::new();
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if OWN_OPTIONS.contains(&key) {
                options.push((key.to_owned(), value.to_owned()));
            } else {
                kept.push(pair);
            }
        }
        let mut driver_url = base.to_owned();
        if !kept.is_empty() {
            driver_url.push('?');
            driver_url.push_str(&kept.join("&"));
        }
        Ok(Self {
            scheme,
            driver_url,
            options,
        })
    }

    /// The value of one of cloakroom's options (`table`, `prefix`, `capacity`).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The driver URL with any password replaced by `***`, for messages and logs.
    pub fn redacted(&self) -> String {
        redact(&self.driver_url)
    }
}

/// `url` with the password of its authority (`user:password@`) hidden.
pub fn redact(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// The password in `url`'s authority (`user:password@`), if it has one; for hiding it in
/// messages that quote a driver's errors.
pub fn password(url: &str) -> Option<&str> {
    password_span(url).map(|(start, end)| &url[start..end])
}

/// Where the password of `url`'s authority starts and ends, if it has a non-empty one.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let at = start + url[start..authority_end].rfind('@')?;
    let colon = start + url[start..at].find(':')?;
    (colon + 1 < at).then_some((colon + 1, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_own_options_from_driver_options() {
        let url = StoreUrl::parse("postgresql://u:secret@db:5432/app?sslmode=disable&table=s&x=1")
            .unwrap();
        assert_eq!(url.scheme, "postgres");
        assert_eq!(url.option("table"), Some("s"));
        assert_eq!(
            url.driver_url,
            "postgresql://u:secret@db:5432/app?sslmode=disable&x=1"
        );
        assert_eq!(
            url.redacted(),
            "postgresql://u:***@db:5432/app?sslmode=disable&x=1"
        );
        assert_eq!(StoreUrl::parse("sqlite::memory:").unwrap().scheme, "sqlite");
        assert!(StoreUrl::parse("no scheme here").is_err());
    }

    #[test]
    fn redacts_only_passwords() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("mysql://root@localhost/test"),
            "mysql://root@localhost/test"
        );
        assert_eq!(redact("redis://:pw@host"), "redis://:***@host");
        assert_eq!(
            redact("postgres://u:p@ss@db/app?sslmode=require"),
            "postgres://u:***@db/app?sslmode=require"
        );
    }

    #[test]
    fn finds_passwords() {
        assert_eq!(
            password("postgres://u:s3cret@db/app?table=t"),
            Some("s3cret")
        );
        assert_eq!(password("postgres://u@db/app"), None);
        assert_eq!(password("postgres://u:@db/app"), None);
        assert_eq!(password("sqlite://a:b.db"), None);
        assert_eq!(password("redis://:pw@host:6379"), Some("pw"));
        assert_eq!(password("mysql://u:p@ss@db/x"), Some("p@ss"));
    }
}
