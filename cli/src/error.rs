//! What can go wrong, what to do about it, and the exit code it gives.

use cloakroom::StoreError;

/// An error that ends the command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Neither `--store` nor `CLOAKROOM_STORE`.
    #[error(
        "no store given: pass --store URL or set CLOAKROOM_STORE, e.g. \
         --store sqlite://sessions.db (the URL your app uses)"
    )]
    NoStore,

    /// The URL names no store, or a store this build cannot open, or has bad options.
    #[error("bad store URL {url}: {source}")]
    BadUrl {
        /// The URL, password hidden.
        url: String,
        /// What the store said.
        source: StoreError,
    },

    /// Connecting failed.
    #[error("cannot reach the store at {url}: {message}")]
    Unreachable {
        /// The URL, password hidden.
        url: String,
        /// What the store said, password hidden.
        message: String,
    },

    /// An operation failed.
    #[error("the store at {url} failed: {message}")]
    Store {
        /// The URL, password hidden.
        url: String,
        /// What the store said, password hidden.
        message: String,
    },

    /// The store cannot do this at all (e.g. the sealed-cookie store keeps nothing to list).
    #[error("{message}; use the URL of a server-side store")]
    Unsupported {
        /// What the store said.
        message: String,
    },

    /// `show` of a hash with no live session.
    #[error(
        "no live session with hash {0}: it expired, was revoked or never existed \
         (`cloakroom list --user ID --full` shows a user's sessions)"
    )]
    NotFound(String),

    /// Writing to stdout failed (other than a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),

    /// stdout was closed early (`cloakroom list … | head`): not worth a message.
    #[error("output closed")]
    OutputClosed,

    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl CliError {
    /// 1 when the store failed or found nothing, 2 when the command line was wrong.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoStore | Self::BadUrl { .. } | Self::Unsupported { .. } => 2,
            Self::OutputClosed => 0,
            Self::Unreachable { .. }
            | Self::Store { .. }
            | Self::NotFound(_)
            | Self::Output(_)
            | Self::Runtime(_) => 1,
        }
    }

    /// Whether to print nothing.
    pub fn is_silent(&self) -> bool {
        matches!(self, Self::OutputClosed)
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            Self::OutputClosed
        } else {
            Self::Output(error)
        }
    }
}
