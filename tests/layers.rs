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
    &["bus", "kafka", "serve", "monitor"],
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

/// The code of a line: without a `//` comment (doc comments link through the crate root freely).
fn code_of(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

#[test]
fn no_library_file_names_an_item_through_the_crate_roots_reexports() {
    // `crate::Log` instead of `crate::log::Log` hides which module a file depends on from the
    // layer rule above: library code (lib.rs aside, and comments) names items by their module.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("cd");
    let mut files = Vec::new();
    sources(Path::new("src"), &mut files);
    let mut through_root = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("lib.rs")) {
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in text.lines().enumerate() {
            let mut rest = code_of(line);
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                if rest.starts_with(|c: char| c.is_ascii_uppercase()) {
                    through_root.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(through_root.is_empty(), "paths through lib.rs's re-exports:\n{}", through_root.join("\n"));
}

/// A library file's module path: `src/log/writer.rs` → `log::writer`, `src/log/mod.rs` → `log`.
fn module_path(file: &Path) -> String {
    let rel = file.strip_prefix("src").expect("under src").with_extension("");
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let parts = if parts.last().is_some_and(|p| p == "mod") { &parts[..parts.len() - 1] } else { &parts[..] };
    parts.join("::")
}

#[test]
fn no_two_files_of_a_module_folder_depend_on_each_other_in_a_cycle() {
    // Within each top-level folder (a layer's module), the files (each folder's mod.rs left out:
    // it declares them) and the `crate::` paths between them form no cycle: a reader can take the
    // files in an order where each uses only those before it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("cd");
    let mut files = Vec::new();
    sources(Path::new("src"), &mut files);
    let modules: Vec<(String, &PathBuf)> = files
        .iter()
        .filter(|f| f.components().count() > 2 && !f.ends_with("mod.rs"))
        .map(|f| (module_path(f), f))
        .collect();
    let known: std::collections::HashSet<&str> = modules.iter().map(|(m, _)| m.as_str()).collect();
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for (module, file) in &modules {
        let top = module.split("::").next().unwrap_or_default();
        let text = std::fs::read_to_string(file).expect("read");
        for line in text.lines().map(code_of) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let path: String =
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
                // The longest prefix of the path that is a file of the same folder.
                let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                let target =
                    (1..=segments.len()).rev().map(|n| segments[..n].join("::")).find(|p| known.contains(p.as_str()));
                if let Some(t) = target.filter(|t| t != module && t.split("::").next() == Some(top)) {
                    edges.entry(module.clone()).or_default().insert(t);
                }
            }
        }
    }
    // Depth-first search for a back edge; the cycle found is named in order.
    fn visit(
        node: &str,
        edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        state: &mut std::collections::HashMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = std::collections::HashMap::new();
    for (module, _) in &modules {
        if !state.contains_key(module.as_str()) {
            let cycle = visit(module, &edges, &mut state, &mut Vec::new());
            assert!(cycle.is_none(), "a cycle between files: {}", cycle.unwrap_or_default().join(" -> "));
        }
    }
    assert!(edges.len() > 10, "the check sees the files' paths: {} files with edges", edges.len());
}

/// The largest a library file may grow before it is split along its seams.
const FILE_LINES_MAX: usize = 700;
/// The longest a library function may be.
const FUNCTION_LINES_MAX: usize = 70;

#[test]
fn no_library_file_is_longer_than_the_limit() {
    let mut files = Vec::new();
    sources(Path::new("src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("tests.rs"))
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > FILE_LINES_MAX).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {FILE_LINES_MAX} lines: {long:?}");
}

/// Functions of a file that span more than `FUNCTION_LINES_MAX` lines, from a `fn` line to the
/// closing brace at its indentation (unit tests excluded: they follow `#[cfg(test)]`).
fn long_functions(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let end_of_code = lines.iter().position(|l| l.trim() == "#[cfg(test)]").unwrap_or(lines.len());
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate().take(end_of_code) {
        let code = code_of(line);
        let trimmed = code.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "const fn ",
            "pub const fn ",
            "async fn ",
            "pub async fn ",
        ]
        .iter()
        .any(|p| trimmed.starts_with(p));
        if !is_fn || trimmed.ends_with(';') {
            continue;
        }
        let indent = code.len() - trimmed.len();
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(len) = lines[i..end_of_code].iter().position(|l| l.trim_end() == close)
            && len + 1 > FUNCTION_LINES_MAX
        {
            let after_fn = trimmed.split_once("fn ").map_or(trimmed, |(_, rest)| rest);
            let name = after_fn.split(['(', '<']).next().unwrap_or(after_fn).to_string();
            out.push((name, len + 1));
        }
    }
    out
}

#[test]
fn no_library_function_is_longer_than_the_limit() {
    let mut files = Vec::new();
    sources(Path::new("src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("tests.rs"))
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            long_functions(&text).into_iter().map(move |(name, n)| format!("{}: {name} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "functions over {FUNCTION_LINES_MAX} lines: {long:#?}");
}

#[test]
fn the_logs_shared_state_has_no_public_field() {
    let text = std::fs::read_to_string("src/log/mod.rs").unwrap();
    let start = text.find("pub(crate) struct Shared {").expect("Shared is defined in src/log/mod.rs");
    let body = &text[start..];
    let body = &body[..body.find("\n}").unwrap()];
    let public: Vec<&str> =
        body.lines().skip(1).map(str::trim).filter(|l| l.starts_with("pub ") || l.starts_with("pub(")).collect();
    assert!(
        public.is_empty(),
        "Shared's state is written by the files that own it, not through public fields: {public:?}"
    );
}
