//! End-to-end tests live in `tests/`: `local` (the operator's local runtime), `kube_apiserver`
//! (the chart and controllers on a real control plane), `kube_dataplane` (the controllers
//! driving real nodes). `kube/` builds the control plane's binaries. [`chaos`] is the fault
//! checker behind the `pika-chaos` binary.

pub mod chaos;

/// Path of a workspace binary next to the test executables (`target/<profile>/<name>`).
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(path.exists(), "{} missing: build the workspace first (cargo build --workspace)", path.display());
    path
}
