//! The binary as a newcomer runs it: the default SQLite store and a generated key file in the
//! current directory, a restart that keeps everyone logged in, and clear errors for bad options.

mod support;

use serde_json::json;
use support::BOB;
use support::process::{Browser, Demo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_keep_everyone_logged_in_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = Demo::start(dir.path(), &[]);
    assert!(
        first.base.starts_with("http://127.0.0.1:"),
        "{:?}",
        first.banner
    );
    assert!(
        first.banner[1].contains("sqlite://cloakroom-demo.db (sqlite store)"),
        "{:?}",
        first.banner
    );
    let key_file = dir.path().join("cloakroom-demo.key");
    assert!(
        first.banner[2].contains(&format!("{} (generated now)", key_file.display())),
        "{:?}",
        first.banner
    );
    assert!(first.banner[3].contains("bob@example.com / builder"));
    assert!(dir.path().join("cloakroom-demo.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }

    let mut browser = Browser::new();
    let login = browser
        .post(
            &first.url("/api/login"),
            json!({"email": BOB.0, "password": BOB.1}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    browser
        .post(&first.url("/api/cart"), json!({"product_id": 5}))
        .await;
    drop(first);

    let second = Demo::start(dir.path(), &[]);
    assert!(
        second.banner[2].contains("(kept from an earlier start)"),
        "{:?}",
        second.banner
    );
    let session = browser.get(&second.url("/api/session")).await.json();
    assert_eq!(session["logged_in"], true, "{session}");
    assert_eq!(
        browser.get(&second.url("/api/cart")).await.json()["count"],
        1
    );
}

#[test]
fn bad_options_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--store", "mongodb://localhost/sessions"],
            "cannot open the session store mongodb://localhost/sessions: unknown store URL scheme",
        ),
        (
            &["--store", "memory://", "--secret", "hunter2"],
            "the secret is too short",
        ),
        (
            &["--store", "memory://", "--bind", "not an address"],
            "cannot listen on not an address",
        ),
        (
            &["--store", "sqlite:///no/such/dir/sessions.db"],
            "cannot open the session store sqlite:///no/such/dir/sessions.db",
        ),
    ];
    for (args, expected) in cases {
        let (status, stdout, stderr) = Demo::spawn(dir.path(), args).exit();
        assert!(!status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stdout.contains("running at"), "{args:?}: {stdout}");
    }
    // Nothing was left behind by the failures but our own logs.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| !name.starts_with("stderr-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn passwords_in_store_urls_and_secrets_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the store cannot be opened, and the error names the URL.
    let (status, stdout, stderr) = Demo::spawn(
        dir.path(),
        &[
            "--store",
            "postgres://demo:hunter2@127.0.0.1:1/x",
            "--secret",
            "a very secret secret of enough length!",
        ],
    )
    .exit();
    assert!(!status.success());
    assert!(
        stderr.contains("postgres://demo:***@127.0.0.1:1/x"),
        "{stderr}"
    );
    for output in [&stdout, &stderr] {
        assert!(!output.contains("hunter2"), "{output}");
        assert!(!output.contains("very secret"), "{output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_come_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    for (insecure, secure_cookie) in [("1", false), ("true", false), ("0", true)] {
        let demo = Demo::spawn_with_env(
            dir.path(),
            &[],
            &[
                ("CLOAKROOM_STORE", "memory://"),
                ("CLOAKROOM_SECRET", "an environment secret, long enough"),
                ("CLOAKROOM_INSECURE_COOKIES", insecure),
            ],
        )
        .ready();
        assert!(demo.banner[1].contains("memory://"), "{:?}", demo.banner);
        assert!(
            demo.banner[2].contains("from --secret"),
            "{:?}",
            demo.banner
        );
        let mut browser = Browser::new();
        let reply = browser
            .post(&demo.url("/api/cart"), json!({"product_id": 1}))
            .await;
        let cookie = reply.headers["set-cookie"].to_str().unwrap();
        assert_eq!(
            cookie.contains("; Secure"),
            secure_cookie,
            "{insecure}: {cookie}"
        );
    }
}
