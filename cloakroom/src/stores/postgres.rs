//! The PostgreSQL store. (Stub: being implemented.)

use std::sync::Arc;

use crate::error::StoreError;
use crate::store::Store;
use crate::stores::StoreUrl;

/// Keeps sessions in PostgreSQL.
#[derive(Debug)]
pub struct PostgresStore {
    _private: (),
}

/// Opens the store for [`connect`](crate::stores::connect).
pub(crate) async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::Config(format!(
        "the PostgreSQL store is not implemented yet ({})",
        url.redacted()
    )))
}
