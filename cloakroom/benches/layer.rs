//! Per-request cost of the memory store through the layer: a handler that reads and writes one
//! key, and one that never touches the session, against the same router with no session layer.
//!
//! ```sh
//! cargo bench -p cloakroom --bench layer
//! ```

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use cloakroom::{Key, MemoryStore, Session, SessionLayer};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, header};
use tower::ServiceExt;

async fn counter(session: Session) -> String {
    let n: u64 = session.get_or("n", 0).unwrap_or(0) + 1;
    session.insert("n", n).unwrap();
    n.to_string()
}

async fn plain() -> &'static str {
    "1"
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let layer = SessionLayer::builder(MemoryStore::default())
        .key(Key::from_secret(&[7; 32]).unwrap())
        .build()
        .unwrap();
    let with_sessions = Router::new()
        .route("/", get(counter))
        .route("/untouched", get(plain))
        .layer(layer);
    // The same routes, so that routing costs the same.
    let without = Router::new()
        .route("/", get(plain))
        .route("/untouched", get(plain));
    let noop = without
        .clone()
        .layer(tower::util::MapRequestLayer::new(|r: Request<Body>| r));

    // One visitor holding a session with a cookie.
    let cookie = runtime.block_on(async {
        let response = with_sessions
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    });

    // Every request carries the cookie, so that building and routing it costs the same.
    let groups = [
        (
            "read+write one key",
            "/",
            [
                ("no session layer", &without),
                ("cloakroom memory store", &with_sessions),
            ]
            .to_vec(),
        ),
        (
            "untouched session",
            "/untouched",
            [
                ("no session layer", &without),
                ("a layer that does nothing", &noop),
                ("cloakroom memory store", &with_sessions),
            ]
            .to_vec(),
        ),
    ];
    for (group_name, uri, routers) in groups {
        let mut group = c.benchmark_group(group_name);
        for (name, router) in routers {
            group.bench_function(name, |b| {
                b.to_async(&runtime).iter(|| async {
                    let request = Request::get(uri)
                        .header(header::COOKIE, &cookie)
                        .body(Body::empty())
                        .unwrap();
                    black_box(router.clone().oneshot(request).await.unwrap())
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
