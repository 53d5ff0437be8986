//! The HTML pages, through the router, as a browser sees them: status, redirects, cookies, page
//! content, and what ends up in the store.

mod support;

use axum::http::{StatusCode, header};
use support::{ALICE, BOB, BOB_ID, Client, TestApp};

#[tokio::test]
async fn anonymous_visits_store_nothing_and_set_no_cookie() {
    let app = TestApp::new();
    let mut visitor = app.client();
    for path in [
        "/",
        "/api/session",
        "/api/cart",
        "/api/preferences",
        "/api/flashes",
        "/static/style.css",
        "/no-such-page",
    ] {
        let reply = visitor.get(path).await;
        assert!(reply.status.is_success() || reply.status == StatusCode::NOT_FOUND);
        assert_eq!(reply.set_cookie(), None, "{path} set a cookie");
    }
    let home = visitor.get("/").await;
    home.assert_contains("You are browsing as a guest");
    home.assert_contains("nothing was stored and no cookie was set");
    assert_eq!(app.live_sessions().await, 0);
}

#[tokio::test]
async fn login_gives_a_new_ticket_and_the_old_one_is_dead() {
    let app = TestApp::new();
    let mut browser = app.client();
    // Something in the session before login: it must come along.
    let added = browser
        .submit("/cart", "/cart/add", &[("product_id", "2")])
        .await;
    added.assert_redirect("/cart");
    let before = browser.cookie.clone().expect("a session before login");

    let login = browser.login(BOB).await;
    login.assert_redirect("/dashboard");
    let set = login.set_cookie().expect("a new cookie at login");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} missing from {set}");
    }
    assert!(
        !set.contains("Max-Age"),
        "a browser-session cookie by default: {set}"
    );
    let after = browser.cookie.clone().unwrap();
    assert_ne!(before, after, "the ticket must change at login");

    let dashboard = browser.get("/dashboard").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    dashboard.assert_contains(r#"<span id="who">Bob</span>"#);
    dashboard.assert_contains("Umbrella");

    // Whoever kept the pre-login ticket holds nothing: not Bob's login, not even the cart.
    let mut attacker = app.client();
    attacker.cookie = Some(before);
    attacker.get("/dashboard").await.assert_redirect("/login");
    let cart = attacker.get("/api/cart").await.json();
    assert_eq!(cart["count"], 0);
    assert_eq!(app.sessions_of(BOB_ID).await.len(), 1);
}

#[tokio::test]
async fn wrong_password_is_a_401_page_and_logs_nobody_in() {
    let app = TestApp::new();
    let mut browser = app.client();
    let reply = browser.login(("bob@example.com", "wonderland")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    reply.assert_contains("invalid e-mail or password");
    reply.assert_contains(r#"value="bob@example.com""#);
    assert!(app.sessions_of(BOB_ID).await.is_empty());
    let missing = browser
        .submit("/login", "/login", &[("email", "bob@example.com")])
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn remember_me_makes_the_cookie_persistent() {
    let app = TestApp::new();
    let mut browser = app.client();
    let reply = browser
        .submit(
            "/login",
            "/login",
            &[("email", BOB.0), ("password", BOB.1), ("remember", "on")],
        )
        .await;
    let set = reply.set_cookie().unwrap();
    assert!(set.contains("Max-Age="), "{set}");
}

#[tokio::test]
async fn logout_kills_the_ticket_on_the_server() {
    let app = TestApp::new();
    let mut browser = app.client();
    browser.login(BOB).await;
    let ticket = browser.cookie.clone().unwrap();
    assert_eq!(app.sessions_of(BOB_ID).await.len(), 1);

    let reply = browser.logout().await;
    reply.assert_redirect("/");
    assert_ne!(browser.cookie.as_ref(), Some(&ticket));
    assert!(app.sessions_of(BOB_ID).await.is_empty(), "record deleted");

    // Replaying the old cookie gets nobody.
    let mut replay = app.client();
    replay.cookie = Some(ticket);
    let session = replay.get("/api/session").await.json();
    assert_eq!(session["logged_in"], false);
    replay.get("/dashboard").await.assert_redirect("/login");

    // The goodbye is a flash on the new, anonymous session: shown once.
    let home = browser.get("/").await;
    home.assert_contains("You have been logged out.");
    home.assert_contains("You are browsing as a guest");
    browser
        .get("/")
        .await
        .assert_lacks("You have been logged out.");
}

#[tokio::test]
async fn protected_pages_send_you_to_login_and_back() {
    let app = TestApp::new();
    for page in ["/dashboard", "/devices", "/admin"] {
        let mut browser = app.client();
        browser.get(page).await.assert_redirect("/login");
        let login_page = browser.get("/login").await;
        login_page.assert_contains("Please log in first.");
        let who = if page == "/admin" { ALICE } else { BOB };
        browser.login(who).await.assert_redirect(page);
        assert_eq!(browser.get(page).await.status, StatusCode::OK, "{page}");
    }
    // Without a page to return to, login lands on the dashboard.
    let mut browser = app.client();
    browser.login(BOB).await.assert_redirect("/dashboard");
    // Logged in, the login page sends you on.
    browser.get("/login").await.assert_redirect("/dashboard");
}

#[tokio::test]
async fn the_admin_page_is_403_for_bob_and_shows_counts_to_alice() {
    let app = TestApp::new();
    let mut bob = app.client();
    bob.login(BOB).await;
    let home = bob.get("/").await;
    home.assert_lacks(r#"<a href="/admin">Admin</a>"#);
    let denied = bob.get("/admin").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    denied.assert_contains("administrators only");

    let mut alice = app.client();
    alice.login(ALICE).await;
    let page = alice.get("/admin").await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains(r#"<a href="/admin">Admin</a>"#);
    page.assert_contains(r#"<p class="big" id="live-sessions">2</p>"#);
    page.assert_contains("bob@example.com");
}

#[tokio::test]
async fn a_flash_is_shown_exactly_once() {
    let app = TestApp::new();
    let mut browser = app.client();
    browser.login(BOB).await;
    let first = browser.get("/dashboard").await;
    first.assert_contains("Welcome back, Bob!");
    let second = browser.get("/dashboard").await;
    second.assert_lacks("Welcome back, Bob!");
    // And the JSON view of flashes has nothing left either.
    assert_eq!(
        browser.get("/api/flashes").await.json(),
        serde_json::json!([])
    );
}

#[tokio::test]
async fn forms_without_the_right_csrf_token_are_refused_with_403() {
    let app = TestApp::new();
    let mut bob = app.client();
    bob.login(BOB).await;
    let mut stranger = app.client();
    let foreign_token = stranger.get("/cart").await.csrf_token().unwrap();
    {
        // A token from before login stops working at login.
        let mut browser = app.client();
        let token = browser.get("/login").await.csrf_token().unwrap();
        browser.login(BOB).await;
        let reply = browser
            .post_form_raw("/cart/add", &[("csrf_token", &token), ("product_id", "1")])
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    let actions: [(&str, &[(&str, &str)]); 10] = [
        ("/login", &[("email", BOB.0), ("password", BOB.1)]),
        ("/logout", &[]),
        ("/cart/add", &[("product_id", "1")]),
        ("/cart/remove", &[("product_id", "1")]),
        ("/cart/clear", &[]),
        ("/preferences", &[("theme", "dark"), ("language", "en")]),
        (
            "/register/step1",
            &[("name", "Eve"), ("email", "eve@example.com")],
        ),
        ("/register/complete", &[("password", "long enough")]),
        ("/devices/revoke-others", &[]),
        (
            "/devices/0000000000000000000000000000000000000000000000000000000000000000/revoke",
            &[],
        ),
    ];
    for (action, fields) in actions {
        for token in [None, Some("wrong"), Some(""), Some(foreign_token.as_str())] {
            let mut all = fields.to_vec();
            if let Some(token) = token {
                all.push(("csrf_token", token));
            }
            let reply = bob.post_form_raw(action, &all).await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{action} with {token:?}"
            );
            reply.assert_contains("reload the page and try again");
        }
    }
    // Nothing happened: still logged in, cart empty, preferences untouched.
    let session = bob.get("/api/session").await.json();
    assert_eq!(session["user"]["email"], BOB.0);
    assert_eq!(bob.get("/api/cart").await.json()["count"], 0);
    assert_eq!(bob.get("/api/preferences").await.json()["theme"], "light");
    // A form body must be a form.
    let reply = bob
        .send(
            axum::http::Method::POST,
            "/cart/clear",
            Some("application/json"),
            "{}",
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn the_cart_adds_removes_and_clears() {
    let app = TestApp::new();
    let mut browser = app.client();
    browser
        .submit("/cart", "/cart/add", &[("product_id", "2")])
        .await
        .assert_redirect("/cart");
    browser
        .submit("/cart", "/cart/add", &[("product_id", "4")])
        .await;
    let page = browser.get("/cart").await;
    page.assert_contains("Added Leather gloves to your cart.");
    page.assert_contains(
        r#"<span class="badge" id="cart-count" title="items in your cart">2</span>"#,
    );
    page.assert_contains(r#"id="cart-total">€93.00<"#);
    page.assert_contains(r#"id="add-2" disabled>In your cart"#);

    browser
        .submit("/cart", "/cart/add", &[("product_id", "2")])
        .await;
    browser
        .get("/cart")
        .await
        .assert_contains("Umbrella is already in your cart.");

    browser
        .submit("/cart", "/cart/remove", &[("product_id", "2")])
        .await
        .assert_redirect("/cart");
    let page = browser.get("/cart").await;
    page.assert_contains("Removed Umbrella from your cart.");
    assert_eq!(browser.get("/api/cart").await.json()["count"], 1);

    browser.submit("/cart", "/cart/clear", &[]).await;
    let page = browser.get("/cart").await;
    page.assert_contains("Your cart is empty now.");
    page.assert_contains(r#"id="cart-empty""#);

    let unknown = browser
        .submit("/cart", "/cart/add", &[("product_id", "99")])
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    unknown.assert_contains("there is no product 99");
    let garbage = browser
        .submit("/cart", "/cart/add", &[("product_id", "'; DROP TABLE")])
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn registration_takes_three_steps_and_logs_the_new_user_in() {
    let app = TestApp::new();
    let mut browser = app.client();
    // Steps cannot be skipped.
    browser
        .get("/register/step2")
        .await
        .assert_redirect("/register/step1");
    browser
        .get("/register/complete")
        .await
        .assert_redirect("/register/step1");

    let bad = browser
        .submit(
            "/register/step1",
            "/register/step1",
            &[("name", "Carol"), ("email", "not an address")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    bad.assert_contains("is not an e-mail address");
    bad.assert_contains(r#"value="Carol""#);
    let taken = browser
        .submit(
            "/register/step1",
            "/register/step1",
            &[("name", "Bobby"), ("email", "BOB@example.com")],
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);

    browser
        .submit(
            "/register/step1",
            "/register/step1",
            &[("name", " Carol "), ("email", "carol@example.com")],
        )
        .await
        .assert_redirect("/register/step2");
    // The step waits in the session: going back shows it filled in.
    browser
        .get("/register/step1")
        .await
        .assert_contains(r#"value="carol@example.com""#);
    browser
        .get("/register/complete")
        .await
        .assert_redirect("/register/step2");
    browser
        .submit(
            "/register/step2",
            "/register/step2",
            &[("phone", "+82 10 1234 5678"), ("address", "1 Cloak Lane")],
        )
        .await
        .assert_redirect("/register/complete");
    let review = browser.get("/register/complete").await;
    review.assert_contains("1 Cloak Lane");
    review.assert_contains("carol@example.com");

    let short = browser
        .submit(
            "/register/complete",
            "/register/complete",
            &[("password", "short")],
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    short.assert_contains("at least 8 characters");

    let before = browser.cookie.clone();
    browser
        .submit(
            "/register/complete",
            "/register/complete",
            &[("password", "cloakroom!")],
        )
        .await
        .assert_redirect("/dashboard");
    assert_ne!(
        browser.cookie, before,
        "registration logs in with a new ticket"
    );
    let dashboard = browser.get("/dashboard").await;
    dashboard.assert_contains("Welcome, Carol! Your account is ready.");
    dashboard.assert_contains(r#"<dd id="profile-name">Carol</dd>"#);
    dashboard.assert_contains("+82 10 1234 5678");
    dashboard.assert_lacks("registration_step");

    // The steps are gone from the stored session, and the password was never in it.
    let session = browser.get("/api/session").await.json();
    let id = session["user"]["id"].to_string();
    let (_, record) = app.sessions_of(&id).await.pop().unwrap();
    assert!(!record.data.contains_key("registration_step1"));
    assert!(!record.data.contains_key("registration_step2"));
    assert!(!format!("{:?}", record.data).contains("cloakroom!"));

    // The account works for a later login.
    browser.logout().await;
    browser
        .login(("carol@example.com", "cloakroom!"))
        .await
        .assert_redirect("/dashboard");
}

#[tokio::test]
async fn preferences_change_the_theme_and_language() {
    let app = TestApp::new();
    let mut browser = app.client();
    let form = browser.get("/preferences").await;
    form.assert_contains(r#"<option value="ko" selected>"#);
    let home = browser.get("/").await;
    home.assert_contains(r#"data-theme="light""#);
    home.assert_contains("안녕하세요!");

    browser
        .submit(
            "/preferences",
            "/preferences",
            &[("theme", "dark"), ("language", "en")],
        )
        .await
        .assert_redirect("/preferences");
    browser
        .get("/preferences")
        .await
        .assert_contains("Preferences saved.");
    let home = browser.get("/").await;
    home.assert_contains(r#"<html lang="en" data-theme="dark">"#);
    home.assert_contains("Hello!");
    home.assert_contains("<dt>Notifications</dt><dd>off</dd>");
    let prefs = browser.get("/api/preferences").await.json();
    assert_eq!(
        prefs,
        serde_json::json!({"theme": "dark", "language": "en", "notifications": false})
    );

    let bad = browser
        .submit(
            "/preferences",
            "/preferences",
            &[("theme", "neon"), ("language", "en")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn devices_lists_sessions_and_revokes_them() {
    let app = TestApp::new();
    let mut laptop = app.client_named("Laptop Firefox");
    let mut phone = app.client_named("Phone Safari");
    laptop.login(BOB).await;
    phone.login(BOB).await;

    let page = laptop.get("/devices").await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("Laptop Firefox");
    page.assert_contains("Phone Safari");
    page.assert_contains(r#"id="this-device""#);
    page.assert_contains("Log out everywhere else");
    // The laptop is listed first, as this device.
    let laptop_at = page.body.find("Laptop Firefox").unwrap();
    assert!(laptop_at < page.body.find("Phone Safari").unwrap());

    let phone_token = phone.get("/").await.csrf_token().unwrap();

    // Revoke the phone from the laptop.
    let sessions = app.sessions_of(BOB_ID).await;
    let phone_id = sessions
        .iter()
        .find(|(_, r)| r.data["user_agent"] == "Phone Safari")
        .map(|(h, _)| h.to_string())
        .unwrap();
    let action = format!("/devices/{phone_id}/revoke");
    laptop
        .submit("/devices", &action, &[("password", BOB.1)])
        .await
        .assert_redirect("/devices");
    let page = laptop.get("/devices").await;
    page.assert_contains("That device has been logged out.");
    page.assert_lacks("Phone Safari");
    page.assert_contains("You are not logged in anywhere else.");
    // The phone's open page still had a logout button: pressing it just goes home.
    phone
        .post_form_raw("/logout", &[("csrf_token", &phone_token)])
        .await
        .assert_redirect("/");
    assert_eq!(phone.get("/api/session").await.json()["logged_in"], false);
    phone.get("/devices").await.assert_redirect("/login");

    // Someone else's session is not yours to revoke, nor is a made-up one.
    let mut alice = app.client();
    alice.login(ALICE).await;
    let laptop_id = app.sessions_of(BOB_ID).await[0].0.to_string();
    for id in [laptop_id.as_str(), "not-a-hash", &"0".repeat(64)] {
        let reply = alice
            .submit("/", &format!("/devices/{id}/revoke"), &[])
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{id}");
    }
    assert_eq!(app.sessions_of(BOB_ID).await.len(), 1);

    // Log out everywhere else.
    phone.login(BOB).await;
    let mut tablet = app.client_named("Tablet");
    tablet.login(BOB).await;
    laptop
        .submit("/devices", "/devices/revoke-others", &[("password", BOB.1)])
        .await
        .assert_redirect("/devices");
    laptop
        .get("/devices")
        .await
        .assert_contains("Logged out 2 other devices.");
    assert_eq!(app.sessions_of(BOB_ID).await.len(), 1);
    assert_eq!(tablet.get("/api/session").await.json()["logged_in"], false);
    assert_eq!(laptop.get("/api/session").await.json()["logged_in"], true);

    // Revoking this very device is logging out.
    let own = app.sessions_of(BOB_ID).await[0].0.to_string();
    laptop
        .submit("/devices", &format!("/devices/{own}/revoke"), &[])
        .await
        .assert_redirect("/");
    assert!(app.sessions_of(BOB_ID).await.is_empty());
}

#[tokio::test]
async fn pages_are_never_cached_and_errors_are_pages() {
    let app = TestApp::new();
    let mut browser = app.client();
    browser.login(BOB).await;
    for path in ["/", "/dashboard", "/cart", "/devices", "/no-such-page"] {
        let reply = browser.get(path).await;
        assert_eq!(
            reply.header(header::CACHE_CONTROL),
            Some("no-store"),
            "{path}"
        );
    }
    let missing = browser.get("/no-such-page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // (minijinja escapes '/' too.)
    missing.assert_contains("there is nothing at &#x2f;no-such-page");
    assert!(
        missing
            .header(header::CONTENT_TYPE)
            .unwrap()
            .starts_with("text/html")
    );

    let wrong_method = browser
        .send(axum::http::Method::DELETE, "/cart", None, "")
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    wrong_method.assert_contains("Method Not Allowed");
    assert!(wrong_method.header(header::ALLOW).is_some());

    let css = browser.get("/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(
        css.header(header::CONTENT_TYPE),
        Some("text/css; charset=utf-8")
    );
    assert!(css.body.contains("[data-theme=\"dark\"]"));
}

#[tokio::test]
async fn hostile_input_never_breaks_a_page() {
    let app = TestApp::new();
    let mut browser = app.client();
    let reply = browser
        .submit(
            "/register/step1",
            "/register/step1",
            &[
                ("name", "<script>alert(1)</script>"),
                ("email", "x@example.com"),
            ],
        )
        .await;
    reply.assert_redirect("/register/step2");
    let page = browser.get("/register/step1").await;
    page.assert_lacks("<script>alert(1)</script>");
    page.assert_contains("&lt;script&gt;");
    for cookie in [
        "id=' OR 1=1 --",
        "id=../../etc/passwd",
        &format!("id={}", "A".repeat(8000)),
    ] {
        let mut client: Client = app.client();
        client.cookie = Some(cookie.to_owned());
        let reply = client.get("/dashboard").await;
        reply.assert_redirect("/login");
    }
    let huge = "x".repeat(3 * 1024 * 1024);
    let reply = browser.post_form_raw("/login", &[("email", &huge)]).await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
}

#[tokio::test]
async fn with_sealed_cookie_sessions_devices_and_counts_say_why_they_are_missing() {
    let backend = cloakroom::stores::open("cookie://").await.unwrap();
    let mut browser = Client::new(support::demo_router_for(backend));
    browser.login(ALICE).await.assert_redirect("/dashboard");
    browser
        .submit("/cart", "/cart/add", &[("product_id", "1")])
        .await;
    assert_eq!(browser.get("/api/cart").await.json()["count"], 1);

    let devices = browser.get("/devices").await;
    assert_eq!(devices.status, StatusCode::OK);
    devices.assert_contains(r#"id="unsupported""#);
    devices.assert_contains("cannot list or log out devices");
    let admin = browser.get("/admin").await;
    assert_eq!(admin.status, StatusCode::OK);
    admin.assert_contains("This store cannot count sessions");
    admin.assert_contains("bob@example.com");
    let api = browser.get("/api/devices").await;
    assert_eq!(api.status, StatusCode::NOT_IMPLEMENTED);
    assert!(
        api.json()["error"]
            .as_str()
            .unwrap()
            .contains("sealed in each browser's cookie")
    );

    browser.logout().await.assert_redirect("/");
    assert_eq!(browser.get("/api/session").await.json()["logged_in"], false);
}
