//! Habits of the codebase, checked over its sources as text (rust-analyzer's `tidy.rs`
//! is the model): the planner stays pure, only the CLI prints, and every document the
//! code and the docs point to is in the repository.

use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Files under `dir` (relative to the root) whose name ends with one of `exts`, skipping
/// build output.
fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root().join(dir)];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    todo.push(path);
                }
            } else if exts.iter().any(|e| name.ends_with(e)) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The code of a Rust file before its `#[cfg(test)]` module (tests may do anything).
fn non_test_code(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The planner decides from its inputs alone (ARCHITECTURE.md: a pure planner): no
/// I/O, no clock, no runtime, no printing. Time comes in as `RunOptions::now`.
#[test]
fn the_planner_does_no_io_and_reads_no_clock() {
    const PURE: &[&str] = &[
        "host/src/sync/plan/mod.rs",
        "host/src/sync/plan/fields.rs",
        "host/src/sync/plan/existence.rs",
        "host/src/sync/plan/breaker.rs",
        "host/src/sync/plan/review.rs",
        "host/src/sync/baseline.rs",
        "host/src/sync/mapping.rs",
        "host/src/sync/model.rs",
        "host/src/sync/policy.rs",
        "host/src/sync/rules.rs",
    ];
    const FORBIDDEN: &[&str] = &[
        "std::fs",
        "std::net",
        "std::env",
        "std::process",
        "std::io",
        "std::thread",
        "SystemTime",
        "Instant::now",
        "now_utc",
        "now_local",
        "tokio",
        "reqwest",
        "redb",
        "async fn",
        ".await",
        "println!",
        "eprintln!",
        "print!(",
        "dbg!(",
    ];
    let mut found = Vec::new();
    for file in PURE {
        let text = std::fs::read_to_string(root().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e} (moved? update this list)"));
        for (n, line) in non_test_code(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                if code.contains(word) {
                    found.push(format!("{file}:{}: `{word}` in `{}`", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the planner must stay pure:\n{}",
        found.join("\n")
    );
}

/// Only the CLI writes to the terminal; everything else reports through return values
/// and `tracing`, so that the daemon, the control API and the tests see it too.
#[test]
fn only_the_cli_prints() {
    let mut found = Vec::new();
    for file in files("host/src", &[".rs"]) {
        let name = rel(&file);
        if name.starts_with("host/src/cli/") || name == "host/src/main.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in non_test_code(&text).lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for word in ["println!", "eprintln!", "print!(", "eprint!(", "dbg!("] {
                if code.contains(word) {
                    found.push(format!("{name}:{}: `{word}`", n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "print through the CLI or tracing:\n{}",
        found.join("\n")
    );
}

/// Repository paths cited in one text: markdown links `](path)` and the `docs/…` /
/// `examples/…` paths code comments name.
fn cited_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("](") {
        let rest = &text[i + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        let target = rest[..end].split('#').next().unwrap_or_default();
        if !target.is_empty()
            && !target.contains("://")
            && !target.starts_with("mailto:")
            && !target.contains(' ')
            && (target.contains('/') || target.contains('.'))
        {
            out.push(target.to_owned());
        }
    }
    for prefix in ["docs/", "examples/"] {
        for (i, _) in text.match_indices(prefix) {
            // Only a path that starts there (not `plugins/x/docs/…` or `mydocs/`).
            if text[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '/' || c == '_' || c == '-')
            {
                continue;
            }
            let path: String = text[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
                .collect();
            let path = path.trim_end_matches('.');
            if path.ends_with(".md") || path.ends_with(".toml") {
                out.push(path.to_owned());
            }
        }
    }
    out
}

/// Every path a document or a comment cites resolves in the repository (relative to the
/// citing file for markdown links, to the root for `docs/…` paths in code). The product
/// documents outside the repository are not citable: what the code relies on is in
/// `docs/`.
#[test]
fn every_cited_document_is_in_the_repository() {
    let mut texts: Vec<PathBuf> = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    texts.extend(files("docs", &[".md"]));
    texts.extend(files("plugins", &[".md", ".rs"]));
    texts.extend(files("host", &[".rs"]));
    texts.extend(files("sandbox", &[".rs"]));
    texts.extend(files("tests", &[".rs"]));
    texts.extend(files("examples", &[".toml"]));
    let mut missing = Vec::new();
    for file in &texts {
        let text = std::fs::read_to_string(file).unwrap();
        // This file names example paths to explain itself.
        if file.ends_with("tests/suite/tidy.rs") {
            continue;
        }
        let dir = file.parent().unwrap();
        for cited in cited_paths(&text) {
            let resolves = [dir.join(&cited), root().join(&cited)]
                .iter()
                .any(|p| p.exists());
            if !resolves {
                missing.push(format!("{}: {cited}", rel(file)));
            }
        }
    }
    // The product documents kept outside the repository are not citable: what the
    // code relies on from them is said in `docs/`, in our words.
    let mut outside = Vec::new();
    for file in &texts {
        if file.ends_with("tests/suite/tidy.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        // Spelt in pieces, so that this file does not cite them itself.
        if text.contains("reference/") && text.contains("-api.md")
            || text.contains(concat!("shared/", "reference/"))
            || text.contains(concat!("..", "/shared/"))
        {
            outside.push(rel(file));
        }
    }
    assert!(
        outside.is_empty(),
        "these cite documents outside the repository; say what they rely on in docs/ and cite that: {outside:?}"
    );
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "cited but not in the repository ({}):\n{}",
        missing.len(),
        missing.join("\n")
    );
}
