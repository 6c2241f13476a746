//! Readiness of the components the proxy depends on (providers' discovery and keys, Redis).
//! `/readyz` is ready only when every registered component is.

use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Default)]
pub struct Health {
    items: RwLock<BTreeMap<String, Result<(), String>>>,
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

    /// (ready, per-component state)
    pub fn report(&self) -> (bool, BTreeMap<String, Result<(), String>>) {
        let m = self.items.read().map(|m| m.clone()).unwrap_or_default();
        (m.values().all(Result::is_ok), m)
    }
}
