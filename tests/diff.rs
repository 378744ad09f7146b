//! `losscope diff`: exit 0 within tolerance, 1 beyond it, 2 when the two
//! reports cannot be compared; and the shell integration commands.

use std::path::{Path, PathBuf};

use predicates::prelude::*;

use crate::util::losscope;

/// Writes the JSON report of `args` into `dir/name`.
fn report_file(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    losscope().args(args).args(["--format", "json", "-o"]).arg(&path).assert().success();
    path
}

/// Rewrites one number of a report file, as a drifting loss would.
fn perturb(path: &Path, pointer: &str, value: f64) {
    let mut report: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    *report.pointer_mut(pointer).expect("field exists") = value.into();
    std::fs::write(path, serde_json::to_vec(&report).unwrap()).unwrap();
}

#[test]
fn identical_reports_are_within_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let a = report_file(dir.path(), "a.json", &["ce", "golden/ce.npz"]);
    let b = report_file(dir.path(), "b.json", &["ce", "golden/ce.npz", "--threads", "1"]);
    losscope()
        .arg("diff")
        .args([&a, &b])
        .assert()
        .success()
        .stdout(predicate::str::contains("within tolerance"));
}

#[test]
fn drift_beyond_tolerance_exits_one_and_lists_the_largest_first() {
    let dir = tempfile::tempdir().unwrap();
    let a = report_file(dir.path(), "a.json", &["ce", "golden/ce.npz"]);
    let b = report_file(dir.path(), "b.json", &["ce", "golden/ce.npz"]);
    perturb(&b, "/value", 0.2301812851391809 * (1.0 + 1e-3));
    perturb(&b, "/classes/1/loss_sum", 0.5);
    let output = losscope().arg("diff").args([&a, &b]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    let value_line = text.lines().position(|l| l.contains("│ value ")).expect("value listed");
    let class_line = text.lines().position(|l| l.contains("classes[1].loss_sum")).expect("class listed");
    assert!(class_line < value_line, "the larger relative change comes first:\n{text}");
    // Within a looser tolerance, or restricted to untouched fields, it passes.
    losscope().arg("diff").args([&a, &b]).args(["--only", "sum,difficulty.easy"]).assert().success();
    let json = losscope().arg("diff").args([&a, &b]).args(["--format", "json"]).output().unwrap();
    let diff: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(diff["kind"], "diff");
    assert_eq!(diff["differences"][0]["field"], "classes[1].loss_sum");
    assert_eq!(diff["differences"].as_array().unwrap().len(), 2);
}

#[test]
fn markdown_diff_is_a_pull_request_comment() {
    let dir = tempfile::tempdir().unwrap();
    let a = report_file(dir.path(), "a.json", &["ce", "golden/ce.npz"]);
    let b = report_file(dir.path(), "b.json", &["ce", "golden/ce.npz"]);
    perturb(&b, "/sum", 1.0);
    losscope()
        .arg("diff")
        .args([&a, &b])
        .args(["--format", "markdown"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("## losscope: diff of two ce reports"))
        .stdout(predicate::str::contains("| sum | 0.8056344979871332 | 1 |"));
}

#[test]
fn reports_that_cannot_be_compared_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let ce = report_file(dir.path(), "ce.json", &["ce", "golden/ce.npz"]);
    let bce = report_file(dir.path(), "bce.json", &["bce", "golden/bce.npz"]);
    let other_classes = report_file(
        dir.path(),
        "big.json",
        &["ce", "--logits", "spatial/logits.npy", "--targets", "spatial/targets_i64.npy"],
    );
    let not_a_report = dir.path().join("x.json");
    std::fs::write(&not_a_report, "{\"hello\": 1}").unwrap();
    let cases: [(&Path, &str); 3] = [
        (&bce, "loss differs"),
        (&other_classes, "the number of classes differs"),
        (&not_a_report, "not a losscope report"),
    ];
    for (current, message) in cases {
        losscope()
            .arg("diff")
            .args([&ce, current])
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains(message));
    }
    let mut version = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&ce).unwrap()).unwrap();
    version["schema_version"] = 2.into();
    let newer = dir.path().join("v2.json");
    std::fs::write(&newer, version.to_string()).unwrap();
    losscope()
        .arg("diff")
        .args([&ce, &newer])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("schema_version"));
}

#[test]
fn completions_and_man_page_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        losscope()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains("losscope"));
    }
    losscope().arg("man").assert().success().stdout(predicate::str::contains(".TH losscope"));
}

/// `losscope man | head -1`: the pipe closes early; still exit 0, no panic.
#[test]
fn completions_and_man_survive_a_closed_pipe() {
    for args in [&["man"][..], &["completions", "zsh"][..]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_losscope"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}
