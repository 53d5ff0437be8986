//! Conformance cases on the store alone: the `Store` contract, operation by operation.

use std::sync::Arc;
use std::time::Duration;

use cloakroom::{Patch, SessionHash, StoreError};
use serde_json::{Value, json};

use super::{HOUR, Harness, data_of, hash, patch, record};

pub async fn create_then_load_round_trips_every_json_type(h: &Harness) {
    let value = json!({
        "null": null, "true": true, "false": false,
        "int": 42, "negative": -7, "big": 9_007_199_254_740_993u64, "float": 1.5,
        "empty": "", "text": "a \"quoted\" \\ back\nslash", "emoji": "🧥🎟️",
        "ключ": "значение", "日本": "語",
        "array": [1, "two", [3], {"four": 4}], "empty_array": [], "empty_object": {},
        "nested": {"a": {"b": {"c": [null, {"d": "deep"}]}}},
        "sql": "'; DROP TABLE sessions; --", "path": "../../etc/passwd",
        "large": "x".repeat(60_000),
    });
    let h1 = hash(1);
    let created = record(h, HOUR, value.clone(), Some("user-1"));
    h.store.create(&h1, &created).await.expect("create");
    let loaded = h
        .store
        .load(&h1, h.now())
        .await
        .expect("load")
        .expect("record is there");
    assert_eq!(Value::Object(loaded.data.clone()), value);
    assert_eq!(loaded.user_id.as_deref(), Some("user-1"));
    assert_eq!(loaded.created_at, created.created_at);
    assert_eq!(loaded.expires_at, created.expires_at);
}

pub async fn create_fails_on_collision_and_keeps_the_original(h: &Harness) {
    let h1 = hash(2);
    h.store
        .create(&h1, &record(h, HOUR, json!({"v": "first"}), None))
        .await
        .unwrap();
    let second = h
        .store
        .create(&h1, &record(h, HOUR, json!({"v": "second"}), Some("x")))
        .await;
    assert!(
        matches!(second, Err(StoreError::Collision)),
        "expected Collision, got {second:?}"
    );
    assert_eq!(data_of(h, &h1).await, Some(json!({"v": "first"})));
}

pub async fn load_of_unknown_hash_is_none(h: &Harness) {
    assert!(h.store.load(&hash(3), h.now()).await.unwrap().is_none());
}

pub async fn save_applies_patches_to_what_is_stored(h: &Harness) {
    let h1 = hash(4);
    h.store
        .create(&h1, &record(h, HOUR, json!({"a": 1, "b": 2, "c": 3}), None))
        .await
        .unwrap();
    let saved = h
        .store
        .save(
            &h1,
            &Patch {
                set: vec![("d".into(), json!({"x": [1]})), ("b".into(), json!("two"))],
                remove: vec!["a".into(), "never-there".into()],
                user_id: Some(Some("u".into())),
                ..patch(h)
            },
        )
        .await
        .unwrap();
    assert!(saved);
    assert_eq!(
        data_of(h, &h1).await,
        Some(json!({"b": "two", "c": 3, "d": {"x": [1]}}))
    );
    let loaded = h.store.load(&h1, h.now()).await.unwrap().unwrap();
    assert_eq!(loaded.user_id.as_deref(), Some("u"));

    h.store
        .save(
            &h1,
            &Patch {
                clear: true,
                set: vec![("e".into(), json!(null))],
                user_id: Some(None),
                ..patch(h)
            },
        )
        .await
        .unwrap();
    assert_eq!(data_of(h, &h1).await, Some(json!({"e": null})));
    let loaded = h.store.load(&h1, h.now()).await.unwrap().unwrap();
    assert_eq!(loaded.user_id, None);
    assert!(h.store.list_user("u", h.now()).await.unwrap().is_empty());

    // The most common write: a new value for a key the session has, nothing else.
    let overwrite = Patch {
        set: vec![("e".into(), json!([7]))],
        ..patch(h)
    };
    assert!(h.store.save(&h1, &overwrite).await.unwrap());
    assert_eq!(data_of(h, &h1).await, Some(json!({"e": [7]})));
}

pub async fn concurrent_patches_to_different_keys_all_stick(h: &Harness) {
    let h1 = hash(5);
    h.store
        .create(&h1, &record(h, HOUR, json!({}), None))
        .await
        .unwrap();
    let writes = (0..20).map(|i| {
        let store = Arc::clone(&h.store);
        let p = Patch {
            set: vec![(format!("k{i}"), json!(i))],
            ..patch(h)
        };
        tokio::spawn(async move { store.save(&h1, &p).await })
    });
    for write in writes.collect::<Vec<_>>() {
        assert!(write.await.unwrap().unwrap());
    }
    let data = data_of(h, &h1).await.unwrap();
    let data = data.as_object().unwrap();
    assert_eq!(data.len(), 20, "{data:?}");
    for i in 0..20 {
        assert_eq!(data[&format!("k{i}")], json!(i));
    }
}

pub async fn save_touch_and_rotate_never_resurrect(h: &Harness) {
    let h1 = hash(6);
    h.store
        .create(&h1, &record(h, HOUR, json!({"a": 1}), Some("ghost")))
        .await
        .unwrap();
    assert!(h.store.delete(&h1).await.unwrap());
    let p = Patch {
        set: vec![("b".into(), json!(2))],
        ..patch(h)
    };
    assert!(!h.store.save(&h1, &p).await.unwrap());
    assert!(
        !h.store
            .touch(&h1, h.now().saturating_add(HOUR * 2), h.now())
            .await
            .unwrap()
    );
    let h2 = hash(7);
    assert!(!h.store.rotate(&h1, &h2, &p).await.unwrap());
    assert!(h.store.load(&h1, h.now()).await.unwrap().is_none());
    assert!(h.store.load(&h2, h.now()).await.unwrap().is_none());
    assert!(
        h.store
            .list_user("ghost", h.now())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn expired_records_are_gone(h: &Harness) {
    let ttl = Duration::from_millis(1500);
    let h1 = hash(8);
    h.store
        .create(&h1, &record(h, ttl, json!({"a": 1}), Some("exp")))
        .await
        .unwrap();
    assert!(data_of(h, &h1).await.is_some());
    h.advance(ttl + Duration::from_millis(300)).await;
    assert!(h.store.load(&h1, h.now()).await.unwrap().is_none());
    let p = Patch {
        set: vec![("b".into(), json!(2))],
        ..patch(h)
    };
    assert!(!h.store.save(&h1, &p).await.unwrap());
    assert!(
        !h.store
            .touch(&h1, h.now().saturating_add(HOUR), h.now())
            .await
            .unwrap()
    );
    assert!(!h.store.rotate(&h1, &hash(9), &p).await.unwrap());
    assert!(h.store.load(&h1, h.now()).await.unwrap().is_none());
    assert!(h.store.list_user("exp", h.now()).await.unwrap().is_empty());
    // An expired hash may be reused by create.
    h.store
        .create(&h1, &record(h, HOUR, json!({"fresh": true}), None))
        .await
        .expect("create over an expired record");
    assert_eq!(data_of(h, &h1).await, Some(json!({"fresh": true})));
}

pub async fn touch_extends_the_deadline(h: &Harness) {
    let ttl = Duration::from_millis(1500);
    let h1 = hash(10);
    h.store
        .create(&h1, &record(h, ttl, json!({"a": 1}), None))
        .await
        .unwrap();
    let later = h.now().saturating_add(HOUR);
    assert!(h.store.touch(&h1, later, h.now()).await.unwrap());
    h.advance(ttl + Duration::from_millis(300)).await;
    let loaded = h.store.load(&h1, h.now()).await.unwrap().expect("touched");
    assert_eq!(loaded.expires_at, later);
    assert_eq!(Value::Object(loaded.data), json!({"a": 1}));
}

pub async fn rotate_moves_the_record_atomically(h: &Harness) {
    let (old, new) = (hash(11), hash(12));
    let created = record(h, HOUR, json!({"cart": [1, 2]}), None);
    h.store.create(&old, &created).await.unwrap();
    let moved = h
        .store
        .rotate(
            &old,
            &new,
            &Patch {
                set: vec![("user".into(), json!("alice"))],
                user_id: Some(Some("alice".into())),
                ..patch(h)
            },
        )
        .await
        .unwrap();
    assert!(moved);
    assert!(h.store.load(&old, h.now()).await.unwrap().is_none());
    let loaded = h.store.load(&new, h.now()).await.unwrap().unwrap();
    assert_eq!(
        Value::Object(loaded.data),
        json!({"cart": [1, 2], "user": "alice"})
    );
    assert_eq!(loaded.created_at, created.created_at, "rotation keeps age");
    let listed = h.store.list_user("alice", h.now()).await.unwrap();
    assert_eq!(
        listed.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        vec![new]
    );
}

pub async fn rotate_never_overwrites_a_live_record(h: &Harness) {
    let (old, new) = (hash(14), hash(15));
    let (mover, owner) = (format!("mover-{}", hash(0)), format!("owner-{}", hash(0)));
    h.store
        .create(
            &old,
            &record(h, HOUR, json!({"who": "mover"}), Some(&mover)),
        )
        .await
        .unwrap();
    h.store
        .create(
            &new,
            &record(h, HOUR, json!({"who": "owner"}), Some(&owner)),
        )
        .await
        .unwrap();
    let rotated = h
        .store
        .rotate(
            &old,
            &new,
            &Patch {
                set: vec![("who".into(), json!("thief"))],
                ..patch(h)
            },
        )
        .await;
    assert!(
        matches!(rotated, Err(StoreError::Collision)),
        "expected Collision, got {rotated:?}"
    );
    assert_eq!(data_of(h, &new).await, Some(json!({"who": "owner"})));
    assert_eq!(data_of(h, &old).await, Some(json!({"who": "mover"})));
    let listed = |user: String| async move {
        let sessions = h.store.list_user(&user, h.now()).await.unwrap();
        sessions.into_iter().map(|(h, _)| h).collect::<Vec<_>>()
    };
    assert_eq!(listed(owner).await, vec![new]);
    assert_eq!(listed(mover).await, vec![old]);
}

pub async fn delete_reports_whether_it_removed(h: &Harness) {
    let h1 = hash(13);
    assert!(!h.store.delete(&h1).await.unwrap());
    h.store
        .create(&h1, &record(h, HOUR, json!({}), None))
        .await
        .unwrap();
    assert!(h.store.delete(&h1).await.unwrap());
    assert!(!h.store.delete(&h1).await.unwrap());
    assert!(h.store.load(&h1, h.now()).await.unwrap().is_none());
}

pub async fn user_index_lists_and_revokes(h: &Harness) {
    // User ids unique to this case so parallel cases on a shared store do not interfere.
    let (u1, u2) = (format!("u1-{}", hash(0)), format!("u2-{}", hash(0)));
    let mine: Vec<SessionHash> = (20..23).map(hash).collect();
    for (i, h1) in mine.iter().enumerate() {
        h.store
            .create(h1, &record(h, HOUR, json!({"i": i}), Some(&u1)))
            .await
            .unwrap();
        h.advance(Duration::from_millis(5)).await;
    }
    let other = hash(23);
    h.store
        .create(&other, &record(h, HOUR, json!({}), Some(&u2)))
        .await
        .unwrap();
    let unbound = hash(24);
    h.store
        .create(&unbound, &record(h, HOUR, json!({}), None))
        .await
        .unwrap();

    let listed = h.store.list_user(&u1, h.now()).await.unwrap();
    assert_eq!(listed.iter().map(|(h, _)| *h).collect::<Vec<_>>(), mine);
    assert_eq!(listed[1].1.data["i"], json!(1));

    // Binding through a patch adds to the index.
    h.store
        .save(
            &unbound,
            &Patch {
                user_id: Some(Some(u1.clone())),
                ..patch(h)
            },
        )
        .await
        .unwrap();
    assert_eq!(h.store.list_user(&u1, h.now()).await.unwrap().len(), 4);

    let revoked = h.store.revoke_user(&u1, Some(&mine[0])).await.unwrap();
    assert_eq!(revoked, 3);
    let listed = h.store.list_user(&u1, h.now()).await.unwrap();
    assert_eq!(
        listed.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        vec![mine[0]]
    );
    assert!(h.store.load(&mine[1], h.now()).await.unwrap().is_none());
    assert!(h.store.load(&unbound, h.now()).await.unwrap().is_none());
    assert!(h.store.load(&other, h.now()).await.unwrap().is_some());

    assert_eq!(h.store.revoke_user(&u1, None).await.unwrap(), 1);
    assert!(h.store.list_user(&u1, h.now()).await.unwrap().is_empty());
    assert_eq!(h.store.list_user(&u2, h.now()).await.unwrap().len(), 1);
    assert_eq!(h.store.revoke_user("nobody", None).await.unwrap(), 0);
}

pub async fn count_and_purge_only_touch_expired(h: &Harness) {
    let before = h.store.count(h.now()).await.unwrap();
    let short = Duration::from_millis(1500);
    let live: Vec<SessionHash> = (30..33).map(hash).collect();
    let dying: Vec<SessionHash> = (33..35).map(hash).collect();
    for h1 in &live {
        h.store
            .create(h1, &record(h, HOUR, json!({}), None))
            .await
            .unwrap();
    }
    for h1 in &dying {
        h.store
            .create(h1, &record(h, short, json!({}), Some("purged")))
            .await
            .unwrap();
    }
    assert_eq!(h.store.count(h.now()).await.unwrap(), before + 5);
    h.advance(short + Duration::from_millis(300)).await;
    assert_eq!(h.store.count(h.now()).await.unwrap(), before + 3);
    // Purging in batches: a limit of 1 removes at most one, then the rest go.
    let first = h.store.purge_expired(h.now(), 1).await.unwrap();
    assert!(first <= 1);
    let mut total = first;
    loop {
        let n = h.store.purge_expired(h.now(), 1000).await.unwrap();
        total += n;
        if n < 1000 {
            break;
        }
    }
    assert_eq!(total, 2, "purged exactly the two expired records");
    for h1 in &live {
        assert!(h.store.load(h1, h.now()).await.unwrap().is_some());
    }
    assert!(
        h.store
            .list_user("purged", h.now())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.store.purge_expired(h.now(), 1000).await.unwrap(), 0);
}

pub async fn stats_report_what_the_store_can_tell(h: &Harness) {
    h.store.migrate().await.expect("migrate is idempotent");
    let user = format!("stats-{}", hash(0));
    let first = h.now();
    h.store
        .create(
            &hash(43),
            &record(h, Duration::from_secs(1), json!({}), None),
        )
        .await
        .unwrap();
    h.advance(Duration::from_secs(2)).await;
    for n in 40..42 {
        h.store
            .create(&hash(n), &record(h, HOUR, json!({"n": n}), Some(&user)))
            .await
            .unwrap();
        h.advance(Duration::from_millis(5)).await;
    }
    h.store
        .create(
            &hash(42),
            &record(h, HOUR, json!({"big": "x".repeat(1000)}), None),
        )
        .await
        .unwrap();
    let last = h.now();
    let stats = h.store.stats(h.now(), 1000).await.unwrap();
    let promised = h.reports;
    assert_eq!(stats.live, 3, "{stats:?}");
    assert_eq!(stats.expired, promised.expired.then_some(1), "{stats:?}");
    let users = if promised.top_users {
        vec![(user, 2)]
    } else {
        vec![]
    };
    assert_eq!(stats.top_users, users, "{stats:?}");
    let ages = promised
        .oldest_newest
        .then(|| (first.saturating_add(Duration::from_secs(2)), last));
    assert_eq!(stats.oldest.zip(stats.newest), ages, "{stats:?}");
    assert_eq!(
        stats.data_bytes.map(|sizes| sizes.max >= 1000),
        promised.data_bytes.then_some(true),
        "{stats:?}"
    );
}
