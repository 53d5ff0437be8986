//! Reading session hashes back: the field/value pairs of an `HGETALL` reply, and the record
//! they hold. Malformed replies and fields are [`StoreError::Corrupt`], never a panic.

use redis::Value;

use super::NAME;
use super::keys::{CREATED_FIELD, DATA_FIELD, EXPIRES_FIELD, UPDATED_FIELD, USER_FIELD};
use crate::error::StoreError;
use crate::record::{Data, Record};
use crate::time::Timestamp;

/// A field name and its value, as stored.
pub(super) type Field<'a> = (&'a [u8], &'a [u8]);

/// The field/value pairs of a hash as `HGETALL` returns it (a flat array in RESP2, a map in
/// RESP3), borrowed from the reply.
pub(super) fn hash_fields(reply: &Value) -> Result<Vec<Field<'_>>, StoreError> {
    fn bytes(value: &Value) -> Option<&[u8]> {
        match value {
            Value::BulkString(bytes) => Some(bytes),
            _ => None,
        }
    }
    let fields = match reply {
        // An odd item count leaves a last chunk of one, which is malformed like any other.
        Value::Array(items) => items
            .chunks(2)
            .map(|pair| match pair {
                [field, value] => Some((bytes(field)?, bytes(value)?)),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .map(|(field, value)| Some((bytes(field)?, bytes(value)?)))
            .collect(),
        _ => None,
    };
    fields.ok_or_else(|| StoreError::corrupt(NAME, "a session hash came back malformed"))
}

/// Rebuilds a record from the fields of its hash. Fields this version does not know are
/// skipped, so a later version may add some.
pub(super) fn decode<'a>(
    fields: impl IntoIterator<Item = Field<'a>>,
) -> Result<Record, StoreError> {
    let mut data = Data::new();
    let (mut created, mut updated, mut expires, mut user) = (None, None, None, None);
    for (field, value) in fields {
        let field = std::str::from_utf8(field)
            .map_err(|_| StoreError::corrupt(NAME, "a session field name is not UTF-8"))?;
        if let Some(key) = field.strip_prefix(DATA_FIELD) {
            let value = serde_json::from_slice(value).map_err(|e| {
                StoreError::corrupt(NAME, format!("the value of {key:?} is not JSON: {e}"))
            })?;
            data.insert(key.to_owned(), value);
            continue;
        }
        let slot = match field {
            CREATED_FIELD => &mut created,
            UPDATED_FIELD => &mut updated,
            EXPIRES_FIELD => &mut expires,
            USER_FIELD => &mut user,
            _ => continue, // Fields a later version may add.
        };
        let text = std::str::from_utf8(value)
            .map_err(|_| StoreError::corrupt(NAME, format!("{field} is not UTF-8")))?;
        *slot = Some(text.to_owned());
    }
    let millis = |name: &str, value: Option<String>| {
        let text = value.ok_or_else(|| StoreError::corrupt(NAME, format!("{name} is missing")))?;
        text.parse::<i64>()
            .map(Timestamp::from_unix_millis)
            .map_err(|_| StoreError::corrupt(NAME, format!("{name} = {text:?} is not a number")))
    };
    let created_at = millis(CREATED_FIELD, created)?;
    Ok(Record {
        data,
        user_id: user,
        created_at,
        updated_at: updated.map_or(Ok(created_at), |u| millis(UPDATED_FIELD, Some(u)))?,
        expires_at: millis(EXPIRES_FIELD, expires)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    #[test]
    fn reads_hgetall_replies_of_either_protocol() {
        let expected: [Field<'_>; 2] = [(b"d:a:b", b"\xff\x00"), (b"m:expires", b"99")];
        let resp2 = Value::Array(vec![
            bulk(b"d:a:b"),
            bulk(b"\xff\x00"),
            bulk(b"m:expires"),
            bulk(b"99"),
        ]);
        assert_eq!(hash_fields(&resp2).unwrap(), expected);
        let resp3 = Value::Map(vec![
            (bulk(b"d:a:b"), bulk(b"\xff\x00")),
            (bulk(b"m:expires"), bulk(b"99")),
        ]);
        assert_eq!(hash_fields(&resp3).unwrap(), expected);
        assert!(hash_fields(&Value::Array(vec![])).unwrap().is_empty());
    }

    #[test]
    fn malformed_replies_are_corrupt_not_a_panic() {
        for bad in [
            Value::Nil,
            Value::Int(3),
            Value::Array(vec![bulk(b"d:a")]),
            Value::Array(vec![bulk(b"d:a"), Value::Int(1)]),
            Value::Map(vec![(Value::Nil, bulk(b"1"))]),
        ] {
            assert!(
                matches!(hash_fields(&bad), Err(StoreError::Corrupt { .. })),
                "{bad:?}"
            );
        }
    }
}
