//! What a login carries over, and what repeated or doubled requests leave behind: nothing of a
//! previous user, one copy of a repeated message, and a browser that stays logged in after a
//! double-submitted login.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::{ALICE, BOB, BOB_ID, TestApp};

#[tokio::test]
async fn the_next_user_of_a_browser_sees_nothing_of_the_previous_one() {
    let app = TestApp::new();
    let mut browser = app.client();
    // Alice logs in, fills her cart, and walks away without logging out.
    assert_eq!(browser.api_login(ALICE).await.status, StatusCode::OK);
    let added = browser
        .api(Method::POST, "/api/cart", Some(json!({"product_id": 2})))
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);

    // Bob logs in on the same browser, over Alice's cookie.
    assert_eq!(browser.api_login(BOB).await.status, StatusCode::OK);
    let cart = browser.api_get("/api/cart").await.json();
    assert_eq!(cart["count"], 0, "Bob sees Alice's cart: {cart}");
    let sessions = app.sessions_of(BOB_ID).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].1.data.get("cart"), None);
}

#[tokio::test]
async fn registration_steps_typed_by_someone_else_do_not_follow_a_login() {
    let app = TestApp::new();
    let mut browser = app.client();
    let step1 = browser
        .api(
            Method::POST,
            "/api/register/step1",
            Some(json!({"name": "Mallory", "email": "mallory@example.com"})),
        )
        .await;
    assert_eq!(step1.status, StatusCode::OK, "{}", step1.body);
    let step2 = browser
        .api(
            Method::POST,
            "/api/register/step2",
            Some(json!({"phone": "555-0100", "address": "1 Planted Road"})),
        )
        .await;
    assert_eq!(step2.status, StatusCode::OK, "{}", step2.body);

    assert_eq!(browser.api_login(BOB).await.status, StatusCode::OK);
    let sessions = app.sessions_of(BOB_ID).await;
    assert_eq!(sessions.len(), 1);
    let stored = serde_json::to_string(&sessions[0].1.data).unwrap();
    assert!(
        !stored.contains("Mallory") && !stored.contains("Planted"),
        "the half-filled form followed Bob's login: {stored}"
    );
}

#[tokio::test]
async fn an_anonymous_cart_follows_the_login() {
    let app = TestApp::new();
    let mut browser = app.client();
    let added = browser
        .api(Method::POST, "/api/cart", Some(json!({"product_id": 3})))
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert_eq!(browser.api_login(BOB).await.status, StatusCode::OK);
    let cart = browser.api_get("/api/cart").await.json();
    assert_eq!(cart["count"], 1, "{cart}");
}

#[tokio::test]
async fn a_protected_page_visited_again_and_again_flashes_once() {
    let app = TestApp::new();
    let mut visitor = app.client();
    for _ in 0..5 {
        visitor.get("/dashboard").await.assert_redirect("/login");
    }
    let flashes = visitor.api_get("/api/flashes").await.json();
    assert_eq!(
        flashes,
        json!([{"category": "info", "message": "Please log in first."}])
    );
}

#[tokio::test]
async fn a_double_submitted_login_leaves_the_browser_logged_in() {
    let app = TestApp::new();
    let mut browser = app.client();
    let added = browser
        .api(Method::POST, "/api/cart", Some(json!({"product_id": 1})))
        .await;
    assert_eq!(added.status, StatusCode::OK);

    // Eight logins leave the browser at once, all carrying the pre-login ticket.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let mut tab = app.client();
            tab.cookie = browser.cookie.clone();
            tokio::spawn(async move { tab.api_login(BOB).await })
        })
        .collect();
    for racer in racers {
        let reply = racer.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        // The browser applies each answer's cookie as it arrives.
        if let Some(set) = reply.set_cookie() {
            assert!(
                !set.contains("Max-Age=0"),
                "a losing login logged the browser out: {set}"
            );
            browser.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
    }
    let session = browser.api_get("/api/session").await.json();
    assert_eq!(session["logged_in"], true, "{session}");
}
