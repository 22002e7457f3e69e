//! Shared by the integration tests that load plugins from their built `.so`
//! files (run `cargo build --workspace` first; the test script does).

use std::path::PathBuf;

/// target/<profile>, from the test executable's location (target/<profile>/deps/...).
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
}

/// The built library `lib<stem>.so`.
pub fn library(stem: &str) -> PathBuf {
    let path = build_dir().join(format!("lib{stem}.so"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the tests",
        path.display()
    );
    path
}
