//! ARCHITECTURE.md stays true: every file or folder it names exists.

use std::path::Path;

/// The paths written in backticks in `text` that start at one of the repository's top folders.
fn named_paths(text: &str) -> Vec<String> {
    let tops = ["src/", "tests/", "benches/", "fuzz/", "docs/", "examples/"];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| tops.iter().any(|t| s.starts_with(t)))
        .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || "/_.-".contains(c)))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_path_that_architecture_md_names_exists() {
    // Reads ARCHITECTURE.md, takes each `src/...`, `tests/...` (and the other top folders) path
    // in backticks, and fails naming those that are not in the tree.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let paths = named_paths(&text);
    assert!(paths.len() > 40, "the code map names the tree's files: {}", paths.len());
    let missing: Vec<&String> = paths.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md names paths that do not exist: {missing:?}");
}

#[test]
fn the_path_check_finds_a_path_that_does_not_exist() {
    let paths = named_paths("see `src/log/recovery.rs` and `src/lib.rs`, not `Log::open`");
    assert_eq!(paths, ["src/log/recovery.rs", "src/lib.rs"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!root.join(&paths[0]).exists() && root.join(&paths[1]).exists());
}
