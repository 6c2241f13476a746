//! The layout has no import cycles: no module imports one that (directly or through others)
//! imports it back.
//!
//! The rule, as this test reads `src/`:
//! - A unit is a top-level module: `src/x.rs` or `src/x/` with everything below it. A module's
//!   submodules are part of it (`auth::bearer` is `auth`): inside a unit, files may use each
//!   other through `super::`; between units, imports point one way.
//! - A unit imports another when its code names `crate::other…` (in a `use`, a `use crate::{…}`
//!   group, or a path in code), or, in `src/x.rs` / `src/x/mod.rs`, `super::other`.
//! - Comments do not count, and neither does test code (`#[cfg(test)] mod … { … }` blocks and
//!   `tests.rs` files): a test may reach anywhere to check its module.
//! - `lib.rs` (declares the units) and `main.rs` (the binary, outside the library) are not units.
//!
//! A cycle fails the test, named unit by unit (`a → b → c → a`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Edges that close a cycle and are tolerated for now, each with the reason. Empty: there is no
/// exception. An entry whose edge disappears makes this test fail until it is deleted.
const ALLOWED: &[(&str, &str)] = &[];

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    collect(&src, &mut files);
    assert!(
        files.len() > 10,
        "found only {} files under src/",
        files.len()
    );
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let comps: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if comps.len() == 1 && (comps[0] == "lib.rs" || comps[0] == "main.rs") {
            continue;
        }
        if comps.last().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let unit = comps[0].trim_end_matches(".rs").to_string();
        // `super::` from a unit's own top file names a sibling unit.
        let top_file = comps.len() == 1 || (comps.len() == 2 && comps[1] == "mod.rs");
        let text = std::fs::read_to_string(file).unwrap();
        let code = without_tests(&without_comments(&text));
        let deps = graph.entry(unit.clone()).or_default();
        for target in imports(&code, top_file) {
            if target != unit {
                deps.insert(target);
            }
        }
    }
    // Only units count as targets (`crate::Config` re-exports and macros are not modules).
    let units: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| units.contains(d));
    }
    for (from, to) in ALLOWED {
        let present = graph.get(*from).is_some_and(|d| d.contains(*to));
        assert!(
            present,
            "`{from} → {to}` is gone: delete it from ALLOWED in tests/layout.rs"
        );
        graph.get_mut(*from).unwrap().remove(*to);
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle: {}\n(each unit imports the next; make one of them stop)",
            cycle.join(" → ")
        );
    }
}

/// The cycle check itself: a cycle of three is found and named; a chain is not a cycle.
#[test]
fn a_cycle_is_named() {
    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry(a.to_string()).or_default().insert(b.to_string());
            m.entry(b.to_string()).or_default();
        }
        m
    };
    let c = find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])).unwrap();
    assert_eq!(c.len(), 4, "{c:?}");
    assert_eq!(c.first(), c.last());
    assert!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])).is_none());
    let code = "use crate::{auth::x, error::{A, B}, self};\nfn f() { crate::routes::g(); super::up::h(); }";
    assert_eq!(
        imports(code, true),
        BTreeSet::from(["auth", "error", "routes", "up"].map(String::from))
    );
    assert_eq!(
        without_tests("a\n#[cfg(test)]\nmod tests {\n use crate::x;\n { }\n}\nb"),
        "a\nb"
    );
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Drops `//` comments (also doc comments) to the end of their line.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // `"http://…"` in a string cuts a line short: an import never follows one.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Drops `#[cfg(test)] mod name { … }` blocks.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_mod_block = trimmed.starts_with("mod ")
            && trimmed
                .find(['{', ';'])
                .is_some_and(|j| trimmed.as_bytes()[j] == b'{');
        if !is_mod_block {
            rest = after;
            continue;
        }
        let open = after.find('{').unwrap();
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
        // keep the line structure readable: the block's own line ends where it ended
        if let Some(stripped) = rest.strip_prefix('\n') {
            rest = stripped;
        }
    }
    out.push_str(rest);
    out
}

/// The units named by `crate::x…`, `crate::{x…, y…}` and (in a unit's top file) `super::x`.
fn imports(code: &str, top_file: bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let scan = |prefix: &str, found: &mut BTreeSet<String>| {
        for (i, _) in code.match_indices(prefix) {
            // `mycrate::x` or `a_super::x` is not ours
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // the top level of the group: `a::{x, y}, b` → a, b
                let mut depth = 0usize;
                let mut item_start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && !c.is_whitespace() => {
                            item_start = false;
                            let name = ident(&group[j..]);
                            if !name.is_empty() && name != "self" {
                                found.insert(name);
                            }
                        }
                        _ => {}
                    }
                }
            } else {
                let name = ident(rest);
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    };
    scan("crate::", &mut found);
    if top_file {
        scan("super::", &mut found);
    }
    found
}

/// A cycle as `[a, b, …, a]`, or none.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(n.to_string(), Mark::OnPath);
        path.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            match marks.get(d).copied().unwrap_or(Mark::New) {
                Mark::OnPath => {
                    let start = path.iter().position(|p| p == d).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d, graph, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in graph.keys() {
        if marks.get(n).copied().unwrap_or(Mark::New) == Mark::New {
            let mut path = Vec::new();
            if let Some(c) = visit(n, graph, &mut marks, &mut path) {
                return Some(c);
            }
        }
    }
    None
}
