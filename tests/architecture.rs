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

/// The most ARCHITECTURE.md may hold: a newcomer reads it in one sitting.
const ARCHITECTURE_BYTES_MAX: usize = 15 * 1024;

#[test]
fn architecture_md_is_short_and_holds_no_measured_figures_or_dates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    assert!(text.len() <= ARCHITECTURE_BYTES_MAX, "ARCHITECTURE.md is {} bytes", text.len());
    let words: Vec<&str> = text.split_whitespace().collect();
    let units = ["ns", "µs", "us", "ms", "GB/s", "MB/s", "GiB/s", "MiB/s", "records/s"];
    let figures: Vec<String> = words
        .windows(2)
        .filter(|w| {
            w[0].chars().next().is_some_and(|c| c.is_ascii_digit())
                && units.contains(&w[1].trim_matches(|c: char| ",.;:)".contains(c)))
        })
        .map(|w| w.join(" "))
        .collect();
    assert!(figures.is_empty(), "measured figures belong in docs/benchmarks.md: {figures:?}");
    let dates: Vec<&&str> = words
        .iter()
        .filter(|w| {
            let b = w.as_bytes();
            b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-'
        })
        .collect();
    assert!(dates.is_empty(), "dates belong in docs/benchmarks.md: {dates:?}");
}

/// The most items the crate root may offer: the types most applications touch, and modules.
const ROOT_ITEMS_MAX: usize = 40;

/// The names `src/lib.rs` makes public at the crate root: its `pub mod`s and the names of its
/// top-level `pub use`s (a module's own contents not counted).
fn root_items(lib: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut statement = String::new();
    for line in lib.lines().filter(|l| !l.starts_with(' ') && !l.starts_with("//")) {
        if let Some(rest) = line.strip_prefix("pub mod ") {
            names.push(rest.trim_end_matches([';', '{', ' ']).to_string());
        } else if line.starts_with("pub use ") || !statement.is_empty() {
            statement.push_str(line);
            if line.ends_with(';') {
                let body = statement.trim_start_matches("pub use ").trim_end_matches(';');
                let list = match body.split_once('{') {
                    Some((_, inner)) => inner.trim_end_matches('}').to_string(),
                    None => body.rsplit("::").next().unwrap_or(body).to_string(),
                };
                names.extend(list.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()));
                statement.clear();
            }
        }
    }
    names
}

#[test]
fn the_crate_root_offers_a_handful_of_types_and_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let items = root_items(&lib);
    assert!(items.contains(&"Log".to_string()) && items.contains(&"headers".to_string()), "{items:?}");
    assert!(items.len() <= ROOT_ITEMS_MAX, "{} root items: {items:?}", items.len());
}
