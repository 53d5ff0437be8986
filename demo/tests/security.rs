//! Regressions from the black-box security probe of the demo (issue #18): each test is one
//! finding, driven through the router as a client would.

mod support;

use std::sync::Arc;

use axum::http::{Method, StatusCode, header};
use cloakroom::Key;
use cloakroom::stores::memory::MemoryStore;
use cloakroom_demo::{Config, LoginLimits, PasswordCost};
use serde_json::json;
use support::{ALICE, BOB, Client, TestApp};

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
        backend: cloakroom::Backend::Store(Arc::new(MemoryStore::default())),
        key: Key::from_secret(&[7; 32]).unwrap(),
        secure_cookies: false,
        password_cost: PasswordCost::Fast,
        login_limits: LoginLimits::default(),
    };
    let mut plain = Client::new(cloakroom_demo::router(insecure).unwrap());
    let set = plain.login(BOB).await.set_cookie().unwrap().to_owned();
    assert!(set.starts_with("id="), "{set}");
    assert!(!set.contains("Secure"), "{set}");
}

/// About 250 wrong passwords for one account met no delay.
#[tokio::test]
async fn failed_logins_are_throttled_per_account() {
    let app = TestApp::new();
    let mut attacker = app.client();
    let burst = LoginLimits::default().per_account.burst;
    for _ in 0..burst {
        let reply = attacker.api_login((BOB.0, "guess")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = attacker.api_login((BOB.0, "guess")).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.body
    );
    assert_too_many(&reply);
    // Over the quota even the right password is not tried: a blocked guesser learns nothing.
    let reply = attacker.api_login(BOB).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    // The HTML form shares the quota; the case of the address does not matter.
    let page = attacker.login(("BOB@example.com ", BOB.1)).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert_too_many(&page);
    // Other accounts are not affected.
    let reply = app.client().api_login(ALICE).await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// One client guessing across many accounts is throttled by its address.
#[tokio::test]
async fn failed_logins_are_throttled_per_client_address() {
    let app = TestApp::new();
    let mut attacker = app.client();
    attacker.peer = Some("192.0.2.7:40000".parse().unwrap());
    let burst = LoginLimits::default().per_address.burst;
    for n in 0..burst {
        let reply = attacker
            .api_login((&format!("user{n}@example.com"), "guess"))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = attacker.api_login(BOB).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_too_many(&reply);
    // Another client logs in as Bob at once.
    let mut bob = app.client();
    bob.peer = Some("198.51.100.1:50000".parse().unwrap());
    assert_eq!(bob.api_login(BOB).await.status, StatusCode::OK);
}

#[track_caller]
fn assert_too_many(reply: &support::Reply) {
    let wait: u64 = reply
        .header(header::RETRY_AFTER)
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(wait >= 1, "{wait}");
    assert!(
        reply.body.contains("too many login attempts"),
        "{}",
        reply.body
    );
}

/// Every anonymous look at a form page stored a session (for its CSRF token): 2,167 stored
/// sessions after the probe.
#[tokio::test]
async fn anonymous_form_pages_store_nothing() {
    let app = TestApp::new();
    for _ in 0..3 {
        let mut visitor = app.client();
        for page in ["/login", "/cart", "/register/step1", "/preferences"] {
            let reply = visitor.get(page).await;
            assert_eq!(reply.status, StatusCode::OK, "{page}");
            assert!(reply.csrf_token().is_some(), "{page} has a form");
            assert_eq!(reply.set_cookie(), None, "{page} set a session cookie");
        }
        let csrf = visitor.csrf_cookie.clone().expect("a CSRF cookie");
        assert!(csrf.starts_with("__Host-csrf="), "{csrf}");
    }
    assert_eq!(app.live_sessions().await, 0, "no session for looking");

    // The cookie token is what the form must send back; it is reused, not renewed.
    let mut visitor = app.client();
    let set = visitor.get("/login").await;
    let set = set.set_csrf_cookie().unwrap().to_owned();
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(set.contains(attribute), "{attribute} missing from {set}");
    }
    let page = visitor.get("/cart").await;
    assert_eq!(page.set_csrf_cookie(), None, "the cookie is kept");
    let token = page.csrf_token().unwrap();
    assert_eq!(
        visitor.csrf_cookie.as_deref(),
        Some(format!("__Host-csrf={token}").as_str())
    );
    // Without the cookie, or with another visitor's, the token is refused.
    let mut no_cookie = visitor.clone();
    no_cookie.csrf_cookie = None;
    let fields = [("csrf_token", token.as_str()), ("product_id", "1")];
    let reply = no_cookie.post_form_raw("/cart/add", &fields).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let mut other = app.client();
    other.get("/login").await;
    let reply = other.post_form_raw("/cart/add", &fields).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(app.live_sessions().await, 0);
    // A change does create the session.
    let reply = visitor.post_form_raw("/cart/add", &fields).await;
    reply.assert_redirect("/cart");
    assert_eq!(app.live_sessions().await, 1);
    // Logging in with the visitor's token works, and then the session's own token takes over.
    visitor.login(BOB).await.assert_redirect("/dashboard");
    let reply = visitor.post_form_raw("/cart/add", &fields).await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "the visitor token is dead"
    );
}

/// The admin page tells how many stored sessions belong to nobody.
#[tokio::test]
async fn the_admin_page_counts_anonymous_sessions() {
    let app = TestApp::new();
    for _ in 0..3 {
        app.client().get("/login").await;
    }
    for product in ["1", "2"] {
        let mut shopper = app.client();
        shopper
            .submit("/cart", "/cart/add", &[("product_id", product)])
            .await
            .assert_redirect("/cart");
    }
    app.client().login(BOB).await;
    let mut admin = app.client();
    admin.login(ALICE).await;
    let page = admin.get("/admin").await;
    page.assert_contains(r#"<p class="big" id="live-sessions">4</p>"#);
    page.assert_contains(r#"<p class="big" id="anonymous-sessions">2</p>"#);
}

/// "Log out everywhere else" and revoking a device needed no re-authentication: whoever held
/// one session could end all the others.
#[tokio::test]
async fn logging_out_other_devices_needs_the_password() {
    let app = TestApp::new();
    let mut laptop = app.client_named("Laptop");
    let mut phone = app.client_named("Phone");
    laptop.api_login(BOB).await;
    phone.api_login(BOB).await;
    let phone_id = app
        .sessions_of(support::BOB_ID)
        .await
        .iter()
        .find(|(_, r)| r.data["user_agent"] == "Phone")
        .map(|(h, _)| h.to_string())
        .unwrap();
    let revoke_phone = format!("/api/devices/{phone_id}");

    // The API: no body, no password, a wrong one.
    for body in [
        None,
        Some(json!({})),
        Some(json!({"password": "wonderland"})),
    ] {
        for (method, path) in [
            (Method::DELETE, revoke_phone.as_str()),
            (Method::POST, "/api/devices/revoke-others"),
        ] {
            let reply = laptop.api(method, path, body.clone()).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} {body:?}");
            assert!(reply.json()["error"].as_str().unwrap().contains("password"));
        }
    }
    assert_eq!(app.sessions_of(support::BOB_ID).await.len(), 2);

    // The pages: the form says what was wrong, and nothing happens.
    let action = format!("/devices/{phone_id}/revoke");
    for (path, fields) in [
        (action.as_str(), &[][..]),
        ("/devices/revoke-others", &[("password", "wrong")][..]),
    ] {
        let mut browser = app.client();
        browser.login(BOB).await;
        browser
            .submit("/devices", path, fields)
            .await
            .assert_redirect("/devices");
        let page = browser.get("/devices").await;
        page.assert_contains("flash-error");
        page.assert_contains("password");
    }
    assert!(phone.is_logged_in().await);

    // With the password it works.
    let password = Some(json!({"password": BOB.1}));
    let reply = laptop
        .api(Method::DELETE, &revoke_phone, password.clone())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(!phone.is_logged_in().await);
    let reply = laptop
        .api(Method::POST, "/api/devices/revoke-others", password)
        .await;
    assert_eq!(reply.json(), json!({"revoked": 2}));
}
