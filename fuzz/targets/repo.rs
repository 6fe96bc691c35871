//! The repository root, from the fuzz crate (`fuzz/`) or the main one.

use std::path::PathBuf;

/// The directory holding `policies/` and `config/`.
pub fn root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if dir.join("policies").is_dir() {
        dir
    } else {
        dir.join("..")
    }
}
