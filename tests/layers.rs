//! The layer rule: a module names only modules of its own layer or of a layer below (ARCHITECTURE.md
//! § Layers). Reads every library source file, finds each `crate::<module>` it names, and fails
//! on an upward edge, naming the file, the line and both layers.

use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first.
const LAYERS: &[&[&str]] = &[
    &["error", "clock", "sync", "trace"],
    &["format"],
    &["storage"],
    &["log"],
    &["store"],
    &["consume"],
    &["replay", "queue"],
    &["bus", "kafka"],
    &["asynchronous"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a library file belongs to (`src/log/writer.rs` → `log`).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix("src").ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            if !p.ends_with("bin") {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_names_a_module_of_a_higher_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("cd");
    let mut files = Vec::new();
    sources(Path::new("src"), &mut files);
    files.sort();
    let mut upward = Vec::new();
    for file in &files {
        let Some(own) = module_of(file) else { continue };
        if own == "lib" {
            continue; // the crate root declares and re-exports every layer
        }
        let own_layer = layer_of(&own).unwrap_or_else(|| panic!("{}: module {own} is in no layer", file.display()));
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let Some(layer) = layer_of(&name) else { continue };
                if layer > own_layer {
                    upward.push(format!(
                        "{}:{}: {own} (layer {own_layer}) names {name} (layer {layer})",
                        file.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    assert!(upward.is_empty(), "upward edges:\n{}", upward.join("\n"));
}

#[test]
fn every_top_level_module_is_in_a_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    for line in lib.lines() {
        let line = line.trim();
        let decl = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod "));
        if let Some(name) = decl.and_then(|d| d.strip_suffix(';')) {
            assert!(layer_of(name).is_some(), "module {name} is in no layer of tests/layers.rs");
        }
    }
}

#[test]
fn unsafe_code_lives_only_in_the_map_module_and_each_block_says_why_it_is_sound() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let allowed = root.join("storage").join("map.rs");
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !code.contains("unsafe {") && !code.contains("unsafe fn") && !code.contains("unsafe impl") {
                continue;
            }
            assert_eq!(file, &allowed, "{}:{}: unsafe outside src/storage/map.rs", file.display(), i + 1);
            let said = lines[..i].iter().rev().take(8).any(|l| l.trim_start().starts_with("// SAFETY:"));
            assert!(said, "{}:{}: unsafe without a // SAFETY: comment above it", file.display(), i + 1);
        }
    }
}
