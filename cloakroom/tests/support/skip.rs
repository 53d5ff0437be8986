//! Skipping a test whose service is not running, visibly.
//!
//! A test cannot mark itself ignored at run time, and cargo hides what passing tests print, so a
//! skipped test shows as passed. To make the count visible anyway, each skip is tallied and the
//! test binary prints the tally on exit, after libtest's own `test result:` line:
//!
//! ```text
//! test result: ok. 40 passed; 0 failed; 0 ignored; ...
//! cloakroom: 38 of these tests did not run: PostgreSQL unreachable (connection refused) ...
//! ```
//!
//! Only a server that does not accept a TCP connection counts as "not running": any other error
//! (a bad URL, an option the parser rejects, a failed login, a server that answers but fails)
//! fails the test, so a broken dispatcher cannot pass as a missing service. Under `CLOAKROOM_REQUIRE_SERVICES=1` (CI) nothing is skipped.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, Once};
use std::time::Duration;

use cloakroom::StoreError;

static SKIPPED: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

fn required() -> bool {
    std::env::var("CLOAKROOM_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips the calling test because `service` cannot be used for `why` (a binary not installed,
/// say), or fails it when services are required.
pub fn skip_for(service: &str, why: &str) {
    if required() {
        panic!("{service} is required (CLOAKROOM_REQUIRE_SERVICES=1) but {why}");
    }
    let reason = format!("{service} {why}");
    *SKIPPED.lock().unwrap().entry(reason).or_default() += 1;
    static REPORT: Once = Once::new();
    REPORT.call_once(|| {
        // SAFETY: `report` has the C ABI and takes nothing; it cannot unwind, because it only
        // formats, takes a lock without unwrapping, and ignores a failed write.
        unsafe {
            atexit(report);
        }
    });
}

/// Skips the calling test when `service` at `url` is not listening: `error` says the store is
/// unavailable and a TCP connection to the URL's host and port is refused or times out. Fails it
/// on any other error (a bad URL, a rejected option, a refused login), or when services are
/// required.
pub fn skip_unreachable(service: &str, url: &str, error: &StoreError) {
    let silent = match error {
        StoreError::Unavailable { .. } => not_listening(url),
        _ => None,
    };
    match silent {
        Some(how) => skip_for(service, &format!("unreachable at {} ({how})", address(url))),
        None => panic!("{service}: {error}; not a refused or timed-out connection, so a failure"),
    }
}

/// `host:port` of a service URL (`scheme://user:password@host:port/path?query`).
fn address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host_port.contains(':') {
        return host_port.to_owned();
    }
    let port = match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => 5432,
        Some("mysql" | "mariadb") => 3306,
        _ => 6379,
    };
    format!("{host_port}:{port}")
}

/// How a TCP connection to the URL's server fails, if it does.
fn not_listening(url: &str) -> Option<String> {
    let address = address(url);
    let targets = match address.to_socket_addrs() {
        Ok(targets) => targets.collect::<Vec<_>>(),
        Err(error) => return Some(format!("{address} does not resolve: {error}")),
    };
    let mut last = None;
    for target in targets {
        match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
            Ok(_) => return None,
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::ConnectionRefused | ErrorKind::TimedOut
                ) =>
            {
                last = Some(error.to_string());
            }
            Err(_) => return None,
        }
    }
    last
}

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn report() {
    let skipped = SKIPPED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let total: usize = skipped.values().sum();
    let mut line =
        format!("cloakroom: {total} of these tests did not run (they count as passed above):");
    for (reason, count) in skipped.iter() {
        line.push_str(&format!("\n  {count} because {reason}"));
    }
    line.push_str(
        "\n  Start the services (README, \"Testing\"), or set CLOAKROOM_REQUIRE_SERVICES=1 to make \
         a missing one fail the run.\n",
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}
