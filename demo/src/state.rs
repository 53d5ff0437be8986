//! What every handler can reach: the app's state. Routes depend on it; it depends on no route.

use std::sync::Arc;

use cloakroom::{Session, Store};

use crate::throttle::LoginThrottle;
use crate::users::{User, Users};

/// What every handler can reach.
pub struct App {
    pub users: Users,
    pub login_throttle: LoginThrottle,
    /// The same store the session layer uses, for "your devices" and the admin page.
    pub store: Arc<dyn Store>,
}

/// The router's state.
pub type AppState = Arc<App>;

impl App {
    /// The logged-in user, if the session is bound to one this app knows.
    ///
    /// A session whose user is unknown here (registered on another instance, or before a
    /// restart: users live in memory) counts as logged out.
    pub fn current_user(&self, session: &Session) -> Option<User> {
        let id = session.user()?.parse().ok()?;
        self.users.get(id)
    }
}
