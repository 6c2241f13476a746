//! Readiness of the components the proxy depends on (providers' discovery and keys, Redis).
//! `/readyz` is ready only when every registered component is. It also lists routes whose
//! upstream targets are all ejected, which does not make it fail (see `upstream::targets`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Routes whose upstream targets are all ejected, with a message each (computed when asked).
pub type UpstreamReport = Arc<dyn Fn() -> BTreeMap<String, String> + Send + Sync>;

#[derive(Default)]
pub struct Health {
    items: RwLock<BTreeMap<String, Result<(), String>>>,
    /// Reported by `/readyz` beside the components; does not make it fail.
    upstreams: RwLock<Option<UpstreamReport>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or updates) a component's state.
    pub fn set(&self, component: &str, state: Result<(), String>) {
        if let Ok(mut m) = self.items.write() {
            m.insert(component.to_string(), state);
        }
    }

    /// Forgets a component (a provider or store a reloaded config no longer has).
    pub fn remove(&self, component: &str) {
        if let Ok(mut m) = self.items.write() {
            m.remove(component);
        }
    }

    pub fn is_ready(&self, component: &str) -> bool {
        self.items
            .read()
            .map(|m| matches!(m.get(component), Some(Ok(()))))
            .unwrap_or(false)
    }

    /// What `/readyz` reports about upstreams: set by the config serving now.
    pub fn set_upstream_report(&self, report: UpstreamReport) {
        if let Ok(mut u) = self.upstreams.write() {
            *u = Some(report);
        }
    }

    /// Routes whose targets are all ejected, now.
    pub fn upstream_report(&self) -> BTreeMap<String, String> {
        let report = self.upstreams.read().ok().and_then(|u| u.clone());
        report.map(|f| f()).unwrap_or_default()
    }

    /// (ready, per-component state)
    pub fn report(&self) -> (bool, BTreeMap<String, Result<(), String>>) {
        let m = self.items.read().map(|m| m.clone()).unwrap_or_default();
        (m.values().all(Result::is_ok), m)
    }
}
