//! Shared by the operator's integration tests.

use std::path::PathBuf;

/// A path in the repository of the checkout running the test (cargo sets CARGO_MANIFEST_DIR at
/// run time), not the one that compiled it: a test binary is reused from a shared target
/// directory while its sources are unchanged.
pub fn repo(path: &str) -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(crate_dir).join("..").join(path)
}
