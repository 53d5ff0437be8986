//! Regressions from the black-box security probe of the demo (issue #18): each test is one
//! finding, driven through the router as a client would.

mod support;

use axum::http::StatusCode;
use support::{BOB, TestApp};

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
