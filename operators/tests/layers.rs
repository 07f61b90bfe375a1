//! The layout's rules, checked over the whole workspace's sources (no build of the other
//! crates needed: this reads their files):
//!
//! - **no import circle inside a crate**: modules (one per file) linked by their `crate::` and
//!   `super::` paths form no cycle, a parent and its own children aside (a `mod.rs` that
//!   re-exports its children is one room);
//! - **the folders stack one way** where a crate declares an order (the operators crate:
//!   `envelope` → `api` → `lang` → `stream`, `group` → `keyed` → `connectors`; the agent crate:
//!   `model`, `sandbox` → `memory` → `tools` → `llm`): a module never uses one declared above it;
//! - **no source file over 600 lines**.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &["state", "operators", "agent", "engine", "bench"];
const MAX_LINES: usize = 600;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/`: `api/record.rs` → `["api", "record"]`,
/// `api/mod.rs` → `["api"]`, `lib.rs` → `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// The paths a file names: every `crate::a::b…` and `super::…` (resolved against `module`),
/// as segment lists — in `use` trees (grouped `use crate::{a::b, c::{d, e}}` expanded),
/// in expressions and types, and inside inline modules (where `super` is the file's module).
/// Parsed with `syn`, so neither grouping nor line breaks hide a path.
fn paths_named(text: &str, module: &[String]) -> Vec<Vec<String>> {
    use syn::visit::Visit;

    struct Paths {
        /// The module the code being visited is in (the file's, then inline modules).
        module: Vec<String>,
        out: Vec<Vec<String>>,
    }

    impl Paths {
        /// Resolves `segs` (starting with `crate` or `super`), if they do.
        fn add(&mut self, segs: &[String]) {
            if !matches!(segs.first().map(String::as_str), Some("crate" | "super")) {
                return;
            }
            let mut base = self.module.clone();
            let mut path = Vec::new();
            for s in segs {
                match s.as_str() {
                    "crate" => base.clear(),
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => path.push(s.clone()),
                }
            }
            base.extend(path);
            self.out.push(base);
        }

        /// Every path a `use` tree names, with the prefix seen so far.
        fn tree(&mut self, prefix: &mut Vec<String>, t: &syn::UseTree) {
            match t {
                syn::UseTree::Path(p) => {
                    prefix.push(p.ident.to_string());
                    self.tree(prefix, &p.tree);
                    prefix.pop();
                }
                syn::UseTree::Name(n) => {
                    prefix.push(n.ident.to_string());
                    self.add(&prefix.clone());
                    prefix.pop();
                }
                syn::UseTree::Rename(r) => {
                    prefix.push(r.ident.to_string());
                    self.add(&prefix.clone());
                    prefix.pop();
                }
                syn::UseTree::Glob(_) => self.add(&prefix.clone()),
                syn::UseTree::Group(g) => {
                    for t in &g.items {
                        self.tree(prefix, t);
                    }
                }
            }
        }
    }

    impl<'ast> Visit<'ast> for Paths {
        fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
            self.tree(&mut Vec::new(), &u.tree);
        }
        fn visit_path(&mut self, p: &'ast syn::Path) {
            let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            self.add(&segs);
            syn::visit::visit_path(self, p);
        }
        fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
            self.module.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.module.pop();
        }
    }

    let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{module:?}: {e}"));
    let mut v = Paths { module: module.to_vec(), out: Vec::new() };
    v.visit_file(&file);
    v.out
}

#[test]
fn grouped_and_nested_paths_are_seen() {
    let text = "use crate::{keyed::count::CountConfig, lang::{expr, template::Template}};\n\
                fn f() { crate::stream::map::run(); }\n\
                mod inner { use super::super::group::roster; }";
    let found = paths_named(text, &["envelope".into(), "time".into()]);
    let shown: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    for want in [
        "keyed::count::CountConfig",
        "lang::expr",
        "lang::template::Template",
        "stream::map::run",
        "envelope::group::roster",
    ] {
        assert!(shown.iter().any(|s| s == want), "{want} not in {shown:?}");
    }
}

struct Crate {
    name: &'static str,
    /// Module path → (file, its text).
    modules: BTreeMap<Vec<String>, (PathBuf, String)>,
}

fn load(name: &'static str) -> Crate {
    let src = workspace().join(name).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_path_buf();
        let text = std::fs::read_to_string(&f).unwrap();
        modules.insert(module_of(&rel), (f, text));
    }
    Crate { name, modules }
}

/// The longest module a path lands in (items inside a module belong to it).
fn resolve<'a>(c: &'a Crate, path: &[String]) -> Option<&'a Vec<String>> {
    (0..=path.len()).rev().find_map(|n| c.modules.get_key_value(&path[..n]).map(|(k, _)| k))
}

/// Edges module → module used, without parent/child links.
fn edges(c: &Crate) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut g: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, (_, text)) in &c.modules {
        for p in paths_named(text, m) {
            let Some(to) = resolve(c, &p) else { continue };
            if to == m || to.starts_with(m) || m.starts_with(to) {
                continue;
            }
            g.entry(m.clone()).or_default().insert(to.clone());
        }
    }
    g
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct S<'a> {
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(s: &mut S<'a>, v: &'a Vec<String>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        if let Some(ws) = s.g.get(v) {
            for w in ws {
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if s.on.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s =
        S { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    let nodes: Vec<&Vec<String>> = g.keys().chain(g.values().flatten()).collect();
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn shown(m: &[String]) -> String {
    if m.is_empty() { "crate root".into() } else { m.join("::") }
}

#[test]
fn no_import_circle_inside_any_crate() {
    let mut found = Vec::new();
    for name in CRATES {
        let c = load(name);
        for comp in cycles(&edges(&c)) {
            found.push(format!("{}: {}", c.name, comp.iter().map(|m| shown(m)).collect::<Vec<_>>().join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn folders_stack_one_way() {
    let orders: &[(&str, &[&[&str]])] = &[
        ("operators", &[&["envelope"], &["api"], &["lang"], &["stream", "group"], &["keyed"], &["connectors"]]),
        ("agent", &[&["model", "sandbox"], &["memory"], &["tools"], &["llm"]]),
    ];
    let mut wrong = Vec::new();
    for (name, order) in orders {
        let c = load(name);
        let level = |m: &[String]| m.first().and_then(|top| order.iter().position(|l| l.contains(&top.as_str())));
        for (from, tos) in edges(&c) {
            let Some(lf) = level(&from) else { continue };
            for to in tos {
                let Some(lt) = level(&to) else { continue };
                if lt > lf || (lt == lf && from[0] != to[0]) {
                    wrong.push(format!("{name}: {} uses {}, which sits above it", shown(&from), shown(&to)));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_source_file_over_600_lines() {
    let mut long = Vec::new();
    for name in CRATES {
        let mut files = Vec::new();
        for dir in ["src", "tests", "benches"] {
            rust_files(&workspace().join(name).join(dir), &mut files);
        }
        for f in files {
            let n = std::fs::read_to_string(&f).unwrap().lines().count();
            if n > MAX_LINES {
                long.push(format!("{}: {n} lines", f.strip_prefix(workspace()).unwrap_or(&f).display()));
            }
        }
    }
    assert!(long.is_empty(), "files over {MAX_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn the_checker_sees_a_circle_and_a_layer_break() {
    // Two modules naming each other form a cycle; a module naming its parent does not.
    let mut g: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let (a, b, c) = (vec!["a".to_owned()], vec!["b".to_owned()], vec!["c".to_owned()]);
    g.entry(a.clone()).or_default().insert(b.clone());
    g.entry(b.clone()).or_default().insert(c.clone());
    assert!(cycles(&g).is_empty());
    g.entry(c.clone()).or_default().insert(a.clone());
    assert_eq!(cycles(&g).len(), 1);
    // `super::` is the module one up (a mod.rs's module is its folder).
    let m = vec!["lang".to_owned(), "expr".to_owned()];
    assert_eq!(paths_named("use super::path::FieldPath;", &m), vec![vec!["lang", "path", "FieldPath"]]);
    assert_eq!(paths_named("use super::api::Record;", &["lang".to_owned()]), vec![vec!["api", "Record"]]);
    assert_eq!(paths_named("// use crate::x;", &m), Vec::<Vec<String>>::new());
    assert_eq!(
        paths_named("fn f() { let x = crate::api::record::now_ms(); }", &m),
        vec![vec!["api", "record", "now_ms"]]
    );
}

/// The first segment of every `use` tree and path in `text` (the crates it names, among other
/// names).
fn first_segments(text: &str) -> BTreeSet<String> {
    use syn::visit::Visit;

    struct Firsts(BTreeSet<String>);

    impl<'ast> Visit<'ast> for Firsts {
        fn visit_use_tree(&mut self, t: &'ast syn::UseTree) {
            match t {
                syn::UseTree::Path(p) => {
                    self.0.insert(p.ident.to_string());
                }
                syn::UseTree::Name(n) => {
                    self.0.insert(n.ident.to_string());
                }
                syn::UseTree::Rename(r) => {
                    self.0.insert(r.ident.to_string());
                }
                syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.visit_use_tree(t)),
                syn::UseTree::Glob(_) => {}
            }
        }
        fn visit_path(&mut self, p: &'ast syn::Path) {
            if let Some(s) = p.segments.first() {
                self.0.insert(s.ident.to_string());
            }
            syn::visit::visit_path(self, p);
        }
    }

    let mut v = Firsts(BTreeSet::new());
    v.visit_file(&syn::parse_file(text).unwrap());
    v.0
}

/// docs/ARCHITECTURE.md's invariant: only `engine/src/kafka/` touches rdkafka; only `state/`
/// touches RocksDB and usearch (in the product's crates: the bench harness drives Kafka itself).
#[test]
fn the_kafka_client_and_the_stores_stay_in_their_rooms() {
    let mut broken = Vec::new();
    for name in CRATES.iter().filter(|c| **c != "bench") {
        for (module, (file, text)) in &load(name).modules {
            let named = first_segments(text);
            let in_kafka = *name == "engine" && module.first().is_some_and(|m| m == "kafka");
            if named.contains("rdkafka") && !in_kafka {
                broken.push(format!("{}: names rdkafka outside engine/src/kafka/", file.display()));
            }
            for store in ["rocksdb", "usearch"] {
                if named.contains(store) && *name != "state" {
                    broken.push(format!("{}: names {store} outside state/", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(first_segments("use rdkafka::{Offset, consumer::Consumer};").contains("rdkafka"));
    assert!(first_segments("fn f() { let _ = rdkafka::Offset::End; }").contains("rdkafka"));
}
