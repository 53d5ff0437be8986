//! What a store keeps for one session, and the patch that changes it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::Timestamp;

/// A session's key/value data: a JSON object.
pub type Data = Map<String, Value>;

/// Where flash messages live inside [`Record::data`]. Keys starting with `__` are reserved.
pub(crate) const FLASH_KEY: &str = "__flash";
/// Present (and `true`) when the session uses a persistent cookie.
pub(crate) const PERSISTENT_KEY: &str = "__persistent";

/// One stored session, as a store keeps it (under the [`SessionHash`](crate::SessionHash) of its
/// ticket, which is not part of the record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The session's data, including cloakroom's reserved `__` keys.
    pub data: Data,
    /// The user the session belongs to, if any; stores index it.
    pub user_id: Option<String>,
    /// When the session was first stored. The absolute lifetime counts from here.
    pub created_at: Timestamp,
    /// When the record was last changed.
    pub updated_at: Timestamp,
    /// When the session stops being valid: the earlier of the idle and absolute deadlines.
    pub expires_at: Timestamp,
}

impl Record {
    /// Whether the record is still valid at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

/// A change to one stored session, applied by the store to whatever the record holds *now*.
///
/// Order of application: `clear`, then `remove`, then `set`; then `user_id` and `expires_at` if
/// given; `updated_at` always. A key never appears in both `set` and `remove`. Because the patch
/// names only what this request changed, two concurrent requests that change different keys both
/// keep their change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Patch {
    /// Remove every key before setting the new ones.
    pub clear: bool,
    /// Keys to set, with their new values.
    pub set: Vec<(String, Value)>,
    /// Keys to remove.
    pub remove: Vec<String>,
    /// `Some(new)` to change the user binding (`Some(None)` unbinds).
    pub user_id: Option<Option<String>>,
    /// A new expiry, when the idle deadline is extended.
    pub expires_at: Option<Timestamp>,
    /// When the change is made: the new `updated_at`, and the instant against which the store
    /// decides that the record has expired (an expired record is never patched).
    pub updated_at: Timestamp,
}

impl Patch {
    /// A patch that only moves the expiry.
    pub fn touch(expires_at: Timestamp, now: Timestamp) -> Self {
        Self {
            expires_at: Some(expires_at),
            updated_at: now,
            ..Self::default()
        }
    }

    /// Whether the patch changes the data (as opposed to only the metadata).
    pub fn changes_data(&self) -> bool {
        self.clear || !self.set.is_empty() || !self.remove.is_empty()
    }

    /// Whether applying the patch would change anything but `updated_at`.
    pub fn is_empty(&self) -> bool {
        !self.changes_data() && self.user_id.is_none() && self.expires_at.is_none()
    }

    /// Applies the patch to a record in memory: for stores that cannot apply it natively.
    pub fn apply_to(&self, record: &mut Record) {
        if self.clear {
            record.data.clear();
        }
        for key in &self.remove {
            record.data.remove(key);
        }
        for (key, value) in &self.set {
            // An existing entry keeps its key: cloning one in would only be dropped again.
            match record.data.get_mut(key) {
                Some(slot) => slot.clone_from(value),
                None => {
                    record.data.insert(key.clone(), value.clone());
                }
            }
        }
        if let Some(user_id) = &self.user_id {
            record.user_id.clone_from(user_id);
        }
        if let Some(expires_at) = self.expires_at {
            record.expires_at = expires_at;
        }
        record.updated_at = self.updated_at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applies_clear_then_remove_then_set() {
        let t = Timestamp::from_unix_millis;
        let mut record = Record {
            data: json!({"a": 1, "b": 2, "c": 3}).as_object().unwrap().clone(),
            user_id: Some("u1".into()),
            created_at: t(1),
            updated_at: t(1),
            expires_at: t(100),
        };
        Patch {
            remove: vec!["a".into()],
            set: vec![("d".into(), json!([4]))],
            user_id: Some(None),
            updated_at: t(5),
            ..Patch::default()
        }
        .apply_to(&mut record);
        assert_eq!(
            Value::Object(record.data.clone()),
            json!({"b": 2, "c": 3, "d": [4]})
        );
        assert_eq!(record.user_id, None);
        assert_eq!(record.updated_at, t(5));
        assert_eq!(record.expires_at, t(100));

        Patch {
            clear: true,
            set: vec![("e".into(), json!(null))],
            expires_at: Some(t(200)),
            updated_at: t(6),
            ..Patch::default()
        }
        .apply_to(&mut record);
        assert_eq!(Value::Object(record.data), json!({"e": null}));
        assert_eq!(record.expires_at, t(200));
    }

    #[test]
    fn touch_is_not_empty_but_changes_no_data() {
        let patch = Patch::touch(Timestamp::from_unix_millis(9), Timestamp::default());
        assert!(!patch.is_empty());
        assert!(!patch.changes_data());
        assert!(Patch::default().is_empty());
    }
}
