//! Loading policy sets for the live state ([`crate::live`]): each load is a
//! whole new [`Authorizer`] with the next generation number, counted in
//! `wisp_policy_reload_total`; a broken update is rejected with every
//! diagnostic and the caller keeps the previous set.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Authorizer, Diagnostic};
use crate::metrics::Metrics;

/// A loaded policy set and its generation number (bumped on every reload).
#[derive(Debug)]
pub struct LoadedPolicies {
    /// The authorizer.
    pub authorizer: Authorizer,
    /// Generation; principals built for another generation are rebuilt.
    pub generation: u64,
}

/// Loads policy sets and numbers them.
#[derive(Debug)]
pub struct PolicyLoader {
    generation: AtomicU64,
    metrics: Metrics,
}

impl PolicyLoader {
    /// A loader whose first set will be generation 1.
    pub fn new(metrics: Metrics) -> PolicyLoader {
        PolicyLoader {
            generation: AtomicU64::new(0),
            metrics,
        }
    }

    /// Loads and validates the schema and every `*.cedar` file of `dir`.
    ///
    /// # Errors
    /// Every diagnostic of a rejected set (counted as a failed reload).
    pub fn load(&self, schema: &Path, dir: &Path) -> Result<Arc<LoadedPolicies>, Vec<Diagnostic>> {
        match Authorizer::load(schema, dir) {
            Ok(authorizer) => {
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                self.metrics
                    .policy_reload
                    .with_label_values(&["success"])
                    .inc();
                self.metrics
                    .policies
                    .set(i64::try_from(authorizer.policy_count()).unwrap_or(i64::MAX));
                Ok(Arc::new(LoadedPolicies {
                    authorizer,
                    generation,
                }))
            }
            Err(diagnostics) => {
                self.metrics
                    .policy_reload
                    .with_label_values(&["failure"])
                    .inc();
                Err(diagnostics)
            }
        }
    }
}

/// A fingerprint of the schema and the policy files: their names and
/// contents. It changes when any of them is written, added or removed,
/// including through the `..data` symlink swap of a Kubernetes ConfigMap
/// volume (contents are read through the links).
pub fn files_fingerprint(schema: &Path, dir: &Path) -> u64 {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "cedar"))
                .collect()
        })
        .unwrap_or_default();
    files.push(schema.to_path_buf());
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in files {
        path.hash(&mut hasher);
        std::fs::read(&path).ok().hash(&mut hasher);
    }
    hasher.finish()
}
