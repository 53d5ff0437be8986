//! The built `cloakroom-demo` binary as a child process, and a small HTTP client to talk to it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Debug builds hash the demo users' passwords slowly; a loaded CI machine is slower still.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running demo process, killed when dropped.
pub struct Demo {
    process: Process,
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// What it printed on start.
    pub banner: Vec<String>,
    stderr: PathBuf,
}

/// A demo process that has not said it is ready yet.
pub struct Starting {
    process: Process,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl Demo {
    /// Starts the binary in `dir` with `args` (listening on a free port unless they say
    /// otherwise); does not wait.
    pub fn spawn(dir: &Path, args: &[&str]) -> Starting {
        Self::spawn_with_env(dir, args, &[])
    }

    /// [`Demo::spawn`] with environment variables.
    pub fn spawn_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Starting {
        let stderr = dir.join(format!("stderr-{}.log", unique()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_cloakroom-demo"))
            .args(args)
            .current_dir(dir)
            .env("CLOAKROOM_BIND", "127.0.0.1:0")
            .env_remove("CLOAKROOM_STORE")
            .env_remove("CLOAKROOM_SECRET")
            .env_remove("CLOAKROOM_INSECURE_COOKIES")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("the demo binary starts");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Starting {
            process: Process(child),
            lines,
            stderr,
        }
    }

    /// Starts the binary and waits until it listens.
    pub fn start(dir: &Path, args: &[&str]) -> Demo {
        Self::spawn(dir, args).ready()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Starting {
    /// Waits for the start-up banner (the URL line and the three after it).
    pub fn ready(mut self) -> Demo {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut banner = Vec::new();
        while banner.len() < 4 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => banner.push(line),
                Err(_) => {
                    let _ = self.process.0.kill();
                    let status = self.process.0.wait().ok();
                    panic!(
                        "the demo did not start ({status:?}); it printed {banner:?} and on stderr:\n{}",
                        std::fs::read_to_string(&self.stderr).unwrap_or_default()
                    );
                }
            }
        }
        let base = banner[0]
            .strip_prefix("cloakroom demo running at ")
            .unwrap_or_else(|| panic!("unexpected first line {:?}", banner[0]))
            .to_owned();
        Demo {
            process: self.process,
            base,
            banner,
            stderr: self.stderr,
        }
    }

    /// Waits for the process to exit by itself; returns its status, stdout and stderr.
    pub fn exit(mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + START_TIMEOUT;
        let status = loop {
            if let Some(status) = self.process.0.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                panic!("the demo did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout: Vec<String> = self.lines.try_iter().collect();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        (status, stdout.join("\n"), stderr)
    }
}

/// A random suffix for names that parallel tests must not share.
pub fn unique() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One response.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// An HTTP client with one session cookie, like one browser (talking to any instance).
pub struct Browser {
    client: HyperClient<HttpConnector, Full<Bytes>>,
    pub cookie: Option<String>,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            client: HyperClient::builder(TokioExecutor::new()).build_http(),
            cookie: None,
        }
    }

    pub async fn send(&mut self, method: Method, url: &str, json: Option<Value>) -> Response {
        let mut request = Request::builder().method(method.clone()).uri(url);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if method != Method::GET {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = json.map(|j| j.to_string()).unwrap_or_default();
        let response = self
            .client
            .request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        if let Some(set) = parts.headers.get(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap().trim();
            self.cookie = (!pair.ends_with('=')).then(|| pair.to_owned());
        }
        Response {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Response {
        self.send(Method::GET, url, None).await
    }

    pub async fn post(&mut self, url: &str, json: Value) -> Response {
        self.send(Method::POST, url, Some(json)).await
    }

    pub async fn delete(&mut self, url: &str) -> Response {
        self.send(Method::DELETE, url, None).await
    }
}
