//! The file store against the conformance suite, plus what only a store on disk can get wrong:
//! restarts, the directory layout, crash leftovers and corrupt files.
#![cfg(feature = "file")]

mod conformance;
mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cloakroom::{FileStore, Patch, Record, SessionHash, Store, StoreError, Timestamp};
use conformance::Harness;
use serde_json::json;

/// A directory of its own for each case, under the system's temp directory.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "cloakroom-file-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes the directory when the test ends, also when it fails.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn file() -> Option<Harness> {
    let dir = fresh_dir();
    let store = FileStore::open(&dir).await.expect("open the file store");
    let root = dir.clone();
    Some(
        Harness::new(store)
            .at_rest(move || {
                let dump = everything_under(&root);
                async move { dump }
            })
            .on_cleanup(move || async move {
                let _ = tokio::fs::remove_dir_all(&dir).await;
            }),
    )
}

/// Every path and file content under `dir`: file names are data too.
fn everything_under(dir: &std::path::Path) -> Vec<u8> {
    let mut dump = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        dump.extend(path.to_string_lossy().as_bytes());
        if path.is_dir() {
            dump.extend(everything_under(&path));
        } else {
            dump.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    dump
}

conformance_suite!(file());

const HOUR: Duration = Duration::from_secs(3600);

fn now() -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000)
}

fn record(user: Option<&str>, ttl: Duration) -> Record {
    Record {
        data: conformance::data(json!({"cart": [1, 2]})),
        user_id: user.map(str::to_owned),
        created_at: now(),
        updated_at: now(),
        expires_at: now().saturating_add(ttl),
    }
}

fn session_file(root: &Path, hash: &SessionHash) -> PathBuf {
    let hex = hash.to_string();
    root.join("sessions")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(format!("{hex}.json"))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn sessions_and_the_user_index_survive_a_restart() {
    let dir = fresh_dir();
    let _cleanup = Cleanup(dir.clone());
    let (a, b) = (conformance::hash(1), conformance::hash(2));
    {
        let store = FileStore::open(&dir).await.unwrap();
        store
            .create(&a, &record(Some("alice"), HOUR))
            .await
            .unwrap();
        store
            .create(&b, &record(Some("alice"), HOUR))
            .await
            .unwrap();
        let patch = Patch {
            set: vec![("theme".into(), json!("dark"))],
            updated_at: now(),
            ..Patch::default()
        };
        assert!(store.save(&a, &patch).await.unwrap());
    }

    let store = FileStore::open(&dir).await.unwrap();
    let loaded = store.load(&a, now()).await.unwrap().expect("still there");
    assert_eq!(loaded.data["theme"], json!("dark"));
    assert_eq!(loaded.data["cart"], json!([1, 2]));
    let listed = store.list_user("alice", now()).await.unwrap();
    let mut hashes: Vec<_> = listed.iter().map(|(h, _)| *h).collect();
    hashes.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(hashes, expected);
    assert_eq!(store.revoke_user("alice", None).await.unwrap(), 2);
    assert!(store.load(&a, now()).await.unwrap().is_none());
    assert_eq!(store.count(now()).await.unwrap(), 0);
}

#[tokio::test]
async fn files_are_sharded_and_no_temp_files_remain() {
    let dir = fresh_dir();
    let _cleanup = Cleanup(dir.clone());
    let store = FileStore::open(&dir).await.unwrap();
    let hashes: Vec<SessionHash> = (0..8).map(conformance::hash).collect();
    for hash in &hashes {
        store
            .create(hash, &record(Some("bob"), HOUR))
            .await
            .unwrap();
        let patch = Patch {
            set: vec![("n".into(), json!(1))],
            user_id: Some(Some("carol".into())),
            updated_at: now(),
            ..Patch::default()
        };
        assert!(store.save(hash, &patch).await.unwrap());
    }
    let rotated = conformance::hash(99);
    assert!(
        store
            .rotate(
                &hashes[0],
                &rotated,
                &Patch::touch(now().saturating_add(HOUR), now())
            )
            .await
            .unwrap()
    );

    let mut sessions: Vec<PathBuf> = files_under(&dir.join("sessions"));
    sessions.sort();
    let mut expected: Vec<PathBuf> = hashes[1..]
        .iter()
        .chain([&rotated])
        .map(|h| session_file(&dir, h))
        .collect();
    expected.sort();
    assert_eq!(sessions, expected, "one file per session, in its shard");
    for path in files_under(&dir) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "temp file left behind: {path:?}");
    }
    // The user index moved with the binding and the rotation.
    assert!(store.list_user("bob", now()).await.unwrap().is_empty());
    assert_eq!(store.list_user("carol", now()).await.unwrap().len(), 8);
    let markers = files_under(&dir.join("users"));
    assert_eq!(markers.len(), 8, "{markers:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn session_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = fresh_dir();
    let _cleanup = Cleanup(dir.clone());
    let store = FileStore::open(&dir).await.unwrap();
    let hash = conformance::hash(1);
    store.create(&hash, &record(None, HOUR)).await.unwrap();
    let mode = std::fs::metadata(session_file(&dir, &hash))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "session file mode {mode:o}");
}

#[tokio::test]
async fn corrupt_files_give_corrupt_and_do_not_stop_count_or_purge() {
    let dir = fresh_dir();
    let _cleanup = Cleanup(dir.clone());
    let store = FileStore::open(&dir).await.unwrap();
    let good = conformance::hash(1);
    let dying = conformance::hash(2);
    store.create(&good, &record(None, HOUR)).await.unwrap();
    store
        .create(&dying, &record(Some("d"), Duration::from_secs(1)))
        .await
        .unwrap();
    let bad: Vec<(SessionHash, &[u8])> = vec![
        (conformance::hash(3), b"{\"data\": {\"trunc"),
        (conformance::hash(4), b"[1, 2, 3]"),
        (conformance::hash(5), b"\xff\xfe not utf-8"),
        (conformance::hash(6), b""),
    ];
    for (hash, bytes) in &bad {
        let path = session_file(&dir, hash);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let error = store.load(hash, now()).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Corrupt { .. }),
            "expected Corrupt, got {error:?}"
        );
        assert!(
            error.to_string().contains("delete the file"),
            "says what to do: {error}"
        );
        let patch = Patch::touch(now().saturating_add(HOUR), now());
        assert!(matches!(
            store.save(hash, &patch).await,
            Err(StoreError::Corrupt { .. })
        ));
        // create never overwrites what it cannot read.
        assert!(matches!(
            store.create(hash, &record(None, HOUR)).await,
            Err(StoreError::Collision)
        ));
    }

    assert_eq!(store.count(now()).await.unwrap(), 2);
    let later = now().saturating_add(Duration::from_secs(5));
    assert_eq!(store.purge_expired(later, 100).await.unwrap(), 1);
    assert!(store.load(&good, later).await.unwrap().is_some());
    assert_eq!(store.count(later).await.unwrap(), 1);
    // Still there for the operator to inspect; delete removes one.
    assert!(session_file(&dir, &bad[0].0).exists());
    assert!(store.delete(&bad[0].0).await.unwrap());
    assert!(!session_file(&dir, &bad[0].0).exists());
}

#[tokio::test]
async fn purge_cleans_old_temp_files_and_count_ignores_them() {
    let dir = fresh_dir();
    let _cleanup = Cleanup(dir.clone());
    let store = FileStore::open(&dir).await.unwrap();
    let hash = conformance::hash(1);
    store.create(&hash, &record(None, HOUR)).await.unwrap();
    let shard = session_file(&dir, &hash).parent().unwrap().to_path_buf();
    let old = shard.join(".crashed.1.0.tmp");
    let fresh = shard.join(".writing.1.1.tmp");
    std::fs::write(&old, b"{\"half\":").unwrap();
    std::fs::write(&fresh, b"{\"half\":").unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();

    assert_eq!(store.count(now()).await.unwrap(), 1);
    assert_eq!(store.purge_expired(now(), 100).await.unwrap(), 0);
    assert!(!old.exists(), "a temp file left by a crash is cleaned");
    assert!(fresh.exists(), "a write in progress is left alone");
    assert!(store.load(&hash, now()).await.unwrap().is_some());
}

#[tokio::test]
async fn purge_stops_at_the_limit() {
    let dir = fresh_dir();
    let _cleanup = Cleanup(dir.clone());
    let store = FileStore::open(&dir).await.unwrap();
    for n in 0..5 {
        store
            .create(
                &conformance::hash(n),
                &record(Some("p"), Duration::from_secs(1)),
            )
            .await
            .unwrap();
    }
    let later = now().saturating_add(Duration::from_secs(2));
    assert_eq!(store.purge_expired(later, 2).await.unwrap(), 2);
    assert_eq!(store.purge_expired(later, 2).await.unwrap(), 2);
    assert_eq!(store.purge_expired(later, 2).await.unwrap(), 1);
    assert_eq!(store.purge_expired(later, 2).await.unwrap(), 0);
    assert!(
        files_under(&dir.join("users")).is_empty(),
        "index entries go too"
    );
}

#[tokio::test]
async fn list_user_prunes_stale_index_entries() {
    let dir = fresh_dir();
    let _cleanup = Cleanup(dir.clone());
    let store = FileStore::open(&dir).await.unwrap();
    let (kept, lost) = (conformance::hash(1), conformance::hash(2));
    store
        .create(&kept, &record(Some("erin"), HOUR))
        .await
        .unwrap();
    store
        .create(&lost, &record(Some("erin"), HOUR))
        .await
        .unwrap();
    // As if the process died between removing a session file and its index entry.
    std::fs::remove_file(session_file(&dir, &lost)).unwrap();
    assert_eq!(files_under(&dir.join("users")).len(), 2);

    let listed = store.list_user("erin", now()).await.unwrap();
    assert_eq!(listed.iter().map(|(h, _)| *h).collect::<Vec<_>>(), [kept]);
    assert_eq!(
        files_under(&dir.join("users")).len(),
        1,
        "stale entry pruned"
    );
    assert_eq!(store.revoke_user("erin", None).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_never_replaces_a_live_record_across_processes() {
    // Two stores on one directory share no locks, like two processes.
    let dir = fresh_dir();
    let _cleanup = Cleanup(dir.clone());
    let first = std::sync::Arc::new(FileStore::open(&dir).await.unwrap());
    let second = std::sync::Arc::new(FileStore::open(&dir).await.unwrap());
    for n in 0..20 {
        let hash = conformance::hash(n);
        let tasks = [&first, &second].map(|store| {
            let store = std::sync::Arc::clone(store);
            tokio::spawn(async move { store.create(&hash, &record(None, HOUR)).await })
        });
        let mut created = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => created += 1,
                Err(StoreError::Collision) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(created, 1, "exactly one create wins for hash {n}");
    }
}

#[tokio::test]
async fn connect_by_url() {
    let dir = fresh_dir();
    let _cleanup = Cleanup(dir.clone());
    let url = format!("file://{}", dir.display());
    let store = cloakroom::stores::connect(&url).await.unwrap();
    assert_eq!(store.name(), "file");
    let hash = conformance::hash(1);
    store.create(&hash, &record(None, HOUR)).await.unwrap();
    assert!(session_file(&dir, &hash).exists(), "{url} names {dir:?}");

    let spaced = fresh_dir().with_extension("with space");
    let _cleanup_spaced = Cleanup(spaced.clone());
    let url = format!("file://localhost{}", spaced.display()).replace(' ', "%20");
    let store = FileStore::connect(&url).await.unwrap();
    assert_eq!(store.root(), spaced);
    assert!(spaced.is_dir());
}

#[tokio::test]
async fn relative_file_urls_are_relative_to_the_working_directory() {
    let name = format!("cloakroom-file-test-{}", std::process::id());
    let _cleanup = Cleanup(PathBuf::from(&name));
    let store = FileStore::connect(&format!("file:{name}/a")).await.unwrap();
    assert_eq!(store.root(), Path::new(&name).join("a"));
    let store = FileStore::connect(&format!("file://{name}/b"))
        .await
        .unwrap();
    assert_eq!(store.root(), Path::new(&name).join("b"));
    assert!(Path::new(&name).join("b").join("sessions").is_dir());
}

#[tokio::test]
async fn bad_urls_and_directories_give_errors_that_say_what_to_do() {
    for url in [
        "file:",
        "file://",
        "file:///tmp/x?table=t",
        "file:///tmp/x?sync=no",
    ] {
        let error = cloakroom::stores::connect(url).await.unwrap_err();
        assert!(matches!(error, StoreError::Config(_)), "{url}: {error:?}");
    }
    let error = FileStore::connect("file:///tmp/bad%zz").await.unwrap_err();
    assert!(error.to_string().contains("percent"), "{error}");
    let error = FileStore::connect("memory://").await.unwrap_err();
    assert!(error.to_string().contains("file:///"), "{error}");

    // A path under a regular file cannot become a directory.
    let dir = fresh_dir();
    let _cleanup = Cleanup(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let blocker = dir.join("plain-file");
    std::fs::write(&blocker, b"").unwrap();
    let error = FileStore::open(blocker.join("sessions")).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("write access"), "{error}");
}
