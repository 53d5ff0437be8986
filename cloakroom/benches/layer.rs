//! Per-request cost of the memory store through the layer: a handler that reads and writes one
//! key, against the same router with no session layer.
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
    let with_sessions = Router::new().route("/", get(counter)).layer(layer);
    let without = Router::new().route("/", get(plain));

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

    let mut group = c.benchmark_group("read+write one key");
    group.bench_function("no session layer", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = Request::get("/").body(Body::empty()).unwrap();
            black_box(without.clone().oneshot(request).await.unwrap())
        })
    });
    group.bench_function("cloakroom memory store", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = Request::get("/")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap();
            black_box(with_sessions.clone().oneshot(request).await.unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
