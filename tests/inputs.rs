//! How inputs are read: memory maps where the layout allows, every dtype and
//! container giving the same numbers, bundles with flags on top.

use crate::util::json_report;

fn input<'a>(report: &'a serde_json::Value, role: &str) -> &'a serde_json::Value {
    report["inputs"].as_array().unwrap().iter().find(|i| i["role"] == role).expect("input listed")
}

#[test]
fn native_npy_is_memory_mapped_and_other_layouts_are_decoded() {
    let cases = [
        ("dtypes/logits_f32.npy", true, "float32"),
        ("dtypes/logits_f16.npy", true, "float16"),
        ("dtypes/logits_f64_be.npy", false, "float64"),
        ("dtypes/logits_f32_fortran.npy", false, "float32"),
    ];
    for (logits, mapped, dtype) in cases {
        let report = json_report(&["ce", "--logits", logits, "--targets", "dtypes/targets_i64.npy"]);
        let info = input(&report, "logits");
        assert_eq!(info["memory_mapped"], mapped, "{logits}");
        assert_eq!(info["dtype"], dtype, "{logits}");
    }
    let npz = json_report(&["ce", "golden/ce.npz"]);
    assert_eq!(input(&npz, "logits")["memory_mapped"], false);
}

#[test]
fn c_and_fortran_order_of_the_same_values_give_the_same_report() {
    let report = |logits: &str| {
        let mut r = json_report(&[
            "ce",
            "--logits",
            logits,
            "--targets",
            "classlast/targets.npy",
            "--class-axis",
            "-1",
        ]);
        r["inputs"] = serde_json::Value::Null;
        r
    };
    assert_eq!(report("classlast/logits.npy"), report("classlast/logits_fortran.npy"));
}

#[test]
fn flags_override_the_bundle() {
    let bundled = json_report(&["ce", "golden/ce.npz"]);
    let overridden = json_report(&["ce", "golden/ce.npz", "--weight", "1,1,1"]);
    let plain = json_report(&["ce", "golden/ce_noweight.npz"]);
    assert_ne!(bundled["value"], overridden["value"]);
    assert_eq!(overridden["value"], plain["value"]);
    assert_eq!(input(&overridden, "weight")["source"], "--weight");
}

#[test]
fn json_bundle_and_keyed_members_agree() {
    let bundle = json_report(&["ce", "json/ce.json"]);
    let keyed = json_report(&["ce", "--logits", "json/ce.json:logits", "--targets", "json/ce.json:targets"]);
    assert_eq!(bundle["value"], keyed["value"]);
    assert_eq!(input(&bundle, "targets")["dtype"], "int64");
}

#[test]
fn class_names_come_from_a_file_or_a_list() {
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("names.txt");
    std::fs::write(&lines, "cat\ndog\nbird\n").unwrap();
    let listed = dir.path().join("names.json");
    std::fs::write(&listed, r#"["cat", "dog", "bird"]"#).unwrap();
    for names in [lines.to_str().unwrap(), listed.to_str().unwrap(), "cat,dog,bird"] {
        let report = json_report(&["ce", "golden/ce.npz", "--class-names", names]);
        let got: Vec<&str> =
            report["classes"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(got, ["cat", "dog", "bird"], "{names}");
    }
}
