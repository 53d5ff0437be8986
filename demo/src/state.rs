//! What every handler can reach: the app's state. Routes depend on it; it depends on no route.

use std::sync::Arc;

use cloakroom::{Session, Store};

use crate::error::Error;
use crate::throttle::LoginThrottle;
use crate::users::{User, Users};

/// What every handler can reach.
pub struct App {
    pub users: Users,
    pub login_throttle: LoginThrottle,
    /// The same store the session layer uses, for "your devices" and the admin page; `None`
    /// when sessions are sealed in cookies.
    pub store: Option<Arc<dyn Store>>,
}

/// The router's state.
pub type AppState = Arc<App>;

impl App {
    /// The session store, or why there is none to ask.
    pub fn store(&self) -> Result<&dyn Store, Error> {
        self.store.as_deref().ok_or(Error::NoServerSessions)
    }

    /// Where sessions live, for the page footer.
    pub fn store_name(&self) -> &'static str {
        self.store.as_deref().map_or("sealed cookie", Store::name)
    }

    /// The logged-in user, if the session is bound to one this app knows.
    ///
    /// A session whose user is unknown here (registered on another instance, or before a
    /// restart: users live in memory) counts as logged out.
    pub fn current_user(&self, session: &Session) -> Option<User> {
        let id = session.user()?.parse().ok()?;
        self.users.get(id)
    }
}
