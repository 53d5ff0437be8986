//! After the handler: what the store must do for this request, and doing it.

use http::header::HeaderValue;
use http::{Response, StatusCode};
use tracing::Instrument as _;

use super::headers::{add_vary_cookie, error_response, set_cookie};
use super::load::{LazySession, Loaded};
use super::sealed;
use crate::config::Settings;
use crate::error::{Error, StoreError};
use crate::observe::{self, Event, timed};
use crate::record::{Patch, Record};
use crate::session::{Id, State};
use crate::store::Store;
use crate::ticket::{SessionHash, Ticket};
use crate::time::Timestamp;

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

impl LazySession {
    /// Persists what the handler did and sets the cookie on `response`.
    pub(super) async fn finish<B: Default>(&self, mut response: Response<B>) -> Response<B> {
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
        let settings = &self.0.settings;
        if response.extensions().get::<DiscardChanges>().is_some()
            || (response.status().is_server_error() && !settings.save_on_server_error)
        {
            return response;
        }
        let now = settings.clock.now();
        // `persist` looks the store up itself: holding it here across the await made this
        // future, boxed once per request, measurably slower in the new-session benchmark
        // (docs/performance.md).
        let outcome = if settings.store().is_none() {
            sealed::seal(settings, &mut session.lock(), now, had_cookie)
        } else {
            let (to_do, destroyed) = {
                let mut state = session.lock();
                (
                    plan(settings, &mut state, now, had_cookie),
                    state.destroyed.take(),
                )
            };
            persist(settings, to_do, destroyed.as_ref(), now).await
        };
        match outcome {
            Ok(Some(cookie)) => set_cookie(&mut response, cookie),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, store = settings.backend_name(), "cloakroom: saving the session failed");
                let status = match error {
                    Error::Store(_) => settings.error_status,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                return error_response(status);
            }
        }
        response
    }
}

/// What the store has to do for this request.
enum Plan {
    Nothing,
    /// Tell the browser to drop a cookie that leads nowhere (logged out, expired, forged).
    RemoveCookie,
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

fn plan(settings: &Settings, state: &mut State, now: Timestamp, had_cookie: bool) -> Plan {
    let persistent = state.persistent();
    let Some(stored) = state.stored.clone() else {
        return if state.has_content() {
            Plan::Create {
                record: state.take_record(now, now, settings.first_deadline(now)),
                persistent,
            }
        } else if state.destroyed.is_some() || had_cookie {
            Plan::RemoveCookie
        } else {
            Plan::Nothing
        };
    };
    let Some(id) = stored.id.clone() else {
        return Plan::Nothing;
    };
    let extended = settings.extended_deadline(&stored, now);
    let persistent_changed = state.persistent_changed();
    let mut patch = state.take_patch(now);
    patch.expires_at = extended;
    let expires_at = extended.unwrap_or(stored.expires_at);
    if state.cycle {
        return Plan::Rotate {
            id,
            patch,
            expires_at,
            persistent,
        };
    }
    let resend = stored.stale_key || persistent_changed || (extended.is_some() && persistent);
    if patch.is_empty() && !resend {
        return Plan::Nothing;
    }
    Plan::Update {
        id,
        patch,
        expires_at,
        persistent,
        resend,
    }
}

/// Runs the store operations; returns the `Set-Cookie` value to send, if any.
async fn persist(
    settings: &Settings,
    plan: Plan,
    destroyed: Option<&SessionHash>,
    now: Timestamp,
) -> Result<Option<HeaderValue>, Error> {
    let Some(store) = settings.store() else {
        return Ok(None);
    };
    if let Some(hash) = destroyed {
        let span = tracing::debug_span!("cloakroom.destroy", session = %hash.prefix());
        timed("delete", store.delete(hash)).instrument(span).await?;
        observe::count(Event::Destroyed);
    }
    let signed = |ticket: &Ticket, persistent, expires_at| {
        let value = settings.keys.sign(&settings.cookie.name, ticket);
        settings.cookie_for(&value, persistent, expires_at, now)
    };
    match plan {
        Plan::Nothing => Ok(None),
        Plan::RemoveCookie => Ok(Some(settings.cookie.removal())),
        Plan::Create { record, persistent } => {
            let ticket = create(store, &record).await?;
            observe::count(Event::Created);
            Ok(Some(signed(&ticket, persistent, record.expires_at)))
        }
        Plan::Update {
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
                    return Ok(Some(settings.cookie.removal()));
                }
                observe::count(Event::Saved);
            }
            Ok(resend.then(|| signed(&id.ticket, persistent, expires_at)))
        }
        Plan::Rotate {
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
