//! Everything one run measured, and the questions the report asks of it.

use std::collections::BTreeMap;

use crate::model::{Backend, Correctness, Harness, Library, Measured, Outcome, Workload};

/// One cell's place in the grid.
pub type Cell = (Harness, Workload, Backend, Library);

#[derive(Default)]
pub struct Results {
    pub cells: BTreeMap<Cell, Outcome>,
    /// The same routes with no session layer, per harness and workload, measured next to each
    /// store's cells.
    pub plain: BTreeMap<(Harness, Workload, Backend), Outcome>,
    /// W1 on the same routes behind a layer that does nothing, per harness, measured next to
    /// each store's cells: the floor of any layer's cost.
    pub noop: BTreeMap<(Harness, Backend), Outcome>,
    pub correctness: BTreeMap<(Backend, Library), Correctness>,
    /// Bytes per session in each library's memory store, and the session count.
    pub memory: BTreeMap<Library, Result<f64, String>>,
    pub memory_sessions: u64,
    /// W3 on cloakroom's store with few and with many sessions stored.
    pub scale: BTreeMap<Backend, (Outcome, Outcome)>,
    pub scale_sizes: (u64, u64),
    /// Which harnesses, workloads, stores and libraries this run covered.
    pub harnesses: Vec<Harness>,
    pub workloads: Vec<Workload>,
    pub backends: Vec<Backend>,
    pub libraries: Vec<Library>,
}

impl Results {
    pub fn get(&self, cell: Cell) -> Option<&Measured> {
        self.cells.get(&cell)?.as_ref().ok()
    }

    /// cloakroom's throughput divided by `peer`'s, in the same run.
    pub fn ratio(&self, h: Harness, w: Workload, b: Backend, peer: Library) -> Option<f64> {
        let ours = self.get((h, w, b, Library::Cloakroom))?.throughput();
        let theirs = self.get((h, w, b, peer))?.throughput();
        (theirs > 0.0).then(|| ours / theirs)
    }

    /// cloakroom's throughput as a fraction of the plain router's.
    pub fn of_plain(&self, h: Harness, w: Workload, b: Backend) -> Option<f64> {
        let ours = self.get((h, w, b, Library::Cloakroom))?.throughput();
        self.share_of_plain(ours, h, w, b)
    }

    /// The no-op layer's W1 throughput as a fraction of the plain router's.
    pub fn noop_of_plain(&self, h: Harness, b: Backend) -> Option<f64> {
        let noop = self.noop.get(&(h, b))?.as_ref().ok()?.throughput();
        self.share_of_plain(noop, h, Workload::W1, b)
    }

    fn share_of_plain(&self, throughput: f64, h: Harness, w: Workload, b: Backend) -> Option<f64> {
        let plain = self.plain.get(&(h, w, b))?.as_ref().ok()?.throughput();
        (plain > 0.0).then(|| throughput / plain)
    }
}
