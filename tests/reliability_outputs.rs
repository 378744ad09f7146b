//! Reliability of what losscope writes: infinite results reported as
//! infinities (not NaN) in every format and in `--expect`; stderr and
//! stdout that cannot be written; the mode of `-o` files and symbolic
//! links at `-o`; control characters from the user's text; tolerances that
//! are not finite; and `diff`, which must never pass by comparing nothing.
//!
//! Inputs are written by hand into temporary folders (NumPy is not needed):
//! see [`f64_npy`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::util::{assert_fits_schema, f64_npy, i64_npy, losscope};

// --------------------------------------------------------------------------
// helpers
// --------------------------------------------------------------------------

/// A temporary folder for inputs and outputs.
struct Scratch(TempDir);

impl Scratch {
    fn new() -> Scratch {
        Scratch(TempDir::new().expect("a temporary folder"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// Writes `bytes` to `name` and returns its full path as text.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write a scratch file");
        text(&path)
    }
}

fn text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temporary path").to_string()
}

fn run(args: &[&str]) -> Output {
    losscope().args(args).output().expect("losscope runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `args` with `--format json`, which must succeed; returns the report
/// (checked against docs/report.schema.json) and stderr.
fn json_run(args: &[&str]) -> (Value, String) {
    let output = losscope().args(args).args(["--format", "json"]).output().expect("losscope runs");
    assert!(output.status.success(), "losscope {args:?} failed: {}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_fits_schema(&report, args);
    (report, stderr(&output))
}

/// Asserts the error contract: exit 2, one line `losscope: error: …` on
/// stderr holding every `expected` part, nothing on stdout, no panic.
fn assert_rejected(args: &[&str], output: &Output, expected: &[&str]) {
    let err = stderr(output);
    let mut problems = Vec::new();
    if output.status.code() != Some(2) {
        problems.push(format!("exit code {:?}, not 2", output.status.code()));
    }
    if err.contains("panicked") {
        problems.push("it panicked".into());
    }
    if !output.stdout.is_empty() {
        problems.push(format!("{} bytes on stdout", output.stdout.len()));
    }
    if err.lines().count() != 1 || !err.starts_with("losscope: error: ") {
        problems.push("stderr is not one 'losscope: error: ' line".into());
    }
    for want in expected {
        if !err.contains(want) {
            problems.push(format!("stderr lacks {want:?}"));
        }
    }
    assert!(problems.is_empty(), "losscope {args:?}: {}\nstderr: {err:?}", problems.join("; "));
}

fn rejects(args: &[&str], expected: &[&str]) -> String {
    let output = run(args);
    assert_rejected(args, &output, expected);
    stderr(&output)
}

/// The path's `nonfinite` marker in a report, if any.
fn marker<'a>(report: &'a Value, path: &str) -> Option<&'a str> {
    report.get("nonfinite").and_then(|m| m.get(path)).and_then(Value::as_str)
}

/// `x = zeros((100, 2)); x[:, 1] = -1e307` with every target 1: each
/// example's loss is 1e307, finite; their float64 sum overflows, and
/// `F.cross_entropy` gives `inf` (as does the mean of it).
fn overflowing_ce(dir: &Scratch) -> (String, String) {
    let logits: Vec<f64> = (0..100).flat_map(|_| [0.0, -1e307]).collect();
    (
        dir.file("logits.npy", &f64_npy(&[100, 2], &logits)),
        dir.file("targets.npy", &i64_npy(&[100], &[1; 100])),
    )
}

/// A JSON report of golden/ce.npz, written to `dir/name`.
fn golden_report(dir: &Scratch, name: &str) -> PathBuf {
    let path = dir.path(name);
    losscope().args(["ce", "golden/ce.npz", "--format", "json", "-o"]).arg(&path).assert().success();
    path
}

/// Rewrites the report at `path` with `edit`, into `dir/name`.
fn edited(dir: &Scratch, path: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut report: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut report);
    dir.file(name, report.to_string().as_bytes())
}

// --------------------------------------------------------------------------
// 6. infinite results are inf, not NaN
// --------------------------------------------------------------------------

#[test]
fn a_ce_sum_that_overflows_is_inf_not_nan() {
    let dir = Scratch::new();
    let (logits, targets) = overflowing_ce(&dir);
    let args = ["ce", "--logits", &logits, "--targets", &targets];
    let (report, err) = json_run(&args);
    assert_eq!(report["value"], Value::Null, "JSON keeps null for old consumers");
    assert_eq!(marker(&report, "value"), Some("inf"));
    assert_eq!(marker(&report, "sum"), Some("inf"));
    assert_eq!(marker(&report, "classes[1].loss_sum"), Some("inf"));
    assert_eq!(report["normalizer"], 100.0);
    assert!(!err.contains("NaN"), "{err}");
    assert!(err.contains("warning: value is inf"), "{err}");

    let table = run(&args);
    assert!(table.status.success());
    let out = stdout(&table);
    let value_line = out.lines().find(|l| l.trim_start().starts_with("value")).unwrap();
    assert_eq!(value_line.split_whitespace().collect::<Vec<_>>(), ["value", "inf"], "{out}");
    assert!(!out.contains("null (not a number)"), "{out}");
    let markdown = stdout(&run(&[&args[..], &["--format", "markdown"]].concat()));
    assert!(markdown.contains("| value | `inf` |"), "{markdown}");
}

#[test]
fn huge_weights_give_inf_under_sum_and_stay_nan_under_mean() {
    let dir = Scratch::new();
    let logits = dir.file("logits.npy", &f64_npy(&[2, 2], &[0.0, 1.0, 1.0, 0.0]));
    let targets = dir.file("targets.npy", &i64_npy(&[2], &[0, 1]));
    let args = ["ce", "--logits", &logits, "--targets", &targets, "--weight", "1e308,1e308"];
    // Σ w·l = 2 · 1e308 · 1.3133 overflows: torch's sum is inf.
    let (sum, _) = json_run(&[&args[..], &["--reduction", "sum"]].concat());
    assert_eq!(marker(&sum, "value"), Some("inf"));
    assert_eq!(marker(&sum, "sum"), Some("inf"));
    // The mean divides by Σ w = inf too: inf / inf is NaN in torch, and here.
    let (mean, err) = json_run(&args);
    assert_eq!(mean["value"], Value::Null);
    assert_eq!(marker(&mean, "value"), None, "NaN is not marked as an infinity");
    assert_eq!(marker(&mean, "normalizer"), Some("inf"));
    assert!(err.contains("warning: value is NaN"), "{err}");
    let table = stdout(&run(&args));
    assert!(table.lines().any(|l| l.contains("value") && l.contains("null (not a number)")), "{table}");
}

#[test]
fn bce_and_focal_sums_that_overflow_are_inf() {
    let dir = Scratch::new();
    // Logit -1e307 with target 1: BCE = softplus(1e307) = 1e307 per element;
    // torchvision's focal = 0.25 · 1e307 · (1 - 0)² = 2.5e306. Both sums
    // of 100 overflow.
    let logits = dir.file("logits.npy", &f64_npy(&[100], &[-1e307; 100]));
    let targets = dir.file("targets.npy", &f64_npy(&[100], &[1.0; 100]));
    for loss in ["bce", "focal"] {
        let (report, err) = json_run(&[loss, "--logits", &logits, "--targets", &targets]);
        assert_eq!(marker(&report, "value"), Some("inf"), "{loss}");
        assert_eq!(marker(&report, "sum"), Some("inf"), "{loss}");
        assert_eq!(marker(&report, "classes[0].positive_loss_sum"), Some("inf"), "{loss}");
        assert!(!err.contains("NaN"), "{loss}: {err}");
    }
    let (focal, _) = json_run(&["focal", "--logits", &logits, "--targets", &targets]);
    assert_eq!(marker(&focal, "baseline.value"), Some("inf"), "the plain BCE beside it overflows too");
}

#[test]
fn an_ssd_loc_sum_that_overflows_is_inf() {
    let dir = Scratch::new();
    let priors = dir.file("priors.npy", &f64_npy(&[2, 4], &[0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 0.5, 0.5]));
    let conf = dir.file("conf.npy", &f64_npy(&[1, 2, 2], &[0.0, 1.0, 1.0, 0.0]));
    let truths = dir.file("truths.json", b"[[[0.0, 0.0, 0.5, 0.5, 0]]]");
    // Smooth L1 of a 1e308 offset is about 1e308; four of them overflow,
    // as torch's smooth_l1_loss(reduction='sum') does.
    let loc = dir.file("loc.npy", &f64_npy(&[1, 2, 4], &[1e308; 8]));
    let args = ["ssd", "--loc", &loc, "--conf", &conf, "--priors", &priors, "--truths", &truths];
    let (report, err) = json_run(&args);
    for field in ["value", "sum", "components.loc", "components.loc_sum", "images[0].loc_sum"] {
        assert_eq!(marker(&report, field), Some("inf"), "{field}");
    }
    assert!(report["components"]["conf"].is_number(), "the confidence part stays finite");
    assert!(!err.contains("NaN"), "{err}");
}

#[test]
fn a_minus_inf_logit_with_label_smoothing_is_inf() {
    let dir = Scratch::new();
    // log_softmax of the -inf logit is -inf, so the smoothing term is +inf
    // and torch's loss is inf (the target's own log-probability is finite).
    let logits = dir.file("logits.npy", &f64_npy(&[2, 3], &[0.0, f64::NEG_INFINITY, 1.0, 0.5, 0.1, 0.2]));
    let targets = dir.file("targets.npy", &i64_npy(&[2], &[0, 1]));
    let args =
        ["ce", "--logits", &logits, "--targets", &targets, "--label-smoothing", "0.1", "--allow-nonfinite"];
    let (report, err) = json_run(&args);
    assert_eq!(marker(&report, "value"), Some("inf"));
    assert_eq!(marker(&report, "classes[0].loss_sum"), Some("inf"));
    assert!(err.contains("warning: value is inf"), "{err}");
    // Without smoothing the same logits give a finite loss.
    let (plain, _) = json_run(&["ce", "--logits", &logits, "--targets", &targets, "--allow-nonfinite"]);
    assert!(plain["value"].is_number(), "{plain}");
    assert!(plain.get("nonfinite").is_none());
}

#[test]
fn a_nan_result_stays_nan() {
    let dir = Scratch::new();
    let logits = dir.file("logits.npy", &f64_npy(&[2, 2], &[f64::NAN, 1.0, 1.0, 0.0]));
    let targets = dir.file("targets.npy", &i64_npy(&[2], &[0, 1]));
    let (report, err) = json_run(&["ce", "--logits", &logits, "--targets", &targets, "--allow-nonfinite"]);
    assert_eq!(report["value"], Value::Null);
    assert!(report.get("nonfinite").is_none(), "{report}");
    assert!(err.contains("warning: value is NaN"), "{err}");
    // A +inf logit: log_softmax is NaN, in torch as here.
    let logits = dir.file("inf.npy", &f64_npy(&[2, 2], &[f64::INFINITY, 1.0, 1.0, 0.0]));
    let (report, _) = json_run(&["ce", "--logits", &logits, "--targets", &targets, "--allow-nonfinite"]);
    assert_eq!(marker(&report, "value"), None, "{report}");
}

#[test]
fn expect_against_an_infinite_value_says_inf() {
    let dir = Scratch::new();
    let (logits, targets) = overflowing_ce(&dir);
    let output = run(&["ce", "--logits", &logits, "--targets", &targets, "--expect", "1", "-q"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("check failed: value inf differs from the expected 1"), "{err}");
    let nan = dir.file("nan.npy", &f64_npy(&[100, 2], &[f64::NAN; 200]));
    let output = run(&["ce", "--logits", &nan, "--targets", &targets, "--allow-nonfinite", "--expect", "1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("check failed: value NaN differs"), "{}", stderr(&output));
}

#[test]
fn diff_compares_infinities_by_their_marker() {
    let dir = Scratch::new();
    let (logits, targets) = overflowing_ce(&dir);
    let report = |name: &str| {
        let path = dir.path(name);
        losscope()
            .args(["ce", "--logits", &logits, "--targets", &targets, "--format", "json", "-o"])
            .arg(&path)
            .assert()
            .success();
        path
    };
    let (a, b) = (report("a.json"), report("b.json"));
    losscope().arg("diff").args([&a, &b]).assert().success();
    // inf against a finite number, and against a bare null (NaN, or a
    // report written before infinities were marked), is a difference.
    let finite = edited(&dir, &a, "finite.json", |r| {
        r["value"] = json!(1.0);
        r["nonfinite"].as_object_mut().unwrap().remove("value");
    });
    let output = losscope().arg("diff").arg(&a).arg(&finite).args(["--only", "value"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let shown = stdout(&output);
    assert!(shown.lines().any(|l| l.contains("value") && l.contains("inf")), "{shown}");
    let unmarked = edited(&dir, &a, "unmarked.json", |r| {
        r.as_object_mut().unwrap().remove("nonfinite");
    });
    let output = losscope().arg("diff").arg(&a).arg(&unmarked).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // The diff's own JSON marks the infinity it shows.
    let json = losscope().arg("diff").arg(&a).arg(&finite).args(["--format", "json"]).output().unwrap();
    let diff: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(diff["differences"][0]["field"], "value");
    assert_eq!(marker(&diff, "differences[0].baseline"), Some("inf"), "{diff}");
}

// --------------------------------------------------------------------------
// 7. stderr and stdout that cannot be written
// --------------------------------------------------------------------------

fn full() -> Stdio {
    Stdio::from(File::create("/dev/full").expect("/dev/full"))
}

/// The binary as a plain process, run from the fixtures folder, for
/// choosing its stdout and stderr.
fn process() -> Process {
    let mut process = Process::new(env!("CARGO_BIN_EXE_losscope"));
    process.current_dir(crate::util::fixtures());
    process
}

fn no_panic(output: &Output, what: &str) {
    assert_ne!(output.status.code(), Some(101), "{what} panicked: {}", stderr(output));
}

#[test]
fn an_error_on_a_full_stderr_still_exits_2() {
    let output =
        process().args(["ce", "--logits", "nope.npy", "--targets", "t.npy"]).stderr(full()).output().unwrap();
    no_panic(&output, "an error");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}

#[test]
fn warnings_and_check_failures_on_a_full_stderr_keep_their_exit_code() {
    // Every target ignored: the report comes with warnings.
    let warned = ["ce", "--logits", "ignore/logits.npy", "--targets", "ignore/all_ignored.npy"];
    let output = process().args(warned).stderr(full()).output().unwrap();
    no_panic(&output, "a warning");
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("cross entropy"), "the report is still written");
    let failed = ["ce", "golden/ce.npz", "--expect", "1"];
    let output = process().args(failed).stderr(full()).output().unwrap();
    no_panic(&output, "a failed check");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn help_and_version_on_a_full_stdout_exit_2() {
    for flag in ["--help", "--version", "-h", "-V"] {
        let output = process().arg(flag).stdout(full()).output().unwrap();
        no_panic(&output, flag);
        assert_eq!(output.status.code(), Some(2), "{flag}: {}", stderr(&output));
        let err = stderr(&output);
        assert!(err.starts_with("losscope: error: stdout:") && err.lines().count() == 1, "{flag}: {err}");
    }
    // Subcommand help too.
    let output = process().args(["ce", "--help"]).stdout(full()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    // And a usage error, whose text goes to a full stderr, is still exit 2.
    let output = process().arg("--no-such-flag").stderr(full()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// Spawns `args` with a pipe on stdout whose reader goes away at once.
fn into_closed_pipe(args: &[&str]) -> Output {
    let mut child = process().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn output_to_dev_stdout_into_a_closed_pipe_exits_0_quietly() {
    for args in
        [&["ce", "golden/ce.npz", "-o", "/dev/stdout"][..], &["--help"][..], &["ce", "golden/ce.npz"][..]]
    {
        let output = into_closed_pipe(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        assert!(output.stderr.is_empty(), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn a_report_to_a_full_dev_stdout_is_an_error() {
    let args = ["ce", "golden/ce.npz", "-o", "/dev/stdout"];
    let output = process().args(args).stdout(full()).output().unwrap();
    assert_rejected(&args, &output, &["/dev/stdout", "No space left on device"]);
}

// --------------------------------------------------------------------------
// 8. modes of -o files, and symbolic links at -o
// --------------------------------------------------------------------------

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Runs losscope under `sh` with the given umask.
#[cfg(unix)]
fn with_umask(umask: &str, args: &[&str]) -> Output {
    let script = format!("umask {umask}; exec \"$0\" \"$@\"");
    Process::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_losscope")])
        .args(args)
        .current_dir(crate::util::fixtures())
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn a_new_output_file_gets_the_umask_mode() {
    let dir = Scratch::new();
    for (umask, expected) in [("022", 0o644), ("077", 0o600), ("002", 0o664)] {
        let path = text(&dir.path(&format!("report-{umask}.txt")));
        let output = with_umask(umask, &["ce", "golden/ce.npz", "-o", &path]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(mode(Path::new(&path)), expected, "umask {umask}");
    }
}

#[cfg(unix)]
#[test]
fn an_overwritten_output_file_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new();
    for wanted in [0o640, 0o604, 0o666] {
        let path = dir.path("report.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted)).unwrap();
        let output = with_umask("077", &["ce", "golden/ce.npz", "--format", "json", "-o", &text(&path)]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(mode(&path), wanted);
        assert!(std::fs::read_to_string(&path).unwrap().contains("\"loss\": \"ce\""));
    }
}

#[cfg(unix)]
#[test]
fn a_symlink_at_the_output_is_written_through_and_kept() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let dir = Scratch::new();
    // A chain of links to an existing file: the file is replaced, its mode
    // kept, and both links stay links.
    let target = dir.path("real.json");
    std::fs::write(&target, "old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    symlink("real.json", dir.path("link.json")).unwrap();
    symlink(dir.path("link.json"), dir.path("link2.json")).unwrap();
    let output =
        with_umask("022", &["ce", "golden/ce.npz", "--format", "json", "-o", &text(&dir.path("link2.json"))]);
    assert!(output.status.success(), "{}", stderr(&output));
    for link in ["link.json", "link2.json"] {
        assert!(std::fs::symlink_metadata(dir.path(link)).unwrap().file_type().is_symlink(), "{link}");
    }
    assert!(std::fs::read_to_string(&target).unwrap().contains("\"loss\": \"ce\""));
    assert_eq!(mode(&target), 0o640);
    // A link to a file that does not exist yet creates it, as `>` does.
    std::fs::create_dir(dir.path("sub")).unwrap();
    symlink("sub/made.txt", dir.path("dangling")).unwrap();
    let output = with_umask("022", &["ce", "golden/ce.npz", "-o", &text(&dir.path("dangling"))]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(std::fs::read_to_string(dir.path("sub/made.txt")).unwrap().contains("cross entropy"));
    assert_eq!(mode(&dir.path("sub/made.txt")), 0o644);
    // A link whose target's folder does not exist, and a loop, are errors
    // found before any work, and leave nothing behind.
    symlink("nowhere/x.txt", dir.path("lost")).unwrap();
    rejects(
        &["ce", "golden/ce.npz", "-o", &text(&dir.path("lost"))],
        &["symbolic link", "folder does not exist"],
    );
    symlink("loop-b", dir.path("loop-a")).unwrap();
    symlink("loop-a", dir.path("loop-b")).unwrap();
    rejects(&["ce", "golden/ce.npz", "-o", &text(&dir.path("loop-a"))], &["loop-a"]);
    let names: Vec<String> = std::fs::read_dir(dir.0.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "temporary files left: {names:?}");
}

// --------------------------------------------------------------------------
// 9. control characters from the user's text
// --------------------------------------------------------------------------

/// Raw bytes that must not reach a terminal (C1 controls are checked as
/// characters: their UTF-8 bytes also occur inside box-drawing characters).
const RAW: [u8; 4] = [0x1b, 0x07, b'\r', 0x7f];

fn assert_no_raw_controls(what: &str, bytes: &[u8]) {
    for byte in RAW {
        assert!(
            !bytes.contains(&byte),
            "{what} holds the raw byte {byte:#04x}: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert!(!String::from_utf8_lossy(bytes).contains('\u{9b}'), "{what} holds a raw C1 control");
}

/// The cells of a markdown table row, split at the pipes that are not escaped.
fn markdown_cells(row: &str) -> usize {
    let bytes = row.as_bytes();
    (0..bytes.len()).filter(|&i| bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\')).count() - 1
}

#[test]
fn control_characters_in_class_names_are_escaped_in_table_and_markdown() {
    let dir = Scratch::new();
    let file = dir.file("names.txt", "ca\u{1b}[31mt\u{7}\ndo|g\u{9b}\nbi\rrd\n".as_bytes());
    let inline = "ca\u{1b}[31mt\u{7},do|g\u{9b},bi\rrd";
    for names in [file.as_str(), inline] {
        let base = ["ce", "golden/ce.npz", "--class-names", names];
        let table = run(&base);
        assert!(table.status.success(), "{}", stderr(&table));
        assert_no_raw_controls("the table", &table.stdout);
        let out = stdout(&table);
        assert!(out.contains("ca\\x1b[31mt\\x07"), "{out}");
        assert!(out.contains("bi\\rrd"), "{out}");
        assert!(out.contains("do|g\\x9b"), "{out}");
        assert!(!out.contains('\u{9b}'), "{out}");

        let md = run(&[&base[..], &["--format", "markdown"]].concat());
        assert_no_raw_controls("the markdown", &md.stdout);
        let out = stdout(&md);
        assert!(out.contains("| ca\\x1b[31mt\\x07 |") && out.contains("| do\\|g\\x9b |"), "{out}");
        // Every row of the class table has as many cells as its header.
        let lines: Vec<&str> = out.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("| class | name")).unwrap();
        let width = markdown_cells(lines[header]);
        for row in lines[header + 2..].iter().take_while(|l| l.starts_with('|')) {
            assert_eq!(markdown_cells(row), width, "row {row:?}");
        }

        // JSON keeps the names as given (escaped by JSON itself).
        let (report, _) = json_run(&base);
        assert_eq!(report["classes"][0]["name"], "ca\u{1b}[31mt\u{7}");
        assert_eq!(report["classes"][2]["name"], "bi\rrd");
    }
}

#[test]
fn a_newline_in_a_class_name_does_not_split_a_row() {
    for format in ["table", "markdown"] {
        let output = run(&["ce", "golden/ce.npz", "--class-names", "first\nsecond,b,c", "--format", format]);
        assert!(output.status.success(), "{}", stderr(&output));
        let out = stdout(&output);
        assert!(out.contains("first\\nsecond"), "{out}");
        assert!(!out.lines().any(|l| l.contains("second") && !l.contains("first")), "{out}");
    }
}

#[test]
fn control_characters_in_file_names_are_escaped_everywhere() {
    let dir = Scratch::new();
    let bytes = std::fs::read(crate::util::fixtures().join("golden/ce.npz")).unwrap();
    let bundle = dir.file("ba\u{1b}]0;x\u{7}d\rname.npz", &bytes);
    for format in ["table", "markdown"] {
        let output = run(&["ce", &bundle, "--format", format]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_no_raw_controls(format, &output.stdout);
        assert!(stdout(&output).contains("ba\\x1b]0;x\\x07d\\rname.npz:logits"), "{}", stdout(&output));
    }
    // An error naming such a file is one line, with nothing raw in it.
    let missing = text(&dir.path("mis\u{1b}[2Jsing\nfile.npy"));
    let output = run(&["ce", "--logits", &missing, "--targets", "golden/ce.npz:targets"]);
    assert_rejected(&["ce", "--logits", "<missing>"], &output, &["mis\\x1b[2Jsing"]);
    assert_no_raw_controls("stderr", &output.stderr);
    // And diff shows its file names the same way.
    let report = golden_report(&dir, "r\u{1b}[1m.json");
    let output = losscope().arg("diff").args([&report, &report]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_no_raw_controls("diff", &output.stdout);
    assert!(stdout(&output).contains("r\\x1b[1m.json"));
}

// --------------------------------------------------------------------------
// 10. tolerances must be finite
// --------------------------------------------------------------------------

#[test]
fn infinite_or_nan_tolerances_are_refused() {
    let dir = Scratch::new();
    let report = text(&golden_report(&dir, "r.json"));
    for (flag, value) in [("--rtol", "inf"), ("--atol", "inf"), ("--rtol", "nan"), ("--atol", "-inf")] {
        let given = format!("{flag}={value}");
        rejects(&["ce", "golden/ce.npz", "--expect", "0.23", &given], &[flag, "not a finite number"]);
        rejects(&["diff", &report, &report, &given], &[flag, "not a finite number"]);
    }
    // A finite tolerance, however large, still works.
    losscope().args(["ce", "golden/ce.npz", "--expect", "0", "--atol", "1e300"]).assert().success();
}

// --------------------------------------------------------------------------
// 11. diff never passes by comparing nothing
// --------------------------------------------------------------------------

#[test]
fn diff_refuses_a_value_that_is_missing_or_not_a_number() {
    let dir = Scratch::new();
    let base = golden_report(&dir, "base.json");
    let base_text = text(&base);
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: [(&str, Edit, &str); 4] = [
        ("missing.json", Box::new(|r| drop(r.as_object_mut().unwrap().remove("value"))), "missing"),
        ("string.json", Box::new(|r| r["value"] = json!("0.23")), "a string"),
        ("true.json", Box::new(|r| r["value"] = json!(true)), "a boolean"),
        ("list.json", Box::new(|r| r["value"] = json!([0.23])), "a list"),
    ];
    for (name, edit, kind) in cases {
        let current = edited(&dir, &base, name, edit);
        rejects(&["diff", &base_text, &current], &[name, "(current)", "value is", kind]);
        // The other way round, the baseline is named.
        rejects(&["diff", &current, &base_text], &[name, "(baseline)", "value is", kind]);
    }
}

#[test]
fn diff_refuses_a_class_entry_replaced_by_junk_or_missing_a_number() {
    let dir = Scratch::new();
    let base = golden_report(&dir, "base.json");
    let base_text = text(&base);
    let junk = edited(&dir, &base, "junk.json", |r| r["classes"][1] = json!("junk"));
    rejects(&["diff", &base_text, &junk], &["classes[1] is a string"]);
    let object = edited(&dir, &base, "object.json", |r| r["classes"][1] = json!({"hello": "world"}));
    rejects(&["diff", &base_text, &object], &["classes[1].", "is missing"]);
    let lost = edited(&dir, &base, "lost.json", |r| {
        r["classes"][1].as_object_mut().unwrap().remove("loss_sum");
    });
    rejects(&["diff", &base_text, &lost], &["classes[1].loss_sum is missing"]);
    let short = edited(&dir, &base, "short.json", |r| {
        r["difficulty"]["bins"].as_array_mut().unwrap().pop();
    });
    rejects(&["diff", &base_text, &short], &["difficulty.bins[9]", "missing"]);
    // Numbers on both sides in different shapes: both files are named.
    let junk_section = edited(&dir, &base, "section.json", |r| r["difficulty"] = json!(7));
    rejects(
        &["diff", &base_text, &junk_section],
        &[
            "cannot be compared",
            "difficulty is an object in",
            "base.json (baseline) but a number in",
            "section.json (current)",
        ],
    );
    // Restricted to fields that are intact, the comparison is fine.
    losscope().args(["diff", &base_text, &junk, "--only", "value,classes[0]"]).assert().success();
}

#[test]
fn diff_refuses_an_only_that_names_no_field() {
    let dir = Scratch::new();
    let base = text(&golden_report(&dir, "base.json"));
    for only in ["bogusfield", "valu", "parameters", "classes[9]", "value,bogus"] {
        let err =
            rejects(&["diff", &base, &base, "--only", only], &["--only", "names no number of the reports"]);
        assert!(err.contains("value, ") || err.contains(", value"), "the valid names are listed: {err}");
    }
    losscope().args(["diff", &base, &base, "--only", "value,classes[2].loss_sum"]).assert().success();
}

#[test]
fn diff_of_reports_without_numbers_is_an_error() {
    let dir = Scratch::new();
    let empty = dir.file("empty.json", br#"{"schema_version": 1, "loss": "ce", "warnings": ["x"]}"#);
    rejects(&["diff", &empty, &empty], &["no numbers to compare"]);
}

#[test]
fn diff_null_against_a_number_is_a_difference_and_null_against_null_is_equal() {
    let dir = Scratch::new();
    let base = golden_report(&dir, "base.json");
    let nulled = edited(&dir, &base, "null.json", |r| r["value"] = Value::Null);
    let output = losscope().arg("diff").arg(&base).arg(&nulled).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    losscope().arg("diff").arg(&nulled).arg(&nulled).assert().success();
    // A class name given to one run only is not a number: nothing to refuse.
    let named = dir.path("named.json");
    losscope()
        .args(["ce", "golden/ce.npz", "--class-names", "a,b,c", "--format", "json", "-o"])
        .arg(&named)
        .assert()
        .success();
    losscope().arg("diff").arg(&base).arg(&named).assert().success();
}

#[test]
fn diff_refuses_a_malformed_nonfinite_marker() {
    let dir = Scratch::new();
    let base = golden_report(&dir, "base.json");
    let base_text = text(&base);
    let cases: [(&str, Value, &str); 3] = [
        ("word.json", json!({"value": "huge"}), "not \"inf\" or \"-inf\""),
        ("finite.json", json!({"value": "inf"}), "not a null number"),
        ("list.json", json!(["value"]), "not an object"),
    ];
    for (name, marker, message) in cases {
        let current = edited(&dir, &base, name, |r| r["nonfinite"] = marker);
        rejects(&["diff", &base_text, &current], &[name, message]);
    }
}

// --------------------------------------------------------------------------
// 12. inline lists of non-finite numbers
// --------------------------------------------------------------------------

#[test]
fn non_finite_inline_weights_are_named_not_taken_for_files() {
    rejects(&["bce", "golden/bce.npz", "--pos-weight", "nan,1"], &["--pos-weight", "entry [0] is NaN"]);
    rejects(&["bce", "golden/bce.npz", "--pos-weight", "1,inf"], &["--pos-weight", "entry [1] is inf"]);
    rejects(&["ce", "golden/ce.npz", "--weight", "-inf,1,1"], &["--weight", "entry [0] is -inf"]);
    rejects(&["ce", "golden/ce.npz", "--weight", "NaN,1,1"], &["--weight", "entry [0] is NaN"]);
    let err = rejects(&["bce", "golden/bce.npz", "--pos-weight", "nan,1,1"], &["--pos-weight"]);
    assert!(!err.contains("no such file"), "{err}");
}

/// A report too large for diff's memory is refused before it is read, with
/// the limit (a sparse file: nothing is written to disk).
#[test]
fn diff_refuses_a_report_beyond_its_size_limit() {
    let dir = TempDir::new().unwrap();
    let small = dir.path().join("small.json");
    let output =
        losscope().args(["ce", "golden/ce.npz", "--format", "json", "-o"]).arg(&small).output().unwrap();
    assert!(output.status.success());
    let huge = dir.path().join("huge.json");
    File::create(&huge).unwrap().set_len(losscope::diff::MAX_REPORT_BYTES + 1).unwrap();
    let output = losscope().arg("diff").arg(&small).arg(&huge).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("huge.json (current)") && stderr.contains("128.0 MiB"), "{stderr}");
}
