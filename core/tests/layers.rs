//! The modules of core depend one way, layer on layer (README, "How the
//! code is organised"): a module may use modules of its own layer or below,
//! never above, and no two modules use each other, even through others.
//! Read from the sources' `crate::…` paths, so a new cycle fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of core, by layer (0 = leaf).
const LAYERS: &[(&str, &[&str])] = &[
    ("leaf", &["ids", "clock", "error", "utc", "caller", "email", "start"]),
    ("model", &["company", "call", "callback", "customer", "appointment", "queue", "breaker", "ratelimit", "config"]),
    ("store", &["store"]),
    ("operations", &["slots", "booking", "change", "import", "retell", "calcom", "calcom_booking", "migrate"]),
    ("facade", &["callbook", "journey", "review", "stats", "health"]),
    ("services", &["availability", "sync", "agent", "calcom_webhook", "backfill"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

/// The source text of a module (a file, or every file of its folder).
fn source(src: &Path, module: &str) -> String {
    let file = src.join(format!("{module}.rs"));
    if file.exists() {
        return std::fs::read_to_string(file).expect("reads");
    }
    let mut text = String::new();
    for entry in std::fs::read_dir(src.join(module)).expect("module folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            text.push_str(&std::fs::read_to_string(path).expect("reads"));
        }
    }
    text
}

/// The modules `text` names as `crate::<module>`.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let name: String =
            text[i + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    LAYERS
        .iter()
        .flat_map(|(_, modules)| modules.iter())
        .map(|m| {
            let mut deps = uses(&source(&src, m));
            deps.remove(*m);
            (m.to_string(), deps)
        })
        .collect()
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if name == "lib" {
            continue;
        }
        assert!(layer_of(&name).is_some(), "module {name} has no layer in tests/layers.rs");
    }
}

#[test]
fn modules_use_only_their_layer_and_below() {
    let mut wrong = Vec::new();
    for (module, deps) in graph() {
        let own = layer_of(&module).expect("listed");
        for dep in deps {
            match layer_of(&dep) {
                Some(layer) if layer > own => {
                    wrong.push(format!("{module} ({}) uses {dep} ({})", LAYERS[own].0, LAYERS[layer].0))
                }
                Some(_) => {}
                None => wrong.push(format!("{module} uses crate::{dep}, which has no layer")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let graph = graph();
    // Depth-first search for a back edge; report the cycle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            return Some(path[i..].iter().cloned().chain([m.to_string()]).collect());
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for dep in graph.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}
