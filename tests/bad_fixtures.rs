//! Every file in tests/fixtures/bad/ breaks one configuration rule; each ends with
//! `# expect: <message>` lines giving the exact errors `canaryd check` must print for it.
//! (Run with CANARYD_BLESS=1 to rewrite the expectations after a deliberate message change.)

use std::path::{Path, PathBuf};

fn errors_for(path: &Path) -> Vec<String> {
    let name = path.file_name().unwrap().to_string_lossy();
    let result = if name.starts_with("daemon-") {
        canaryd::loader::load(path).map(|_| ())
    } else {
        let src = std::fs::read_to_string(path).unwrap();
        canaryd::probe::check::load_checks_str(path, &src).map(|_| ())
    };
    match result {
        Ok(()) => Vec::new(),
        Err(errs) => errs.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("tests/fixtures/bad")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_bad_fixture_fails_with_its_exact_message() {
    let bless = std::env::var("CANARYD_BLESS").is_ok();
    let all = fixtures();
    assert!(
        all.len() >= 30,
        "the corpus has one file per rule; found only {}",
        all.len()
    );
    let mut failures = Vec::new();
    for path in &all {
        let src = std::fs::read_to_string(path).unwrap();
        let expected: Vec<String> = src
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(str::to_string)
            .collect();
        let got = errors_for(path);
        if bless {
            let body: String = src
                .lines()
                .filter(|l| !l.starts_with("# expect: "))
                .map(|l| format!("{l}\n"))
                .collect();
            let tail: String = got.iter().map(|e| format!("# expect: {e}\n")).collect();
            std::fs::write(path, body + &tail).unwrap();
            continue;
        }
        if got.is_empty() {
            failures.push(format!("{}: loaded without error", path.display()));
        } else if expected.is_empty() {
            failures.push(format!("{}: no `# expect:` line", path.display()));
        } else if got != expected {
            failures.push(format!(
                "{}:\n  expected: {expected:#?}\n  got:      {got:#?}",
                path.display()
            ));
        }
        for e in &got {
            let prefix = format!("{}:", path.display());
            assert!(
                e.starts_with(&prefix),
                "error does not start with file:line:col: {e}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
