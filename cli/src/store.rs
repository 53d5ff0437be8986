//! Opening the store named on the command line, and turning its errors into messages that say
//! where and what to do, without ever printing a password.

use std::path::Path;
use std::sync::Arc;

use cloakroom::stores::{StoreUrl, redact};
use cloakroom::{Store, StoreError};

use crate::error::CliError;

/// An open store and how to name it in messages.
pub struct Target {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The URL with its password hidden.
    pub url: String,
    /// The password in the URL, to scrub from drivers' messages.
    password: Option<String>,
}

impl Target {
    /// Opens the store at `url`. `creating` is true for `migrate`, the one command that may
    /// bring a new database into being.
    pub async fn open(url: Option<&str>, creating: bool) -> Result<Self, CliError> {
        let url = url.map(str::trim).filter(|u| !u.is_empty());
        let url = url.ok_or(CliError::NoStore)?;
        let redacted = redact(url);
        let password = cloakroom::stores::password(url).map(str::to_owned);
        let scrub = |text: String| scrub(text, password.as_deref());
        let parsed = StoreUrl::parse(url).map_err(|source| CliError::BadUrl {
            url: redacted.clone(),
            source,
        })?;
        if !creating {
            check_sqlite_file_exists(&parsed, &redacted)?;
        }
        if parsed.scheme == "memory" {
            eprintln!(
                "warning: memory:// is a store inside one process, so this command sees a new, \
                 empty one; pass the URL your app uses (file://, sqlite://, postgres://, …)"
            );
        }
        let store = cloakroom::stores::connect(url)
            .await
            .map_err(|error| match error {
                StoreError::Config(_) => CliError::BadUrl {
                    url: redacted.clone(),
                    source: error,
                },
                StoreError::Unsupported { .. } => CliError::Unsupported {
                    message: scrub(error.to_string()),
                },
                other => CliError::Unreachable {
                    url: redacted.clone(),
                    message: scrub(other.to_string()),
                },
            })?;
        Ok(Self {
            store,
            url: redacted,
            password,
        })
    }

    /// The error to report for a failed store operation.
    pub fn fail(&self, error: StoreError) -> CliError {
        let message = scrub(error.to_string(), self.password.as_deref());
        match error {
            StoreError::Unsupported { .. } => CliError::Unsupported { message },
            // Bad input for this store, e.g. a user id PostgreSQL cannot hold.
            StoreError::Config(_) => CliError::Unsupported { message },
            _ => CliError::Store {
                url: self.url.clone(),
                message,
            },
        }
    }
}

/// `text` with every occurrence of `password` hidden.
fn scrub(text: String, password: Option<&str>) -> String {
    match password {
        Some(password) if text.contains(password) => text.replace(password, "***"),
        _ => text,
    }
}

/// The SQLite store creates a missing database file; for every command but `migrate` a missing
/// file is much more likely a wrong path, which would otherwise show as an empty store.
fn check_sqlite_file_exists(url: &StoreUrl, redacted: &str) -> Result<(), CliError> {
    if url.scheme != "sqlite" {
        return Ok(());
    }
    let rest = url.driver_url.split_once(':').map_or("", |(_, rest)| rest);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    if path.is_empty() || path == ":memory:" || Path::new(path).exists() {
        return Ok(());
    }
    Err(CliError::BadUrl {
        url: redacted.to_owned(),
        source: StoreError::Config(format!(
            "there is no SQLite database at {path:?} (relative paths start from the current \
             directory); check the path, or run `cloakroom migrate` to create a new database"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_passwords() {
        assert_eq!(
            scrub("password s3cret rejected".into(), Some("s3cret")),
            "password *** rejected"
        );
    }

    #[tokio::test]
    async fn a_missing_sqlite_file_is_reported_not_created() {
        let dir = std::env::temp_dir().join(format!("cloakroom-cli-unit-{}", std::process::id()));
        let path = dir.join("missing.db");
        let url = format!("sqlite://{}", path.display());
        let error = Target::open(Some(&url), false).await.err().unwrap();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("cloakroom migrate"), "{error}");
        assert!(!path.exists());
    }
}
