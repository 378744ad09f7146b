//! What PyTorch users save: the same batches as `.npy`, `.npz`, `torch.save`
//! files (a tensor, a dict, nested containers, strided and offset views,
//! storages shared between tensors, bfloat16, big-endian, deflated) and
//! `.safetensors` give the same report apart from `inputs`, for every loss
//! (fixtures/generate_formats.py writes them with the real packages). What
//! cannot be read is refused in one line, and a pickle is never run.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use serde::Deserialize;
use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

use crate::bad_input::{Scratch, rejects, run};
use crate::util::{check_every, fixtures, i64_npy, json_report};

#[derive(Deserialize)]
struct Expected {
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    loss: String,
    variants: Vec<Variant>,
}

#[derive(Deserialize)]
struct Variant {
    name: String,
    args: Vec<String>,
    /// Per role: the dtype and whether it is read in place.
    inputs: BTreeMap<String, serde_json::Value>,
}

fn groups() -> Vec<Group> {
    let text =
        std::fs::read(fixtures().join("formats/expected.json")).expect("fixtures/formats/expected.json");
    serde_json::from_slice::<Expected>(&text).expect("the generator's JSON").groups
}

/// The report of `args` as JSON text without its `inputs`, and the inputs
/// by role (dtype and memory_mapped).
fn report_without_inputs(args: &[&str]) -> (String, BTreeMap<String, serde_json::Value>) {
    let mut report = json_report(args);
    let inputs = report.as_object_mut().expect("a JSON object").remove("inputs").expect("inputs");
    let by_role = inputs
        .as_array()
        .expect("a list")
        .iter()
        .map(|input| {
            let described = serde_json::json!({
                "dtype": input["dtype"],
                "memory_mapped": input["memory_mapped"],
            });
            (input["role"].as_str().expect("a role").to_string(), described)
        })
        .collect();
    (report.to_string(), by_role)
}

fn args(variant: &Variant) -> Vec<&str> {
    variant.args.iter().map(String::as_str).collect()
}

#[test]
fn every_format_gives_the_same_report_and_reads_in_place_where_it_can() {
    let groups = groups();
    assert_eq!(groups.len(), 5, "ce, bce, focal and two ssd groups");
    check_every(&groups, |group| {
        let (reference, _) = report_without_inputs(&args(&group.variants[0]));
        for variant in &group.variants {
            let (report, inputs) = report_without_inputs(&args(variant));
            assert!(
                report == reference,
                "{} {}: the report differs from {}",
                group.loss,
                variant.name,
                group.variants[0].name
            );
            for (role, expected) in &variant.inputs {
                assert_eq!(inputs.get(role), Some(expected), "{} {}: input {role}", group.loss, variant.name);
            }
        }
    });
}

#[test]
fn a_torch_or_safetensors_file_is_recognised_without_its_extension() {
    let dir = Scratch::new();
    let (reference, _) = report_without_inputs(&["ce", "formats/ce.npz"]);
    for (fixture, name) in [("formats/ce.pt", "batch.bin"), ("formats/ce.safetensors", "batch.st")] {
        let bytes = std::fs::read(fixtures().join(fixture)).expect("a fixture");
        let path = dir.file(name, &bytes);
        assert_eq!(report_without_inputs(&["ce", &path]).0, reference, "{fixture} as {name}");
    }
}

#[test]
fn a_pickle_that_would_run_a_command_is_refused_and_not_run() {
    for args in [
        &["ce", "formats/refused_system.pt"][..],
        &["ce", "--logits", "formats/refused_system.pt:logits", "--targets", "formats/ce_targets.npy"],
    ] {
        rejects(
            args,
            &[
                "formats/refused_system.pt",
                "holds a Python object of type posix.system, not tensors (none of it was run)",
            ],
        );
    }
    // The pickle would create this file in the working folder.
    assert!(!fixtures().join("pickle_ran").exists(), "the pickle ran");
}

#[test]
fn files_that_hold_no_readable_tensor_say_how_to_save_one() {
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["ce", "formats/refused_object.pt"],
            &[
                "formats/refused_object.pt (bundle)",
                "type __main__.Point, not tensors",
                "torch.save({'logits': t}, f)",
            ],
        ),
        (
            &["ce", "formats/refused_legacy.pt"],
            &["(bundle)", "legacy format", "torch.save(torch.load(f), f)"],
        ),
        (
            &["ce", "formats/refused_complex.pt"],
            &[
                "formats/refused_complex.pt:logits (logits)",
                "member 'logits' is a complex64 tensor",
                "save t.real",
            ],
        ),
        (
            &["ce", "--logits", "formats/refused_bf16.npy", "--targets", "formats/ce_targets.npy"],
            &["formats/refused_bf16.npy (logits)", "'<V2'", "bfloat16", "t.float()", ".safetensors"],
        ),
        (
            &["ce", "formats/ce_logits.pt"],
            &["formats/ce_logits.pt (bundle)", "holds one tensor, not a dict of named tensors"],
        ),
        (
            &["ce", "--logits", "formats/ce.pt:logit", "--targets", "formats/ce.pt"],
            &["formats/ce.pt:logit (logits)", "no array named 'logit' (it holds: logits, targets, weight)"],
        ),
        (
            &["ce", "--logits", "formats/ce.safetensors:logit", "--targets", "formats/ce.safetensors"],
            &[
                "formats/ce.safetensors:logit (logits)",
                "no array named 'logit' (it holds: targets, logits, weight)",
            ],
        ),
    ];
    for (args, expected) in cases {
        rejects(args, expected);
    }
}

// --------------------------------------------------------------------------
// hand-made torch.save files
// --------------------------------------------------------------------------

/// A `torch.save`-shaped archive: `archive/data.pkl` and the storages
/// `archive/data/<key>`, every member compressed with `method`.
fn torch_file(pickle: &[u8], storages: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let options = SimpleFileOptions::default().compression_method(method).large_file(true);
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer.start_file("archive/data.pkl", options).expect("a member");
    writer.write_all(pickle).expect("written to memory");
    for (key, bytes) in storages {
        writer.start_file(format!("archive/data/{key}"), options).expect("a member");
        writer.write_all(bytes).expect("written to memory");
    }
    writer.finish().expect("an archive").into_inner()
}

/// A pickle (protocol 2) of the opcodes in `body`.
fn pickle(body: &[u8]) -> Vec<u8> {
    [b"\x80\x02", body, b"."].concat()
}

/// An int as LONG1 of eight bytes.
fn int(value: i64) -> Vec<u8> {
    [&b"\x8a\x08"[..], &value.to_le_bytes()].concat()
}

fn text(value: &str) -> Vec<u8> {
    [&b"X"[..], &(value.len() as u32).to_le_bytes(), value.as_bytes()].concat()
}

fn tuple(items: &[Vec<u8>]) -> Vec<u8> {
    [&b"("[..], &items.concat(), b"t"].concat()
}

/// `torch._utils._rebuild_tensor_v2` of float storage `0` (`numel` floats)
/// at `offset`, with `size` and `stride`.
fn float_tensor(numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> Vec<u8> {
    let persistent_id =
        tuple(&[text("storage"), b"ctorch\nFloatStorage\n".to_vec(), text("0"), text("cpu"), int(numel)]);
    let arguments = tuple(&[
        [&persistent_id[..], b"Q"].concat(),
        int(offset),
        tuple(&size.iter().map(|&v| int(v)).collect::<Vec<_>>()),
        tuple(&stride.iter().map(|&v| int(v)).collect::<Vec<_>>()),
        b"\x89".to_vec(),
        b"ccollections\nOrderedDict\n)R".to_vec(),
    ]);
    [&b"ctorch._utils\n_rebuild_tensor_v2\n"[..], &arguments, b"R"].concat()
}

/// `{'logits': value}`.
fn logits_dict(value: &[u8]) -> Vec<u8> {
    [&b"}("[..], &text("logits"), value, b"u"].concat()
}

/// Rejects `ce` with `file` as the logits (`file:key`, or the bundle when
/// `key` is `None`), naming the file and `expected`.
fn rejects_logits(file: &str, key: Option<&str>, expected: &[&str]) {
    let spec = key.map_or(file.to_string(), |key| format!("{file}:{key}"));
    let args = match key {
        Some(_) => vec!["ce", "--logits", &spec, "--targets", "formats/ce_targets.npy"],
        None => vec!["ce", &spec],
    };
    let mut wanted = vec![spec.as_str()];
    wanted.extend_from_slice(expected);
    rejects(&args, &wanted);
}

#[test]
fn hand_made_torch_files_are_read_as_torch_writes_them() {
    // The check that the refusals below are the input's fault, not the
    // writer's: a [2, 3] view at offset 1 of 8 floats, transposed.
    let dir = Scratch::new();
    let floats: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let body = logits_dict(&float_tensor(8, 1, &[2, 3], &[1, 2]));
    let file = dir.file("view.pt", &torch_file(&pickle(&body), &[("0", &floats)], CompressionMethod::Stored));
    let targets = dir.file("targets.npy", &i64_npy(&[2], &[2, 0]));
    let report = json_report(&["ce", "--logits", &format!("{file}:logits"), "--targets", &targets]);
    assert_eq!(report["inputs"][0]["shape"], serde_json::json!([2, 3]));
    // Rows [1, 3, 5] and [2, 4, 6] with targets 2 and 0.
    let expected = ((1f64.exp() + 3f64.exp() + 5f64.exp()).ln() - 5.0
        + (2f64.exp() + 4f64.exp() + 6f64.exp()).ln()
        - 2.0)
        / 2.0;
    let value = report["value"].as_f64().expect("a value");
    assert!((value - expected).abs() < 1e-12, "{value} vs {expected}");
}

#[test]
fn damaged_torch_files_are_refused_in_one_line() {
    let dir = Scratch::new();
    let floats = [0u8; 16];
    let stored = |name: &str, body: &[u8], storages: &[(&str, &[u8])]| {
        dir.file(name, &torch_file(&pickle(body), storages, CompressionMethod::Stored))
    };
    let past_the_end =
        stored("past.pt", &logits_dict(&float_tensor(4, 2, &[3, 3], &[3, 1])), &[("0", &floats)]);
    rejects_logits(
        &past_the_end,
        Some("logits"),
        &[
            "member 'logits': storage 0: its view (offset 2, shape [3, 3], strides [3, 1]) of float32 reaches past the 16 bytes",
        ],
    );
    let huge = 1i64 << 40;
    let too_large =
        stored("huge.pt", &logits_dict(&float_tensor(4, 0, &[huge, huge], &[huge, 1])), &[("0", &floats)]);
    rejects_logits(
        &too_large,
        Some("logits"),
        &[
            "member 'logits': storage 0: shape [1099511627776, 1099511627776] of float32 is larger than can be addressed",
        ],
    );
    let negative = stored("negative.pt", &logits_dict(&float_tensor(4, 0, &[-1], &[1])), &[("0", &floats)]);
    rejects_logits(&negative, Some("logits"), &["data.pkl is damaged at byte", "not a count"]);
    let missing = stored("missing.pt", &logits_dict(&float_tensor(4, 0, &[4], &[1])), &[]);
    rejects_logits(
        &missing,
        Some("logits"),
        &["member 'logits': its storage archive/data/0 is missing from the archive"],
    );
    let unknown_opcode = stored("opcode.pt", b"I1\n", &[]);
    rejects_logits(
        &unknown_opcode,
        Some("logits"),
        &["data.pkl is damaged at byte 2: opcode 0x49 is not one torch.save writes"],
    );
    let long_string = stored("string.pt", b"X\xff\xff\xff\xff", &[]);
    rejects_logits(&long_string, Some("logits"), &["declares 4294967295 bytes where 1 are left"]);
    let unfinished = stored("unfinished.pt", b"}", &[]);
    let truncated = std::fs::read(&unfinished).expect("the file");
    let cut = dir.file("cut.pt", &truncated[..truncated.len() / 2]);
    rejects_logits(&cut, Some("logits"), &["not a readable torch.save (zip) archive"]);
    let no_pickle = dir.file("nopickle.pt", &{
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        writer.start_file("archive/other", SimpleFileOptions::default()).expect("a member");
        writer.finish().expect("an archive").into_inner()
    });
    rejects_logits(&no_pickle, None, &["is a zip archive without data.pkl, not a torch.save file"]);
}

#[test]
fn a_pickle_bigger_than_the_limit_is_refused_before_it_is_read() {
    // 17 MiB of zeros deflate to a few KiB.
    let dir = Scratch::new();
    let zeros = vec![0u8; 17 << 20];
    let file = dir.file("big.pt", &torch_file(&zeros, &[], CompressionMethod::Deflated));
    rejects_logits(
        &file,
        Some("logits"),
        &["archive/data.pkl is 17.0 MiB (17825792 bytes), more than the 16.0 MiB"],
    );
}

#[test]
fn cycles_and_deep_nesting_end_in_a_message() {
    let dir = Scratch::new();
    // l = []; l.append(l): a list that holds itself, followed as far as asked.
    let cyclic = dir.file("cycle.pt", &torch_file(&pickle(b"]q\x00h\x00a"), &[], CompressionMethod::Stored));
    let deep_key = vec!["0"; 5000].join(".");
    rejects_logits(&cyclic, Some(&deep_key), &["is a list of 1, not a tensor"]);
    rejects_logits(&cyclic, None, &["holds a list, not a dict of named tensors"]);
    // 200,000 lists, each in the one before.
    let depth = 200_000;
    let body = [vec![b']'; depth], vec![b'a'; depth - 1]].concat();
    let nested = dir.file("nested.pt", &torch_file(&pickle(&body), &[], CompressionMethod::Stored));
    rejects_logits(&nested, Some(&deep_key), &["is a list of 1, not a tensor"]);
    // A key longer than the nesting runs out of lists.
    let shallow = dir.file("shallow.pt", &torch_file(&pickle(b"]]a"), &[], CompressionMethod::Stored));
    rejects_logits(&shallow, Some("0.0.0"), &["no array named '0.0.0' ('0' is a list of 0)"]);
}

#[test]
fn a_damaged_safetensors_file_is_refused_in_one_line() {
    let dir = Scratch::new();
    let bytes = std::fs::read(fixtures().join("formats/ce.safetensors")).expect("a fixture");
    let cut = dir.file("cut.safetensors", &bytes[..bytes.len() - 4]);
    rejects_logits(
        &cut,
        Some("logits"),
        &["the tensors' data offsets do not end where the file does", "a truncated or padded file"],
    );
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let huge = dir.file("huge.safetensors", &huge);
    rejects_logits(&huge, Some("logits"), &["its header length 18446744073709551615 does not fit"]);
    let output = run(&["ce", &cut]);
    assert_eq!(output.status.code(), Some(2), "as a bundle too");
}

#[test]
fn a_bundle_is_a_whole_file_of_any_format() {
    rejects(
        &["ce", "formats/ce.pt:logits"],
        &["the bundle formats/ce.pt:logits names a member ':logits'", ".safetensors"],
    );
}
