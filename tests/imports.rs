//! The import graph of every crate in the workspace has no circle.
//!
//! Each source file is a node; an arrow goes from a file to every file whose items it
//! names through `crate::`, `super::`, `self::` or a child module's name (in `use`
//! statements and in paths inside the code), a `pub use` re-export being followed to the
//! file that defines the item. A module's ties to its own ancestors (`use super::…` in a
//! child, Rust's ordinary parent ⇄ child tie) are not arrows. Any strongly connected
//! group of two or more files is a circle: the test names its files and, for every arrow
//! inside it, the names that tie them, so the smallest move that opens it can be read off.
//!
//! Run it alone with `cargo test --release --test imports`. It reads the sources only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The workspace's crates: (name, root file). The command line (`src/cli/`) is a module
/// of the library, which the binary (`src/main.rs`) and the Python package call.
const CRATES: &[(&str, &str)] = &[
    ("rlcpc", "src/lib.rs"),
    ("rlcpc_envs", "envs/src/lib.rs"),
    ("rlcpc_agents", "agents/src/lib.rs"),
];

/// One module: its file and its source with comments and literals blanked out.
struct Module {
    file: PathBuf,
    code: String,
}

/// A crate's module tree, keyed by module path (`[]` is the root).
struct Tree {
    modules: BTreeMap<Vec<String>, Module>,
}

/// The source with comments, string and char literals replaced by spaces (lifetimes kept).
fn strip(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
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
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_char_before(&b, i)
        {
            // A raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The names of the modules `code` declares (`mod x;`, with any attributes or
/// visibility), not inline ones (`mod tests { … }`).
fn declared_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let words: Vec<&str> = code.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        if *w == "mod" {
            if let Some(name) = words.get(i + 1) {
                if let Some(name) = name.strip_suffix(';') {
                    if !name.is_empty() && name.chars().all(is_ident) {
                        out.push(name.to_string());
                    }
                }
            }
        }
    }
    out
}

fn load_tree(root: &Path, root_file: &str) -> Tree {
    let mut modules = BTreeMap::new();
    let mut todo = vec![(Vec::<String>::new(), root.join(root_file))];
    while let Some((path, file)) = todo.pop() {
        let src = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let code = strip(&src);
        // Children of a/mod.rs, lib.rs or main.rs live beside it; of a.rs, in a/.
        let name = file.file_name().unwrap().to_str().unwrap();
        let dir = if matches!(name, "mod.rs" | "lib.rs" | "main.rs") {
            file.parent().unwrap().to_path_buf()
        } else {
            file.with_extension("")
        };
        for child in declared_modules(&code) {
            let a = dir.join(format!("{child}.rs"));
            let b = dir.join(&child).join("mod.rs");
            let f = if a.exists() { a } else { b };
            assert!(
                f.exists(),
                "{} declares `mod {child};`: no file",
                file.display()
            );
            let mut p = path.clone();
            p.push(child);
            todo.push((p, f));
        }
        modules.insert(path, Module { file, code });
    }
    Tree { modules }
}

/// A path of a `use` tree and the name it is known by here.
type UsePath = (Vec<String>, String);

/// The paths of one `use` tree (`a::{b, c::{d, e as f}}` → `a::b`, `a::c::d`, `a::c::e`),
/// each with the name it is known by here (its alias or last segment; `*` for a glob).
fn expand_use(tree: &str) -> Vec<UsePath> {
    fn go(prefix: &[String], s: &str, out: &mut Vec<UsePath>) {
        let s = s.trim();
        if s.is_empty() {
            return;
        }
        if let Some(open) = s.find('{') {
            let head = s[..open].trim().trim_end_matches("::");
            let mut p = prefix.to_vec();
            p.extend(
                head.split("::")
                    .filter(|x| !x.is_empty())
                    .map(|x| x.trim().to_string()),
            );
            let inner = &s[open + 1..s.rfind('}').unwrap_or(s.len())];
            // Split the inside at top-level commas.
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&p, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            go(&p, &inner[start..], out);
            return;
        }
        let (path, alias) = match s.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
            None => (s, None),
        };
        let mut p = prefix.to_vec();
        p.extend(path.split("::").map(|x| x.trim().to_string()));
        let last = p.last().cloned().unwrap_or_default();
        // `use a::b::{self}` names the module a::b.
        if last == "self" {
            p.pop();
        }
        let name = alias.unwrap_or_else(|| p.last().cloned().unwrap_or_default());
        out.push((p, name));
    }
    let mut out = Vec::new();
    go(&[], tree, &mut out);
    out
}

/// Every `use` statement of `code`: (is it `pub`, its paths).
fn use_statements(code: &str) -> Vec<(bool, Vec<UsePath>)> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    let mut i = 0;
    while let Some(k) = code[i..].find("use ") {
        let at = i + k;
        i = at + 4;
        let before_ok = at == 0 || !is_ident(b[at - 1] as char);
        if !before_ok {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        let body = &code[at + 4..at + end];
        // `pub`, `pub(crate)`, `pub(super)` just before.
        let head = code[..at].trim_end();
        let public = head.ends_with("pub") || (head.ends_with(')') && head.contains("pub("));
        let public = public && {
            let tail = &head[head.rfind("pub").unwrap_or(0)..];
            tail.len() <= 16
        };
        if body
            .chars()
            .all(|c| is_ident(c) || ":{}, *\n\t\r".contains(c) || c == ' ')
        {
            out.push((public, expand_use(&body.replace(['\n', '\t', '\r'], " "))));
        }
        i = at + end;
    }
    out
}

/// Paths in the code (outside `use` statements too) that start with `crate`, `super`,
/// `self` or one of `children`: `crate::a::B`, `lean::LeanNet`.
fn code_paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_ident(b[i]) && (i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == ':')) {
            let mut segs = Vec::new();
            let mut j = i;
            loop {
                let s = j;
                while j < b.len() && is_ident(b[j]) {
                    j += 1;
                }
                segs.push(b[s..j].iter().collect::<String>());
                if j + 2 < b.len() && b[j] == ':' && b[j + 1] == ':' && is_ident(b[j + 2]) {
                    j += 2;
                } else {
                    break;
                }
            }
            let first = segs[0].as_str();
            if segs.len() > 1
                && (matches!(first, "crate" | "super" | "self") || children.contains(first))
            {
                out.push(segs);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

struct Graph<'t> {
    tree: &'t Tree,
    /// For each module: the names it re-exports (`pub use`) and their paths from it.
    reexports: HashMap<Vec<String>, HashMap<String, Vec<String>>>,
    children: HashMap<Vec<String>, BTreeSet<String>>,
}

impl Graph<'_> {
    /// The module a path names, or the module whose item it names (following
    /// re-exports), seen from module `at`; `None` for another crate's items.
    fn resolve(&self, at: &[String], path: &[String], depth: usize) -> Option<Vec<String>> {
        if depth > 8 || path.is_empty() {
            return None;
        }
        let mut cur: Vec<String> = at.to_vec();
        let mut rest = path;
        match path[0].as_str() {
            "crate" => {
                cur.clear();
                rest = &path[1..];
            }
            "self" => rest = &path[1..],
            "super" => {
                while rest.first().map(|s| s.as_str()) == Some("super") {
                    cur.pop()?;
                    rest = &rest[1..];
                }
            }
            first if self.children.get(at).is_some_and(|c| c.contains(first)) => {}
            _ => return None,
        }
        for seg in rest {
            let mut next = cur.clone();
            next.push(seg.clone());
            if self.tree.modules.contains_key(&next) {
                cur = next;
                continue;
            }
            if let Some(target) = self.reexports.get(&cur).and_then(|r| r.get(seg)) {
                if let Some(m) = self.resolve(&cur, target, depth + 1) {
                    return Some(m);
                }
            }
            break;
        }
        Some(cur)
    }
}

/// Tarjan's strongly connected components of `edges` over `n` nodes.
fn components(n: usize, edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct S<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut S, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on[v] = true;
        for &w in s.edges[v].iter() {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut c = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on[w] = false;
                c.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(c);
        }
    }
    let mut s = S {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

/// A crate's import graph: its modules, and for each the modules it imports with the
/// names that tie them.
struct Imports {
    tree: Tree,
    keys: Vec<Vec<String>>,
    edges: Vec<BTreeSet<usize>>,
    names: BTreeMap<(usize, usize), BTreeSet<String>>,
    arrows: usize,
}

fn imports(root: &Path, root_file: &str) -> Imports {
    let tree = load_tree(root, root_file);
    let mut g = Graph {
        tree: &tree,
        reexports: HashMap::new(),
        children: HashMap::new(),
    };
    for (path, m) in &tree.modules {
        g.children.insert(
            path.clone(),
            declared_modules(&m.code).into_iter().collect(),
        );
        let mut r = HashMap::new();
        for (public, paths) in use_statements(&m.code) {
            if public {
                for (p, name) in paths {
                    if name != "*" {
                        r.insert(name, p);
                    }
                }
            }
        }
        g.reexports.insert(path.clone(), r);
    }
    let keys: Vec<&Vec<String>> = tree.modules.keys().collect();
    let id: HashMap<&Vec<String>, usize> = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let mut edges = vec![BTreeSet::new(); keys.len()];
    let mut names: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
    let mut arrows = 0;
    for (path, m) in &tree.modules {
        let from = id[path];
        let mut refs: Vec<Vec<String>> = Vec::new();
        for (_, paths) in use_statements(&m.code) {
            refs.extend(paths.into_iter().map(|(p, _)| p));
        }
        refs.extend(code_paths(&m.code, &g.children[path]));
        for r in refs {
            let Some(target) = g.resolve(path, &r, 0) else {
                continue;
            };
            // Ties to oneself and to one's own ancestors are not arrows.
            if target.len() <= path.len() && path[..target.len()] == target[..] {
                continue;
            }
            let to = id[&target];
            if edges[from].insert(to) {
                arrows += 1;
            }
            let last = r.last().cloned().unwrap_or_default();
            names.entry((from, to)).or_default().insert(last);
        }
    }
    let keys = keys.into_iter().cloned().collect();
    Imports {
        tree,
        keys,
        edges,
        names,
        arrows,
    }
}

/// The circles of one crate, each as lines naming its files and the ties inside it.
fn circles(root: &Path, root_file: &str) -> (usize, usize, Vec<String>) {
    let Imports {
        tree,
        keys,
        edges,
        names,
        arrows,
    } = imports(root, root_file);
    let mut out = Vec::new();
    for c in components(keys.len(), &edges) {
        if c.len() < 2 {
            continue;
        }
        let set: BTreeSet<usize> = c.iter().copied().collect();
        let file = |i: usize| {
            tree.modules[&keys[i]]
                .file
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string()
        };
        let mut files: Vec<String> = set.iter().map(|&i| file(i)).collect();
        files.sort();
        let mut text = format!("a circle of {} files: {}\n", c.len(), files.join(", "));
        for &a in &set {
            for &b in edges[a].intersection(&set) {
                let n: Vec<&str> = names[&(a, b)].iter().map(|s| s.as_str()).collect();
                text += &format!("    {} -> {}: {}\n", file(a), file(b), n.join(", "));
            }
        }
        out.push(text);
    }
    (tree.modules.len(), arrows, out)
}

#[test]
fn no_crate_of_the_workspace_has_an_import_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for (name, file) in CRATES {
        let (files, arrows, cs) = circles(root, file);
        println!(
            "{name}: {files} files, {arrows} arrows, {} circles",
            cs.len()
        );
        assert!(files > 1 && arrows > 0, "{name}: nothing read from {file}");
        found.extend(cs.into_iter().map(|c| format!("{name}: {c}")));
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

/// The command line (`src/cli/`) is a leaf of the library: it calls the library, and no
/// module outside it imports it, so the library holds no command-line logic and the
/// binary and the Python package's `python -m rlcpc` share one compiled copy of it.
#[test]
fn nothing_in_the_library_imports_the_command_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let g = imports(root, "src/lib.rs");
    let in_cli = |k: &Vec<String>| k.first().is_some_and(|m| m == "cli");
    assert!(g.keys.iter().any(in_cli), "no `cli` module in src/lib.rs");
    let mut wrong = Vec::new();
    for (a, to) in g.edges.iter().enumerate() {
        for &b in to {
            if !in_cli(&g.keys[a]) && in_cli(&g.keys[b]) {
                let n: Vec<&str> = g.names[&(a, b)].iter().map(|s| s.as_str()).collect();
                wrong.push(format!(
                    "{} -> {}: {}",
                    g.tree.modules[&g.keys[a]].file.display(),
                    g.tree.modules[&g.keys[b]].file.display(),
                    n.join(", ")
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the library imports the command line:\n{}",
        wrong.join("\n")
    );
}

/// The reader sees what it should: on a small tree it finds a known circle and
/// follows a re-export to the defining file.
#[test]
fn the_reader_finds_a_known_circle_and_follows_re_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("b")).unwrap();
    let write = |p: &str, s: &str| std::fs::write(src.join(p), s).unwrap();
    write(
        "lib.rs",
        "// use crate::c::X; (a comment, not an import)\nmod a;\nmod b;\nmod c;\npub use b::Thing;\n",
    );
    write("a.rs", "use crate::Thing;\npub fn f() {}\n");
    write("b/mod.rs", "mod inner;\npub use inner::Thing;\n");
    write(
        "b/inner.rs",
        "pub struct Thing;\nfn g() { let _ = \"crate::c::X\"; crate::c::h(); }\n",
    );
    write("c.rs", "pub fn h() { super::a::f() }\npub struct X;\n");
    let (files, _, cs) = circles(tmp.path(), "src/lib.rs");
    assert_eq!(files, 5);
    assert_eq!(cs.len(), 1, "{cs:?}");
    // a → b/inner.rs (through two re-exports) → c → a; b/mod.rs is not in it.
    assert!(
        cs[0].starts_with("a circle of 3 files: src/a.rs, src/b/inner.rs, src/c.rs"),
        "{}",
        cs[0]
    );
    assert!(
        cs[0].contains("src/a.rs -> src/b/inner.rs: Thing"),
        "{}",
        cs[0]
    );
    // Without the call back up, no circle.
    write("c.rs", "pub fn h() {}\npub struct X;\n");
    let (_, _, cs) = circles(tmp.path(), "src/lib.rs");
    assert!(cs.is_empty(), "{cs:?}");
}
