//! A login (`cycle_id`) on a session while another request or an admin works on the same one.
//! The probe holds the login's `rotate` after its load, the other operation completes, then the
//! rotation goes ahead: the order is forced, not hoped for.
//!
//! Only what the store holds is asserted. What the login's response carries when its rotation
//! finds the record gone is the layer's business and tested with the layer.

use cloakroom::{SessionHash, Store};
use serde_json::json;

use super::probed::Probed;
use super::{Harness, hash};

struct Race {
    t: Probed,
    cookie: Option<String>,
    user: String,
    old: SessionHash,
}

impl Race {
    /// A session bound to a user of its own, logged in again while `other` runs.
    async fn start(h: &Harness) -> Self {
        let t = Probed::new(h, |b| b);
        let mut cookie = None;
        let user = format!("racer-{}", hash(0));
        t.send(&t.app, &mut cookie, &format!("POST /bind {user}"))
            .await;
        let old = t.hash_of(&cookie).await;
        Self {
            t,
            cookie,
            user,
            old,
        }
    }

    /// Runs a login up to its rotation, then `other`, then lets the rotation go ahead.
    async fn login_around<F: std::future::Future<Output = ()>>(&self, other: F) {
        let held = self.t.probe.hold("rotate");
        let login = {
            let (app, cookie, user) = (self.t.app.clone(), self.cookie.clone(), self.user.clone());
            tokio::spawn(async move {
                crate::support::request(&app, "POST", "/login", cookie.as_deref(), &user).await
            })
        };
        held.reached.notified().await;
        other.await;
        held.release.notify_one();
        login.await.unwrap();
    }

    async fn sessions(&self) -> Vec<(SessionHash, cloakroom::Record)> {
        let store = &self.t.probe.inner;
        store.list_user(&self.user, self.t.now()).await.unwrap()
    }

    async fn assert_old_ticket_dead(&self) {
        assert!(
            self.t.stored(&self.old).await.is_none(),
            "the old ticket still works"
        );
    }
}

pub async fn login_racing_a_logout_leaves_no_session(h: &Harness) {
    let race = Race::start(h).await;
    let mut cookie = race.cookie.clone();
    race.login_around(async {
        race.t.send(&race.t.app, &mut cookie, "POST /logout").await;
    })
    .await;
    race.assert_old_ticket_dead().await;
    let left = race.sessions().await;
    assert!(left.is_empty(), "the logout wins: {left:?}");
}

pub async fn login_racing_a_revocation_leaves_no_session(h: &Harness) {
    let race = Race::start(h).await;
    race.login_around(async {
        let store = &race.t.probe.inner;
        assert_eq!(store.revoke_user(&race.user, None).await.unwrap(), 1);
    })
    .await;
    race.assert_old_ticket_dead().await;
    let left = race.sessions().await;
    assert!(left.is_empty(), "the revocation wins: {left:?}");
}

pub async fn login_racing_a_save_keeps_the_saved_key(h: &Harness) {
    let race = Race::start(h).await;
    let mut cookie = race.cookie.clone();
    race.login_around(async {
        race.t
            .send(&race.t.app, &mut cookie, "POST /write cart=3")
            .await;
    })
    .await;
    race.assert_old_ticket_dead().await;
    let moved = race.sessions().await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_ne!(moved[0].0, race.old);
    let data = &moved[0].1.data;
    assert_eq!(
        (&data["cart"], &data["user"]),
        (&json!("3"), &json!(race.user)),
        "the rotation moved the record as the save left it: {data:?}"
    );
}

/// The other order: a save that loaded before the login arrives after the rotation.
pub async fn save_after_a_rotation_does_not_revive_the_old_ticket(h: &Harness) {
    let race = Race::start(h).await;
    let held = race.t.probe.hold("save");
    let write = {
        let (app, cookie) = (race.t.app.clone(), race.cookie.clone());
        tokio::spawn(async move {
            crate::support::request(&app, "POST", "/write", cookie.as_deref(), "late=1").await
        })
    };
    held.reached.notified().await;
    let mut cookie = race.cookie.clone();
    let login = format!("POST /login {}", race.user);
    race.t.send(&race.t.app, &mut cookie, &login).await;
    held.release.notify_one();
    write.await.unwrap();
    race.assert_old_ticket_dead().await;
    let moved = race.sessions().await;
    assert_eq!(moved.len(), 1, "exactly the rotated session: {moved:?}");
    assert_ne!(moved[0].0, race.old);
}
