//! The dependency direction of the crate's modules, read from the source: `domain` imports no
//! other module, and no module imports one that imports it back (directly or through others).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules and the files of each.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut files = Vec::new();
            collect(&path, &mut files);
            out.insert(name, files);
        } else if name != "lib" && name != "main" && !name.ends_with("_tests") {
            out.entry(name).or_default().push(path);
        }
    }
    out
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The other top-level modules a text names: `crate::x` paths and `use crate::{x, y}` lists.
fn imports(text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(list) = rest.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            list[..end]
                .split(',')
                .map(|n| n.trim().split("::").next().unwrap_or(""))
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            vec![&rest[..end]]
        };
        for n in names {
            if known.contains(n) {
                found.insert(n.to_owned());
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, files)| {
            let mut deps = BTreeSet::new();
            for f in files {
                deps.extend(imports(&std::fs::read_to_string(f).unwrap(), &known));
            }
            deps.remove(name);
            (name.clone(), deps)
        })
        .collect()
}

/// A cycle through `start`, if any, as the path of module names.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    at: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for next in graph.get(at).into_iter().flatten() {
        if next == start {
            let mut c = path.clone();
            c.push(next.clone());
            return Some(c);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(c) = cycle_from(graph, start, next, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn the_domain_imports_no_other_module() {
    let g = graph();
    assert!(g.contains_key("domain"), "{g:?}");
    assert_eq!(g["domain"], BTreeSet::new());
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph();
    for name in g.keys() {
        let mut path = vec![name.clone()];
        if let Some(cycle) = cycle_from(&g, name, name, &mut path) {
            panic!("dependency cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_import_reader_sees_paths_and_lists() {
    let known: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let text = "use crate::a::X;\nuse crate::{b, c::Y};\nfn f() { crate::a::g(); }\n// crate::zz";
    let want: BTreeSet<String> = known.clone();
    assert_eq!(imports(text, &known), want);
    // The check can fail: a two-module loop is reported.
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    let mut path = vec!["a".to_owned()];
    assert_eq!(
        cycle_from(&g, "a", "a", &mut path),
        Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
    );
}
