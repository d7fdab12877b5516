//! The crate's top-level modules depend on each other without a cycle, and the protocol
//! layer stays free of I/O: `proto` reaches no other module but the plain-data ones,
//! and uses no runtime or socket.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module name → the files that make it up.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path);
        }
        modules.entry(name).or_insert_with(Vec::new).extend(files);
    }
    modules
}

/// The code of a file without its comments (doc links may name any module) and its
/// unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which other top-level modules each module uses (`crate::x`).
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let names: Vec<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, files)| {
            let text: String = files.iter().map(|f| code(f)).collect();
            let uses = names
                .iter()
                .filter(|other| *other != name)
                .filter(|other| {
                    text.contains(&format!("crate::{other}::"))
                        || text.contains(&format!("crate::{other}}}"))
                        || text.contains(&format!("crate::{other};"))
                        || text.contains(&format!("crate::{{{other}"))
                })
                .cloned()
                .collect();
            (name.clone(), uses)
        })
        .collect()
}

#[test]
fn top_level_modules_form_no_cycle() {
    let deps = dependencies();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) {
        match state.get(m) {
            Some(2) => return,
            Some(1) => panic!("module cycle: {} -> {m}", path.join(" -> ")),
            _ => {}
        }
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for d in &deps[m] {
            visit(d, deps, state, path);
        }
        path.pop();
        state.insert(m.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    for m in deps.keys() {
        visit(m, &deps, &mut state, &mut Vec::new());
    }
}

#[test]
fn the_protocol_layer_does_no_io() {
    let deps = dependencies();
    let allowed: BTreeSet<String> = ["addr", "stats"].iter().map(|s| s.to_string()).collect();
    let extra: Vec<_> = deps["proto"].difference(&allowed).collect();
    assert!(extra.is_empty(), "proto reaches {extra:?}");
    for file in &modules()["proto"] {
        let text = code(file);
        for io in ["tokio", "std::net", "std::fs", "std::thread", "Instant::now", "SystemTime"] {
            assert!(!text.contains(io), "{} uses {io}", file.display());
        }
    }
}

#[test]
fn the_link_shell_does_not_reach_into_the_node() {
    let deps = dependencies();
    for shell in ["link", "stream", "listener"] {
        assert!(!deps[shell].contains("node"), "{shell} uses the node directly");
    }
}
