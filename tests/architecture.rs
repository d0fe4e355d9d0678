//! The layering of `src/`: a lower layer never imports a higher one.
//!
//! The test reads every `.rs` file under `src/` (test modules included), finds each reference to
//! another top-level module (`crate::m`, grouped `use crate::{m, n::{..}}`, and `super::` chains
//! that climb out of the file's top module) and checks it against the table below. It only reads
//! text, so it stays fast and needs nothing from the library.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Who a module may import.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rule {
    /// Its own layer and any lower one.
    Layered,
    /// No other crate module at all, whatever its layer.
    Alone,
}

use Rule::{Alone, Layered};

/// A top-level module of `src/` and its place in the layering.
struct Place {
    module: &'static str,
    layer: u8,
    rule: Rule,
}

/// The layers, bottom to top; ARCHITECTURE.md ("Layers") shows the same table, so change both
/// together. A module that may not exist yet (`clock`, `net`, `loader`) is listed so that it lands
/// in the right layer when it is created.
#[rustfmt::skip]
const LAYERS: &[Place] = &[
    Place { module: "clock", layer: 0, rule: Layered },
    Place { module: "redact", layer: 0, rule: Layered },
    Place { module: "shard", layer: 0, rule: Layered },
    Place { module: "access", layer: 0, rule: Alone },
    Place { module: "config", layer: 1, rule: Layered },
    Place { module: "store", layer: 2, rule: Alone },
    Place { module: "probe", layer: 3, rule: Layered },
    Place { module: "metrics", layer: 4, rule: Layered },
    Place { module: "alert", layer: 5, rule: Layered },
    Place { module: "web", layer: 6, rule: Layered },
    Place { module: "status", layer: 6, rule: Layered },
    Place { module: "schedule", layer: 7, rule: Layered },
    Place { module: "loader", layer: 7, rule: Layered },
    Place { module: "daemon", layer: 7, rule: Layered },
    Place { module: "server", layer: 7, rule: Layered },
    Place { module: "ui", layer: 7, rule: Layered },
    Place { module: "cli", layer: 7, rule: Layered },
    Place { module: "testrun", layer: 7, rule: Layered },
];

fn place(module: &str) -> Option<&'static Place> {
    LAYERS.iter().find(|p| p.module == module)
}

/// Every layering violation in a tree of `(path, text)` pairs, paths written `src/...` with `/`.
/// Each is one line: `src/store.rs:826: store (layer 2) imports alert (layer 5)`.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut unplaced = BTreeSet::new();
    for (path, text) in files {
        let Some(module_path) = module_path(path) else {
            continue;
        };
        let own = module_path[0].clone();
        let Some(own_place) = place(&own) else {
            unplaced.insert(own);
            continue;
        };
        let mut seen = BTreeSet::new();
        for (target, line) in references(&module_path, text) {
            if target == own || !seen.insert((line, target.clone())) {
                continue;
            }
            let Some(target_place) = place(&target) else {
                // A module that exists but is not placed is reported once below.
                if !files
                    .iter()
                    .any(|(p, _)| module_path_of(p).as_deref() == Some(&target))
                {
                    out.push(format!(
                        "{path}:{line}: {own} imports crate::{target}, which is no module in the \
                         layer table (add src/{target} to the layer table in tests/architecture.rs)"
                    ));
                }
                continue;
            };
            let what = format!(
                "{path}:{line}: {own} (layer {}) imports {target} (layer {})",
                own_place.layer, target_place.layer
            );
            if own_place.rule == Alone {
                out.push(format!("{what}; {own} imports no other crate module"));
            } else if target_place.layer > own_place.layer {
                out.push(what);
            }
        }
    }
    for m in unplaced {
        out.push(format!(
            "src/{m} is in no layer: add src/{m} to the layer table in tests/architecture.rs"
        ));
    }
    out
}

/// The top-level module a file belongs to, if it belongs to one.
fn module_path_of(path: &str) -> Option<String> {
    module_path(path).map(|mut p| p.swap_remove(0))
}

/// The module path of a file (`src/probe/http/mod.rs` → `probe::http`), or None for the crate
/// roots (`src/lib.rs` and `src/main.rs` declare modules; `src/bin/` holds separate crates) and
/// for files that are not Rust.
fn module_path(path: &str) -> Option<Vec<String>> {
    let rel = path.strip_prefix("src/")?.strip_suffix(".rs")?;
    if rel == "lib" || rel == "main" || rel.starts_with("bin/") {
        return None;
    }
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.len() > 1 && parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    Some(parts)
}

/// The code of a Rust file with comments, doc comments, string and character literals blanked
/// out (newlines kept, so line numbers stay true).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            // Block comments nest in Rust.
            let mut depth = 0usize;
            while i < c.len() {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if at(i) == 'r'
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' || c[i - 1] == 'c'))
            && {
                let mut k = i + 1;
                while at(k) == '#' {
                    k += 1;
                }
                at(k) == '"'
            }
        {
            // A raw string: r"..", r#".."#, br#".."#; it ends at a quote and as many hashes.
            let mut hashes = 0;
            out.push(' ');
            i += 1;
            while at(i) == '#' {
                hashes += 1;
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if at(i) == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                    if i < c.len() {
                        blank(&mut out, c[i]);
                        i += 1;
                    }
                } else if c[i] == '"' {
                    out.push(' ');
                    i += 1;
                    break;
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if at(i) == '\'' && (at(i + 1) == '\\' || (at(i + 1) != '\0' && at(i + 2) == '\'')) {
            // A character literal ('x', '\n', '\u{..}', '\''); a lifetime ('a) has no closing quote.
            out.push(' ');
            i += 1;
            if at(i) == '\\' {
                out.push_str("  ");
                i += 2;
            }
            while i < c.len() && c[i] != '\'' && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
            if at(i) == '\'' {
                out.push(' ');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Dollar,
    Other,
}

/// The tokens of stripped code, each with its line number (from 1).
fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Other, line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((
                match ch {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ',' => Tok::Comma,
                    '$' => Tok::Dollar,
                    _ => Tok::Other,
                },
                line,
            ));
            i += 1;
        }
    }
    out
}

/// Every top-level module the file at `module_path` names, with the line it is named on.
fn references(module_path: &[String], text: &str) -> Vec<(String, usize)> {
    let toks = tokens(&strip(text));
    let tok = |k: usize| toks.get(k).map(|t| &t.0);
    let ident = |k: usize, s: &str| matches!(tok(k), Some(Tok::Ident(x)) if x == s);
    let mut out = Vec::new();
    // Inline modules (`mod tests { .. }`) deepen the module path; each entry is the module's name
    // and the brace depth inside its block.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    for i in 0..toks.len() {
        match &toks[i].0 {
            Tok::Open => depth += 1,
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Open)) = (tok(i + 1), tok(i + 2)) {
                    inline.push((name.clone(), depth + 1));
                }
            }
            Tok::Ident(kw)
                if kw == "crate"
                    && tok(i + 1) == Some(&Tok::PathSep)
                    && (i == 0 || tok(i - 1) != Some(&Tok::Dollar)) =>
            {
                targets(&toks, i + 2, &mut out);
            }
            Tok::Ident(kw)
                if kw == "super"
                    && tok(i + 1) == Some(&Tok::PathSep)
                    && (i == 0 || tok(i - 1) != Some(&Tok::PathSep)) =>
            {
                let mut climbs = 0;
                let mut j = i;
                while ident(j, "super") && tok(j + 1) == Some(&Tok::PathSep) {
                    climbs += 1;
                    j += 2;
                }
                // Only a chain that reaches the crate root names another top-level module.
                if climbs == module_path.len() + inline.len() {
                    targets(&toks, j, &mut out);
                }
            }
            _ => {}
        }
    }
    out
}

/// The top-level modules named by the path tree starting at token `k` right after `crate::`:
/// `m`, or each first name of a group `{m, n::{..}, {o}}`.
fn targets(toks: &[(Tok, usize)], k: usize, out: &mut Vec<(String, usize)>) {
    match toks.get(k) {
        Some((Tok::Ident(name), line)) if name != "self" => out.push((name.clone(), *line)),
        Some((Tok::Open, _)) => {
            let mut k = k + 1;
            loop {
                targets(toks, k, out);
                // Skip the rest of this item, up to its comma or the group's closing brace.
                let mut nest = 0usize;
                loop {
                    match toks.get(k).map(|t| &t.0) {
                        None => return,
                        Some(Tok::Open) => nest += 1,
                        Some(Tok::Close) if nest == 0 => return,
                        Some(Tok::Close) => nest -= 1,
                        Some(Tok::Comma) if nest == 0 => {
                            k += 1;
                            break;
                        }
                        _ => {}
                    }
                    k += 1;
                }
            }
        }
        _ => {}
    }
}

/// Every file under `root/src`, as `(src/..., text)`, in path order.
fn read_tree(root: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let rel = format!("{rel}/{name}");
            if path.is_dir() {
                walk(&path, &rel, out);
            } else if name.ends_with(".rs") {
                let text = fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                out.push((rel, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join("src"), "src", &mut out);
    out
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_lower_layer_imports_a_higher_one() {
    let files = read_tree(manifest_dir());
    assert!(
        files.len() > 10,
        "src/ should hold the crate's files, found {}",
        files.len()
    );
    let found = violations(&files);
    assert!(
        found.is_empty(),
        "{} layering violation(s) (the layer table is at the top of tests/architecture.rs and in \
         ARCHITECTURE.md):\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_layer_table_places_each_module_once() {
    let mut seen = BTreeMap::new();
    for p in LAYERS {
        assert!(
            seen.insert(p.module, p.layer).is_none(),
            "{} is listed twice",
            p.module
        );
    }
}

/// The `(module, layer)` pairs of the table in ARCHITECTURE.md's "## Layers" section: rows
/// `| <layer> | `m`, `n` | ... |` up to the next heading.
fn documented_layers(markdown: &str) -> Vec<(String, u8)> {
    let mut out = Vec::new();
    let section = markdown
        .lines()
        .skip_while(|l| l.trim_end() != "## Layers")
        .skip(1)
        .take_while(|l| !l.starts_with("## "));
    for line in section {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(layer), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(layer) = layer.parse::<u8>() else {
            continue;
        };
        for m in modules.split(',') {
            out.push((m.trim().trim_matches('`').to_string(), layer));
        }
    }
    out
}

#[test]
fn architecture_md_shows_the_same_layer_table() {
    let path = manifest_dir().join("ARCHITECTURE.md");
    let text = fs::read_to_string(&path).expect("reading ARCHITECTURE.md");
    let mut documented = documented_layers(&text);
    documented.sort();
    let mut here: Vec<(String, u8)> = LAYERS
        .iter()
        .map(|p| (p.module.to_string(), p.layer))
        .collect();
    here.sort();
    assert_eq!(
        documented, here,
        "the \"## Layers\" table of ARCHITECTURE.md (left) differs from the layer table in \
         tests/architecture.rs (right)"
    );
}

fn tree(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect()
}

#[test]
fn each_form_of_a_forbidden_import_is_reported_with_its_line() {
    let files = tree(&[
        ("src/lib.rs", "pub mod store;\nuse crate::daemon::Daemon;\n"),
        // A plain `use`, and a grouped one spread over lines with a nested group.
        (
            "src/store.rs",
            "use crate::alert::Outbox;\n\
             use crate::{\n    metrics,\n    {probe::{self, check}},\n};\nfn f() {}\n",
        ),
        // Grouped with nested groups on one line: redact is lower (allowed), probe is higher.
        (
            "src/config/mod.rs",
            "use crate::{redact, probe::{http, tcp}};\n",
        ),
        // A path in an expression.
        (
            "src/config/expr.rs",
            "fn f() {\n    let x = crate::daemon::x();\n}\n",
        ),
        // One file deep, `super::super` climbs out of config to the crate root.
        (
            "src/config/model.rs",
            "use super::super::alert::Rule;\nuse super::expr;\n",
        ),
        // Two files deep: `super::super` is still probe (allowed), a third `super` is the root.
        (
            "src/probe/http/spec.rs",
            "use super::super::kind::Kind;\nuse super::super::super::{config, server};\n",
        ),
        // A test module counts, and its own `mod` adds a level to climb.
        (
            "src/metrics/mod.rs",
            "pub fn m() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    \
             use super::super::alert::Engine;\n    fn t() { crate::schedule::run(); }\n}\n\
             use super::probe;\n",
        ),
        // Allowed imports: upward nowhere.
        (
            "src/alert/outbox.rs",
            "use crate::metrics::{Metrics, Families};\nuse crate::{config, probe};\n",
        ),
        (
            "src/cli.rs",
            "use crate::{daemon, schedule, server, store};\n",
        ),
        // Mentions that are no imports: comments, docs, strings, characters, macro `$crate`.
        (
            "src/probe/tcp.rs",
            "// crate::daemon::x\n\
             /// See [`crate::daemon::Daemon`].\n\
             //! crate::server\n\
             /* crate::daemon /* nested crate::cli */ still crate::cli */\n\
             const A: &str = \"crate::daemon::x \\\" crate::cli\";\n\
             const B: &str = r#\"crate::daemon \" crate::cli\"#;\n\
             const C: &[u8] = br\"crate::server\";\n\
             const D: char = '\"'; const E: &str = \"crate::daemon\";\n\
             fn f<'a>(x: &'a str) -> char { let _ = '\\''; 'x' }\n\
             macro_rules! m { () => { $crate::daemon::x() }; }\n\
             #[doc = \"crate::daemon\"]\n\
             fn g() {}\n",
        ),
    ]);
    let mut found = violations(&files);
    found.sort();
    let mut want = vec![
        "src/config/expr.rs:2: config (layer 1) imports daemon (layer 7)",
        "src/config/mod.rs:1: config (layer 1) imports probe (layer 3)",
        "src/config/model.rs:1: config (layer 1) imports alert (layer 5)",
        "src/metrics/mod.rs:5: metrics (layer 4) imports alert (layer 5)",
        "src/metrics/mod.rs:6: metrics (layer 4) imports schedule (layer 7)",
        "src/probe/http/spec.rs:2: probe (layer 3) imports server (layer 7)",
        "src/store.rs:1: store (layer 2) imports alert (layer 5); store imports no other crate module",
        "src/store.rs:3: store (layer 2) imports metrics (layer 4); store imports no other crate module",
        "src/store.rs:4: store (layer 2) imports probe (layer 3); store imports no other crate module",
    ];
    want.sort();
    assert_eq!(found, want);
}

#[test]
fn a_module_missing_from_the_table_fails_with_where_to_add_it() {
    let files = tree(&[
        ("src/gadget/mod.rs", "use crate::config::X;\n"),
        ("src/config/mod.rs", "use crate::widget::Y;\n"),
    ]);
    assert_eq!(
        violations(&files),
        [
            "src/config/mod.rs:1: config imports crate::widget, which is no module in the layer \
             table (add src/widget to the layer table in tests/architecture.rs)",
            "src/gadget is in no layer: add src/gadget to the layer table in tests/architecture.rs",
        ]
    );
}

#[test]
fn a_forbidden_import_planted_in_a_copy_of_src_is_reported() {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).expect("creating the copy");
        for entry in fs::read_dir(from).expect("reading src") {
            let path = entry.expect("a directory entry").path();
            let dest = to.join(path.file_name().expect("a file name"));
            if path.is_dir() {
                copy(&path, &dest);
            } else {
                fs::copy(&path, &dest).expect("copying a source file");
            }
        }
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    copy(&manifest_dir().join("src"), &dir.path().join("src"));
    let store = dir.path().join("src/store.rs");
    let mut text = fs::read_to_string(&store).expect("reading the copy of src/store.rs");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let line = text.lines().count() + 1;
    text.push_str("use crate::daemon::Daemon;\n");
    fs::write(&store, text).expect("planting the import");

    let planted = format!(
        "src/store.rs:{line}: store (layer 2) imports daemon (layer 7); store imports no other \
         crate module"
    );
    let before = violations(&read_tree(manifest_dir()));
    let after = violations(&read_tree(dir.path()));
    assert!(
        !before.contains(&planted),
        "the unplanted tree already reports {planted}"
    );
    assert!(
        after.contains(&planted),
        "{planted} is not reported; found:\n{}",
        after.join("\n")
    );
    assert_eq!(
        after.len(),
        before.len() + 1,
        "planting one import adds exactly one violation"
    );
}
