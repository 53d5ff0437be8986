//! The session handle's own behaviour, without a layer or a store.

use super::*;
use crate::ticket::Ticket;
use serde_json::json;

fn stored_session() -> Session {
    let ticket = Ticket::generate().unwrap();
    let hash = ticket.hash();
    let record = Record {
        data: json!({"a": 1, "b": "two", "__flash": [{"category": "info", "message": "hi"}]})
            .as_object()
            .unwrap()
            .clone(),
        user_id: Some("7".into()),
        created_at: Timestamp::from_unix_millis(1),
        updated_at: Timestamp::from_unix_millis(1),
        expires_at: Timestamp::from_unix_millis(1_000),
    };
    let stored = Origin {
        id: Some(Id { ticket, hash }),
        created_at: record.created_at,
        expires_at: record.expires_at,
        stale_key: false,
    };
    Session::loaded(stored, record, 1024)
}

#[test]
fn typed_round_trip() {
    let session = Session::new(1024);
    session.insert("n", 5u8).unwrap();
    session.insert("v", vec!["x", "y"]).unwrap();
    assert_eq!(session.get::<u8>("n").unwrap(), Some(5));
    assert_eq!(
        session.get::<Vec<String>>("v").unwrap().unwrap(),
        ["x", "y"]
    );
    assert_eq!(session.get::<u8>("missing").unwrap(), None);
    assert_eq!(session.get_or("missing", 9).unwrap(), 9);
    let err = session.get::<u8>("v").unwrap_err();
    assert!(matches!(err, Error::Deserialize { ref key, .. } if key == "v"));
}

#[test]
fn reserved_keys_are_refused_and_hidden() {
    let session = stored_session();
    assert!(matches!(
        session.insert("__flash", 1),
        Err(Error::ReservedKey(_))
    ));
    assert_eq!(session.keys(), ["a", "b"]);
    assert!(!session.contains("__flash"));
}

#[test]
fn size_limit_is_checked_before_anything_changes() {
    let session = Session::new(40);
    session.insert("k", "0123456789").unwrap();
    let err = session.insert("big", "x".repeat(100)).unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 40, .. }), "{err}");
    assert!(!session.contains("big"));
    // Replacing a value counts the old one out.
    session.insert("k", "9876543210").unwrap();
    let err = session
        .extend([("p", "x".repeat(10)), ("q", "y".repeat(10))])
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }));
    assert_eq!(session.keys(), ["k"]);
}

#[test]
fn patch_names_only_what_changed() {
    let session = stored_session();
    session.insert("c", 3).unwrap();
    session.remove("a");
    assert!(!session.remove("nope"));
    let patch = session.lock().take_patch(Timestamp::from_unix_millis(5));
    assert_eq!(patch.set, vec![("c".to_owned(), json!(3))]);
    assert_eq!(patch.remove, vec!["a".to_owned()]);
    assert!(!patch.clear);
    assert_eq!(patch.user_id, None);
}

#[test]
fn clear_keeps_flashes_and_persistence() {
    let session = stored_session();
    session.set_persistent(true);
    session.clear();
    session.insert("z", true).unwrap();
    let patch = session.lock().take_patch(Timestamp::default());
    assert!(patch.clear);
    assert!(patch.remove.is_empty());
    let keys: Vec<&str> = patch.set.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["z", "__flash", "__persistent"]);
}

#[test]
fn flashes_are_consumed_once() {
    let session = stored_session();
    session.flash("success", "saved").unwrap();
    let taken = session.take_flashes();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].message, "hi");
    assert!(session.take_flashes().is_empty());
    let patch = session.lock().take_patch(Timestamp::default());
    assert_eq!(
        patch.set,
        vec![(
            "__flash".to_owned(),
            json!([{"category": "success", "message": "saved"}])
        )]
    );
}

#[test]
fn destroy_forgets_everything_and_remembers_the_old_hash() {
    let session = stored_session();
    let hash = session.hash().unwrap();
    session.destroy();
    assert!(session.is_new());
    assert!(session.is_empty());
    assert_eq!(session.user(), None);
    assert!(session.peek_flashes().is_empty());
    assert_eq!(session.lock().destroyed, Some(hash));
    assert!(!session.lock().has_content());
    session.flash("info", "bye").unwrap();
    assert!(session.lock().has_content());
}

#[test]
fn flashes_count_toward_the_size_limit() {
    let session = Session::new(200);
    session.insert("k", "x".repeat(100)).unwrap();
    // Distinct messages pile up until the limit, then the next one is refused whole.
    let mut added = 0;
    let err = loop {
        match session.flash("info", format!("message {added}")) {
            Ok(()) => added += 1,
            Err(err) => break err,
        }
        assert!(added < 100, "flashes never hit the limit");
    };
    assert!(matches!(err, Error::TooLarge { limit: 200, .. }), "{err}");
    assert!(added > 0);
    // The data cannot grow into the room the flashes took either.
    assert!(matches!(
        session.insert("more", "y".repeat(50)),
        Err(Error::TooLarge { .. })
    ));
    let record = session.lock().take_record(
        Timestamp::default(),
        Timestamp::default(),
        Timestamp::default(),
    );
    assert_eq!(record.data["__flash"].as_array().unwrap().len(), added);
    assert!(serde_json::to_string(&record.data).unwrap().len() <= 200);
}

#[test]
fn a_flash_already_waiting_is_not_added_again() {
    let session = stored_session(); // holds an earlier "info: hi"
    session.flash("info", "hi").unwrap();
    session.flash("info", "new").unwrap();
    session.flash("info", "new").unwrap();
    session.flash("warning", "new").unwrap();
    let record = session.lock().take_record(
        Timestamp::default(),
        Timestamp::default(),
        Timestamp::default(),
    );
    assert_eq!(
        record.data["__flash"],
        json!([
            {"category": "info", "message": "hi"},
            {"category": "info", "message": "new"},
            {"category": "warning", "message": "new"},
        ])
    );
    // Once shown, the same message may be flashed again for the next page.
    let session = stored_session();
    assert_eq!(session.take_flashes().len(), 1);
    session.flash("info", "hi").unwrap();
    let patch = session.lock().take_patch(Timestamp::default());
    assert_eq!(
        patch.set,
        vec![(
            "__flash".to_owned(),
            json!([{"category": "info", "message": "hi"}])
        )]
    );
}

#[test]
fn logging_in_over_another_users_session_starts_empty() {
    let session = stored_session(); // user 7, keys a and b, an earlier flash
    session.set_persistent(true);
    session.log_in("8", &["a"]);
    session.flash("success", "welcome").unwrap();
    assert!(session.is_empty(), "user 7's data must not reach user 8");
    assert!(session.peek_flashes().is_empty());
    assert!(!session.is_persistent());
    let mut state = session.lock();
    assert!(state.cycle);
    let patch = state.take_patch(Timestamp::default());
    assert!(patch.clear);
    assert_eq!(patch.user_id, Some(Some("8".to_owned())));
    assert_eq!(
        patch.set,
        vec![(
            "__flash".to_owned(),
            json!([{"category": "success", "message": "welcome"}])
        )]
    );
}

#[test]
fn logging_in_an_anonymous_visitor_keeps_only_the_named_keys() {
    let session = stored_session();
    session.clear_user();
    session.log_in("8", &["a", "missing"]);
    assert_eq!(session.keys(), ["a"]);
    assert_eq!(session.user().as_deref(), Some("8"));
    let patch = session.lock().take_patch(Timestamp::default());
    assert!(patch.clear);
    assert_eq!(patch.set, vec![("a".to_owned(), json!(1))]);
}

#[test]
fn logging_in_again_as_the_same_user_keeps_the_session() {
    let session = stored_session();
    session.log_in("7", &[]);
    assert_eq!(session.keys(), ["a", "b"]);
    assert_eq!(session.peek_flashes().len(), 1);
    let mut state = session.lock();
    assert!(state.cycle);
    let patch = state.take_patch(Timestamp::default());
    assert!(!patch.clear && patch.set.is_empty() && patch.remove.is_empty());
}
