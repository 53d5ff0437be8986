//! The memory store against the conformance suite.

mod conformance;
mod support;

use cloakroom::MemoryStore;
use conformance::{Harness, Reports};

async fn memory() -> Option<Harness> {
    Some(Harness::new(MemoryStore::default()).reports(Reports::ALL))
}

conformance_suite!(memory());
