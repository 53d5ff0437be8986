//! The memory store against the conformance suite.

mod conformance;
mod support;

use cloakroom::MemoryStore;
use conformance::Harness;

async fn memory() -> Option<Harness> {
    Some(Harness::new(MemoryStore::default()))
}

conformance_suite!(memory());
