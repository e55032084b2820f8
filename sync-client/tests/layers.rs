//! The library's layers hold: every module of `src/` names only modules of layers below its own,
//! and the top-level modules form no cycle.
//!
//! The table is the one in the crate docs (`src/lib.rs`, lines `//! layer N: a b c`), so the
//! documentation and this check cannot drift apart. The check reads the source as text: it
//! drops comments, strings and character literals, then takes every `crate::x` path (and each
//! item of a `crate::{x, y::z}` group) and every `super::` chain that climbs out of its
//! top-level module (inline `mod x { }` blocks counted), and maps them to the top-level module
//! they name. `use` lines and paths written inline are both counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The layer of each top-level module, from the `//! layer N: a b c` lines of `lib.rs`.
fn layer_table(lib: &str) -> BTreeMap<String, u32> {
    let mut table = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim_start().strip_prefix("//! layer ") else {
            continue;
        };
        let (number, modules) = rest
            .split_once(':')
            .unwrap_or_else(|| panic!("a layer line without ':': {line:?}"));
        let layer: u32 = number
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a layer number: {line:?}"));
        for module in modules.split_whitespace() {
            let previous = table.insert(module.to_owned(), layer);
            assert!(previous.is_none(), "{module} is in two layers");
        }
    }
    table
}

/// The top-level modules `lib.rs` declares (`mod x;`, `pub mod x;`).
fn declared_modules(lib: &str) -> BTreeSet<String> {
    code_only(lib)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// `text` with comments, string literals and character literals blanked out (newlines kept),
/// so that only code is searched.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !is_ident(chars.get(i.wrapping_sub(1)))
        {
            // A raw string: r"...", r#"..."#.
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            out.extend(chars[i..j.min(chars.len())].iter().map(|&c| blank(c)));
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(chars.len());
            out.extend(chars[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), not a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 3..chars.len().min(i + 12)).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.extend(chars[i..=end].iter().map(|&c| blank(c)));
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

fn ident_at(chars: &[char], start: usize) -> Option<String> {
    let ident: String = chars[start..]
        .iter()
        .take_while(|c| c.is_alphanumeric() || **c == '_')
        .collect();
    (!ident.is_empty()).then_some(ident)
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

/// The first segment of each item of the `{...}` group starting at `open`.
fn group_heads(chars: &[char], open: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expecting = true;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '{' => {
                depth += 1;
                expecting = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expecting = true,
            c if expecting && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                if let Some(ident) = ident_at(chars, i) {
                    i += ident.len();
                    heads.push(ident);
                    expecting = false;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

/// The top-level modules a file's code names. `module` is the file's module path (`src/a/b.rs`
/// is `["a", "b"]`, `src/a/mod.rs` is `["a"]`).
fn references(module: &[String], text: &str) -> BTreeSet<String> {
    let code = code_only(text);
    let chars: Vec<char> = code.chars().collect();
    let mut found = BTreeSet::new();
    // Inline modules open at these brace depths, innermost last.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let before = chars.get(i.wrapping_sub(1));
        match chars[i] {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
            }
            c if (c.is_alphanumeric() || c == '_') && !is_ident(before) && before != Some(&'$') => {
                let ident = ident_at(&chars, i).unwrap_or_default();
                let after = i + ident.len();
                if ident == "mod" {
                    // `mod name {` opens an inline module.
                    let name_at = skip_space(&chars, after);
                    if let Some(name) = ident_at(&chars, name_at) {
                        let brace = skip_space(&chars, name_at + name.len());
                        if chars.get(brace) == Some(&'{') {
                            inline.push(depth);
                        }
                    }
                } else if ident == "crate" && chars[after..].starts_with(&[':', ':']) {
                    let next = after + 2;
                    if chars.get(next) == Some(&'{') {
                        found.extend(group_heads(&chars, next));
                    } else if let Some(name) = ident_at(&chars, next) {
                        found.insert(name);
                    }
                } else if ident == "super" && chars[after..].starts_with(&[':', ':']) {
                    let mut climbs = 1;
                    let mut next = after + 2;
                    while chars[next..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
                        climbs += 1;
                        next += 7;
                    }
                    // Where the chain lands, counted from the module the code is in.
                    let path_len = module.len() + inline.len();
                    if climbs == path_len {
                        // At the crate root: the next segment is a top-level module.
                        if chars.get(next) == Some(&'{') {
                            found.extend(group_heads(&chars, next));
                        } else if let Some(name) = ident_at(&chars, next) {
                            found.insert(name);
                        }
                    } else {
                        assert!(
                            climbs < path_len,
                            "{module:?}: `super::` climbs above the crate root"
                        );
                    }
                    i = next;
                    continue;
                }
                i = after;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path, from its place under `src/`.
fn module_path(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(SRC).unwrap().with_extension("");
    let mut path: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// Every top-level module's references to the other top-level modules.
fn dependencies(modules: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|module| (module.clone(), BTreeSet::new()))
        .collect();
    for file in files {
        let module = module_path(&file);
        let Some(top) = module.first().filter(|top| modules.contains(*top)) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for used in references(&module, &text) {
            if &used != top && modules.contains(&used) {
                graph.get_mut(top).unwrap().insert(used);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|on| on == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn modules_import_only_from_lower_layers_and_form_no_cycle() {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    let layers = layer_table(&lib);
    let declared = declared_modules(&lib);
    let listed: BTreeSet<String> = layers.keys().cloned().collect();
    assert_eq!(
        declared, listed,
        "every module lib.rs declares is in exactly one layer of its table, and no other"
    );
    let graph = dependencies(&declared);
    let mut broken = Vec::new();
    for (module, uses) in &graph {
        for used in uses {
            if layers[used] >= layers[module] {
                broken.push(format!(
                    "{module} (layer {}) uses {used} (layer {})",
                    layers[module], layers[used]
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layers:\n{}",
        broken.join("\n")
    );
    assert_eq!(
        find_cycle(&graph),
        None,
        "a cycle among the top-level modules"
    );
    // The check sees real imports (it is not passing for finding none).
    assert!(graph["operations"].contains("transport"), "{graph:?}");
    assert!(graph["working_copy"].contains("stores"), "{graph:?}");
}

#[test]
fn the_reader_finds_paths_in_code_only() {
    let text = r#"
        use crate::error::ClientError;
        use crate::{stores::atomic, timing};
        // use crate::operations::pull;
        /// [`crate::transport::Remote`]
        const URL: &str = "crate::transport inside a string // not a comment";
        fn f() { crate::progress::Silent; let c = '"'; $crate::nothing; }
        mod tests {
            use super::*;
            use super::super::super::working_copy::WorkingCopy;
        }
        "#;
    let module = vec!["stores".to_owned(), "state".to_owned()];
    let found = references(&module, text);
    let expected: BTreeSet<String> = ["error", "stores", "timing", "progress", "working_copy"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn a_cycle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(node, next)| {
        (
            node.to_owned(),
            next.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
