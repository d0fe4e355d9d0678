//! Reading configuration files: the YAML decoder with positions and limits, the size-capped
//! reader for the daemon file, and the `check_files` glob walker.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::limits;
use super::ConfigError;

/// Decodes one YAML document, turning the first decode error into a located [`ConfigError`].
pub fn decode<T: DeserializeOwned>(file: &Path, src: &str) -> Result<T, ConfigError> {
    let mut path = String::new();
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    // Aliases share small snippets in a configuration; a billion-laughs document would replay
    // an anchor into millions of nodes before the node budget stops it (seconds of work).
    options.alias_limits.max_total_replayed_events = limits::MAX_ALIAS_REPLAYED_EVENTS;
    let res = serde_saphyr::with_deserializer_from_str_with_options(src, options, |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            path = key_path(e.path());
            e.into_inner()
        })
    });
    res.map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let mut message = e.to_string();
        if message.starts_with("alias replay limit exceeded")
            || message.starts_with("budget breached")
        {
            // The decoder's limits, in its own words (`Nodes { nodes: 250001 }`), with anchor
            // positions appended: say what happened instead.
            message = format!(
                "the document exceeds the YAML decoder's limits ({}): aliases may replay at most {} events, and a file holds at most {} nodes nested {} deep",
                message
                    .split(" at line ")
                    .next()
                    .unwrap_or_default()
                    .replace('\n', " "),
                limits::MAX_ALIAS_REPLAYED_EVENTS,
                250_000,
                64
            );
        } else if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        let message = message.lines().next().unwrap_or("invalid YAML");
        let message: String = message.chars().filter(|c| !c.is_control()).collect();
        let message = message.as_str();
        // The decoder's advice to library users means nothing to someone editing a file.
        let message = message
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(message)
            .to_string();
        let key = path;
        // The decoder reports a tab where it was scanning (often the end of the line before);
        // point at the tab itself, and say what to do.
        let (line, col, message) = match (message.contains("tab"), first_tab(src, line)) {
            (true, Some((l, c))) => (
                l,
                c,
                format!("{message}: YAML indents with spaces, never tabs"),
            ),
            _ => (line, col, message),
        };
        ConfigError {
            file: file.to_path_buf(),
            line: line.max(1),
            col: col.max(1),
            key,
            message,
        }
    })
}

/// The first tab in a line's indentation (or anywhere, failing that) at or after line
/// `from` (1-based), as (line, column).
fn first_tab(src: &str, from: u64) -> Option<(u64, u64)> {
    let start = from.saturating_sub(1) as usize;
    let lines = || src.lines().enumerate().skip(start);
    let in_indent = lines().find_map(|(i, l)| {
        let indent = &l[..l.len() - l.trim_start().len()];
        indent.find('\t').map(|c| (i, c))
    });
    let anywhere = || lines().find_map(|(i, l)| l.find('\t').map(|c| (i, c)));
    in_indent
        .or_else(anywhere)
        .map(|(i, c)| (i as u64 + 1, l_col(src, i, c)))
}

/// The 1-based column (in characters) of byte offset `byte` of line `line` (0-based).
fn l_col(src: &str, line: usize, byte: usize) -> u64 {
    src.lines()
        .nth(line)
        .map_or(1, |l| l[..byte].chars().count() as u64 + 1)
}

/// The key path of a decode error as the user wrote it (`checks[0].labels.team`): without the
/// `value` segments of `Spanned` wrappers and unknown segments. Segment by segment, so a key
/// that merely starts with `value` (`value_x`) stays whole.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            // A key written `value` is dropped too: the path still leads to its mapping.
            Segment::Map { key: k } if k == "value" => {}
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            Segment::Unknown => {}
        }
    }
    key
}

/// Reads the daemon file: at most [`limits::MAX_CONFIG_FILE_BYTES`]. It may be a pipe the user
/// named (`canaryd check --config <(...)`), so only the size is bounded here.
pub fn read_config_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let cap = limits::MAX_CONFIG_FILE_BYTES;
    let meta = std::fs::metadata(path).map_err(|e| limits::io_reason(&e))?;
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    if meta.is_file() {
        return limits::read_capped(path, cap);
    }
    let file = std::fs::File::open(path).map_err(|e| limits::io_reason(&e))?;
    let mut buf = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| limits::io_reason(&e))?;
    if buf.len() as u64 > cap {
        return Err(format!(
            "larger than the limit of {}",
            limits::fmt_bytes(cap)
        ));
    }
    String::from_utf8(buf).map_err(|_| "not valid UTF-8".into())
}

/// The regular files a `check_files` pattern names, sorted.
///
/// A walker of our own rather than `glob::glob`: `**` through a symlink loop makes that one
/// visit an exponential number of paths. Here each (directory, pattern position) pair is visited
/// once, by its canonical path, so loops end; the depth below the pattern's literal part and the
/// number of directory entries looked at are capped, and going past a cap is an error.
pub fn glob_files(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    use std::path::Component;
    if let Err(e) = glob::Pattern::new(pattern) {
        return Err(format!("invalid glob {pattern:?}: {}", e.msg));
    }
    let is_meta = |s: &str| s.contains(['*', '?', '[']);
    // Only the pattern is one: the directory it is relative to is a path, whatever characters
    // its name holds (`/srv/canary[prod]`). An absolute pattern replaces the directory.
    let mut base = dir.to_path_buf();
    let mut rest: Vec<String> = Vec::new();
    for c in Path::new(pattern).components() {
        let text = c.as_os_str().to_string_lossy();
        if rest.is_empty() && !(matches!(c, Component::Normal(_)) && is_meta(&text)) {
            base.push(c.as_os_str());
        } else {
            rest.push(text.into_owned());
        }
    }
    let mut parts = Vec::new();
    for r in &rest {
        parts.push(if r == "**" {
            GlobPart::AnyDirs
        } else if is_meta(r) {
            let p = glob::Pattern::new(r)
                .map_err(|e| format!("invalid glob {pattern:?}: {}", e.msg))?;
            GlobPart::Pattern(p)
        } else {
            GlobPart::Literal(r.clone())
        });
    }
    let mut walk = GlobWalk {
        pattern,
        parts,
        visited: HashSet::new(),
        entries: 0,
        out: Vec::new(),
    };
    walk.walk(&base, 0, 0)?;
    let mut out = walk.out;
    out.sort();
    out.dedup();
    Ok(out)
}

enum GlobPart {
    AnyDirs,
    Pattern(glob::Pattern),
    Literal(String),
}

struct GlobWalk<'a> {
    pattern: &'a str,
    parts: Vec<GlobPart>,
    visited: HashSet<(PathBuf, usize)>,
    entries: usize,
    out: Vec<PathBuf>,
}

impl GlobWalk<'_> {
    fn walk(&mut self, path: &Path, idx: usize, depth: usize) -> Result<(), String> {
        if idx == self.parts.len() {
            if path.is_file() && self.out.len() <= limits::MAX_CHECK_FILES {
                self.out.push(path.to_path_buf());
            }
            return Ok(());
        }
        if depth > limits::MAX_GLOB_DEPTH {
            return Err(format!(
                "pattern {:?} reaches more than {} directory levels deep",
                self.pattern,
                limits::MAX_GLOB_DEPTH
            ));
        }
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if !self.visited.insert((canonical, idx)) {
            return Ok(());
        }
        if let GlobPart::Literal(l) = &self.parts[idx] {
            let next = path.join(l);
            return self.walk(&next, idx + 1, depth);
        }
        let Ok(read) = std::fs::read_dir(path) else {
            return Ok(());
        };
        let mut children = Vec::new();
        for entry in read.flatten() {
            self.entries += 1;
            if self.entries > limits::MAX_GLOB_ENTRIES {
                return Err(format!(
                    "pattern {:?} looks at more than {} directory entries",
                    self.pattern,
                    limits::MAX_GLOB_ENTRIES
                ));
            }
            children.push(entry.path());
        }
        children.sort();
        match &self.parts[idx] {
            GlobPart::AnyDirs => {
                self.walk(path, idx + 1, depth)?;
                for child in children {
                    if child.is_dir() {
                        self.walk(&child, idx, depth + 1)?;
                    }
                }
            }
            GlobPart::Pattern(p) => {
                let matching: Vec<PathBuf> = children
                    .into_iter()
                    .filter(|c| {
                        c.file_name()
                            .is_some_and(|n| p.matches(&n.to_string_lossy()))
                    })
                    .collect();
                for child in matching {
                    self.walk(&child, idx + 1, depth + 1)?;
                }
            }
            GlobPart::Literal(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::defaults::Defaults;

    /// The matches of `pattern` under `dir`, relative to it.
    fn matches(dir: &Path, pattern: &str) -> Vec<String> {
        glob_files(dir, pattern)
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect()
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "checks: []\n").unwrap();
    }

    #[test]
    fn a_double_star_pattern_finds_files_at_every_depth_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "z.yaml",
            "b/a.yaml",
            "a/b/c.yaml",
            "a/x.yaml",
            "a/notes.txt",
        ] {
            touch(&d.join(f));
        }
        std::fs::create_dir_all(d.join("dir.yaml")).unwrap();
        assert_eq!(
            matches(d, "**/*.yaml"),
            ["a/b/c.yaml", "a/x.yaml", "b/a.yaml", "z.yaml"]
        );
        assert_eq!(matches(d, "a/**/*.yaml"), ["a/b/c.yaml", "a/x.yaml"]);
        assert_eq!(matches(d, "*/*.yaml"), ["a/x.yaml", "b/a.yaml"]);
        assert_eq!(matches(d, "a/x.yaml"), ["a/x.yaml"]);
        assert!(matches(d, "nowhere/**/*.yaml").is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_ends_and_lists_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("a/x.yaml"));
        touch(&d.join("top.yaml"));
        std::os::unix::fs::symlink(d, d.join("a/loop")).unwrap();
        std::os::unix::fs::symlink(d.join("a"), d.join("a/self")).unwrap();
        assert_eq!(matches(d, "**/*.yaml"), ["a/x.yaml", "top.yaml"]);
        assert_eq!(matches(d, "**/**/*.yaml"), ["a/x.yaml", "top.yaml"]);
    }

    #[test]
    fn a_pattern_deeper_than_the_cap_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let deep = (0..=limits::MAX_GLOB_DEPTH).fold(dir.path().to_path_buf(), |p, _| p.join("d"));
        touch(&deep.join("x.yaml"));
        assert_eq!(
            glob_files(dir.path(), "**/*.yaml").unwrap_err(),
            format!(
                "pattern \"**/*.yaml\" reaches more than {} directory levels deep",
                limits::MAX_GLOB_DEPTH
            )
        );
        // One level less is within the cap.
        let within = tempfile::tempdir().unwrap();
        let deep =
            (0..limits::MAX_GLOB_DEPTH).fold(within.path().to_path_buf(), |p, _| p.join("d"));
        touch(&deep.join("x.yaml"));
        assert_eq!(glob_files(within.path(), "**/*.yaml").unwrap().len(), 1);
    }

    #[test]
    fn a_pattern_looking_at_too_many_entries_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..1000 {
            std::fs::write(dir.path().join(format!("{i}.txt")), "").unwrap();
        }
        // Each `**` reads the directory again: 101 of them look at 101,000 entries.
        let pattern = format!("{}*.yaml", "**/".repeat(101));
        assert_eq!(
            glob_files(dir.path(), &pattern).unwrap_err(),
            format!(
                "pattern {pattern:?} looks at more than {} directory entries",
                limits::MAX_GLOB_ENTRIES
            )
        );
    }

    #[test]
    fn the_directory_of_the_config_is_no_pattern() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a[1]", "b*", "c?", "d[", "e]"] {
            let d = dir.path().join(name);
            touch(&d.join("checks/x.yaml"));
            assert_eq!(matches(&d, "checks/*.yaml"), ["checks/x.yaml"], "{name}");
            assert_eq!(matches(&d, "**/x.yaml"), ["checks/x.yaml"], "{name}");
            assert_eq!(matches(&d, "checks/x.yaml"), ["checks/x.yaml"], "{name}");
        }
        // An absolute pattern is taken as written.
        let absolute = format!("{}/a*/checks/*.yaml", dir.path().display());
        assert_eq!(
            glob_files(Path::new("/elsewhere"), &absolute).unwrap(),
            [dir.path().join("a[1]/checks/x.yaml")]
        );
    }

    #[test]
    fn an_invalid_pattern_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = glob_files(dir.path(), "checks/[a.yaml").unwrap_err();
        assert!(
            err.starts_with("invalid glob \"checks/[a.yaml\": "),
            "{err}"
        );
    }

    #[test]
    fn a_decode_error_is_located_with_its_key_path() {
        let err = decode::<BTreeMap<String, Defaults>>(
            Path::new("canaryd.yaml"),
            "a:\n  interval: 1s\nb:\n  intervall: 1s\n",
        )
        .unwrap_err();
        assert_eq!((err.line, err.col), (4, 3), "{err}");
        assert_eq!(err.key, "b.intervall");
        assert_eq!(
            err.to_string(),
            "canaryd.yaml:4:3: b.intervall: unknown field `intervall`, expected one of interval, timeout, body_limit"
        );
        let err = decode::<Defaults>(Path::new("t.yaml"), "interval: soon\n").unwrap_err();
        assert_eq!(
            (err.line, err.col, err.key.as_str()),
            (1, 11, "interval"),
            "{err}"
        );
        // A syntax error has a location but no key.
        let err = decode::<Defaults>(Path::new("t.yaml"), "interval: \"1s\n").unwrap_err();
        assert_eq!(err.key, "", "{err}");
        assert!(err.line >= 1 && !err.message.is_empty() && !err.message.contains('\n'));
    }

    #[test]
    fn a_key_path_keeps_keys_that_start_like_a_wrapper() {
        let err = decode::<BTreeMap<String, BTreeMap<String, String>>>(
            Path::new("t.yaml"),
            "labels:\n  value_x: [1]\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.yaml:2:12: labels.value_x: expected string scalar"
        );
        let err = decode::<BTreeMap<String, Vec<BTreeMap<String, String>>>>(
            Path::new("t.yaml"),
            "steps:\n  - {a: b}\n  - {values: [1]}\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "steps[1].values");
        // Spanned values add no segment of their own.
        let err = decode::<BTreeMap<String, serde_saphyr::Spanned<Defaults>>>(
            Path::new("t.yaml"),
            "a:\n  interval: [1]\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "a.interval");
    }

    #[test]
    fn an_alias_bomb_is_refused_in_words() {
        let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            yaml.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let err =
            decode::<BTreeMap<String, serde_json::Value>>(Path::new("t.yaml"), &yaml).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(
            err.message
                .starts_with("the document exceeds the YAML decoder's limits ("),
            "{err}"
        );
        assert!(
            err.message.ends_with(&format!(
                "aliases may replay at most {} events, and a file holds at most 250000 nodes nested 64 deep",
                limits::MAX_ALIAS_REPLAYED_EVENTS
            )),
            "{err}"
        );
    }
}
