//! The demo in a real browser: Debian's headless Chromium, driven through chromedriver.
//!
//! Log in as Bob, add two products (flash and cart count), open /devices, log out, press Back
//! and reload: still logged out. On failure a screenshot goes to `target/`.
//!
//! Needs `chromium` and `chromium-driver` (`apt-get install chromium chromium-driver`); without
//! them the test is skipped, and counted at the end of the run, unless
//! CLOAKROOM_REQUIRE_SERVICES=1.
//! CLOAKROOM_DEMO_SCREENSHOT=path/to/file.png also saves the home page after login there.

mod support;

use std::error::Error;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use support::{BOB, demo_router};

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(15);

/// Fails the flow (so that a screenshot is taken) unless `condition` holds.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+).into());
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_shop_see_devices_log_out_and_stay_out() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        support::skip::skip_for(
            "the browser test",
            "needs chromium and chromedriver (apt-get install chromium chromium-driver)",
        );
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let base = serve_demo(data.path()).await;
    let driver = ChromeDriver::start().expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let browser = connect(&driver, profile.path())
        .await
        .expect("Chromium starts");

    let outcome = flow(&browser, &base).await;
    if let Err(error) = &outcome {
        let shot = target_dir().join("browser-failure.png");
        match browser.screenshot().await {
            Ok(png) if std::fs::write(&shot, &png).is_ok() => {
                eprintln!("screenshot of the failure: {}", shot.display());
            }
            _ => eprintln!("no screenshot could be taken"),
        }
        eprintln!("page at failure: {:?}", browser.current_url().await.ok());
        let _ = browser.close().await;
        panic!("browser flow failed: {error}");
    }
    browser.close().await.expect("browser closes");
}

async fn flow(browser: &Client, base: &str) -> TestResult {
    // Log in as Bob.
    browser.goto(&format!("{base}/login")).await?;
    fill(browser, "#email", BOB.0).await?;
    fill(browser, "#password", BOB.1).await?;
    browser
        .find(Locator::Id("login-submit"))
        .await?
        .click()
        .await?;
    wait_for_path(browser, "/dashboard").await?;
    ensure!(
        flash_texts(browser)
            .await?
            .contains(&"Welcome back, Bob!".to_owned()),
        "no welcome flash after login"
    );
    ensure!(
        text(browser, "#who").await? == "Bob",
        "not logged in as Bob"
    );

    // Add two products: each shows a flash, and the cart count follows.
    for (id, name, count) in [(2, "Umbrella", "1"), (4, "Leather gloves", "2")] {
        browser.goto(&format!("{base}/cart")).await?;
        browser
            .find(Locator::Id(&format!("add-{id}")))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(".flash"))
            .await?;
        let flashes = flash_texts(browser).await?;
        let expected = format!("Added {name} to your cart.");
        ensure!(
            flashes.contains(&expected),
            "flash {expected:?} missing: {flashes:?}"
        );
        let shown = text(browser, "#cart-count").await?;
        ensure!(shown == count, "cart count is {shown:?}, expected {count}");
    }
    // The flash was shown once: a reload drops it, the count stays.
    browser.refresh().await?;
    ensure!(
        flash_texts(browser).await?.is_empty(),
        "a flash was shown twice"
    );
    ensure!(
        text(browser, "#cart-count").await? == "2",
        "cart count lost"
    );

    if let Ok(path) = std::env::var("CLOAKROOM_DEMO_SCREENSHOT") {
        browser.goto(&format!("{base}/")).await?;
        std::fs::write(&path, browser.screenshot().await?)?;
        println!("home page screenshot: {path}");
    }

    // Your devices: this browser, marked as this device.
    browser.goto(&format!("{base}/devices")).await?;
    ensure!(
        browser.find(Locator::Id("this-device")).await.is_ok(),
        "this device is not marked"
    );
    let agent = text(browser, "#devices tr.current .agent").await?;
    ensure!(agent.contains("Chrome"), "user agent shown is {agent:?}");

    // Log out.
    browser.find(Locator::Id("logout")).await?.click().await?;
    wait_for_path(browser, "/").await?;
    ensure!(
        flash_texts(browser)
            .await?
            .contains(&"You have been logged out.".to_owned()),
        "no logout flash"
    );
    ensure!(logged_out(browser).await?, "still logged in after logout");

    // Back to the devices page, and reload: the server says no.
    browser.back().await?;
    browser.refresh().await?;
    wait_for_path(browser, "/login").await?;
    ensure!(
        logged_out(browser).await?,
        "Back + reload shows a logged-in page"
    );
    ensure!(
        !browser.source().await?.contains("this-device"),
        "the devices page came back after logout"
    );
    Ok(())
}

async fn fill(browser: &Client, css: &str, value: &str) -> TestResult {
    Ok(browser
        .find(Locator::Css(css))
        .await?
        .send_keys(value)
        .await?)
}

async fn text(browser: &Client, css: &str) -> TestResult<String> {
    Ok(browser.find(Locator::Css(css)).await?.text().await?)
}

async fn flash_texts(browser: &Client) -> TestResult<Vec<String>> {
    let mut texts = Vec::new();
    for flash in browser.find_all(Locator::Css(".flashes .flash")).await? {
        texts.push(flash.text().await?);
    }
    Ok(texts)
}

/// No logout button, and the log-in link instead.
async fn logged_out(browser: &Client) -> TestResult<bool> {
    let logout = browser.find_all(Locator::Id("logout")).await?;
    let login = browser.find_all(Locator::Id("login-link")).await?;
    Ok(logout.is_empty() && !login.is_empty())
}

async fn wait_for_path(browser: &Client, path: &str) -> TestResult {
    let deadline = Instant::now() + WAIT;
    loop {
        let url = browser.current_url().await?;
        if url.path() == path {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("expected to reach {path}, still at {url}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The demo on a free port of this machine, with the default store (SQLite) in `dir`; returns
/// its base URL.
async fn serve_demo(dir: &Path) -> String {
    let url = format!("sqlite://{}", dir.join("cloakroom-demo.db").display());
    let store = cloakroom::stores::connect(&url).await.unwrap();
    let router = demo_router(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// A chromedriver process, ended when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> TestResult<Self> {
        let port = free_port()?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(driver: &ChromeDriver, profile: &Path) -> TestResult<Client> {
    let options = json!({
        "binary": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,860",
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    Ok(ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await?)
}

fn free_port() -> TestResult<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn workspace_root() -> PathBuf {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR"));
    demo.parent().unwrap_or(demo).to_owned()
}
