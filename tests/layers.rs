//! The source tree's layering: every import points down.
//!
//! Reads every file under `src/` and follows each module path it names
//! (`crate::…`, `super::…`, `self::…`, and a parent's `child::…` of a
//! module it declares; `use` groups expanded), in code only (comments and
//! string literals are skipped). Two rules:
//!
//! - each top-level module has a layer ([`LAYERS`], as `src/lib.rs` maps
//!   them), and a path from one top-level module into another must go to a
//!   lower layer;
//! - no import cycle among the files (modules) at all, inside a layer too.
//!
//! The codecs under `src/wire/` must also stay pure: no tokio, no sockets,
//! no files, nothing of the crate outside `wire`.
//!
//! The check runs on a copy with a deliberate upward import too, so it is
//! known to fail when the layering breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first; a module may use only modules of lower layers.
const LAYERS: &[&[&str]] = &[
    &["wire", "metrics", "routing"],
    &["config"],
    &["store"],
    &["snapshot"],
    &["dispatch"],
    &["intake"],
    &["admin"],
    &["daemon"],
    &["main"],
];

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

/// A module path, as segments (`["dispatch", "ipp"]`).
type ModPath = Vec<String>;

/// Every module file under `src` (lib.rs excluded: it only declares the map).
fn module_files(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut segs: ModPath = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if segs.last().map(String::as_str) == Some("mod") {
                segs.pop();
            }
            if segs == ["lib"] {
                continue;
            }
            out.insert(segs, p);
        }
    }
    out
}

/// The code of a file with comments, string and char literals blanked out.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if b[i] == b'r' && (b[i..].starts_with(b"r\"") || b[i..].starts_with(b"r#")) {
            // Raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let end: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&end) {
                    j += 1;
                }
                i = (j + end.len()).min(b.len());
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '{') or a lifetime ('a).
            let lit = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                None
            };
            match lit {
                Some(end) => {
                    out.push_str("' '");
                    i = end + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            // Multi-byte UTF-8 passes through unchanged.
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + len]);
            i += len;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a `use`-style tree starting at `s` (after `prefix::`): returns
/// every full path it names.
fn expand_tree(s: &str, prefix: &[String], out: &mut Vec<ModPath>) -> usize {
    let mut path = prefix.to_vec();
    let mut i = 0;
    let c: Vec<char> = s.chars().collect();
    loop {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        if i < c.len() && c[i] == '{' {
            i += 1;
            loop {
                while i < c.len() && (c[i].is_whitespace() || c[i] == ',') {
                    i += 1;
                }
                if i >= c.len() {
                    return i;
                }
                if c[i] == '}' {
                    return i + 1;
                }
                let rest: String = c[i..].iter().collect();
                let used = expand_tree(&rest, &path, out);
                i += used.max(1);
            }
        }
        let start = i;
        while i < c.len() && is_ident(c[i]) {
            i += 1;
        }
        if start == i {
            out.push(path);
            return i;
        }
        let seg: String = c[start..i].iter().collect();
        if seg != "self" {
            path.push(seg);
        }
        if c.get(i) == Some(&':') && c.get(i + 1) == Some(&':') {
            i += 2;
            continue;
        }
        out.push(path);
        // Skip `as name`.
        let rest: String = c[i..].iter().collect();
        let t = rest.trim_start();
        if let Some(after) = t.strip_prefix("as ") {
            let skipped = rest.len() - t.len() + 3;
            let name_len = after
                .trim_start()
                .chars()
                .take_while(|&ch| is_ident(ch))
                .count();
            return i + skipped + (after.len() - after.trim_start().len()) + name_len;
        }
        return i;
    }
}

/// The modules one file names, resolved against the known modules.
fn edges_of(me: &ModPath, code: &str, modules: &BTreeSet<ModPath>) -> BTreeSet<ModPath> {
    let children: BTreeSet<String> = modules
        .iter()
        .filter(|m| m.len() == me.len() + 1 && m.starts_with(me))
        .map(|m| m.last().unwrap().clone())
        .collect();
    let chars: Vec<char> = code.chars().collect();
    // Inline modules (`mod tests {`) shift what `super` means.
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        if ch == '{' {
            depth += 1;
            i += 1;
            continue;
        }
        if ch == '}' {
            depth = depth.saturating_sub(1);
            while inline.last().is_some_and(|(d, _)| *d > depth) {
                inline.pop();
            }
            i += 1;
            continue;
        }
        if !is_ident(ch) || (i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if word == "mod" {
            let rest: String = chars[i..].iter().collect();
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|&c| is_ident(c))
                .collect();
            let after = rest.trim_start()[name.len()..].trim_start();
            if after.starts_with('{') {
                inline.push((depth + 1, name));
            }
            continue;
        }
        let followed = chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':');
        if !followed {
            continue;
        }
        // The module this code sits in, inline modules included.
        let mut here = me.clone();
        here.extend(inline.iter().map(|(_, n)| n.clone()));
        let base: Option<ModPath> = match word.as_str() {
            "crate" => Some(Vec::new()),
            "self" => Some(here.clone()),
            "super" => {
                let mut b = here.clone();
                let mut j = start;
                loop {
                    b.pop();
                    j += "super::".len();
                    let rest: String = chars[j..chars.len().min(j + 7)].iter().collect();
                    if rest != "super::" {
                        break;
                    }
                }
                i = j - 2;
                Some(b)
            }
            w if inline.is_empty() && children.contains(w) => {
                let mut b = me.clone();
                b.push(w.to_owned());
                i = start;
                // Re-read the child's name as the tree's first segment.
                let rest: String = chars[i..].iter().collect();
                let mut paths = Vec::new();
                let used = expand_tree(&rest, me, &mut paths);
                found.extend(paths);
                i += used.max(1);
                continue;
            }
            _ => None,
        };
        let Some(base) = base else { continue };
        let rest: String = chars[i + 2..].iter().collect();
        let mut paths = Vec::new();
        let used = expand_tree(&rest, &base, &mut paths);
        found.extend(paths);
        i += 2 + used;
    }
    let mut out = BTreeSet::new();
    for p in found {
        // The deepest known module the path lies in.
        for n in (1..=p.len()).rev() {
            let m = p[..n].to_vec();
            if modules.contains(&m) {
                if &m != me {
                    out.insert(m);
                }
                break;
            }
        }
    }
    out
}

/// The module graph of the tree at `src`.
fn module_graph(src: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let files = module_files(src);
    let modules: BTreeSet<ModPath> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(m, p)| {
            let code = code_only(&std::fs::read_to_string(p).expect("read module"));
            (m.clone(), edges_of(m, &code, &modules))
        })
        .collect()
}

fn name(m: &ModPath) -> String {
    m.join("::")
}

/// Every rule broken by the tree at `src`, one line each.
fn violations(src: &Path) -> Vec<String> {
    let graph = module_graph(src);
    let mut out = Vec::new();
    for (from, tos) in &graph {
        let top = &from[0];
        let Some(layer) = layer_of(top) else {
            out.push(format!("{}: top-level module in no layer", name(from)));
            continue;
        };
        for to in tos {
            let to_top = &to[0];
            if to_top == top {
                continue;
            }
            match layer_of(to_top) {
                Some(l) if l < layer => {}
                _ => out.push(format!(
                    "{} (layer {layer}) uses {} (layer {}): imports must point down",
                    name(from),
                    name(to),
                    layer_of(to_top).map_or("none".into(), |l| l.to_string())
                )),
            }
        }
    }
    for cycle in cycles(&graph) {
        out.push(format!(
            "import cycle: {}",
            cycle.iter().map(name).collect::<Vec<_>>().join(" -> ")
        ));
    }
    // The codecs stay pure.
    let files = module_files(src);
    for (m, p) in files.iter().filter(|(m, _)| m[0] == "wire") {
        let code = code_only(&std::fs::read_to_string(p).unwrap());
        for banned in [
            "tokio",
            "std::fs",
            "std::net::Tcp",
            "std::net::Udp",
            "hyper",
            "sled",
        ] {
            if code.contains(banned) {
                out.push(format!("{}: a pure codec uses {banned}", name(m)));
            }
        }
        for to in &graph[m] {
            if to[0] != "wire" {
                out.push(format!("{}: a pure codec uses {}", name(m), name(to)));
            }
        }
    }
    out
}

/// Every strongly connected component of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct T<'a> {
        g: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on: BTreeSet<&'a ModPath>,
        next: usize,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a ModPath) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in &t.g[v] {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                scc.push(w.clone());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_import_points_down_and_none_forms_a_cycle() {
    let v = violations(&src_dir());
    assert!(v.is_empty(), "layering broken:\n{}", v.join("\n"));
}

#[test]
fn every_top_level_module_has_a_layer_and_the_map_names_it() {
    let graph = module_graph(&src_dir());
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let tops: BTreeSet<&String> = graph.keys().map(|m| &m[0]).collect();
    for top in tops {
        assert!(layer_of(top).is_some(), "{top} is in no layer of LAYERS");
        if top != "main" {
            assert!(
                lib.contains(&format!("pub mod {top};")) && lib.contains(&format!("[`{top}`]")),
                "src/lib.rs must declare {top} and name it in its map"
            );
        }
    }
}

/// A copy of `src` with `line` appended to the file `rel`.
fn tree_with(rel: &str, line: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = vec![src_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let to = dir.path().join(p.strip_prefix(src_dir()).unwrap());
            if p.is_dir() {
                std::fs::create_dir_all(&to).unwrap();
                stack.push(p);
            } else {
                std::fs::copy(&p, &to).unwrap();
            }
        }
    }
    let target = dir.path().join(rel);
    let mut text = std::fs::read_to_string(&target).unwrap();
    text.push_str(line);
    std::fs::write(&target, text).unwrap();
    dir
}

#[test]
fn the_check_fails_on_an_upward_import_a_cycle_and_an_impure_codec() {
    // The store reaching up into the dispatcher.
    let up = tree_with(
        "store/mod.rs",
        "\n#[allow(unused)]\nuse crate::dispatch::Dispatcher;\n",
    );
    let v = violations(up.path());
    assert!(
        v.iter()
            .any(|l| l.starts_with("store (layer 2) uses dispatch (layer 4)")),
        "{v:?}"
    );
    // A use group, a `super` path and a cycle inside one layer.
    let cyc = tree_with(
        "dispatch/device.rs",
        "\nfn f() { let _ = super::{forward::Devices, folder::stored_name}; }\n",
    );
    let v = violations(cyc.path());
    assert!(
        v.iter().any(|l| l.starts_with("import cycle:")
            && l.contains("dispatch::device")
            && l.contains("dispatch::forward")),
        "{v:?}"
    );
    // A codec that does I/O.
    let io = tree_with("wire/sniff.rs", "\nfn g() { let _ = tokio::spawn; }\n");
    let v = violations(io.path());
    assert!(
        v.iter()
            .any(|l| l == "wire::sniff: a pure codec uses tokio"),
        "{v:?}"
    );
    // Paths in comments and strings do not count.
    let quiet = tree_with(
        "wire/ipp.rs",
        "\n// crate::daemon::run\nconst _S: &str = \"crate::daemon::run\";\n",
    );
    assert!(violations(quiet.path()).is_empty());
}
