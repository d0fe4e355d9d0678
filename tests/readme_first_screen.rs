//! The README works as written, and every link in the docs leads somewhere.
//!
//! - The README's first screen, followed literally: the files it shows (each fenced block right
//!   after a `<!-- file: PATH -->` line) are written into an empty directory, and the commands
//!   it shows are run there: `canaryd check` says ok, `canaryd test --all` passes, and
//!   `canaryd run` serves the check's result on `/metrics` and the operator view. The example's
//!   target, `127.0.0.1:8080`, is replaced by a local server that answers what the check expects
//!   (a 200 with a whole HTML page), and its `listen` port by a free one.
//! - Every other example file of the README (the first login, queue and heartbeat checks) and
//!   every fragment it tells you to add to `canaryd.yaml` (`<!-- append: canaryd.yaml -->`)
//!   validates with `canaryd check --no-secrets`.
//! - Every relative link and `#anchor` in README.md, CHANGELOG.md, ARCHITECTURE.md and docs/*.md
//!   resolves: the file exists, and the anchor is a heading of that file (GitHub's anchors).

mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use services::{canaryd_run, free_port, http_get, repo_root, Canaryd};

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

/// The address the README's first check probes; the test serves the page there instead.
const EXAMPLE_TARGET: &str = "127.0.0.1:8080";
/// The `listen` address of the README's `canaryd.yaml`.
const EXAMPLE_LISTEN: &str = "127.0.0.1:9464";
/// The first heading after the first screen: file blocks above it are the first screen.
const AFTER_FIRST_SCREEN: &str = "## Your first login check";
/// The first screen ends within this many lines (a terminal or a browser window).
const FIRST_SCREEN_LINES: usize = 80;

fn read(path: &str) -> String {
    let full = repo_root().join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

/// A fenced block the README marks as a file: `<!-- file: PATH -->` (the whole file) or
/// `<!-- append: PATH -->` (lines to add to it), the line right before the opening fence.
#[derive(Debug)]
struct Block {
    path: String,
    append: bool,
    /// 1-based line of the marker.
    line: usize,
    text: String,
}

fn marked_blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        let Some(inner) = line
            .strip_prefix("<!--")
            .and_then(|l| l.strip_suffix("-->"))
        else {
            continue;
        };
        let inner = inner.trim();
        let (append, path) = if let Some(p) = inner.strip_prefix("file:") {
            (false, p.trim())
        } else if let Some(p) = inner.strip_prefix("append:") {
            (true, p.trim())
        } else {
            continue;
        };
        let fence = lines.get(i + 1).map(|l| l.trim_start()).unwrap_or("");
        assert!(
            fence.starts_with("```"),
            "README.md:{}: {line} must be followed by a fenced block, not {fence:?}",
            i + 1
        );
        let body: Vec<&str> = lines[i + 2..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with("```"))
            .copied()
            .collect();
        assert!(
            i + 2 + body.len() < lines.len(),
            "README.md:{}: the block after {line} is never closed",
            i + 1
        );
        out.push(Block {
            path: path.to_string(),
            append,
            line: i + 1,
            text: body.join("\n") + "\n",
        });
    }
    out
}

/// Writes blocks into `dir` (files first, then appends, in README order).
fn write_blocks(dir: &Path, blocks: &[&Block]) {
    for block in blocks.iter().filter(|b| !b.append) {
        let path = dir.join(&block.path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(&path, &block.text).expect("write an example file");
    }
    for block in blocks.iter().filter(|b| b.append) {
        let path = dir.join(&block.path);
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| {
                panic!(
                    "README.md:{}: appends to {}, which no earlier file block writes: {e}",
                    block.line, block.path
                )
            });
        file.write_all(block.text.as_bytes()).expect("append");
    }
}

/// Replaces `from` in the file, which must contain it.
fn replace_in(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).expect("read back");
    assert!(
        text.contains(from),
        "{} no longer mentions {from}; this test replaces it (update the test with the README)",
        path.display()
    );
    fs::write(path, text.replace(from, to)).expect("rewrite");
}

/// `canaryd ARGS` in `dir`, as a reader would type it there.
fn canaryd(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run canaryd")
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A page like the one the README's check expects at 127.0.0.1:8080: any request gets a 200 and
/// a whole HTML page. Runs on its own thread for the rest of the test process.
fn serve_page() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
    let addr = listener.local_addr().expect("its address").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            // Read the request head (the check sends no body), then answer and close.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let body = "<!DOCTYPE html>\n<html><head><title>Site</title></head><body>Hello</body></html>\n";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn the_first_screen_works_as_written() {
    let readme = read("README.md");
    let blocks = marked_blocks(&readme);
    let boundary = readme
        .lines()
        .position(|l| l.trim() == AFTER_FIRST_SCREEN)
        .unwrap_or_else(|| panic!("README.md has no heading {AFTER_FIRST_SCREEN:?}"))
        + 1;
    let first: Vec<&Block> = blocks.iter().filter(|b| b.line < boundary).collect();
    let paths: BTreeSet<&str> = first.iter().map(|b| b.path.as_str()).collect();
    assert!(
        paths.contains("canaryd.yaml") && paths.iter().any(|p| p.starts_with("checks/")),
        "README.md's first screen must show canaryd.yaml and a check file, each after a <!-- file: PATH --> line; it shows {paths:?}"
    );
    for block in &first {
        let end = block.line + block.text.lines().count() + 2;
        assert!(
            end <= FIRST_SCREEN_LINES,
            "README.md: {} ends on line {end}, past the first screen ({FIRST_SCREEN_LINES} lines)",
            block.path
        );
    }
    // The commands this test runs are the ones the first screen tells the reader to run.
    let screen: String = readme.lines().take(boundary).collect::<Vec<_>>().join("\n");
    for command in [
        "canaryd check --config canaryd.yaml",
        "canaryd test --config canaryd.yaml --all",
        "canaryd run --config canaryd.yaml",
    ] {
        assert!(
            screen.contains(command),
            "README.md's first screen no longer says `{command}`"
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    write_blocks(dir.path(), &first);
    // The example probes 127.0.0.1:8080, where a reader serves their site (or runs
    // `python3 -m http.server 8080`); here a local server on a free port answers instead.
    let page = serve_page();
    for block in first.iter().filter(|b| b.path.starts_with("checks/")) {
        replace_in(&dir.path().join(&block.path), EXAMPLE_TARGET, &page);
    }

    let check = canaryd(dir.path(), &["check", "--config", "canaryd.yaml"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && text.contains("ok: 1 check in 1 check file"),
        "canaryd check --config canaryd.yaml, as the README says:\n{}",
        show(&check)
    );

    let test = canaryd(dir.path(), &["test", "--config", "canaryd.yaml", "--all"]);
    let text = String::from_utf8_lossy(&test.stdout);
    let pass: Vec<&str> = text.lines().filter(|l| l.starts_with("PASS")).collect();
    assert!(
        test.status.success() && pass.len() == 1 && pass[0].contains("site (http)"),
        "canaryd test --config canaryd.yaml --all, as the README says (one PASS line for site):\n{}",
        show(&test)
    );

    // canaryd run: the README says /metrics shows the check passing and /ui/ shows it. Its
    // listen port moves to a free one (again on another if one is taken before canaryd binds it).
    let config = dir.path().join("canaryd.yaml");
    let written = fs::read_to_string(&config).expect("read canaryd.yaml");
    assert!(
        written.contains(EXAMPLE_LISTEN),
        "README.md's canaryd.yaml no longer listens on {EXAMPLE_LISTEN}; update this test with it"
    );
    let mut failures = Vec::new();
    let daemon = loop {
        let addr = format!("127.0.0.1:{}", free_port());
        fs::write(&config, written.replace(EXAMPLE_LISTEN, &addr)).expect("rewrite canaryd.yaml");
        match Canaryd::start(canaryd_run(&config), &addr) {
            Ok(d) => break d,
            Err(e) if failures.len() < 2 && e.contains("cannot listen") => failures.push(e),
            Err(e) => panic!("{}\n{e}", failures.join("\n")),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let text = http_get(&daemon.url("/metrics"))
            .expect("GET /metrics")
            .text();
        if text
            .lines()
            .any(|l| l == "canary_check_success{check=\"site\"} 1")
            || Instant::now() >= deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        metrics
            .lines()
            .any(|l| l == "canary_check_success{check=\"site\"} 1"),
        "README.md says /metrics has canary_check_success{{check=\"site\"}} 1:\n{metrics}\n--- canaryd log ---\n{}",
        daemon.log_tail(30)
    );
    let ui = http_get(&daemon.url("/ui/")).expect("GET /ui/");
    assert!(
        ui.status == 200 && ui.text().contains("href=\"/ui/checks/site\""),
        "README.md says /ui/ lists the check, linking to its page: {} {}",
        ui.status,
        ui.text()
    );
}

#[test]
fn every_example_file_of_the_readme_validates() {
    let readme = read("README.md");
    let blocks = marked_blocks(&readme);
    let checks: Vec<&Block> = blocks
        .iter()
        .filter(|b| !b.append && b.path.starts_with("checks/"))
        .collect();
    assert!(
        checks.len() >= 4,
        "README.md should show the first check, then a login, a queue and a heartbeat check as files: {:?}",
        checks.iter().map(|b| &b.path).collect::<Vec<_>>()
    );
    let mut seen = BTreeMap::new();
    for block in &blocks {
        if !block.append {
            if let Some(line) = seen.insert(block.path.clone(), block.line) {
                panic!(
                    "README.md:{}: {} is already a file at line {line}: a reader writing both would lose one",
                    block.line, block.path
                );
            }
        }
    }

    let dir = tempfile::tempdir().expect("temp dir");
    write_blocks(dir.path(), &blocks.iter().collect::<Vec<_>>());
    let out = canaryd(
        dir.path(),
        &["check", "--config", "canaryd.yaml", "--no-secrets"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = format!("ok: {n} checks in {n} check files", n = checks.len());
    assert!(
        out.status.success() && text.contains(&expected),
        "every README example together, `canaryd check --no-secrets` ({expected}):\n{}",
        show(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------------------------

/// The lines of a Markdown file outside fenced code blocks, with their 1-based numbers.
fn prose_lines(markdown: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in markdown.lines().enumerate() {
        let t = line.trim_start();
        let marker = if t.starts_with("```") {
            Some("```")
        } else if t.starts_with("~~~") {
            Some("~~~")
        } else {
            None
        };
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// GitHub's anchor for a heading's text: lowercase; letters, digits, `-` and `_` kept; spaces
/// become `-`; everything else (punctuation, backticks) dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor of a Markdown file: one per heading, a repeated one with `-1`, `-2`, ...
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(markdown) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = count.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// Every inline link or image target `](target)` in the prose, with its line.
fn link_targets(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(markdown) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push((n, target.to_string()));
            rest = &after[end..];
        }
    }
    out
}

fn docs_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files: Vec<PathBuf> = ["README.md", "CHANGELOG.md", "ARCHITECTURE.md"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let root = repo_root();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in docs_files() {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        for (line, target) in link_targets(&text) {
            if target.is_empty() {
                problems.push(format!("{name}:{line}: an empty link target"));
                continue;
            }
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("a parent").join(path)
            };
            if !dest.exists() {
                problems.push(format!("{name}:{line}: {target}: no file {path}"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if dest.extension().is_none_or(|e| e != "md") {
                problems.push(format!(
                    "{name}:{line}: {target}: an anchor into a file that is not Markdown"
                ));
                continue;
            }
            let dest_text = fs::read_to_string(&dest).expect("read the linked file");
            if !anchors(&dest_text).contains(anchor) {
                problems.push(format!(
                    "{name}:{line}: {target}: {} has no heading with the anchor #{anchor}",
                    if path.is_empty() { name.as_str() } else { path }
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} relative links found: is the link parser broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn github_anchors_are_made_as_github_makes_them() {
    assert_eq!(
        slug(" Daemon configuration (`canaryd.yaml`)"),
        "daemon-configuration-canarydyaml"
    );
    assert_eq!(
        slug(" Dependencies (`depends_on`)"),
        "dependencies-depends_on"
    );
    assert_eq!(
        slug(" Design notes (choices that may surprise, and why)"),
        "design-notes-choices-that-may-surprise-and-why"
    );
    assert_eq!(
        slug(" Delivery: the durable outbox"),
        "delivery-the-durable-outbox"
    );
    let a = anchors("# A\n```\n# not a heading\n```\n## A\n### B b\n");
    assert_eq!(
        a,
        ["a", "a-1", "b-b"].iter().map(|s| s.to_string()).collect()
    );
}
