//! The memory store against the conformance suite.

mod conformance;
mod support;

use cloakroom::MemoryStore;
use conformance::{Harness, Reports};

async fn memory() -> Option<Harness> {
    let store = std::sync::Arc::new(MemoryStore::default());
    let held = std::sync::Arc::clone(&store);
    Some(Harness::new(store).reports(Reports::ALL).at_rest(move || {
        // Its debug form shows every record's fields, but of the keys only a prefix: the
        // case's lookup under the ticket's own bytes covers those.
        let dump = format!("{held:?}").into_bytes();
        async move { dump }
    }))
}

conformance_suite!(memory());

mod bounded {
    //! The bound: a full shard drops its expired sessions first, and only when none is expired
    //! the live one closest to expiry. A shard is chosen by the hash's last byte, so the hashes
    //! here share one.

    use std::time::Duration;

    use cloakroom::{MemoryStore, Record, SessionHash, Store, Timestamp};
    use serde_json::json;

    const MINUTE: Duration = Duration::from_secs(60);

    fn in_one_shard(n: u8) -> SessionHash {
        let mut bytes = [n; 32];
        bytes[31] = 7;
        SessionHash::from_bytes(bytes)
    }

    fn record(now: Timestamp, ttl: Duration, user: &str) -> Record {
        Record {
            data: json!({"n": 1}).as_object().unwrap().clone(),
            user_id: Some(user.to_owned()),
            created_at: now,
            updated_at: now,
            expires_at: now.saturating_add(ttl),
        }
    }

    async fn held(store: &MemoryStore, hashes: &[SessionHash], now: Timestamp) -> Vec<bool> {
        let mut held = Vec::new();
        for hash in hashes {
            held.push(store.load(hash, now).await.unwrap().is_some());
        }
        held
    }

    #[tokio::test]
    async fn a_full_shard_drops_the_live_session_closest_to_expiry() {
        // 128 sessions over 64 shards: two per shard.
        let store = MemoryStore::with_capacity(128);
        let now = Timestamp::from_unix_millis(1_000_000_000_000);
        let [soon, later, new] = [1, 2, 3].map(in_one_shard);
        store
            .create(&later, &record(now, 20 * MINUTE, "later"))
            .await
            .unwrap();
        store
            .create(&soon, &record(now, 10 * MINUTE, "soon"))
            .await
            .unwrap();
        store
            .create(&new, &record(now, 5 * MINUTE, "new"))
            .await
            .unwrap();
        assert_eq!(
            held(&store, &[soon, later, new], now).await,
            [false, true, true]
        );
        assert!(store.list_user("soon", now).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_full_shard_drops_every_expired_session_before_any_live_one() {
        // Three per shard.
        let store = MemoryStore::with_capacity(192);
        let start = Timestamp::from_unix_millis(1_000_000_000_000);
        let [gone1, gone2, live, new] = [1, 2, 3, 4].map(in_one_shard);
        store
            .create(&gone1, &record(start, MINUTE, "gone"))
            .await
            .unwrap();
        store
            .create(&gone2, &record(start, MINUTE, "gone"))
            .await
            .unwrap();
        store
            .create(&live, &record(start, 10 * MINUTE, "live"))
            .await
            .unwrap();
        let now = start.saturating_add(2 * MINUTE);
        store
            .create(&new, &record(now, 10 * MINUTE, "new"))
            .await
            .unwrap();
        assert_eq!(held(&store, &[live, new], now).await, [true, true]);
        let stats = store.stats(now, 10).await.unwrap();
        assert_eq!(
            (stats.live, stats.expired),
            (2, Some(0)),
            "both expired went at once"
        );
        assert_eq!(store.purge_expired(now, 10).await.unwrap(), 0);
    }
}
