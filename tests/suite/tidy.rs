//! Habits of the codebase, checked over its sources as text (rust-analyzer's `tidy.rs`
//! is the model): the planner stays pure, only the CLI prints, the operator build carries
//! no test fixtures, and every document the code and the docs point to is in the
//! repository.

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
                // `node_modules`, `dist`: what npm installs and builds for the TypeScript
                // plugins (tests/support/polyglot.rs), not the repository's text.
                if !matches!(name.as_str(), "target" | "node_modules" | "dist")
                    && !name.starts_with('.')
                {
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

/// The section sign, spelt so that this file cites nothing itself.
const SECTION: char = '\u{a7}';

/// The short name docs/sync-rules.md goes by in citations (`sync-rules F9`).
const RULES: &str = concat!("sync-", "rules");

/// Section numbers of a markdown document: `## 3. Title` is `3`, `### 3.2 Title` is `3.2`.
fn sections(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            let title = l.trim_start_matches('#').trim_start();
            let n: String = title
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let n = n.trim_end_matches('.');
            (!n.is_empty() && n.starts_with(|c: char| c.is_ascii_digit())).then(|| n.to_owned())
        })
        .collect()
}

/// Row ids of docs/sync-rules.md: a table line whose first cell is a capital and a
/// number (`| F3 |`).
fn rows(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let cell = l.strip_prefix('|')?.split('|').next()?.trim();
            is_row(cell).then(|| cell.to_owned())
        })
        .collect()
}

fn is_row(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_uppercase())
        && !c.as_str().is_empty()
        && c.all(|c| c.is_ascii_digit())
}

/// The documents a line names, as (end offset, name): paths ending in `.md`, the short
/// name of docs/sync-rules.md, and RFCs.
fn doc_names(line: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, _) in line.match_indices(".md") {
        let end = i + 3;
        if line[end..].starts_with(|c: char| c.is_alphanumeric()) {
            continue;
        }
        let start = line[..i]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
            .last()
            .map_or(i, |(j, _)| j);
        if start < i {
            out.push((end, line[start..end].to_owned()));
        }
    }
    for (i, _) in line.match_indices(RULES) {
        if !line[i + RULES.len()..].starts_with(".md") {
            out.push((i + RULES.len(), RULES.to_owned()));
        }
    }
    for (i, _) in line.match_indices("RFC ") {
        if line[i + 4..].starts_with(|c: char| c.is_ascii_digit()) {
            out.push((i + 4, "RFC".to_owned()));
        }
    }
    out.sort();
    out
}

/// A section number at the start of `s` (`3.2` of `3.2, ...`).
fn number(s: &str) -> String {
    let n: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    n.trim_end_matches('.').to_owned()
}

/// What is wrong with the section and row citations of one file: a section sign that
/// names no document, a section its document does not have, a row or section of
/// docs/sync-rules.md that it does not define. `docs` reads a document by the path
/// cited (relative to the citing file, or to the root), `None` if there is none.
fn citation_problems(name: &str, text: &str, docs: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let markdown = name.ends_with(".md");
    let rules = docs(concat!("docs/sync-", "rules.md")).unwrap_or_default();
    let (rule_sections, rule_rows) = (sections(&rules), rows(&rules));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("{name}:{}", n + 1);
        let names = doc_names(line);
        for (i, _) in line.match_indices(SECTION) {
            let rest = &line[i + SECTION.len_utf8()..];
            if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            let num = number(rest);
            // The document named last before it on the line; in markdown, the file itself.
            let doc = match names.iter().rev().find(|(end, _)| *end <= i) {
                Some((_, d)) => d.clone(),
                None if markdown => name.to_owned(),
                None => {
                    out.push(format!("{at}: {SECTION}{num} names no document"));
                    continue;
                }
            };
            let defined = match doc.as_str() {
                "RFC" => continue,
                d if d == RULES => rule_sections.clone(),
                d => match docs(d) {
                    Some(t) => sections(&t),
                    None => {
                        out.push(format!(
                            "{at}: {SECTION}{num} of `{d}`, which is not in the repository"
                        ));
                        continue;
                    }
                },
            };
            if !defined.contains(&num) {
                out.push(format!("{at}: `{doc}` has no section {SECTION}{num}"));
            }
        }
        // A table row by its number alone: which table, which document?
        let lower = line.to_lowercase();
        for word in ["row ", "rows "] {
            for (i, _) in lower.match_indices(word) {
                let after = &lower[i + word.len()..];
                let starts_word = !lower[..i].ends_with(|c: char| c.is_alphanumeric());
                if starts_word && after.starts_with(|c: char| c.is_ascii_digit()) {
                    out.push(format!(
                        "{at}: `{}` names no table: cite `{RULES} F{}` (or the row's own table)",
                        &line[i..i + word.len() + number(after).len()],
                        number(after)
                    ));
                }
            }
        }
        // Rows (and sections) after the short name: `F5, F8`, `E1-E6`, `W6`.
        for (i, _) in line.match_indices(RULES) {
            let mut rest = &line[i + RULES.len()..];
            loop {
                let trimmed = [", ", ",", " and ", " or ", " to ", "-", " "]
                    .iter()
                    .find_map(|sep| rest.strip_prefix(sep))
                    .unwrap_or(rest);
                let item: String = trimmed
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                if is_row(&item) {
                    if !rule_rows.contains(&item) {
                        out.push(format!("{at}: {RULES} has no row {item}"));
                    }
                } else if trimmed.starts_with(SECTION) {
                    // Checked above with the other section signs.
                    let num = number(&trimmed[SECTION.len_utf8()..]);
                    if num.is_empty() {
                        break;
                    }
                    rest = &trimmed[SECTION.len_utf8() + num.len()..];
                    continue;
                } else {
                    break;
                }
                rest = &trimmed[item.len()..];
            }
        }
    }
    out
}

/// Every section or row a file cites exists, in a document it names: `§` numbers bind to
/// the document named last before them on the line (a markdown document's own sections
/// when it names none), rows and sections after the short name to docs/sync-rules.md.
#[test]
fn every_cited_section_and_row_exists() {
    let mut texts: Vec<PathBuf> = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    texts.extend(files("docs", &[".md"]));
    texts.extend(files("plugins", &[".md", ".rs"]));
    texts.extend(files("host", &[".rs", ".md"]));
    texts.extend(files("sandbox", &[".rs", ".md"]));
    texts.extend(files("tests", &[".rs", ".md"]));
    texts.extend(files("examples", &[".toml"]));
    let mut problems = Vec::new();
    for file in &texts {
        let text = std::fs::read_to_string(file).unwrap();
        let dir = file.parent().unwrap().to_path_buf();
        let docs = |cited: &str| {
            [dir.join(cited), root().join(cited)]
                .iter()
                .find_map(|p| std::fs::read_to_string(p).ok())
        };
        problems.extend(citation_problems(&rel(file), &text, &docs));
    }
    assert!(
        problems.is_empty(),
        "cite a section or row that exists, naming its document (docs/sync-rules.md, top) ({}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The checker itself refuses what it should: planted bad citations.
#[test]
fn the_citation_checker_refuses_bad_citations() {
    let rules = "# Rules\n## 3. The field table\n| # | x |\n| F9 | y |\n### 3.1 More\n".to_owned();
    let api = "# API\n## 2. Hosts\n### 2.4 Bodies\n".to_owned();
    let docs = |d: &str| match d {
        d if d.ends_with(concat!("sync-", "rules.md")) => Some(rules.clone()),
        "docs/api.md" | "api.md" => Some(api.clone()),
        _ => None,
    };
    let s = SECTION;
    let check = |name: &str, text: &str| citation_problems(name, text, &docs);
    let good =
        format!("// docs/api.md {s}2.4 and {s}2, {RULES} F9, {RULES} {s}3.1, RFC 6749 {s}5.2\n");
    assert_eq!(check("x.rs", &good), Vec::<String>::new());
    assert_eq!(
        check("docs/api.md", &format!("see {s}2.4\n")),
        Vec::<String>::new()
    );
    for bad in [
        format!("// a bare {s}2.4 here\n"),
        format!("// docs/api.md {s}7.1\n"),
        format!("// docs/nowhere.md {s}1\n"),
        format!("// {RULES} F11\n"),
        format!("// {RULES} F9, E3\n"),
        format!("// {RULES} {s}4\n"),
        format!("// {RULES} F9-F10\n"),
        format!("// the field table's {}9\n", "row "),
    ] {
        assert_eq!(check("x.rs", &bad).len(), 1, "not refused: {bad}");
    }
    assert_eq!(
        check("docs/other.md", &format!("see {s}2.4\n")).len(),
        1,
        "a markdown file's bare {s} means its own sections"
    );
}

/// The packages `cargo` would build for `args` (`cargo tree`, normal and build edges only:
/// what an operator's `cargo build` compiles), one `name [features]` per line.
fn build_tree(args: &[&str]) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(root())
        .args(["tree", "--locked", "--offline", "-e", "normal,build"])
        .args(["--prefix", "none", "-f", "{p} [{f}]"])
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The operator binary carries only what operators run: building `tandem` compiles no
/// test fixture (hostile plugins are built only with `tandem-plugins`' `fixtures`
/// feature, which only the test crates enable), and without its default `sandbox`
/// feature it does not even depend on the simulated accounts.
#[test]
fn the_operator_build_compiles_no_test_fixtures() {
    let tree = build_tree(&["-p", "tandem"]);
    let plugins: Vec<&String> = tree
        .iter()
        .filter(|l| l.starts_with("tandem-plugins "))
        .collect();
    assert!(!plugins.is_empty(), "tandem builds its plugins: {tree:?}");
    for line in plugins {
        assert!(
            !line.contains("fixtures"),
            "tandem's build enables fixtures: {line}"
        );
    }
    let lean = build_tree(&["-p", "tandem", "--no-default-features"]);
    assert!(
        !lean.iter().any(|l| l.starts_with("tandem-sandbox ")),
        "the operator build depends on the sandbox: {lean:?}"
    );
    // And every package under tests/fixtures is marked as a fixture.
    for manifest in files("tests/fixtures", &["Cargo.toml"]) {
        let text = std::fs::read_to_string(&manifest).unwrap();
        // `[package.metadata.tandem]` holds `fixture = true`.
        let section = text
            .split("[package.metadata.tandem]")
            .nth(1)
            .map(|rest| rest.split("\n[").next().unwrap_or(rest));
        let fixture = section.map(|s| s.lines().any(|l| l.trim() == "fixture = true"));
        assert_eq!(
            fixture,
            Some(true),
            "{} is not marked `fixture = true`",
            rel(&manifest)
        );
    }
}
