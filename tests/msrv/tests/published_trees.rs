//! What the published crates must not build with, whatever their features pull in elsewhere in
//! the workspace.

use std::path::Path;
use std::process::Command;

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// async-std is discontinued upstream (RUSTSEC-2025-0052): the adapter that serves async-std
/// and smol applications is built on the smol-rs crates instead; async-std itself may only be a
/// dev-dependency (the tests that prove the adapter under it).
#[test]
fn the_async_std_adapter_does_not_build_with_async_std() {
    let deps = leasedlock_msrv_check::normal_dependencies(&metadata(), "leasedlock-async-std")
        .expect("metadata is checkable");
    assert!(
        deps.contains("async-io"),
        "the closure is computed: {deps:?}"
    );
    assert!(!deps.contains("async-std"), "{deps:?}");
}
