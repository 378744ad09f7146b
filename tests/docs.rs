//! The console examples of README.md, ARCHITECTURE.md and docs/ are run and
//! compared with what they show, so they cannot go stale.
//!
//! A ```console block holds commands (`$ ` lines, continued by a trailing
//! `\`) each followed by the output it shows: stdout and stderr as a terminal
//! interleaves them. A line that starts with `…` stands for any number of
//! lines; `…` inside a line, with an optional `(comment)` after it, stands
//! for any text. The commands of one file run in order in one scratch
//! folder where `fixtures/` and `docs/` are the repository's, with the
//! binary under test first on PATH as `losscope`.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Example {
    file: String,
    line: usize,
    command: String,
    shown: Vec<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn examples_of(path: &Path) -> Vec<Example> {
    let text = std::fs::read_to_string(path).expect("a document");
    let file = path.strip_prefix(root()).unwrap_or(path).display().to_string();
    let mut examples = Vec::new();
    let mut in_block = false;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((number, line)) = lines.next() {
        if !in_block {
            in_block = line.trim_start() == "```console";
            continue;
        }
        if line.trim_start().starts_with("```") {
            in_block = false;
            continue;
        }
        if let Some(first) = line.strip_prefix("$ ") {
            let mut command = first.trim_end().to_string();
            loop {
                // A continued line, or the indented lines of a loop or a branch.
                let continued = command.ends_with('\\');
                if !continued && !opens_a_block(&command) {
                    break;
                }
                match lines.peek() {
                    Some((_, next)) if continued || next.starts_with(' ') => {
                        command.push('\n');
                        command.push_str(next.trim_end());
                        lines.next();
                    }
                    _ => break,
                }
            }
            examples.push(Example { file: file.clone(), line: number + 1, command, shown: Vec::new() });
        } else if let Some(example) = examples.last_mut() {
            example.shown.push(line.to_string());
        }
    }
    examples
}

/// Whether a shell command so far opens a loop or a branch that the next,
/// indented lines close.
fn opens_a_block(command: &str) -> bool {
    let depth = |open: &str, close: &str| {
        let words: Vec<&str> = command.split(|c: char| c.is_whitespace() || c == ';').collect();
        words.iter().filter(|w| **w == open).count() > words.iter().filter(|w| **w == close).count()
    };
    depth("do", "done") || depth("then", "fi")
}

/// Whether `actual` fits `pattern`, with `…` (and a parenthesised comment
/// after it) standing for any text.
fn line_fits(pattern: &str, actual: &str) -> bool {
    let (pattern, actual) = (pattern.trim_end(), actual.trim_end());
    if !pattern.contains('…') {
        return pattern == actual;
    }
    let mut parts: Vec<String> = Vec::new();
    for (i, piece) in pattern.split('…').enumerate() {
        let piece = if i > 0 && piece.starts_with(" (") {
            piece.find(')').map_or(piece, |end| &piece[end + 1..])
        } else {
            piece
        };
        parts.push(piece.to_string());
    }
    let last = parts.len() - 1;
    let Some(mut rest) = actual.strip_prefix(parts[0].as_str()) else { return false };
    for (i, part) in parts.iter().enumerate().skip(1) {
        if i == last {
            return rest.ends_with(part.as_str());
        }
        match rest.find(part.as_str()) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the actual lines fit the shown ones, a shown line starting with
/// `…` standing for any number of lines.
fn fits(shown: &[String], actual: &[&str]) -> bool {
    match shown.split_first() {
        None => actual.iter().all(|l| l.trim().is_empty()),
        Some((first, rest)) if first.trim_start().starts_with('…') => {
            (0..=actual.len()).any(|skip| fits(rest, &actual[skip..]))
        }
        Some((first, rest)) => {
            actual.split_first().is_some_and(|(line, more)| line_fits(first, line) && fits(rest, more))
        }
    }
}

#[test]
fn the_fitting_rule_reads_cuts() {
    let shown = |lines: &[&str]| lines.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(fits(&shown(&["a", "… (cut)", "d"]), &["a", "b", "c", "d"]));
    assert!(fits(&shown(&["a", "…", "d"]), &["a", "d"]));
    assert!(!fits(&shown(&["a", "d"]), &["a", "b", "d"]));
    assert!(line_fits("x([1, 2, … (9 more)], y)", "x([1, 2, 3, 4], y)"));
    assert!(!line_fits("x([1, 2, … (9 more)], y)", "x([1, 3], y)"));
    assert!(line_fits("value  0.5", "value  0.5   "));
}

#[test]
fn every_console_example_shows_what_losscope_prints() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_losscope"));
    let path = format!(
        "{}:{}",
        bin.parent().expect("the binary's folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut failures = Vec::new();
    let mut count = 0;
    for document in documents() {
        let examples = examples_of(&document);
        if examples.is_empty() {
            continue;
        }
        let scratch = tempfile::tempdir().expect("a scratch folder");
        for folder in ["fixtures", "docs"] {
            std::os::unix::fs::symlink(root().join(folder), scratch.path().join(folder)).expect("a link");
        }
        for example in examples {
            count += 1;
            let output = Command::new("bash")
                .arg("-c")
                .arg(format!("exec 2>&1\n{}", example.command))
                .current_dir(scratch.path())
                .env("PATH", &path)
                .env_remove("NO_COLOR")
                .env_remove("COLUMNS")
                .output()
                .expect("sh runs");
            let printed = String::from_utf8_lossy(&output.stdout);
            let actual: Vec<&str> = printed.lines().collect();
            // A command shown without output sets up the next ones.
            if !example.shown.is_empty() && !fits(&example.shown, &actual) {
                failures.push(format!(
                    "{}:{}: $ {}\n--- shown\n{}\n--- printed\n{}",
                    example.file,
                    example.line,
                    example.command,
                    example.shown.join("\n"),
                    printed
                ));
            }
        }
    }
    assert!(count >= 20, "only {count} console examples found");
    assert!(failures.is_empty(), "{} examples are stale:\n\n{}", failures.len(), failures.join("\n\n"));
}
