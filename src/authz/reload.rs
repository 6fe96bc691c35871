//! The live policy set: an [`Authorizer`] behind an `ArcSwap`, replaced whole on
//! reload. A broken update is rejected (logged with file:line:col, counted) and
//! the previous set stays in force.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::{Authorizer, Diagnostic};
use crate::metrics::Metrics;

/// How often the watcher looks for changed policy files.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// A loaded policy set and its generation number (bumped on every reload).
#[derive(Debug)]
pub struct LoadedPolicies {
    /// The authorizer.
    pub authorizer: Authorizer,
    /// Generation; principals built for another generation are rebuilt.
    pub generation: u64,
}

/// The live policy set.
pub struct PolicyStore {
    schema: PathBuf,
    dir: PathBuf,
    current: ArcSwap<LoadedPolicies>,
    generation: AtomicU64,
    metrics: Metrics,
}

impl PolicyStore {
    /// Loads the initial policy set.
    ///
    /// # Errors
    /// Every diagnostic when the schema or a policy is invalid (nothing starts).
    pub fn load(
        schema: &Path,
        dir: &Path,
        metrics: Metrics,
    ) -> Result<PolicyStore, Vec<Diagnostic>> {
        let authorizer = Authorizer::load(schema, dir).inspect_err(|_| {
            metrics.policy_reload.with_label_values(&["failure"]).inc();
        })?;
        metrics.policy_reload.with_label_values(&["success"]).inc();
        metrics
            .policies
            .set(i64::try_from(authorizer.policy_count()).unwrap_or(i64::MAX));
        Ok(PolicyStore {
            schema: schema.to_path_buf(),
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(LoadedPolicies {
                authorizer,
                generation: 1,
            }),
            generation: AtomicU64::new(1),
            metrics,
        })
    }

    /// The policy set in force.
    pub fn current(&self) -> Arc<LoadedPolicies> {
        self.current.load_full()
    }

    /// Reloads from disk; on error the current set is kept.
    ///
    /// # Errors
    /// The diagnostics of the rejected update.
    pub fn reload(&self) -> Result<u64, Vec<Diagnostic>> {
        match Authorizer::load(&self.schema, &self.dir) {
            Ok(authorizer) => {
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                let count = authorizer.policy_count();
                self.current.store(Arc::new(LoadedPolicies {
                    authorizer,
                    generation,
                }));
                self.metrics
                    .policy_reload
                    .with_label_values(&["success"])
                    .inc();
                self.metrics
                    .policies
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
                tracing::info!(policies = count, generation, "policies reloaded");
                Ok(generation)
            }
            Err(diagnostics) => {
                self.metrics
                    .policy_reload
                    .with_label_values(&["failure"])
                    .inc();
                for diagnostic in &diagnostics {
                    tracing::error!(%diagnostic, "policy update rejected; keeping the previous policies");
                }
                Err(diagnostics)
            }
        }
    }

    /// A fingerprint of the schema and policy files (names, sizes, mtimes):
    /// changes when any of them is written, added or removed.
    pub fn files_fingerprint(&self) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|path| path.extension().is_some_and(|ext| ext == "cedar"))
                    .collect()
            })
            .unwrap_or_default();
        files.push(self.schema.clone());
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let meta = std::fs::metadata(&path).ok();
                let size = meta.as_ref().map_or(0, |m| m.len());
                let modified = meta.and_then(|m| m.modified().ok());
                (path, size, modified)
            })
            .collect()
    }

    /// Polls the files every [`WATCH_INTERVAL`] and reloads on change, until
    /// `shutdown` changes. Polling (rather than inotify) also sees the atomic
    /// directory swaps Kubernetes uses for ConfigMap volumes.
    pub async fn watch(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut seen = self.files_fingerprint();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
            let now = self.files_fingerprint();
            if now != seen {
                seen = now;
                // Errors are logged and counted by `reload`.
                let _ = self.reload();
            }
        }
    }
}
