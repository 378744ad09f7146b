//! The terminal conventions: stdout carries only the report, stderr the
//! warnings; `-o` writes atomically; a closed pipe is not an error; no
//! colour codes; --expect sets the exit code.

use std::io::Read;
use std::process::{Command, Stdio};

use predicates::prelude::*;

use crate::util::{fixtures, json_report, losscope};

#[test]
fn table_is_the_default_and_shows_every_section() {
    let output = losscope().args(["ce", "golden/ce.npz"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "cross entropy (ce)",
        "0.2301812851391809",
        "baseline (ce)  0.2396263025762109",
        "baseline share",
        "Classes by share of the loss",
        "Easy (p_t > 0.5) versus hard examples",
        "Loss by p_t",
        "Share of the loss carried by the hardest examples",
    ] {
        assert!(text.contains(needle), "table lacks {needle:?}:\n{text}");
    }
    assert!(output.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn table_sorts_classes_by_share_and_cuts_with_top() {
    let output = losscope().args(["ce", "golden/ce.npz", "--top", "1"]).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("2 more classes (--top all)"), "{text}");
    let class_rows: Vec<&str> = text.lines().filter(|l| l.contains('%') && l.contains('█')).collect();
    assert!(class_rows[0].contains("53.7%"), "largest share first: {class_rows:?}");
}

/// 1000 classes printed 1046 lines: the class table shows the 20 largest
/// shares unless `--top` says otherwise, in every format a person reads;
/// the JSON report keeps every class.
#[test]
fn class_tables_show_twenty_rows_unless_told() {
    let args = ["ce", "--logits", "big/ce_logits.npz:logits", "--targets", "big/ce_targets.npy", "-q"];
    let render = |extra: &[&str]| {
        let output = losscope().args(args).args(extra).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    // The class table's rows: from its title to the next blank line.
    let class_rows = |text: &str, row_start: &str| {
        let table = text.split("Classes by share of the loss").nth(1).unwrap();
        let table = table.trim_start_matches('\n').split("\n\n").next().unwrap();
        table.lines().filter(|l| l.starts_with(row_start)).count()
    };
    let table = render(&[]);
    assert_eq!(class_rows(&table, "│ "), 21, "20 rows and the header:\n{table}");
    assert!(table.contains("\n17 more classes (--top all)\n"), "{table}");
    let all = render(&["--top", "all"]);
    assert_eq!(class_rows(&all, "│ "), 38);
    assert!(!all.contains("more classes"), "{all}");
    let markdown = render(&["--format", "markdown"]);
    assert_eq!(class_rows(&markdown, "| "), 21, "{markdown}");
    assert!(markdown.contains("_17 more classes (--top all)_"), "{markdown}");
    let html = render(&["--format", "html"]);
    let html_table =
        html.split("Classes by share of the loss").nth(1).unwrap().split("</table>").next().unwrap();
    assert_eq!(html_table.matches("<tr>").count(), 21, "{html_table}");
    assert!(html.contains("17 more classes (--top all)"));
    let report = json_report(&args);
    assert_eq!(report["classes"].as_array().unwrap().len(), 37);
    losscope().args(args).args(["--top", "few"]).assert().code(2).stderr(predicate::str::contains("--top"));
    losscope()
        .args(args)
        .args(["--top", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--top must be at least 1 (or all)"));
}

/// The notation of every number in every column of the tables in `text`:
/// fixed with its decimals, or scientific. Zeros, dashes and percentages
/// say nothing of a notation and are passed over.
fn notations_by_column(text: &str) -> Vec<Vec<std::collections::BTreeSet<String>>> {
    let mut tables = Vec::new();
    let mut columns: Vec<std::collections::BTreeSet<String>> = Vec::new();
    for line in text.lines() {
        if !line.starts_with('│') {
            if !columns.is_empty() {
                tables.push(std::mem::take(&mut columns));
            }
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('│').split('┆').map(str::trim).collect();
        columns.resize_with(cells.len().max(columns.len()), Default::default);
        for (column, cell) in cells.iter().enumerate() {
            let number = cell.trim_start_matches('-');
            let (mantissa, exponent) = number.split_once('e').unwrap_or((number, ""));
            let Some((whole, decimals)) = mantissa.split_once('.') else { continue };
            if whole.chars().all(|c| c.is_ascii_digit()) && decimals.chars().all(|c| c.is_ascii_digit()) {
                let notation = if exponent.is_empty() {
                    format!("{} decimals", decimals.len())
                } else {
                    "scientific".into()
                };
                columns[column].insert(notation);
            }
        }
    }
    tables
}

/// Small losses beside large ones wrote `1.4679e-6` beside `0.043322` in one
/// column; a column now writes all its numbers in one notation.
#[test]
fn every_column_writes_its_numbers_in_one_notation() {
    let mut ssd = crate::util::SSD_GOLDEN.to_vec();
    ssd.push("--top");
    ssd.push("all");
    for args in [
        &["focal", "golden/bce_focal.npz", "--kind", "sigmoid"][..],
        &["focal", "focal/softmax.npz", "--kind", "softmax"],
        &["ce", "--logits", "big/ce_logits.npz:logits", "--targets", "big/ce_targets.npy", "--top", "all"],
        &ssd,
    ] {
        let output = losscope().args(args).arg("-q").output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).unwrap();
        for (t, columns) in notations_by_column(&text).iter().enumerate() {
            for (c, notations) in columns.iter().enumerate() {
                assert!(notations.len() <= 1, "{args:?}: table {t} column {c} mixes {notations:?}:\n{text}");
            }
        }
    }
}

#[test]
fn markdown_renders_pipe_tables() {
    let output = losscope().args(["ce", "golden/ce.npz", "--format", "markdown"]).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("## losscope: cross entropy (ce)"), "{text}");
    assert!(text.contains("| value | `0.2301812851391809` |"));
    assert!(text.contains("### Classes by share of the loss"));
    assert!(text.contains("|---:|---|---:|---:|---:|---:|---|"), "{text}");
}

#[test]
fn no_colour_codes_with_or_without_no_color() {
    for no_color in [false, true] {
        let mut cmd = losscope();
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        let output = cmd.args(["bce", "golden/bce.npz"]).output().unwrap();
        assert!(!output.stdout.contains(&0x1b), "escape code in stdout");
        assert!(!output.stderr.contains(&0x1b), "escape code in stderr");
    }
}

#[test]
fn warnings_go_to_stderr_and_the_report_keeps_them() {
    let args = ["ce", "--logits", "ignore/logits.npy", "--targets", "ignore/all_ignored.npy"];
    losscope()
        .args(args)
        .args(["--format", "json"])
        .assert()
        .success()
        .stderr(predicate::str::contains("warning: every target is ignored"))
        .stdout(predicate::str::contains("\"value\": null"));
}

#[test]
fn output_file_is_written_whole_and_stdout_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    losscope()
        .args(["ce", "golden/ce.npz", "--format", "json", "-o"])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::is_empty());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(report["value"], 0.2301812851391809);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary files left behind: {leftovers:?}");
}

#[test]
fn failed_input_leaves_an_existing_output_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    std::fs::write(&path, "previous").unwrap();
    losscope()
        .args(["ce", "--logits", "bad/logits_nan.npy", "--targets", "golden/ce.npz:targets", "-o"])
        .arg(&path)
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "previous");
}

/// `losscope … | head -1`: the reader goes away; losscope exits 0 quietly.
#[test]
fn closed_pipe_exits_zero_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_losscope"))
        .current_dir(fixtures())
        .args(["ce", "--logits", "big/ce_logits.npz:logits", "--targets", "big/ce_targets.npy"])
        // A thousand bins make a report larger than a pipe's buffer.
        .args(["--format", "json", "--bins", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
}

#[test]
fn expect_passes_within_tolerance_and_fails_outside() {
    losscope().args(["ce", "golden/ce.npz", "--expect", "0.23018128513918"]).assert().success();
    losscope().args(["ce", "golden/ce.npz", "--expect", "0.2301", "--rtol", "1e-3"]).assert().success();
    let output = losscope().args(["ce", "golden/ce.npz", "--expect", "0.25"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(!output.stdout.is_empty(), "the report is still printed");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("check failed: value 0.2301812851391809 differs from the expected 0.25"),
        "{stderr}"
    );
}

#[test]
fn help_and_version_exit_zero() {
    losscope().arg("--help").assert().success().stdout(predicate::str::contains("ce"));
    losscope().arg("--version").assert().success().stdout(predicate::str::contains("losscope"));
    losscope().args(["ce", "--help"]).assert().success().stdout(predicate::str::contains("--ignore-index"));
}

/// A full device or a read-only place is a clear error, exit 2, and the
/// device itself is left alone.
#[test]
fn unwritable_destinations_are_clear_errors() {
    for (path, message) in [("/dev/full", "No space left on device"), ("/proc/losscope-report.json", "/proc")]
    {
        losscope()
            .args(["ce", "golden/ce.npz", "-o", path])
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains(message));
    }
    let meta = std::fs::metadata("/dev/full").unwrap();
    assert!(!meta.is_file(), "/dev/full is still a device");
}

#[test]
fn a_special_file_destination_is_written_in_place() {
    losscope()
        .args(["ce", "golden/ce.npz", "--format", "json", "-o", "/dev/stdout"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"schema_version\": 1"));
}
