//! Config reload. The running [`Proxy`] — the config and everything derived from it (routes'
//! upstream pools and metric handles, authentication state) — sits behind an `ArcSwap`; each
//! request takes the current one once (`serve_io`) and keeps it to its end, so a request
//! already routed finishes on the config that routed it while new requests get the new one.
//!
//! A reload (`SIGHUP`, [`Running::reload`](super::Running::reload), or a change of the config
//! file or `--env-file` seen by [`watch`]) runs the one loader (`check`'s). Valid: a new
//! `Proxy` is built and swapped in; [`AuthState::carry_over`](crate::auth::AuthState::carry_over)
//! keeps what did not change (providers and their keys and token caches, the session store),
//! so a reload neither logs anyone out nor refetches keys. Invalid: every error is logged with
//! its file:line:col and the old config keeps serving (`/readyz` unchanged). Both are counted in
//! `portcullis_config_reloads_total{result}`.
//!
//! Not applied: what the listeners were started with (addresses, TLS listener and its files,
//! the http→https redirect, connection and header limits, drain timeout) — a change is logged
//! as needing a restart. The TLS certificate itself keeps reloading on its own (`tls`).
//!
//! The watcher polls each second: it hashes the file's contents read by path (following
//! symlinks, so a Kubernetes ConfigMap's `..data` swap counts; inotify would miss a swap of a
//! symlink above the watched file), and waits until two reads agree before loading, so a file
//! caught mid-write is not reported as invalid. A file that stays unreadable (removed, a
//! symlink to nothing) for [`MISSING_REPORT`] looks is reported once, as a failed reload.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::{Config, ConfigErrors, LoadOptions};
use crate::metrics::{Metrics, ReloadLabels};
use crate::proxy::Proxy;
use crate::upstream::Upstreams;

/// How often the watcher looks at the files.
const POLL: Duration = Duration::from_secs(1);
/// How long a changed file must stay the same before it is loaded.
const SETTLE: Duration = Duration::from_millis(200);
/// Looks (each [`POLL`] apart) that must find the config file unreadable before the watcher
/// reports it.
const MISSING_REPORT: u32 = 3;

/// Why a reload was not applied (the old config keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load: every error, each with file:line:col.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The file loads but its runtime cannot be built.
    #[error("{0}")]
    Setup(String),
}

/// The proxy currently serving, and how to replace it.
pub struct Live {
    current: ArcSwap<Proxy>,
    /// Shared by every config: counters carry over a reload.
    pub(super) metrics: Arc<Metrics>,
    options: LoadOptions,
    /// The config the listeners were started with.
    started: Arc<Config>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Fingerprint of the files as last loaded (by a reload or at start): the watcher reloads
    /// when the files differ from it.
    loaded: Mutex<Option<u64>>,
}

impl Live {
    pub(super) fn new(proxy: Arc<Proxy>, options: LoadOptions) -> Self {
        let started = proxy.config.clone();
        let loaded = Mutex::new(fingerprint(&started.source, &options));
        Live {
            metrics: proxy.metrics.clone(),
            current: ArcSwap::new(proxy),
            options,
            started,
            reloading: tokio::sync::Mutex::new(()),
            loaded,
        }
    }

    /// The proxy serving now (one atomic load; hold it for the whole request).
    #[inline]
    pub fn current(&self) -> Arc<Proxy> {
        self.current.load_full()
    }

    /// Loads the config file again and, when it is valid, serves it. `why` goes into the log.
    pub async fn reload(&self, why: &str) -> Result<(), ReloadError> {
        let _one = self.reloading.lock().await;
        let old = self.current();
        let path = old.config.source.clone();
        if let Ok(mut l) = self.loaded.lock() {
            *l = fingerprint(&path, &self.options);
        }
        tracing::info!(trigger = why, file = %path.display(), "reloading the config");
        let options = self.options.clone();
        // The loader reads and parses files (key files, certificates): off the workers.
        let loaded = tokio::task::spawn_blocking(move || crate::config::load(&path, &options))
            .await
            .map_err(|e| ReloadError::Setup(format!("the loader stopped: {e}")));
        let result = match loaded {
            Ok(Ok(cfg)) => self.apply(&old, cfg),
            Ok(Err(errs)) => Err(ReloadError::Invalid(errs)),
            Err(e) => Err(e),
        };
        let label = match &result {
            Ok(()) => "ok",
            Err(ReloadError::Invalid(errs)) => {
                for e in &errs.0 {
                    tracing::error!(error = %e, "config reload: invalid");
                }
                tracing::error!(
                    errors = errs.0.len(),
                    "config reload failed; still serving the previous config"
                );
                "error"
            }
            Err(ReloadError::Setup(e)) => {
                tracing::error!(error = %e, "config reload failed; still serving the previous config");
                "error"
            }
        };
        self.metrics
            .config_reloads
            .get_or_create(&ReloadLabels { result: label })
            .inc();
        result
    }

    /// Builds the runtime of `cfg` (keeping what `old`'s can share) and swaps it in.
    fn apply(&self, old: &Proxy, cfg: Config) -> Result<(), ReloadError> {
        for what in needs_restart(&self.started, &cfg) {
            tracing::warn!(
                setting = what,
                "config reload: {what} changed; this needs a restart (not applied)"
            );
        }
        let cfg = Arc::new(cfg);
        // Targets' health (ejections, back-offs) carries over for routes and targets that stay.
        let upstreams = Upstreams::new(&cfg, &old.metrics, Some(&old.upstreams))
            .map_err(|e| ReloadError::Setup(e.to_string()))?;
        let auth =
            (old.auth.carry_over(cfg.clone())).map_err(|e| ReloadError::Setup(e.to_string()))?;
        let new = Arc::new(Proxy::new(
            cfg.clone(),
            upstreams,
            old.metrics.clone(),
            auth,
            old.health.clone(),
        ));
        self.current.store(new.clone());
        new.upstreams.report_to(&new.health);
        new.auth
            .start_background_after(&old.auth, old.health.clone());
        let kept = (cfg.providers.keys())
            .filter(|n| {
                matches!((old.auth.providers.get(n), new.auth.providers.get(n)), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
            })
            .count();
        tracing::info!(
            routes = cfg.routes.len(),
            providers = cfg.providers.len(),
            providers_kept = kept,
            "config reloaded"
        );
        Ok(())
    }
}

/// The listener settings `new` changes from those the process started with.
fn needs_restart(started: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&started.server, &new.server);
    let tls = |s: &crate::config::Server| {
        s.tls
            .as_ref()
            .map(|t| (t.listen, t.cert.clone(), t.key.clone(), t.redirect_http))
    };
    let mut out = Vec::new();
    for (changed, what) in [
        (a.listen != b.listen, "[server] listen"),
        (a.admin_listen != b.admin_listen, "[server] admin_listen"),
        (
            tls(a) != tls(b),
            "[server.tls] (listener, files or redirect)",
        ),
        (
            a.max_connections != b.max_connections,
            "[server] max_connections",
        ),
        (
            a.max_header_bytes != b.max_header_bytes,
            "[server] max_header_bytes",
        ),
        (a.drain_timeout != b.drain_timeout, "[server] drain_timeout"),
    ] {
        if changed {
            out.push(what);
        }
    }
    out
}

/// A hash of the config file's and the env file's contents (`None`: the config file cannot be
/// read).
fn fingerprint(path: &Path, options: &LoadOptions) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).ok()?.hash(&mut h);
    if let Some(env) = &options.env_file {
        std::fs::read(env).ok().hash(&mut h);
    }
    Some(h.finish())
}

/// Reloads when the config file (or env file) changes, until `shutdown`.
pub(super) async fn watch(live: Arc<Live>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Consecutive looks that found the file unreadable.
    let mut missing = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = super::stopped(&mut shutdown) => return,
        }
        let path = live.current().config.source.clone();
        let opts = live.options.clone();
        let now = read_fingerprint(path.clone(), opts.clone()).await;
        let loaded = live.loaded.lock().map(|l| *l).unwrap_or(None);
        if now.is_none() {
            // Unreadable: for a moment mid-swap (the next tick looks again); still so after
            // a few looks, reported once — the reload fails, is logged and counted — and then
            // quiet until the file is back (`loaded` is `None` by then).
            missing += 1;
            if missing == MISSING_REPORT && loaded.is_some() {
                let _ = live.reload("config file unreadable").await;
            }
            continue;
        }
        missing = 0;
        if now == loaded {
            continue;
        }
        // Changed: wait until it stops changing (bounded: a file rewritten non-stop is loaded
        // as it is after a few rounds).
        let mut seen = now;
        for _ in 0..10 {
            tokio::time::sleep(SETTLE).await;
            let again = read_fingerprint(path.clone(), opts.clone()).await;
            if again == seen {
                break;
            }
            seen = again;
        }
        // A SIGHUP may have loaded it meanwhile.
        if live.loaded.lock().map(|l| *l).unwrap_or(None) == seen {
            continue;
        }
        let _ = live.reload("file changed").await;
    }
}

async fn read_fingerprint(path: std::path::PathBuf, opts: LoadOptions) -> Option<u64> {
    tokio::task::spawn_blocking(move || fingerprint(&path, &opts))
        .await
        .ok()
        .flatten()
}
