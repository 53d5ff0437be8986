//! The load generator: N virtual users, each with its own cookie jar, sending requests to a
//! router in-process (`oneshot`) or to a real server on 127.0.0.1, for a bounded time and a
//! bounded number of requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;

use crate::apps::Subject;
use crate::counting::Counter;
use crate::model::{Harness, Measured, Outcome, Workload};

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How hard and how long to push one cell.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub users: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// A hard cap on requests per cell, whatever the time.
    pub max_requests: u64,
    /// Each cell is measured in this many rounds, the libraries taking turns, so that a burst
    /// of noise on a shared machine lands on all of them instead of deciding one cell.
    pub rounds: u32,
}

impl Plan {
    /// One round's share of the plan: a short warm-up of its own, and a share of the time.
    pub fn round(&self) -> Plan {
        let rounds = self.rounds.max(1);
        Plan {
            warmup: (self.warmup / rounds).max(Duration::from_millis(100)),
            measure: self.measure / rounds,
            max_requests: self.max_requests / u64::from(rounds),
            rounds: 1,
            ..*self
        }
    }
}

/// Where requests go.
#[derive(Clone)]
pub enum Target {
    InProcess(Router),
    Http {
        client: Client<HttpConnector, Empty<Bytes>>,
        base: String,
    },
}

/// What a response told the client.
pub struct Reply {
    pub status: StatusCode,
    pub set_cookies: Vec<String>,
    pub body: Bytes,
}

/// Reads what the harnesses look at out of a response, whichever body type it has.
async fn reply<B>(response: http::Response<B>) -> Result<Reply, String>
where
    B: axum::body::HttpBody,
    B::Error: std::fmt::Display,
{
    let status = response.status();
    let set_cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        set_cookies,
        body,
    })
}

impl Target {
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Result<Reply, String> {
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, self.send(path, cookie)).await;
        reply.unwrap_or_else(|_| Err(format!("no response within {REQUEST_TIMEOUT:?}")))
    }

    async fn send(&self, path: &str, cookie: Option<&str>) -> Result<Reply, String> {
        match self {
            Target::InProcess(router) => {
                let mut request = Request::get(path);
                if let Some(cookie) = cookie {
                    request = request.header(header::COOKIE, cookie);
                }
                let request = request.body(Body::empty()).map_err(|e| e.to_string())?;
                let response = router
                    .clone()
                    .oneshot(request)
                    .await
                    .map_err(|e| e.to_string())?;
                reply(response).await
            }
            Target::Http { client, base } => {
                let mut request = Request::get(format!("{base}{path}"));
                if let Some(cookie) = cookie {
                    request = request.header(header::COOKIE, cookie);
                }
                let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
                let response = client.request(request).await.map_err(|e| e.to_string())?;
                reply(response).await
            }
        }
    }
}

/// A virtual user's cookies, kept as a browser would (name → value; removals honoured).
#[derive(Clone, Debug, Default)]
pub struct Jar {
    cookies: Vec<(String, String)>,
    header: Option<String>,
}

impl Jar {
    pub fn absorb(&mut self, set_cookies: &[String]) {
        if set_cookies.is_empty() {
            return;
        }
        for line in set_cookies {
            let mut parts = line.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let removed = value.is_empty()
                || parts.any(|attr| {
                    let attr = attr.trim().to_ascii_lowercase();
                    attr == "max-age=0" || attr.starts_with("expires=thu, 01 jan 1970")
                });
            self.cookies.retain(|(n, _)| n != name);
            if !removed {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        self.header = (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        });
    }

    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }
}

/// A virtual user that has logged in: its jar holds a session cookie.
pub async fn logged_in(target: &Target) -> Result<Jar, String> {
    let reply = target.get("/login", None).await?;
    if !reply.status.is_success() {
        return Err(format!("/login answered {}", reply.status));
    }
    let mut jar = Jar::default();
    jar.absorb(&reply.set_cookies);
    if jar.header().is_none() {
        return Err("/login set no cookie".to_owned());
    }
    Ok(jar)
}

/// A server for `router` on 127.0.0.1, and a keep-alive client for it.
pub struct Server {
    pub target: Target,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(router: Router) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        Ok(Self {
            target: Target::Http {
                client,
                base: format!("http://{address}"),
            },
            stop: Some(stop),
            task,
        })
    }

    /// Stops the server; connections still open after a second are cut.
    pub async fn stop(mut self) {
        // Dropping the client closes its idle keep-alive connections.
        self.target = Target::InProcess(Router::new());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(1), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Counters read at the start and the end of the measured window (none by default).
#[derive(Clone, Default)]
pub struct Meters {
    pub ops: Option<Counter>,
    pub redis: Option<redis::aio::MultiplexedConnection>,
}

/// The meters' readings at one moment.
struct Snapshot {
    ops: Option<u64>,
    nanos: Option<u64>,
    redis: Option<u64>,
}

impl Meters {
    async fn read(&mut self) -> Snapshot {
        let redis = match &mut self.redis {
            Some(conn) => crate::serverstats::redis_commands(conn).await,
            None => None,
        };
        Snapshot {
            ops: self.ops.as_ref().map(Counter::get),
            nanos: self.ops.as_ref().map(Counter::nanos),
            redis,
        }
    }
}

/// Measures `workload` on `subject` through `harness`.
pub async fn measure(
    subject: &Subject,
    workload: Workload,
    harness: Harness,
    plan: Plan,
    meters: Meters,
) -> Outcome {
    let router = subject.router_for(workload);
    match harness {
        Harness::InProcess => drive(Target::InProcess(router), workload, plan, meters).await,
        Harness::Http => {
            let server = Server::start(router).await?;
            let outcome = drive(server.target.clone(), workload, plan, meters).await;
            server.stop().await;
            outcome
        }
    }
}

/// Whether the measured window is open.
#[derive(Default)]
struct Window {
    open: AtomicBool,
}

struct UserResult {
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
    /// Every request sent, warm-up included, and their summed latency.
    sent: u64,
    sent_nanos: u64,
    first_error: Option<String>,
}

/// Runs the virtual users against `target`.
pub async fn drive(target: Target, workload: Workload, plan: Plan, mut meters: Meters) -> Outcome {
    let mut jars = Vec::with_capacity(plan.users);
    for _ in 0..plan.users {
        jars.push(if workload.has_cookie() {
            logged_in(&target).await?
        } else {
            Jar::default()
        });
    }
    // Store operations are counted over every request the users send (warm-up included), so
    // that no request is half in and half out of the count.
    let before = meters.read().await;
    let window = Arc::new(Window::default());
    let end = Instant::now() + plan.warmup + plan.measure;
    let budget = Arc::new(AtomicU64::new(plan.max_requests));
    let users: Vec<_> = jars
        .into_iter()
        .map(|jar| {
            tokio::spawn(user(
                target.clone(),
                workload,
                jar,
                Arc::clone(&window),
                end,
                Arc::clone(&budget),
            ))
        })
        .collect();
    tokio::time::sleep(plan.warmup).await;
    let opened = Instant::now();
    window.open.store(true, Ordering::SeqCst);
    let mut histogram = new_histogram();
    let (mut requests, mut errors, mut first_error) = (0, 0, None);
    let (mut sent, mut sent_nanos) = (0u64, 0u64);
    for user in users {
        let result = user
            .await
            .map_err(|e| format!("a virtual user failed: {e}"))?;
        histogram
            .add(&result.histogram)
            .map_err(|e| format!("{e:?}"))?;
        requests += result.requests;
        errors += result.errors;
        sent += result.sent;
        sent_nanos = sent_nanos.saturating_add(result.sent_nanos);
        first_error = first_error.or(result.first_error);
    }
    let seconds = opened.elapsed().as_secs_f64();
    let after = meters.read().await;
    if requests == 0 {
        return Err(first_error.unwrap_or_else(|| "no request completed".to_owned()));
    }
    if errors * 100 > requests + errors {
        return Err(format!(
            "{errors} of {} requests failed, e.g. {}",
            requests + errors,
            first_error.unwrap_or_default()
        ));
    }
    let per_request =
        |b: Option<u64>, a: Option<u64>| Some(a?.saturating_sub(b?) as f64 / sent.max(1) as f64);
    Ok(Measured {
        p50_us: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_us: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram,
        sent,
        requests,
        errors,
        seconds,
        mean_us: sent_nanos as f64 / sent.max(1) as f64 / 1000.0,
        ops_per_request: per_request(before.ops, after.ops),
        store_us_per_request: per_request(before.nanos, after.nanos).map(|ns| ns / 1000.0),
        server_ops_per_request: per_request(before.redis, after.redis),
    })
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

async fn user(
    target: Target,
    workload: Workload,
    mut jar: Jar,
    window: Arc<Window>,
    end: Instant,
    budget: Arc<AtomicU64>,
) -> UserResult {
    let mut result = UserResult {
        histogram: new_histogram(),
        requests: 0,
        errors: 0,
        sent: 0,
        sent_nanos: 0,
        first_error: None,
    };
    let path = workload.path();
    loop {
        let started = Instant::now();
        if started >= end
            || budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                .is_err()
        {
            break;
        }
        let reply = target.get(path, jar.header()).await;
        result.sent += 1;
        let elapsed = started.elapsed();
        result.sent_nanos = result
            .sent_nanos
            .saturating_add(elapsed.as_nanos().min(u128::from(u64::MAX)) as u64);
        let counted = window.open.load(Ordering::Relaxed);
        if !counted {
            // In-process requests on the memory store never wait, so a user would run without
            // ever letting the task that opens the window in; during warm-up, let it.
            tokio::task::yield_now().await;
        }
        match reply {
            Ok(reply) if reply.status.is_success() => {
                if workload.has_cookie() {
                    jar.absorb(&reply.set_cookies);
                }
                if counted {
                    result.requests += 1;
                    result
                        .histogram
                        .saturating_record(elapsed.as_nanos().min(u64::MAX as u128) as u64);
                }
            }
            Ok(reply) => {
                if counted {
                    result.errors += 1;
                }
                result
                    .first_error
                    .get_or_insert_with(|| format!("{path} answered {}", reply.status));
            }
            Err(e) => {
                if counted {
                    result.errors += 1;
                }
                result.first_error.get_or_insert(e);
                // A store that is down answers fast; don't spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jar_keeps_and_removes_cookies() {
        let mut jar = Jar::default();
        jar.absorb(&["id=abc; Path=/; HttpOnly".to_owned()]);
        jar.absorb(&["other=1".to_owned()]);
        assert_eq!(jar.header(), Some("id=abc; other=1"));
        jar.absorb(&["id=; Max-Age=0; Path=/".to_owned()]);
        assert_eq!(jar.header(), Some("other=1"));
        jar.absorb(&["other=2; Max-Age=0".to_owned()]);
        assert_eq!(jar.header(), None);
    }
}
