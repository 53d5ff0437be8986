//! The JSON API, through the router: bodies, statuses, cookies and stored state.

mod support;

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use support::{ALICE, BOB, BOB_ID, TestApp};

#[tokio::test]
async fn session_check_and_login() {
    let app = TestApp::new();
    let mut client = app.client();
    assert_eq!(
        client.api_get("/api/session").await.json(),
        json!({"logged_in": false, "user": null})
    );
    let reply = client.api_login(BOB).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({
            "message": "Login successful",
            "user": {"id": 2, "name": "Bob", "email": "bob@example.com", "is_admin": false}
        })
    );
    assert!(reply.set_cookie().is_some());
    let session = client.api_get("/api/session").await.json();
    assert_eq!(session["logged_in"], true);
    assert_eq!(session["user"]["email"], "bob@example.com");
    assert!(session["user"].get("password_hash").is_none());
}

#[tokio::test]
async fn login_failures_are_json_errors() {
    let app = TestApp::new();
    let mut client = app.client();
    let wrong = client.api_login(("bob@example.com", "nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json(), json!({"error": "invalid e-mail or password"}));
    let unknown = client.api_login(("eve@example.com", "builder")).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

    let cases: [(Option<&str>, &str, StatusCode); 7] = [
        (
            Some("application/json"),
            "{bad json",
            StatusCode::BAD_REQUEST,
        ),
        (Some("application/json"), "", StatusCode::BAD_REQUEST),
        (
            Some("application/json"),
            r#"{"email": "bob@example.com"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("application/json"),
            r#"{"email": 1, "password": []}"#,
            StatusCode::BAD_REQUEST,
        ),
        (Some("application/json"), "[]", StatusCode::BAD_REQUEST),
        (
            None,
            r#"{"email": "bob@example.com", "password": "builder"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Some("text/plain"),
            r#"{"email": "bob@example.com", "password": "builder"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (content_type, body, status) in cases {
        let reply = client
            .send(Method::POST, "/api/login", content_type, body)
            .await;
        assert_eq!(reply.status, status, "{content_type:?} {body}");
        let error = reply.json();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{error}"
        );
        assert_eq!(reply.header(header::CONTENT_TYPE), Some("application/json"));
    }
    assert!(app.sessions_of(BOB_ID).await.is_empty());
    // application/json with a charset is still JSON.
    let reply = client
        .send(
            Method::POST,
            "/api/login",
            Some("application/json; charset=utf-8"),
            json!({"email": BOB.0, "password": BOB.1}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn api_login_cycles_the_ticket_and_logout_kills_it() {
    let app = TestApp::new();
    let mut client = app.client();
    client
        .api(Method::POST, "/api/cart", Some(json!({"product_id": 3})))
        .await;
    let before = client.cookie.clone().unwrap();
    client.api_login(BOB).await;
    let after = client.cookie.clone().unwrap();
    assert_ne!(before, after);
    assert_eq!(
        client.api_get("/api/cart").await.json()["count"],
        1,
        "cart kept"
    );

    let mut old = app.client();
    old.cookie = Some(before);
    assert_eq!(old.api_get("/api/session").await.json()["logged_in"], false);

    let reply = client.api(Method::POST, "/api/logout", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({"message": "Logged out"}));
    assert!(app.sessions_of(BOB_ID).await.is_empty());
    let mut replay = app.client();
    replay.cookie = Some(after);
    assert_eq!(
        replay.api_get("/api/session").await.json()["logged_in"],
        false
    );
    assert_eq!(replay.api_get("/api/cart").await.json()["count"], 0);
    // The new anonymous session carries the goodbye.
    assert_eq!(
        client.api_get("/api/flashes").await.json(),
        json!([{"category": "info", "message": "You have been logged out."}])
    );
    // Logging out without a session is fine too.
    let reply = app.client().api(Method::POST, "/api/logout", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.set_cookie(), None);
}

#[tokio::test]
async fn flashes_are_consumed_by_the_read() {
    let app = TestApp::new();
    let mut client = app.client();
    client.api_login(BOB).await;
    assert_eq!(
        client.api_get("/api/flashes").await.json(),
        json!([{"category": "success", "message": "Welcome back, Bob!"}])
    );
    assert_eq!(client.api_get("/api/flashes").await.json(), json!([]));
}

#[tokio::test]
async fn the_cart() {
    let app = TestApp::new();
    let mut client = app.client();
    assert_eq!(
        client.api_get("/api/cart").await.json(),
        json!({"cart": [], "count": 0, "total_cents": 0})
    );
    assert_eq!(app.live_sessions().await, 0);

    let reply = client
        .api(Method::POST, "/api/cart", Some(json!({"product_id": 2})))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["count"], 1);
    assert_eq!(body["cart"][0]["name"], "Umbrella");
    assert_eq!(body["total_cents"], 2400);
    // Adding twice keeps one.
    client
        .api(Method::POST, "/api/cart", Some(json!({"product_id": 2})))
        .await;
    let body = client
        .api(Method::POST, "/api/cart", Some(json!({"product_id": 6})))
        .await
        .json();
    assert_eq!(body["count"], 2);
    let ids: Vec<&Value> = body["cart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["id"])
        .collect();
    assert_eq!(ids, [&json!(2), &json!(6)]);

    let errors = [
        (
            Method::POST,
            "/api/cart",
            Some(json!({"product_id": 99})),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/cart",
            Some(json!({"product_id": "2"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/cart",
            Some(json!({"product_id": -1})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/cart",
            Some(json!({})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            "/api/cart/abc",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (Method::DELETE, "/api/cart/99", None, StatusCode::NOT_FOUND),
    ];
    for (method, path, body, status) in errors {
        let reply = client.api(method.clone(), path, body.clone()).await;
        assert_eq!(reply.status, status, "{method} {path} {body:?}");
        assert!(reply.json()["error"].is_string());
    }

    let body = client.api(Method::DELETE, "/api/cart/2", None).await.json();
    assert_eq!(body["count"], 1);
    // Removing what is not there is not an error.
    let body = client.api(Method::DELETE, "/api/cart/2", None).await.json();
    assert_eq!(body["count"], 1);

    let without_type = client.send(Method::DELETE, "/api/cart", None, "").await;
    assert_eq!(without_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body = client.api(Method::DELETE, "/api/cart", None).await.json();
    assert_eq!(
        body,
        json!({"cart": [], "count": 0, "total_cents": 0, "message": "Cart cleared"})
    );
}

#[tokio::test]
async fn preferences_merge_the_fields_given() {
    let app = TestApp::new();
    let mut client = app.client();
    assert_eq!(
        client.api_get("/api/preferences").await.json(),
        json!({"theme": "light", "language": "ko", "notifications": true})
    );
    let reply = client
        .api(
            Method::PUT,
            "/api/preferences",
            Some(json!({"theme": "dark"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"theme": "dark", "language": "ko", "notifications": true})
    );
    let reply = client
        .api(
            Method::PUT,
            "/api/preferences",
            Some(json!({"language": "ja", "notifications": false})),
        )
        .await;
    assert_eq!(
        reply.json(),
        json!({"theme": "dark", "language": "ja", "notifications": false})
    );
    for bad in [
        json!({"theme": "neon"}),
        json!({"language": "klingon"}),
        json!({"notifications": "yes"}),
        json!({"colour": "red"}),
        json!([1, 2]),
    ] {
        let reply = client
            .api(Method::PUT, "/api/preferences", Some(bad.clone()))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let reply = client
        .send(
            Method::PUT,
            "/api/preferences",
            Some("application/x-www-form-urlencoded"),
            "theme=light",
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        client.api_get("/api/preferences").await.json()["theme"],
        "dark"
    );
}

#[tokio::test]
async fn registration_in_three_calls() {
    let app = TestApp::new();
    let mut client = app.client();
    let early = client
        .api(
            Method::POST,
            "/api/register/step2",
            Some(json!({"phone": "010 1234 5678", "address": "Seoul"})),
        )
        .await;
    assert_eq!(early.status, StatusCode::BAD_REQUEST);
    let early = client
        .api(
            Method::POST,
            "/api/register/complete",
            Some(json!({"password": "long enough"})),
        )
        .await;
    assert_eq!(early.status, StatusCode::BAD_REQUEST);

    let bad = client
        .api(
            Method::POST,
            "/api/register/step1",
            Some(json!({"name": "Dan", "email": "dan"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let taken = client
        .api(
            Method::POST,
            "/api/register/step1",
            Some(json!({"name": "Al", "email": "alice@example.com"})),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);

    let step1 = client
        .api(
            Method::POST,
            "/api/register/step1",
            Some(json!({"name": "Dan", "email": "dan@example.com"})),
        )
        .await;
    assert_eq!(step1.status, StatusCode::OK);
    assert_eq!(step1.json(), json!({"message": "Step 1 saved"}));
    let step2 = client
        .api(
            Method::POST,
            "/api/register/step2",
            Some(json!({"phone": "010 1234 5678", "address": "Seoul"})),
        )
        .await;
    assert_eq!(step2.json(), json!({"message": "Step 2 saved"}));

    let missing = client
        .api(Method::POST, "/api/register/complete", None)
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);

    let before = client.cookie.clone();
    let done = client
        .api(
            Method::POST,
            "/api/register/complete",
            Some(json!({"password": "long enough"})),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED);
    let body = done.json();
    let id = body["id"].as_u64().unwrap();
    assert_eq!(body["user"]["email"], "dan@example.com");
    assert_ne!(client.cookie, before);

    let session = client.api_get("/api/session").await.json();
    assert_eq!(session["user"]["id"], id);
    let (_, record) = app.sessions_of(&id.to_string()).await.pop().unwrap();
    assert!(!record.data.contains_key("registration_step1"));
    assert!(!record.data.contains_key("registration_step2"));

    // The steps are used up.
    let again = client
        .api(
            Method::POST,
            "/api/register/complete",
            Some(json!({"password": "long enough"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    // And the e-mail is taken now.
    let mut other = app.client();
    let dup = other
        .api(
            Method::POST,
            "/api/register/step1",
            Some(json!({"name": "Dan", "email": "DAN@example.com"})),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn devices_list_and_revoke() {
    let app = TestApp::new();
    let mut anonymous = app.client();
    for (method, path) in [
        (Method::GET, "/api/devices"),
        (Method::POST, "/api/devices/revoke-others"),
        (Method::DELETE, "/api/devices/00"),
    ] {
        let reply = anonymous.api(method, path, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(reply.json(), json!({"error": "please log in first"}));
    }

    let mut laptop = app.client_named("Laptop");
    let mut phone = app.client_named("Phone");
    laptop.api_login(BOB).await;
    phone.api_login(BOB).await;
    let list = laptop.api_get("/api/devices").await.json();
    let devices = list["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0]["current"], true);
    assert_eq!(devices[0]["user_agent"], "Laptop");
    assert_eq!(devices[1]["current"], false);
    assert_eq!(devices[1]["user_agent"], "Phone");
    for field in ["created_at", "last_seen", "expires_at"] {
        let text = devices[0][field].as_str().unwrap();
        assert!(text.ends_with('Z') && text.contains('T'), "{field}: {text}");
    }
    let phone_id = devices[1]["id"].as_str().unwrap().to_owned();

    // Alice cannot revoke Bob's phone.
    let mut alice = app.client();
    alice.api_login(ALICE).await;
    let reply = alice
        .api(Method::DELETE, &format!("/api/devices/{phone_id}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        phone.api_get("/api/session").await.json()["logged_in"],
        true
    );

    let password = Some(json!({"password": BOB.1}));
    let reply = laptop
        .api(
            Method::DELETE,
            &format!("/api/devices/{phone_id}"),
            password.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["current"], false);
    assert_eq!(
        phone.api_get("/api/session").await.json()["logged_in"],
        false
    );
    let reply = laptop
        .api(
            Method::DELETE,
            &format!("/api/devices/{phone_id}"),
            password.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "already gone");

    phone.api_login(BOB).await;
    let reply = laptop
        .api(Method::POST, "/api/devices/revoke-others", password)
        .await;
    assert_eq!(reply.json(), json!({"revoked": 1}));
    assert_eq!(
        laptop.api_get("/api/session").await.json()["logged_in"],
        true
    );
    assert_eq!(
        phone.api_get("/api/session").await.json()["logged_in"],
        false
    );

    let own = laptop.api_get("/api/devices").await.json()["devices"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = laptop
        .api(Method::DELETE, &format!("/api/devices/{own}"), None)
        .await;
    assert_eq!(reply.json()["current"], true);
    assert_eq!(
        laptop.api_get("/api/session").await.json()["logged_in"],
        false
    );
    assert!(app.sessions_of(BOB_ID).await.is_empty());
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = TestApp::new();
    let mut client = app.client();
    let missing = client.api_get("/api/nothing-here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json(),
        json!({"error": "there is nothing at /api/nothing-here"})
    );
    let wrong = client
        .api(Method::PATCH, "/api/cart", Some(json!({})))
        .await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.json(), json!({"error": "method not allowed"}));
    assert!(wrong.header(header::ALLOW).is_some());
    for path in ["/api/session", "/api/cart"] {
        let reply = client.api_get(path).await;
        assert_eq!(reply.header(header::CACHE_CONTROL), Some("no-store"));
    }
}
