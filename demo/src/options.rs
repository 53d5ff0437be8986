//! The command line, and where the cookie-signing key comes from.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use cloakroom::{Key, MIN_SECRET_BYTES};

/// The options; each can also be given as an environment variable.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "cloakroom-demo",
    version,
    about = "A small shop that shows what cloakroom's sessions do."
)]
pub struct Options {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "CLOAKROOM_BIND", default_value = "127.0.0.1:3000")]
    pub bind: String,

    /// Where sessions live: sqlite://path, memory://, file:///dir, postgres://…, mysql://…,
    /// redis://… or cookie://.
    #[arg(long, env = "CLOAKROOM_STORE", default_value = DEFAULT_STORE)]
    pub store: String,

    /// The secret that signs session cookies (at least 32 bytes). Without it, a key is generated
    /// once into a file readable only by you, beside the database, so restarts keep everyone
    /// logged in.
    #[arg(long, env = "CLOAKROOM_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Send session cookies without `Secure`, for plain-HTTP use off localhost (browsers accept
    /// secure cookies on http://localhost and http://127.0.0.1 anyway).
    #[arg(
        long,
        env = "CLOAKROOM_INSECURE_COOKIES",
        action = ArgAction::SetTrue,
        value_parser = BoolishValueParser::new()
    )]
    pub insecure_cookies: bool,
}

/// The store unless told otherwise: SQLite in the current directory.
pub const DEFAULT_STORE: &str = "sqlite://cloakroom-demo.db";
/// The key file for stores that are not a file on this machine.
const DEFAULT_KEY_FILE: &str = "cloakroom-demo.key";

/// Where the cookie key came from, for the start-up message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `--secret` or `CLOAKROOM_SECRET`.
    Secret,
    /// A key file, read or (when `created`) generated now.
    File { path: PathBuf, created: bool },
}

/// Why there is no key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the secret is too short: {0}")]
    Weak(#[source] cloakroom::Error),
    #[error("cannot use the key file {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error(
        "the key file {0} holds less than {MIN_SECRET_BYTES} bytes; delete it to generate a new \
         one (this logs everyone out)"
    )]
    ShortFile(PathBuf),
}

/// The cookie key: from the secret if given, otherwise from the key file beside the store
/// (created on first start).
pub fn key(secret: Option<&str>, store_url: &str) -> Result<(Key, KeySource), KeyError> {
    if let Some(secret) = secret {
        let key = Key::from_secret(secret.as_bytes()).map_err(KeyError::Weak)?;
        return Ok((key, KeySource::Secret));
    }
    let path = key_file_for(store_url);
    let (secret, created) = read_or_create(&path).map_err(|source| KeyError::File {
        path: path.clone(),
        source,
    })?;
    let key = Key::from_secret(secret.as_bytes()).map_err(|_| KeyError::ShortFile(path.clone()))?;
    Ok((key, KeySource::File { path, created }))
}

/// The key file for a store URL: `x.key` beside an SQLite database `x.db` or a session directory
/// `x`; `cloakroom-demo.key` in the current directory for every other store.
pub fn key_file_for(store_url: &str) -> PathBuf {
    let (scheme, rest) = store_url.split_once(':').unwrap_or(("", store_url));
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    let local = matches!(scheme.to_ascii_lowercase().as_str(), "sqlite" | "file")
        && !path.is_empty()
        && path != ":memory:"
        && path != "/";
    if !local {
        return PathBuf::from(DEFAULT_KEY_FILE);
    }
    let path = Path::new(path.trim_end_matches('/'));
    if scheme.eq_ignore_ascii_case("sqlite") {
        path.with_extension("key")
    } else {
        let mut name = path.as_os_str().to_owned();
        name.push(".key");
        PathBuf::from(name)
    }
}

/// The secret in `path`; when there is no such file, a new random one written there first
/// (readable by the owner only). Two processes starting at once end up with the same key.
fn read_or_create(path: &Path) -> io::Result<(String, bool)> {
    match fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path);
            return Ok((text.trim().to_owned(), false));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    // Written in full under a temporary name, then linked into place: the link fails if another
    // process got there first, and nobody ever reads a half-written key.
    let temp = path.with_extension(format!("key.tmp-{}", std::process::id()));
    let written = write_private(&temp, &secret).and_then(|()| fs::hard_link(&temp, path));
    let _ = fs::remove_file(&temp);
    match written {
        Ok(()) => Ok((secret, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Ok((fs::read_to_string(path)?.trim().to_owned(), false))
        }
        Err(e) => Err(e),
    }
}

fn write_private(path: &Path, secret: &str) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{secret}")?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the key file can be read by other users; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_have_the_documented_defaults() {
        let options = Options::try_parse_from(["cloakroom-demo"]).unwrap();
        // (Unless the environment says otherwise: the CLOAKROOM_* variables override these.)
        if std::env::var_os("CLOAKROOM_STORE").is_none() {
            assert_eq!(options.store, "sqlite://cloakroom-demo.db");
        }
        if std::env::var_os("CLOAKROOM_BIND").is_none() {
            assert_eq!(options.bind, "127.0.0.1:3000");
        }
        let options = Options::try_parse_from([
            "cloakroom-demo",
            "--insecure-cookies",
            "--bind",
            "0.0.0.0:8080",
            "--store",
            "memory://",
        ])
        .unwrap();
        assert!(options.insecure_cookies);
        assert_eq!(options.bind, "0.0.0.0:8080");
        assert_eq!(options.store, "memory://");
    }

    #[test]
    fn key_files_sit_beside_local_stores() {
        let cases = [
            ("sqlite://cloakroom-demo.db", "cloakroom-demo.key"),
            ("sqlite:///var/lib/demo/s.db?table=t", "/var/lib/demo/s.key"),
            ("sqlite://data/sessions", "data/sessions.key"),
            ("file:///tmp/sessions/", "/tmp/sessions.key"),
            ("sqlite::memory:", DEFAULT_KEY_FILE),
            ("memory://", DEFAULT_KEY_FILE),
            ("redis://127.0.0.1:6379", DEFAULT_KEY_FILE),
            ("postgres://u:p@db/app", DEFAULT_KEY_FILE),
        ];
        for (url, expected) in cases {
            assert_eq!(key_file_for(url), PathBuf::from(expected), "{url}");
        }
    }

    #[test]
    fn the_key_file_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("demo.db");
        let url = format!("sqlite://{}", db.display());
        let (_, first) = key(None, &url).unwrap();
        let path = dir.path().join("demo.key");
        assert_eq!(
            first,
            KeySource::File {
                path: path.clone(),
                created: true
            }
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.trim().len() >= MIN_SECRET_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (_, second) = key(None, &url).unwrap();
        assert_eq!(
            second,
            KeySource::File {
                path: path.clone(),
                created: false
            }
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "not regenerated");
        // Only the key file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["demo.key"]);
    }

    #[test]
    fn bad_secrets_and_key_files_are_refused() {
        assert!(matches!(
            key(Some("short"), "memory://"),
            Err(KeyError::Weak(_))
        ));
        assert_eq!(
            key(Some(&"s".repeat(32)), "memory://").unwrap().1,
            KeySource::Secret
        );
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x.key"), "too short\n").unwrap();
        let url = format!("sqlite://{}", dir.path().join("x.db").display());
        assert!(matches!(key(None, &url), Err(KeyError::ShortFile(_))));
        let url = format!("sqlite://{}", dir.path().join("missing/x.db").display());
        assert!(matches!(key(None, &url), Err(KeyError::File { .. })));
    }
}
