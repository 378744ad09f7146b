//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The fixtures folder, where every case's relative paths start.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every parity case holds to this relative tolerance against its reference.
pub const PARITY_RTOL: f64 = 1e-10;

/// The `cases` of a reference file under fixtures/ (`{"cases": [...]}`, as
/// the generator scripts write them).
pub fn reference_cases<Case: DeserializeOwned>(file: &str) -> Vec<Case> {
    #[derive(Deserialize)]
    struct Expected<Case> {
        cases: Vec<Case>,
    }
    let text = std::fs::read(fixtures().join(file)).unwrap_or_else(|e| panic!("fixtures/{file}: {e}"));
    serde_json::from_slice::<Expected<Case>>(&text).unwrap_or_else(|e| panic!("fixtures/{file}: {e}")).cases
}

/// The losscope binary, run from the fixtures folder.
pub fn losscope() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_losscope"));
    cmd.current_dir(fixtures());
    cmd.env_remove("NO_COLOR");
    cmd
}

/// Runs losscope with `args` plus `--format json`, parses the report and
/// checks it against the published schema, so that every report the tests
/// produce keeps docs/report.schema.json honest.
pub fn json_report(args: &[&str]) -> serde_json::Value {
    let output = losscope().args(args).args(["--format", "json"]).output().expect("losscope runs");
    assert!(output.status.success(), "losscope {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    let report = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_fits_schema(&report, args);
    report
}

fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
        let schema: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("docs/report.schema.json"))
                .expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("the schema compiles")
    })
}

/// Asserts that `report` is valid under docs/report.schema.json.
pub fn assert_fits_schema(report: &serde_json::Value, args: &[&str]) {
    let errors: Vec<String> =
        schema().iter_errors(report).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "report of {args:?} breaks docs/report.schema.json:\n{}", errors.join("\n"));
}

/// `|a - b| <= rtol · max(|a|, |b|)`, with exact equality for zeros.
pub fn close(a: f64, b: f64, rtol: f64) -> bool {
    a == b || (a - b).abs() <= rtol * a.abs().max(b.abs())
}

/// Asserts that `actual` matches `expected` to `rtol`, naming the quantity.
pub fn assert_close(what: &str, actual: f64, expected: f64, rtol: f64) {
    assert!(
        close(actual, expected, rtol),
        "{what}: got {actual:e}, reference {expected:e} (relative difference {:e})",
        (actual - expected).abs() / expected.abs()
    );
}

/// A version 1.0 `.npy` image with `header` as its dictionary text, padded as
/// NumPy pads it (the payload starts at a multiple of 64). The one `.npy`
/// writer of the tests: corrupt files are made from its output.
pub fn npy_with_header(header: &str, payload: &[u8]) -> Vec<u8> {
    let mut text = header.as_bytes().to_vec();
    while !(10 + text.len() + 1).is_multiple_of(64) {
        text.push(b' ');
    }
    text.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&u16::try_from(text.len()).expect("a version 1.0 header").to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(payload);
    out
}

/// A well-formed C-order `.npy` image: `descr` as NumPy spells it (`<f8`,
/// `|b1`, …) and the raw little-endian `payload`.
pub fn npy(descr: &str, shape: &[usize], payload: &[u8]) -> Vec<u8> {
    let shape = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    npy_with_header(&format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"), payload)
}

/// A float64 `.npy` image.
pub fn f64_npy(shape: &[usize], values: &[f64]) -> Vec<u8> {
    npy("<f8", shape, &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
}

/// An int64 `.npy` image.
pub fn i64_npy(shape: &[usize], values: &[i64]) -> Vec<u8> {
    npy("<i8", shape, &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
}

/// Runs `check` on every case, and fails once with every case that failed,
/// so one run shows all the differences rather than the first.
pub fn check_every<Case: std::panic::RefUnwindSafe>(
    cases: &[Case],
    check: impl Fn(&Case) + std::panic::RefUnwindSafe,
) {
    let mut failures = Vec::new();
    for case in cases {
        if let Err(panic) = std::panic::catch_unwind(|| check(case)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(message);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The SSD golden batch of the reference notes, as `ssd` arguments.
pub const SSD_GOLDEN: [&str; 9] = [
    "ssd",
    "--loc",
    "ssd/golden/loc.npy",
    "--conf",
    "ssd/golden/conf.npy",
    "--priors",
    "ssd/golden/priors.npy",
    "--truths",
    "ssd/golden/truths.json",
];
