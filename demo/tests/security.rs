//! Regressions from the black-box security probe of the demo (issue #18): each test is one
//! finding, driven through the router as a client would.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use cloakroom::Key;
use cloakroom::stores::memory::MemoryStore;
use cloakroom_demo::{Config, PasswordCost};
use support::{BOB, Client, TestApp};

/// A crafted link to a protected page with a 65,000-character query used to fill the session
/// (stored as the page to return to), after which every login answered 413.
#[tokio::test]
async fn a_huge_link_to_a_protected_page_does_not_block_login() {
    let app = TestApp::new();
    let mut visitor = app.client();
    // Just under the session's 64 KiB limit: stored whole, the next write would not fit.
    let crafted = format!("/dashboard?{}", "a".repeat(65_400));
    visitor.get(&crafted).await.assert_redirect("/login");
    assert_eq!(visitor.get("/login").await.status, StatusCode::OK);
    // The query would have to be cut: only the path is kept.
    let login = visitor.login(BOB).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert!(
        login.location() == Some("/dashboard"),
        "sent to {} characters",
        login.location().map_or(0, str::len)
    );

    let mut api = app.client();
    api.get(&crafted).await.assert_redirect("/login");
    let reply = api.api_login(BOB).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // A short query still comes back whole.
    let mut normal = app.client();
    normal.get("/devices?tab=2").await.assert_redirect("/login");
    normal.login(BOB).await.assert_redirect("/devices?tab=2");
}

/// The session cookie had the generic name `id`: without the `__Host-` prefix a sibling
/// subdomain or a plain-HTTP page can plant one (session fixation, login CSRF).
#[tokio::test]
async fn the_session_cookie_has_the_host_prefix() {
    let app = TestApp::new();
    let mut browser = app.client();
    let reply = browser.login(BOB).await;
    let set = reply.set_cookie().expect("a cookie at login");
    assert!(set.starts_with("__Host-id="), "{set}");
    for attribute in ["Secure", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} missing from {set}");
    }
    assert!(!set.contains("Domain"), "{set}");

    // Browsers drop a __Host- cookie without Secure: plain HTTP gets the plain name.
    let insecure = Config {
        store: Arc::new(MemoryStore::default()),
        key: Key::from_secret(&[7; 32]).unwrap(),
        secure_cookies: false,
        password_cost: PasswordCost::Fast,
    };
    let mut plain = Client::new(cloakroom_demo::router(insecure).unwrap());
    let set = plain.login(BOB).await.set_cookie().unwrap().to_owned();
    assert!(set.starts_with("id="), "{set}");
    assert!(!set.contains("Secure"), "{set}");
}
